"""Presentation helpers shared by every report format: ordering, colours, and per-node severities.

Nothing here decides anything about threats; it only orders, groups and colours what the
register already says, so that HTML, Markdown, diagrams and exports agree with each other.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from datetime import UTC, date, datetime
from enum import Enum
from pathlib import PurePath
from typing import Any

from pydantic import BaseModel

from modelward.core.severity import Severity
from modelward.system.model import System
from modelward.threats.model import LINDDUN_NAMES, STRIDE_NAMES, Finding, Register, Status

__all__ = [
    "CLOSED_STATUSES",
    "LINDDUN_CODES",
    "NO_FINDINGS_COLOUR",
    "OUT_OF_SCOPE_COLOUR",
    "SEVERITIES_DESC",
    "SEVERITY_COLOURS",
    "STRIDE_CODES",
    "flow_label",
    "generated_timestamp",
    "highest_open_severity",
    "md_code",
    "md_escape",
    "open_severity_by_element",
    "open_severity_by_flow",
    "plain",
    "sorted_findings",
    "verified_text",
]

#: Most serious first: the order of every severity table and finding list.
SEVERITIES_DESC: tuple[Severity, ...] = tuple(sorted(Severity, key=lambda s: s.rank, reverse=True))
#: Statuses that close a finding; SARIF suppresses these and Threat Dragon does not show them as open.
CLOSED_STATUSES: frozenset[Status] = frozenset(s for s in Status if not s.is_open)
STRIDE_CODES: tuple[str, ...] = tuple(STRIDE_NAMES)
LINDDUN_CODES: tuple[str, ...] = tuple(LINDDUN_NAMES)

#: (fill, text) colour per severity; shared by the HTML report and both diagram formats.
SEVERITY_COLOURS: dict[Severity, tuple[str, str]] = {
    Severity.CRITICAL: ("#8e0000", "#ffffff"),
    Severity.HIGH: ("#d32f2f", "#ffffff"),
    Severity.MEDIUM: ("#f57c00", "#000000"),
    Severity.LOW: ("#fbc02d", "#000000"),
    Severity.NOTE: ("#90caf9", "#000000"),
}
#: (fill, stroke) of an in-scope node with no open finding.
NO_FINDINGS_COLOUR: tuple[str, str] = ("#e8f5e9", "#2e7d32")
#: (fill, stroke) of an out-of-scope node, drawn dashed.
OUT_OF_SCOPE_COLOUR: tuple[str, str] = ("#f5f5f5", "#9e9e9e")


def sorted_findings(findings: Iterable[Finding]) -> list[Finding]:
    """Findings most serious first, open before closed, then by id: the reading order of reports."""
    return sorted(findings, key=lambda f: (-f.severity.rank, not f.status.is_open, f.id))


def highest_open_severity(findings: Iterable[Finding]) -> Severity | None:
    """The most serious severity among open findings, or None when nothing is open."""
    best: Severity | None = None
    for finding in findings:
        if finding.status.is_open and (best is None or finding.severity > best):
            best = finding.severity
    return best


def open_severity_by_element(register: Register | None) -> dict[str, Severity]:
    """Highest open severity of the findings on each element itself (flow findings excluded)."""
    result: dict[str, Severity] = {}
    for finding in register.findings if register else ():
        if finding.flow is None and finding.status.is_open:
            current = result.get(finding.element)
            if current is None or finding.severity > current:
                result[finding.element] = finding.severity
    return result


def open_severity_by_flow(register: Register | None) -> dict[str, Severity]:
    """Highest open severity of the findings on each data flow, keyed by flow id."""
    result: dict[str, Severity] = {}
    for finding in register.findings if register else ():
        if finding.flow is not None and finding.status.is_open:
            current = result.get(finding.flow)
            if current is None or finding.severity > current:
                result[finding.flow] = finding.severity
    return result


def flow_label(system: System, flow_id: str) -> str:
    """'source → target' for a flow id, or the id itself when the system does not know it."""
    for flow in system.flows:
        if flow.fid == flow_id:
            return f"{flow.source} → {flow.target}"
    return flow_id


def verified_text(verified: bool | None) -> str:
    """How a finding's evidence reads in a table: passing check, failing check, or none."""
    if verified is True:
        return "verified"
    if verified is False:
        return "check failing"
    return "not verified"


def generated_timestamp(value: datetime | str | None = None) -> str:
    """An ISO 8601 UTC timestamp: the given one, else ``SOURCE_DATE_EPOCH`` (reproducible builds), else now."""
    if isinstance(value, str):
        return value
    if value is None:
        epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
        value = datetime.fromtimestamp(int(epoch), UTC) if epoch.isdigit() else datetime.now(UTC)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def plain(value: Any) -> Any:
    """A JSON-ready copy of ``value``: enums, dates, paths and sets become strings and lists."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, BaseModel):
        return plain(value.model_dump(mode="json"))
    if isinstance(value, PurePath):
        return value.as_posix()
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((plain(v) for v in value), key=str)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


_MD_SPECIAL = frozenset("\\`*_[]<>|&#!~")


def md_escape(text: object) -> str:
    """Text safe inside Markdown prose or a table cell: markup characters backslash-escaped, one line."""
    out = []
    for char in str(text).replace("\r\n", " ").replace("\n", " ").replace("\r", " "):
        out.append("\\" + char if char in _MD_SPECIAL else char)
    return "".join(out)


def md_code(text: object) -> str:
    """Text as a Markdown code span (safe in a table cell), fenced longer than any backtick run inside."""
    value = str(text).replace("\r", " ").replace("\n", " ").replace("|", "\\|")
    longest = max((len(run) for run in re.findall(r"`+", value)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if value.startswith("`") or value.endswith("`") else ""
    return f"{fence}{pad}{value}{pad}{fence}"
