"""The view model shared by the Markdown and HTML reports, and the Jinja2 environment that renders it.

Templates stay simple because every value they show is prepared here as display-ready text:
labels looked up, lists ordered, numbers formatted. Autoescaping is on for ``.html``
templates (``select_autoescape``); Markdown templates escape through the ``md`` and ``code``
filters instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

import modelward
from modelward.checks.base import Evidence, EvidenceTable
from modelward.core.severity import Severity
from modelward.report.common import (
    NO_FINDINGS_COLOUR,
    OUT_OF_SCOPE_COLOUR,
    SEVERITIES_DESC,
    SEVERITY_COLOURS,
    generated_timestamp,
    md_code,
    md_escape,
    plain,
    sorted_findings,
    verified_text,
)
from modelward.report.coverage import CoverageMatrix, coverage_matrix
from modelward.report.coverage import render_markdown as render_coverage_markdown
from modelward.report.dfd import inline_svg, render_mermaid
from modelward.report.images import ArtifactImage, load_images
from modelward.report.json_report import summary
from modelward.system.graph import SystemGraph
from modelward.system.model import System
from modelward.threats.model import LINDDUN_NAMES, STRIDE_NAMES, Finding, Register, Status

__all__ = ["EvidenceView", "FindingView", "MitigationView", "ReportContext", "build_context", "environment"]

_TRIAGE_ORDER = ("status", "derived_status", "owner", "ticket", "review_by", "expired", "reason", "justification")
_TRIAGE_LABELS = {"key": "triage entry", "derived_status": "status before triage", "rating": "rating override"}


@dataclass
class MitigationView:
    """A mitigation as shown: its title, the controls that implement it and its ATLAS ids."""

    id: str
    title: str
    description: str
    controls: list[str]
    atlas: list[str]


@dataclass
class FindingView:
    """A finding as shown in the register table and in its details section."""

    id: str
    anchor: str
    threat: str
    title: str
    pack: str
    element: str
    element_label: str
    flow: str | None
    flow_label: str
    location: str
    stride: list[tuple[str, str]]
    linddun: list[tuple[str, str]]
    trim: list[str]
    atlas: list[str]
    owasp: list[str]
    cwe: list[str]
    severity: str
    status: str
    is_open: bool
    verified: bool | None
    verified_text: str
    likelihood: str
    impact: str
    rating_vector: str
    description: str
    applies_because: list[str]
    mitigated_because: list[str]
    unmitigated_because: list[str]
    mitigations: list[MitigationView]
    references: list[str]
    triage: list[tuple[str, str]]
    evidence: list[str]

    @property
    def categories(self) -> str:
        """STRIDE and LINDDUN codes as one short string, e.g. ``T, I / DD``."""
        stride = ", ".join(code for code, _ in self.stride)
        linddun = ", ".join(code for code, _ in self.linddun)
        return " / ".join(part for part in (stride, linddun) if part) or "—"


@dataclass
class EvidenceView:
    """One check's evidence as shown in the audit table."""

    check: str
    requirement: str
    targets: list[str]
    failed_targets: list[str]
    verifies: list[str]
    passed: bool
    metrics: list[tuple[str, str]]
    threshold: str
    message: str
    details: list[str]
    artifacts: list[str]
    duration: str
    error: str
    images: list[ArtifactImage] = field(default_factory=list)
    tables: list[EvidenceTable] = field(default_factory=list)


@dataclass
class ReportContext:
    """Everything a report template shows, in display order."""

    title: str
    system: System
    catalog_version: str
    generated_at: str
    tool_version: str
    summary: dict[str, Any]
    severity_rows: list[tuple[str, int, int]]
    status_rows: list[tuple[str, int]]
    element_rows: list[dict[str, str]]
    data_rows: list[dict[str, str]]
    svg: str | None
    svg_file: str | None
    mermaid: str
    coverage: CoverageMatrix
    findings: list[FindingView]
    evidence: list[EvidenceView] | None
    orphan_triage: list[str]
    out_of_scope: list[tuple[str, str, str]]
    colours: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def is_audit(self) -> bool:
        return self.evidence is not None

    @property
    def evidence_passed(self) -> int:
        return sum(1 for e in self.evidence or () if e.passed)

    @property
    def evidence_failed(self) -> int:
        return sum(1 for e in self.evidence or () if not e.passed)


def build_context(
    system: System,
    register: Register,
    *,
    evidence: Iterable[Evidence] | None = None,
    svg: str | None = None,
    svg_file: str | None = None,
    generated_at: datetime | str | None = None,
    artifact_root: Path | None = None,
) -> ReportContext:
    """Prepare the view model of one report (``svg``: Graphviz output to inline, if any).

    ``artifact_root`` is the report folder the evidence's artifact paths are relative to; when
    given, their PNG plots are shown in the report.
    """
    findings = sorted_findings(register.findings)
    counts = summary(findings)
    labels = {e.id: e.label for e in system.elements}
    flows = {f.fid: f for f in system.flows}
    out_of_scope_ids = list(dict.fromkeys([*register.out_of_scope, *(e.id for e in system.elements if not e.in_scope)]))
    types = {e.id: e.type.value for e in system.elements}
    colours = {s.value: SEVERITY_COLOURS[s] for s in SEVERITIES_DESC}
    colours["none"] = NO_FINDINGS_COLOUR
    colours["out-of-scope"] = OUT_OF_SCOPE_COLOUR
    graph = SystemGraph(system)
    return ReportContext(
        title=f"Threat model: {system.name}",
        system=system,
        catalog_version=register.catalog_version,
        generated_at=generated_timestamp(generated_at),
        tool_version=modelward.__version__,
        summary=counts,
        severity_rows=[
            (s.value, counts["by_severity"][s.value], counts["open_by_severity"][s.value]) for s in SEVERITIES_DESC
        ],
        status_rows=[(s.value, counts["by_status"][s.value]) for s in Status if counts["by_status"][s.value]],
        element_rows=[
            {
                "id": e.id,
                "name": e.label,
                "type": e.type.value,
                "kind": e.kind.value,
                "boundary": e.boundary or "—",
                "trust": graph.effective_trust(e.id).value + ("" if e.trust else " (derived)"),
                "controls": ", ".join(c.value for c in e.controls) or "—",
                "scope": "in scope" if e.in_scope else "out of scope",
            }
            for e in system.elements
        ],
        data_rows=[
            {
                "id": d.id,
                "name": d.label,
                "classification": d.classification.value if d.classification else "—",
                "personal": _personal(d.personal, d.special_category),
                "subjects": f"{d.data_subjects:,}" if d.data_subjects is not None else "—",
                "origin": d.origin.value if d.origin else "—",
                "trust": d.effective_trust.value,
            }
            for d in system.data
        ],
        svg=inline_svg(svg),
        svg_file=svg_file,
        mermaid=render_mermaid(system, register),
        coverage=coverage_matrix(system, register),
        findings=[_finding_view(f, labels, flows) for f in findings],
        evidence=None if evidence is None else [_evidence_view(e, artifact_root) for e in evidence],
        orphan_triage=list(register.orphan_triage),
        out_of_scope=[(ident, labels.get(ident, ident), types.get(ident, "")) for ident in out_of_scope_ids],
        colours=colours,
    )


def _personal(personal: bool, special: bool) -> str:
    if special:
        return "special category"
    return "yes" if personal else "no"


def _finding_view(finding: Finding, labels: dict[str, str], flows: dict[str, Any]) -> FindingView:
    threat = finding.threat
    element_label = labels.get(finding.element, finding.element)
    flow = flows.get(finding.flow) if finding.flow else None
    flow_label = ""
    if finding.flow:
        flow_label = f"{flow.label} ({flow.source} → {flow.target})" if flow is not None else finding.flow
    location = f"{element_label} → flow {flow_label}" if finding.flow else element_label
    return FindingView(
        id=finding.id,
        anchor="finding-" + finding.id,
        threat=threat.id,
        title=threat.title,
        pack=threat.pack,
        element=finding.element,
        element_label=element_label,
        flow=finding.flow,
        flow_label=flow_label,
        location=location,
        stride=[(code, STRIDE_NAMES[code]) for code in threat.stride],
        linddun=[(code, LINDDUN_NAMES[code]) for code in threat.linddun],
        trim=list(threat.trim),
        atlas=list(threat.atlas),
        owasp=list(threat.owasp),
        cwe=list(threat.cwe),
        severity=finding.severity.value,
        status=finding.status.value,
        is_open=finding.status.is_open,
        verified=finding.verified,
        verified_text=verified_text(finding.verified),
        likelihood=f"{finding.likelihood:.1f}",
        impact=f"{finding.impact:.1f}",
        rating_vector=finding.rating_vector,
        description=threat.description,
        applies_because=list(finding.applies_because),
        mitigated_because=list(finding.mitigated_because),
        unmitigated_because=list(finding.unmitigated_because),
        mitigations=[
            MitigationView(m.id, m.title, m.description or "", [c.value for c in m.controls], list(m.atlas))
            for m in threat.mitigations
        ],
        references=list(threat.references),
        triage=_triage_rows(finding.triage),
        evidence=[_evidence_line(item) for item in finding.evidence],
    )


def _triage_rows(triage: dict[str, Any]) -> list[tuple[str, str]]:
    keys = [k for k in _TRIAGE_ORDER if k in triage] + sorted(k for k in triage if k not in _TRIAGE_ORDER)
    rows = []
    for key in keys:
        value = plain(triage[key])
        if value is None or value == "":
            continue
        text = ("yes" if value else "no") if isinstance(value, bool) else str(value)
        rows.append((_TRIAGE_LABELS.get(key, key.replace("_", " ")), text))
    return rows


def _evidence_line(item: dict[str, Any]) -> str:
    data = plain(item)
    check = data.get("check", "check")
    passed = data.get("passed")
    verdict = "passed" if passed is True else "failed" if passed is False else "ran"
    message = data.get("message")
    return f"{check}: {verdict}" + (f" — {message}" if message else "")


def _number(value: float) -> str:
    return f"{value:.4g}"


def _evidence_view(evidence: Evidence, artifact_root: Path | None) -> EvidenceView:
    return EvidenceView(
        check=evidence.check,
        requirement=evidence.requirement or "—",
        targets=list(evidence.targets),
        failed_targets=list(getattr(evidence, "failed_targets", [])),
        verifies=list(evidence.verifies),
        passed=evidence.passed,
        metrics=[(name, _number(evidence.metrics[name])) for name in sorted(evidence.metrics)],
        threshold=_number(evidence.threshold) if evidence.threshold is not None else "—",
        message=evidence.message,
        details=list(evidence.details),
        artifacts=list(evidence.artifacts),
        duration=f"{evidence.duration_s:.2f} s",
        error=evidence.error or "",
        images=[] if artifact_root is None else load_images(list(evidence.artifacts), artifact_root),
        tables=list(evidence.tables),
    )


def _severity_colour(severity: str) -> str:
    try:
        return SEVERITY_COLOURS[Severity(severity)][0]
    except ValueError:
        return NO_FINDINGS_COLOUR[0]


@cache
def environment() -> Environment:
    """The Jinja2 environment for the packaged templates (autoescape on for HTML, strict undefined)."""
    env = Environment(
        loader=PackageLoader("modelward.report", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html", "htm", "xml"), default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["md"] = md_escape
    env.filters["code"] = md_code
    env.filters["severity_colour"] = _severity_colour
    env.filters["md_link"] = _md_link
    env.tests["safe_url"] = _is_safe_url
    env.globals["coverage_markdown"] = render_coverage_markdown
    return env


_SAFE_URL = re.compile(r"^https?://[^\s<>\"'`\\]+$")


def _is_safe_url(value: object) -> bool:
    """An http(s) URL with nothing that could break out of an attribute or a Markdown autolink."""
    return isinstance(value, str) and _SAFE_URL.match(value) is not None


def _md_link(value: object) -> str:
    """A Markdown autolink for a safe URL, escaped text otherwise."""
    return f"<{value}>" if _is_safe_url(value) else md_escape(value)
