"""The versioned JSON contract of a threat register (``modelward.threats/1``) and its reader.

The contract is documented by ``schemas/threats-report.schema.json``; every report we write
validates against it. Key order is fixed and findings are sorted by id, so two runs over the
same inputs give byte-identical files (inject ``generated_at`` or set ``SOURCE_DATE_EPOCH``).
``load_register_json`` reads such a file back, for ``threats diff`` between two reports.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any

from pydantic import ValidationError

import modelward
from modelward.checks.base import Evidence
from modelward.core.errors import InputError
from modelward.core.jsonio import dumps_pretty
from modelward.core.severity import Severity
from modelward.report.common import SEVERITIES_DESC, generated_timestamp, plain
from modelward.system.model import System
from modelward.threats.model import Finding, Mitigation, Register, Status, Threat

__all__ = [
    "SCHEMA_ID",
    "build_report",
    "evidence_to_dict",
    "finding_to_dict",
    "load_findings_json",
    "load_register_json",
    "render_json",
    "report_schema",
    "summary",
    "validate_report",
]

#: The contract's name and major version; bump the number on any incompatible change.
SCHEMA_ID = "modelward.threats/1"
_SCHEMA_FILE = "threats-report.schema.json"
_DIGITS = 3


def finding_to_dict(finding: Finding) -> dict[str, Any]:
    """One finding in contract order: identity, taxonomy, risk, status, reasons, remedies, triage."""
    threat = finding.threat
    static = _threat_parts(threat)
    return {
        "id": finding.id,
        "threat": threat.id,
        "title": threat.title,
        "pack": threat.pack,
        "targets": static["targets"],
        "element": finding.element,
        "flow": finding.flow,
        "stride": static["stride"],
        "linddun": static["linddun"],
        "trim": static["trim"],
        "atlas": static["atlas"],
        "owasp": static["owasp"],
        "cwe": static["cwe"],
        "likelihood": round(float(finding.likelihood), _DIGITS),
        "impact": round(float(finding.impact), _DIGITS),
        "severity": finding.severity.value,
        "rating_vector": finding.rating_vector,
        "status": finding.status.value,
        "verified": finding.verified,
        "why": list(finding.why),
        "applies_because": list(finding.applies_because),
        "mitigated_because": list(finding.mitigated_because),
        "unmitigated_because": list(finding.unmitigated_because),
        "description": threat.description,
        "mitigations": static["mitigations"],
        "references": static["references"],
        "triage": {key: plain(finding.triage[key]) for key in sorted(finding.triage)} if finding.triage else {},
        "evidence": [plain(item) for item in finding.evidence],
    }


_THREAT_PARTS: dict[int, tuple[Threat, dict[str, Any]]] = {}


def _threat_parts(threat: Threat) -> dict[str, Any]:
    """The per-threat parts of a finding, built once per threat (a large register repeats them)."""
    cached = _THREAT_PARTS.get(id(threat))
    if cached is not None and cached[0] is threat:
        return cached[1]
    parts = {
        "targets": list(threat.targets),
        "stride": list(threat.stride),
        "linddun": list(threat.linddun),
        "trim": list(threat.trim),
        "atlas": list(threat.atlas),
        "owasp": list(threat.owasp),
        "cwe": list(threat.cwe),
        "mitigations": [_mitigation_to_dict(m) for m in threat.mitigations],
        "references": list(threat.references),
    }
    _THREAT_PARTS[id(threat)] = (threat, parts)
    return parts


def _mitigation_to_dict(mitigation: Mitigation) -> dict[str, Any]:
    return {
        "id": mitigation.id,
        "title": mitigation.title,
        "description": mitigation.description,
        "controls": [control.value for control in mitigation.controls],
        "atlas": list(mitigation.atlas),
    }


def evidence_to_dict(evidence: Evidence) -> dict[str, Any]:
    """One check's evidence as plain data in contract order, metrics sorted by name."""
    return {
        "check": evidence.check,
        "requirement": evidence.requirement,
        "passed": bool(evidence.passed),
        "message": evidence.message,
        "targets": list(evidence.targets),
        "failed_targets": list(getattr(evidence, "failed_targets", [])),
        "verifies": list(evidence.verifies),
        "metrics": {name: float(evidence.metrics[name]) for name in sorted(evidence.metrics)},
        "threshold": evidence.threshold,
        "details": list(evidence.details),
        "artifacts": list(evidence.artifacts),
        "duration_s": round(float(evidence.duration_s), _DIGITS),
        "error": evidence.error,
        "tables": [
            {"title": table.title, "columns": list(table.columns), "rows": [list(row) for row in table.rows]}
            for table in evidence.tables
        ],
    }


def summary(findings: Sequence[Finding]) -> dict[str, Any]:
    """Counts by severity and status, open counts, and how many findings checks back."""
    by_severity = {s.value: 0 for s in SEVERITIES_DESC}
    open_by_severity = {s.value: 0 for s in SEVERITIES_DESC}
    by_status = {s.value: 0 for s in Status}
    verification = {"passing": 0, "failing": 0, "none": 0}
    for finding in findings:
        by_severity[finding.severity.value] += 1
        by_status[finding.status.value] += 1
        if finding.status.is_open:
            open_by_severity[finding.severity.value] += 1
        key = "none" if finding.verified is None else "passing" if finding.verified else "failing"
        verification[key] += 1
    return {
        "total": len(findings),
        "open": sum(open_by_severity.values()),
        "by_severity": by_severity,
        "open_by_severity": open_by_severity,
        "by_status": by_status,
        "verification": verification,
    }


def build_report(
    system: System,
    register: Register,
    *,
    evidence: Iterable[Evidence] | None = None,
    generated_at: datetime | str | None = None,
) -> dict[str, Any]:
    """The whole report as plain data in contract order (see the module docstring)."""
    findings = sorted(register.findings, key=lambda f: f.id)
    return {
        "schema": SCHEMA_ID,
        "tool": {"name": "modelward", "version": modelward.__version__},
        "system": {
            "name": system.name,
            "description": system.description,
            "owner": system.owner,
            "counts": {
                "elements": len(system.elements),
                "in_scope_elements": sum(1 for e in system.elements if e.in_scope),
                "flows": len(system.flows),
                "boundaries": len(system.boundaries),
                "data_assets": len(system.data),
                "requirements": len(system.requirements),
            },
            "out_of_scope": list(register.out_of_scope),
        },
        "catalog_version": register.catalog_version,
        "generated_at": generated_timestamp(generated_at),
        "summary": {**summary(findings), "not_applicable_pairs": register.not_applicable},
        "findings": [finding_to_dict(f) for f in findings],
        "orphan_triage": list(register.orphan_triage),
        "evidence": [evidence_to_dict(e) for e in evidence or ()],
    }


def render_json(
    system: System,
    register: Register,
    *,
    evidence: Iterable[Evidence] | None = None,
    generated_at: datetime | str | None = None,
) -> str:
    """The report as UTF-8 JSON text, indented, with a final newline."""
    data = build_report(system, register, evidence=evidence, generated_at=generated_at)
    return dumps_pretty(data)


@cache
def _schema_text() -> str:
    return resources.files("modelward.report").joinpath("schemas", _SCHEMA_FILE).read_text(encoding="utf-8")


def report_schema() -> dict[str, Any]:
    """The published JSON Schema (draft 2020-12) of the contract, as a fresh dict."""
    schema: dict[str, Any] = json.loads(_schema_text())
    return schema


def validate_report(data: Any) -> list[str]:
    """Why ``data`` breaks the contract, one line per problem; empty when it conforms.

    Needs ``jsonschema`` (a dev dependency); without it only the top-level shape is checked.
    """
    try:
        from jsonschema import Draft202012Validator
    except ImportError:  # pragma: no cover - jsonschema ships with the dev extra
        return _shape_problems(data)
    validator = Draft202012Validator(report_schema())
    problems = []
    for error in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path))):
        where = "/".join(str(part) for part in error.absolute_path) or "(top level)"
        problems.append(f"{where}: {error.message}")
    return problems


def _shape_problems(data: Any) -> list[str]:
    """The minimal checks used when jsonschema is not installed: required top-level keys and types."""
    if not isinstance(data, dict):
        return ["(top level): not a JSON object"]
    required = report_schema()["required"]
    problems = [f"(top level): {key!r} is a required property" for key in required if key not in data]
    if not problems and not all(isinstance(item, dict) for item in data["findings"] or []):
        problems.append("findings: every finding must be an object")
    return problems


def load_register_json(text: str, *, file: str = "<json>") -> Register:
    """Read a ``modelward.threats/1`` report back into a Register (threats rebuilt from it)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"not JSON: {exc.msg}", file=file, line=exc.lineno) from None
    except RecursionError:
        raise InputError("not a threat report: JSON nested too deeply", file=file) from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA_ID:
        found = data.get("schema") if isinstance(data, dict) else None
        raise InputError(f"not a modelward threat report (schema {found!r}, expected {SCHEMA_ID!r})", file=file)
    problems = validate_report(data)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise InputError(f"report does not match {SCHEMA_ID}: {problems[0]}{more}", file=file)
    try:
        findings = [_finding_from_dict(item, file) for item in data["findings"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"report does not match {SCHEMA_ID}: {exc}", file=file) from None
    return Register(
        system_name=data["system"]["name"],
        findings=findings,
        catalog_version=data["catalog_version"],
        orphan_triage=list(data["orphan_triage"]),
        not_applicable=int(data["summary"].get("not_applicable_pairs", 0)),
        out_of_scope=list(data["system"].get("out_of_scope", [])),
    )


def load_findings_json(text: str, *, file: str = "<json>") -> list[Finding]:
    """The findings of a ``modelward.threats/1`` report, for ``threats diff`` on JSON files."""
    return load_register_json(text, file=file).findings


def _finding_from_dict(item: dict[str, Any], file: str) -> Finding:
    try:
        threat = Threat(
            id=item["threat"],
            title=item["title"],
            description=item["description"],
            pack=item["pack"],
            targets=item["targets"],
            stride=item["stride"],
            linddun=item["linddun"],
            trim=item["trim"],
            atlas=item["atlas"],
            owasp=item["owasp"],
            cwe=item["cwe"],
            mitigations=[Mitigation.model_validate(m) for m in item["mitigations"]],
            references=item["references"],
        )
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        raise InputError(f"finding {item['id']!r}: {where}: {first['msg']}", file=file) from None
    finding = Finding(
        threat=threat,
        element=item["element"],
        flow=item["flow"],
        applies_because=list(item["applies_because"]),
        mitigated_because=list(item["mitigated_because"]),
        unmitigated_because=list(item["unmitigated_because"]),
        status=Status(item["status"]),
        severity=Severity(item["severity"]),
        likelihood=float(item["likelihood"]),
        impact=float(item["impact"]),
        rating_vector=item["rating_vector"],
        triage=dict(item["triage"]),
        evidence=list(item["evidence"]),
        verified=item["verified"],
    )
    if finding.id != item["id"]:
        raise InputError(f"finding id {item['id']!r} does not match its threat, element and flow", file=file)
    return finding
