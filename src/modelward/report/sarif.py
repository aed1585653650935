"""SARIF 2.1.0 from a threat register and from generic ``core.findings.Result`` s.

One rule per threat (or per ``Result.rule``), one result per finding. Results point at the
system file and at the line of their element or flow when known; their fingerprint is the
stable finding id, so GitHub code scanning tracks them across pushes; closed findings
(mitigated, accepted, false positive, ...) are kept but carry an external suppression.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any
from urllib.parse import quote

import modelward
from modelward.core.findings import Result
from modelward.core.jsonio import dumps_pretty
from modelward.core.severity import Severity
from modelward.report.common import CLOSED_STATUSES
from modelward.threats.model import LINDDUN_NAMES, STRIDE_NAMES, Finding, Register, Status, Threat

__all__ = [
    "FINGERPRINT_KEY",
    "SARIF_SCHEMA_URI",
    "SECURITY_SEVERITY",
    "level_for",
    "render_sarif",
    "sarif_log",
]

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"
INFORMATION_URI = "https://github.com/modelward/modelward"
#: partialFingerprints key; versioned so a future change of id scheme can start a new series.
FINGERPRINT_KEY = "modelwardFindingId/v1"

#: GitHub buckets security-severity as critical >= 9.0, high >= 7.0, medium >= 4.0, low > 0.
SECURITY_SEVERITY: dict[Severity, str] = {
    Severity.CRITICAL: "9.5",
    Severity.HIGH: "8.0",
    Severity.MEDIUM: "5.5",
    Severity.LOW: "3.0",
    Severity.NOTE: "1.0",
}
_LEVEL: dict[Severity, str] = {
    Severity.CRITICAL: "error",
    Severity.HIGH: "error",
    Severity.MEDIUM: "warning",
    Severity.LOW: "note",
    Severity.NOTE: "note",
}
_CLOSED_VALUES = frozenset(s.value for s in CLOSED_STATUSES)


def level_for(severity: Severity) -> str:
    """SARIF level of a severity: critical/high error, medium warning, low/note note."""
    return _LEVEL[severity]


@dataclass
class _Rule:
    """What SARIF needs to know about one rule, collected from threats or results."""

    id: str
    title: str
    description: str
    help_uri: str | None = None
    tags: list[str] = field(default_factory=list)
    properties: dict[str, Any] = field(default_factory=dict)
    worst: Severity = Severity.NOTE


def sarif_log(
    register: Register | None = None,
    *,
    results: Iterable[Result] = (),
    system_file: str | PurePath | None = None,
    element_lines: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """One SARIF 2.1.0 log with a single modelward run: the register's findings, then ``results``.

    ``system_file`` is the path results point at (keep it repository-relative for GitHub);
    ``element_lines`` maps element and flow ids to lines in it (``system.loader.element_lines``).
    """
    rules: dict[str, _Rule] = {}
    sarif_results: list[dict[str, Any]] = []
    lines = dict(element_lines or {})
    uri = _uri(system_file) if system_file is not None else None
    findings = sorted(register.findings, key=lambda f: f.id) if register else []
    for finding in findings:
        if finding.threat.id not in rules:
            rules[finding.threat.id] = _threat_rule(finding.threat)
        rule = rules[finding.threat.id]
        rule.worst = max(rule.worst, finding.severity, key=lambda s: s.rank)
        sarif_results.append(_finding_result(finding, uri, lines))
    for result in results:
        if result.rule not in rules:
            rules[result.rule] = _result_rule(result)
        rule = rules[result.rule]
        rule.worst = max(rule.worst, result.severity, key=lambda s: s.rank)
        sarif_results.append(_generic_result(result))
    order = {rule_id: index for index, rule_id in enumerate(sorted(rules))}
    for item in sarif_results:
        item["ruleIndex"] = order[item["ruleId"]]
    run: dict[str, Any] = {
        "tool": {
            "driver": {
                "name": "modelward",
                "version": modelward.__version__,
                "semanticVersion": modelward.__version__,
                "informationUri": INFORMATION_URI,
                "rules": [_rule_json(rules[rule_id]) for rule_id in sorted(rules)],
            }
        },
        "results": sarif_results,
        "columnKind": "unicodeCodePoints",
    }
    if register is not None:
        run["properties"] = {"system": register.system_name, "catalogVersion": register.catalog_version}
    return {"$schema": SARIF_SCHEMA_URI, "version": SARIF_VERSION, "runs": [run]}


def render_sarif(
    register: Register | None = None,
    *,
    results: Iterable[Result] = (),
    system_file: str | PurePath | None = None,
    element_lines: Mapping[str, int] | None = None,
) -> str:
    """:func:`sarif_log` as indented JSON text with a final newline."""
    log = sarif_log(register, results=results, system_file=system_file, element_lines=element_lines)
    return dumps_pretty(log)


# --- rules -------------------------------------------------------------------


def _threat_rule(threat: Threat) -> _Rule:
    tags = ["security"]
    if threat.linddun or threat.trim:
        tags.append("privacy")
    tags += [f"STRIDE:{STRIDE_NAMES[c]}" for c in threat.stride]
    tags += [f"LINDDUN:{LINDDUN_NAMES[c]}" for c in threat.linddun]
    tags += [f"ATLAS:{ident}" for ident in threat.atlas]
    tags += [f"OWASP:{ident}" for ident in threat.owasp]
    tags += [f"external/cwe/{ident.lower()}" for ident in threat.cwe]
    tags.append(f"pack:{threat.pack}")
    help_uri = next((ref for ref in threat.references if ref.startswith(("https://", "http://"))), None)
    properties: dict[str, Any] = {
        "stride": list(threat.stride),
        "linddun": list(threat.linddun),
        "atlas": list(threat.atlas),
        "owasp": list(threat.owasp),
        "cwe": list(threat.cwe),
        "mitigations": [m.title for m in threat.mitigations],
    }
    return _Rule(threat.id, threat.title, threat.description, help_uri, tags, properties)


def _result_rule(result: Result) -> _Rule:
    return _Rule(result.rule, result.title, result.title, result.help_uri, list(result.tags))


def _rule_json(rule: _Rule) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": rule.id,
        "name": _pascal(rule.title) or _pascal(rule.id) or "Rule",
        "shortDescription": {"text": rule.title},
        "fullDescription": {"text": rule.description},
        "defaultConfiguration": {"level": level_for(rule.worst)},
    }
    if rule.help_uri:
        data["helpUri"] = rule.help_uri
    mitigations = rule.properties.get("mitigations") or []
    help_text = rule.description
    if mitigations:
        help_text += "\n\nMitigations:\n" + "\n".join(f"- {title}" for title in mitigations)
    data["help"] = {"text": help_text}
    data["properties"] = {
        "tags": list(dict.fromkeys(rule.tags)),
        "security-severity": SECURITY_SEVERITY[rule.worst],
        **rule.properties,
    }
    return data


def _pascal(text: str) -> str:
    return "".join(word[:1].upper() + word[1:] for word in re.findall(r"[A-Za-z0-9]+", text))


# --- results -----------------------------------------------------------------


def _finding_result(finding: Finding, uri: str | None, lines: Mapping[str, int]) -> dict[str, Any]:
    where = f"{finding.element} (flow {finding.flow})" if finding.flow else finding.element
    why = "; ".join(finding.why)
    text = f"{finding.threat.title} on {where}" + (f": {why}." if why else ".")
    line = lines.get(finding.flow) if finding.flow else None
    if line is None:
        line = lines.get(finding.element)
    logical = {
        "name": finding.flow or finding.element,
        "fullyQualifiedName": f"{finding.element}/{finding.flow}" if finding.flow else finding.element,
        "kind": "data-flow" if finding.flow else "element",
    }
    data: dict[str, Any] = {
        "ruleId": finding.threat.id,
        "level": level_for(finding.severity),
        "message": {"text": text},
        "locations": [_location(uri, line, logical)],
        "partialFingerprints": {FINGERPRINT_KEY: finding.id},
        "properties": {
            "findingId": finding.id,
            "severity": finding.severity.value,
            "security-severity": SECURITY_SEVERITY[finding.severity],
            "status": finding.status.value,
            "likelihood": round(float(finding.likelihood), 3),
            "impact": round(float(finding.impact), 3),
            "ratingVector": finding.rating_vector,
            "verified": finding.verified,
        },
    }
    if finding.status in CLOSED_STATUSES:
        data["suppressions"] = [_suppression(finding.status.value, _finding_justification(finding))]
    return data


def _finding_justification(finding: Finding) -> str:
    given = finding.triage.get("justification")
    if isinstance(given, str) and given.strip():
        return given.strip()
    if finding.status is Status.MITIGATED and finding.mitigated_because:
        prefix = "mitigated (verified by a passing check): " if finding.verified else "mitigated: "
        return prefix + "; ".join(finding.mitigated_because)
    return f"status {finding.status.value}"


def _generic_result(result: Result) -> dict[str, Any]:
    logical = None
    if result.location.element or result.location.flow:
        name = result.location.flow or result.location.element or ""
        logical = {"name": name, "kind": "data-flow" if result.location.flow else "element"}
    uri = _uri(result.location.file) if result.location.file else None
    data: dict[str, Any] = {
        "ruleId": result.rule,
        "level": level_for(result.severity),
        "message": {"text": result.message or result.title},
    }
    if uri is not None or logical is not None:
        data["locations"] = [_location(uri, result.location.line, logical)]
    data["partialFingerprints"] = {FINGERPRINT_KEY: result.id}
    data["properties"] = {
        "findingId": result.id,
        "severity": result.severity.value,
        "security-severity": SECURITY_SEVERITY[result.severity],
        "status": result.status,
    }
    if result.status in _CLOSED_VALUES:
        data["suppressions"] = [_suppression(result.status, f"status {result.status}")]
    return data


def _location(uri: str | None, line: int | None, logical: dict[str, Any] | None) -> dict[str, Any]:
    location: dict[str, Any] = {}
    if uri is not None:
        physical: dict[str, Any] = {"artifactLocation": {"uri": uri}}
        if line is not None and line >= 1:
            physical["region"] = {"startLine": int(line)}
        location["physicalLocation"] = physical
    if logical is not None:
        location["logicalLocations"] = [logical]
    return location


def _suppression(status: str, justification: str) -> dict[str, Any]:
    return {"kind": "external", "status": "accepted", "justification": justification, "properties": {"status": status}}


def _uri(path: str | PurePath) -> str:
    """A URI reference for a path: relative to the working directory when under it (what GitHub
    resolves against the repository root), a ``file://`` URI for other absolute paths."""
    text = str(path).replace("\\", "/")
    if text.startswith("/"):
        try:
            text = Path(text).relative_to(Path.cwd()).as_posix()
        except ValueError:
            return "file://" + _quote(text)
    return _quote(text.removeprefix("./"))


def _quote(text: str) -> str:
    return quote(text, safe="/:@-._~")
