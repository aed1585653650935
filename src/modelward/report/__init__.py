"""report layer of modelward (see DESIGN.md): renders registers and evidence; decides nothing.

Formats: versioned JSON (``json_report``), SARIF 2.1.0 (``sarif``), CSV (``csv_report``),
Markdown and HTML (``markdown``, ``html``), DFD as Mermaid/DOT/SVG (``dfd``), the coverage
matrix (``coverage``) and an OWASP Threat Dragon export (``threat_dragon``); ``writer`` writes
them all into a folder.
"""

from __future__ import annotations

from modelward.report.writer import DEFAULT_FORMATS, FORMATS, write_report

__all__ = ["DEFAULT_FORMATS", "FORMATS", "write_report"]
