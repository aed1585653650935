"""Write every report format of one run into a folder, each file atomically (temp file, then rename).

A reader (a CI upload step, a browser reloading the page) never sees a half-written report,
and an interrupted run leaves the previous files intact.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path, PurePath

from modelward.checks.base import Evidence
from modelward.core.errors import ModelwardError
from modelward.core.files import write_text_atomic
from modelward.report.common import generated_timestamp
from modelward.report.context import build_context
from modelward.report.csv_report import render_csv
from modelward.report.dfd import render_dot, render_mermaid, render_svg
from modelward.report.html import render_html_context
from modelward.report.json_report import render_json
from modelward.report.markdown import render_markdown_context
from modelward.report.sarif import render_sarif
from modelward.report.threat_dragon import render_threat_dragon
from modelward.system.model import System
from modelward.threats.model import Register

__all__ = ["DEFAULT_FORMATS", "FILE_NAMES", "FORMATS", "ReportWriteError", "write_report", "write_text_atomic"]

#: Format name → file it writes. The DFD files (dfd.mmd, dfd.dot, dfd.svg) are written every time.
FILE_NAMES: dict[str, str] = {
    "html": "report.html",
    "md": "report.md",
    "json": "report.json",
    "sarif": "report.sarif",
    "csv": "findings.csv",
    "threat-dragon": "threat-dragon.json",
}
FORMATS: tuple[str, ...] = tuple(FILE_NAMES)
DEFAULT_FORMATS: tuple[str, ...] = ("html", "md", "json", "sarif", "csv")


class ReportWriteError(ModelwardError):
    """The report folder or one of its files could not be written."""


def write_report(
    out_dir: str | Path,
    system: System,
    register: Register,
    *,
    evidence: Iterable[Evidence] | None = None,
    formats: Sequence[str] = DEFAULT_FORMATS,
    system_file: str | PurePath | None = None,
    element_lines: Mapping[str, int] | None = None,
    generated_at: datetime | str | None = None,
) -> list[Path]:
    """Render the chosen formats and the DFD files into ``out_dir``; return the paths written, in order.

    ``evidence`` marks an audit report (evidence table, JSON ``evidence``); ``system_file`` and
    ``element_lines`` locate SARIF results. Everything is rendered before the first file is
    written, so a rendering error leaves the folder untouched.
    """
    unknown = [name for name in formats if name not in FILE_NAMES]
    if unknown:
        raise ReportWriteError(f"unknown report format {unknown[0]!r} (expected some of: {', '.join(FORMATS)})")
    evidence_list = list(evidence) if evidence is not None else None
    stamp = generated_timestamp(generated_at)  # one timestamp, so HTML, Markdown and JSON agree
    mermaid = render_mermaid(system, register)
    dot = render_dot(system, register)
    svg = render_svg(dot)
    outputs: list[tuple[str, str]] = []
    if "html" in formats or "md" in formats:
        context = build_context(
            system,
            register,
            evidence=evidence_list,
            svg=svg,
            svg_file="dfd.svg" if svg else None,
            generated_at=stamp,
            artifact_root=Path(out_dir),
        )
        if "html" in formats:
            outputs.append((FILE_NAMES["html"], render_html_context(context)))
        if "md" in formats:
            outputs.append((FILE_NAMES["md"], render_markdown_context(context)))
    if "json" in formats:
        outputs.append((FILE_NAMES["json"], render_json(system, register, evidence=evidence_list, generated_at=stamp)))
    if "sarif" in formats:
        outputs.append(
            (FILE_NAMES["sarif"], render_sarif(register, system_file=system_file, element_lines=element_lines))
        )
    if "csv" in formats:
        outputs.append((FILE_NAMES["csv"], render_csv(register)))
    if "threat-dragon" in formats:
        outputs.append((FILE_NAMES["threat-dragon"], render_threat_dragon(system, register)))
    outputs.append(("dfd.mmd", mermaid))
    outputs.append(("dfd.dot", dot))
    if svg:
        outputs.append(("dfd.svg", svg))

    folder = Path(out_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ReportWriteError("exists and is not a folder", file=str(folder)) from None
    except OSError as exc:
        raise ReportWriteError(f"cannot create report folder: {exc.strerror}", file=str(folder)) from None
    written = []
    for name, text in outputs:
        path = folder / name
        try:
            written.append(write_text_atomic(path, text))
        except OSError as exc:
            raise ReportWriteError(f"cannot write: {exc.strerror}", file=str(path)) from None
    if not svg:  # a diagram from an earlier run would no longer match this report
        (folder / "dfd.svg").unlink(missing_ok=True)
    return written
