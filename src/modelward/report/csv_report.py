"""One CSV row per finding, for importing into a ticketing system or a spreadsheet.

Every cell is quoted, and a cell that a spreadsheet would read as a formula (starting with
``= + - @``, a tab or a line break, or their full-width forms) gets a leading apostrophe:
element names and justifications come from users, and a register must not run code when
someone opens it (CSV / formula injection, CWE-1236).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any

from modelward.report.common import sorted_findings
from modelward.threats.model import Finding, Register

__all__ = ["COLUMNS", "neutralise", "render_csv", "rows"]

COLUMNS: tuple[str, ...] = (
    "id",
    "threat",
    "title",
    "element",
    "flow",
    "severity",
    "likelihood",
    "impact",
    "status",
    "verified",
    "stride",
    "linddun",
    "atlas",
    "owasp",
    "cwe",
    "why",
    "mitigations",
    "owner",
    "ticket",
    "review_by",
    "justification",
    "rating_vector",
)

#: First characters that make Excel, LibreOffice or Google Sheets evaluate a cell.
_FORMULA_START = frozenset("=+-@\t\r\n\uff1d\uff0b\uff0d\uff20")
_LIST_SEPARATOR = "; "


def neutralise(value: str) -> str:
    """The cell text, prefixed with an apostrophe when a spreadsheet would treat it as a formula."""
    if value and value[0] in _FORMULA_START:
        return "'" + value
    return value


def rows(findings: Iterable[Finding]) -> list[dict[str, str]]:
    """One dict of cell texts per finding (before neutralising), most serious first."""
    return [_row(finding) for finding in sorted_findings(findings)]


def _row(finding: Finding) -> dict[str, str]:
    threat = finding.threat
    triage = finding.triage
    verified = "" if finding.verified is None else "true" if finding.verified else "false"
    return {
        "id": finding.id,
        "threat": threat.id,
        "title": threat.title,
        "element": finding.element,
        "flow": finding.flow or "",
        "severity": finding.severity.value,
        "likelihood": f"{finding.likelihood:.2f}",
        "impact": f"{finding.impact:.2f}",
        "status": finding.status.value,
        "verified": verified,
        "stride": _join(threat.stride),
        "linddun": _join(threat.linddun),
        "atlas": _join(threat.atlas),
        "owasp": _join(threat.owasp),
        "cwe": _join(threat.cwe),
        "why": _join(finding.why),
        "mitigations": _join(m.title for m in threat.mitigations),
        "owner": _text(triage.get("owner")),
        "ticket": _text(triage.get("ticket")),
        "review_by": _text(triage.get("review_by")),
        "justification": _text(triage.get("justification")),
        "rating_vector": finding.rating_vector,
    }


def _join(items: Iterable[Any]) -> str:
    return _LIST_SEPARATOR.join(str(item) for item in items)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    return str(value)


def render_csv(register: Register) -> str:
    """The register as CSV text (RFC 4180: CRLF line ends, every cell quoted), header first."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for row in rows(register.findings):
        writer.writerow([neutralise(row[column]) for column in COLUMNS])
    return buffer.getvalue()
