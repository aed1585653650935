"""Terminal rendering for the CLI (rich tables) and dispatch of file formats to the report layer."""

from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from modelward.core.errors import InputError
from modelward.core.severity import Severity
from modelward.core.yamlio import LoadedDocument

if TYPE_CHECKING:
    from modelward.audit.project import Project
    from modelward.audit.runner import AuditResult
    from modelward.system.lint import LintMessage
    from modelward.system.model import System
    from modelward.threats.catalog import Catalog
    from modelward.threats.diff import RegisterDiff
    from modelward.threats.model import Register


def _console() -> Console:
    """A console that keeps tables readable when output is piped (CI logs are wide, not 80 columns)."""
    console = Console(highlight=False, soft_wrap=False)
    if not console.is_terminal:
        console = Console(highlight=False, soft_wrap=False, width=max(console.width, 180))
    return console


SEVERITY_COLOUR = {
    Severity.CRITICAL: "magenta",
    Severity.HIGH: "red",
    Severity.MEDIUM: "yellow",
    Severity.LOW: "cyan",
    Severity.NOTE: "white",
}
_TITLE_WIDTH = 60


RICH_TABLE_LIMIT = 2000


def print_register(register: Register, system: System) -> None:
    """The register as a table, most severe first, then a summary line.

    On a terminal a rich table (wrapped, coloured); piped (CI logs) or beyond RICH_TABLE_LIMIT
    findings, plain aligned lines, which print tens of thousands of findings in a fraction of a second.
    """
    terminal = sys.stdout.isatty()
    if terminal and len(register.findings) <= RICH_TABLE_LIMIT:
        _print_rich_register(register, system)
        return
    click.echo(register_table_text(register, system, colour=terminal), nl=False)


def register_table_text(register: Register, system: System, *, colour: bool = False) -> str:
    """The register as plain aligned lines (ANSI colours on request), for pipes, files and huge registers."""
    rows = []
    for finding in register.findings:
        categories = " ".join([*finding.threat.stride, *(f"P:{c}" for c in finding.threat.linddun)])
        verified = " ✓" if finding.verified else " ✗" if finding.verified is False else ""
        title = finding.threat.title
        if len(title) > _TITLE_WIDTH:
            title = title[: _TITLE_WIDTH - 1] + "…"
        rows.append(
            (
                finding.severity,
                finding.id,
                finding.status.value + verified,
                title,
                categories,
                " ".join(finding.threat.owasp),
            )
        )
    header = ("severity", "finding", "status", "title", "STRIDE/LINDDUN", "OWASP")
    widths = [max([len(header[i]), *(len(_cell(row, i)) for row in rows)]) for i in range(len(header))]
    out = [f"Threats of {system.name}", "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    out.append("  ".join("-" * w for w in widths))
    for row in rows:
        cells = [_cell(row, i).ljust(widths[i]) for i in range(len(header))]
        if colour:
            cells[0] = click.style(cells[0], fg=SEVERITY_COLOUR[row[0]], bold=row[0] >= Severity.HIGH)
        out.append("  ".join(cells).rstrip())
    out.append(_summary_line(register))
    out.extend(f"triage entry matches no finding: {orphan}" for orphan in register.orphan_triage)
    return "\n".join(out) + "\n"


def _summary_line(register: Register) -> str:
    open_findings = [f for f in register.findings if f.status.is_open]
    counts = {s: sum(1 for f in open_findings if f.severity is s) for s in reversed(Severity)}
    summary = ", ".join(f"{n} {s.value}" for s, n in counts.items() if n)
    return (
        f"{len(register.findings)} findings, {len(open_findings)} open ({summary or 'none'}); "
        f"catalog {register.catalog_version}"
    )


def _print_rich_register(register: Register, system: System) -> None:
    table = Table(title=f"Threats of {escape(system.name)}")
    table.add_column("severity", no_wrap=True)
    table.add_column("finding", overflow="fold")
    for column in ("status", "title", "STRIDE/LINDDUN", "ATLAS", "OWASP"):
        table.add_column(column, overflow="fold")
    for finding in register.findings:
        categories = " ".join([*finding.threat.stride, *(f"P:{c}" for c in finding.threat.linddun)])
        verified = " ✓" if finding.verified else " ✗" if finding.verified is False else ""
        colour = SEVERITY_COLOUR[finding.severity]
        table.add_row(
            f"[{colour}]{finding.severity.value}[/]",
            finding.id,
            finding.status.value + verified,
            escape(finding.threat.title),
            categories,
            " ".join(finding.threat.atlas[:2]),
            " ".join(finding.threat.owasp),
        )
    console = _console()
    console.print(table)
    console.print(escape(_summary_line(register)))
    for orphan in register.orphan_triage:
        console.print(f"[yellow]triage entry matches no finding:[/] {escape(orphan)}")


def _cell(row: tuple[Severity, str, str, str, str, str], index: int) -> str:
    value = row[index]
    return value.value if isinstance(value, Severity) else value


def render_format(fmt: str, project: Project, register: Register) -> str:
    """Render the register in a file format by delegating to the report layer."""
    from modelward.report import csv_report, dfd, json_report, markdown, sarif, threat_dragon
    from modelward.report import html as html_report

    system = project.system
    if fmt == "json":
        return json_report.render_json(system, register)
    if fmt == "sarif":
        return sarif.render_sarif(register, system_file=str(project.system_file), element_lines=project.lines)
    if fmt == "csv":
        return csv_report.render_csv(register)
    if fmt == "md":
        return markdown.render_markdown(system, register)
    if fmt == "html":
        return html_report.render_html(system, register)
    if fmt == "mermaid":
        return dfd.render_mermaid(system, register)
    if fmt == "dot":
        return dfd.render_dot(system, register)
    if fmt == "threat-dragon":
        return threat_dragon.render_threat_dragon(system, register)
    raise InputError(f"unknown format {fmt!r}")


def print_audit_summary(result: AuditResult) -> None:
    """One line per requirement, then the register's open findings by severity."""
    console = _console()
    table = Table(title=f"Requirements of {escape(result.system.name)}")
    for column in ("requirement", "check", "result", "message"):
        table.add_column(column, overflow="fold")
    for evidence in result.evidence:
        verdict = "[green]pass[/]" if evidence.passed else "[red]FAIL[/]"
        message = escape(evidence.error or evidence.message)
        table.add_row(escape(evidence.requirement or "-"), escape(evidence.check), verdict, message)
    console.print(table)
    findings = result.register.findings
    open_findings = [f for f in findings if f.status.is_open]
    verified = sum(1 for f in findings if f.verified)
    reopened = sum(1 for f in findings if f.verified is False)
    console.print(
        f"{len(findings)} findings: {len(open_findings)} open, {verified} verified by checks, "
        f"{reopened} contradicted by failing checks; {len(result.failed_requirements)} requirement(s) failed"
    )


def print_lint(messages: list[LintMessage], document: LoadedDocument, fmt: str) -> None:
    """Lint messages as ``file:line: level code: message`` lines or JSON."""
    if fmt == "json":
        rows = [
            {
                "code": m.code,
                "level": m.level.value,
                "file": document.file,
                "line": document.line(m.path),
                "field": m.path_text,
                "message": m.message,
            }
            for m in messages
        ]
        click.echo(json.dumps(rows, indent=2))
        return
    for m in messages:
        click.echo(f"{document.file}:{document.line(m.path) or 1}: {m.level.value} {m.code}: {m.message}")
    click.echo(f"{len(messages)} message(s)" if messages else "no problems found", err=True)


def schema_for(what: str) -> dict[str, Any]:
    """The published JSON Schema of a system file, a triage file or the JSON report."""
    if what == "system":
        from modelward.system.model import System

        schema = System.model_json_schema(by_alias=True)
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["title"] = "modelward system file (modelward.yaml)"
        return schema
    if what == "triage":
        from modelward.threats.triage import TriageFile

        schema = TriageFile.model_json_schema(by_alias=True)
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        return schema
    from modelward.report.json_report import report_schema

    return report_schema()


def print_catalog(catalog: Catalog, pack: str | None, fmt: str) -> None:
    """Every threat of the catalog (or of one pack) with its taxonomy ids."""
    threats = [t for t in catalog.threats if pack is None or t.pack == pack]
    if pack is not None and not threats:
        packs = sorted({t.pack for t in catalog.threats})
        raise InputError(f"no pack {pack!r} (packs: {', '.join(packs)})", field="--pack")
    if fmt == "json":
        click.echo(json.dumps([t.model_dump(mode="json") for t in threats], indent=2))
        return
    table = Table(title=escape(f"Threat catalog {catalog.version} ({len(threats)} threats)"))
    for column in ("id", "title", "targets", "STRIDE/LINDDUN", "ATLAS", "OWASP"):
        table.add_column(column, overflow="fold")
    for threat in threats:
        categories = " ".join([*threat.stride, *(f"P:{c}" for c in threat.linddun)])
        table.add_row(
            threat.id,
            escape(threat.title),
            ", ".join(threat.targets),
            categories,
            " ".join(threat.atlas),
            " ".join(threat.owasp),
        )
    _console().print(table)


def print_threat(catalog: Catalog, threat_id: str) -> None:
    """One threat in full, as YAML-like text."""
    import yaml

    try:
        threat = catalog.get(threat_id)
    except KeyError as exc:
        raise InputError(str(exc.args[0]) if exc.args else f"no threat {threat_id!r}", field="THREAT_ID") from None
    click.echo(yaml.safe_dump(threat.model_dump(mode="json", exclude_none=True), sort_keys=False, width=100))


def print_checks() -> None:
    """Every registered check with what it verifies."""
    from modelward.checks.registry import all_checks

    table = Table(title="Registered checks")
    for column in ("check", "title", "default threshold", "verifies"):
        table.add_column(column, overflow="fold")
    for name, check in all_checks().items():
        threshold = "-" if check.default_threshold is None else str(check.default_threshold)
        table.add_row(name, escape(check.title), threshold, ", ".join(check.verifies))
    _console().print(table)


# --- diff --------------------------------------------------------------------


def _register_for(path: Path, today: date | None) -> Any:
    """A register from a system file/folder, or the findings of a JSON report."""
    if path.suffix == ".json":
        from modelward.core.yamlio import read_text
        from modelward.report.json_report import load_register_json

        return load_register_json(read_text(path), file=str(path))
    from modelward.audit.project import load_project
    from modelward.threats.register import build_register

    project = load_project(path)
    return build_register(project.system, project.catalog, triage=project.triage, today=today)


def diff_inputs(old: Path, new: Path, today: date | None) -> RegisterDiff:
    """Compare two inputs, each a system (file or folder) or a JSON report."""
    from modelward.threats.diff import diff_registers

    return diff_registers(_register_for(old, today), _register_for(new, today))


def diff_has_new_at_least(difference: RegisterDiff, threshold: Severity) -> bool:
    """Whether the diff brings a new open finding at or above ``threshold``."""
    from modelward.threats.model import Status

    def is_open(status: str | None) -> bool:
        try:
            return status is None or Status(status).is_open
        except ValueError:
            return True

    return any(state.severity_rank >= threshold.rank and is_open(state.status) for state in difference.new)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def print_diff(difference: RegisterDiff, fmt: str) -> None:
    """New, fixed and changed findings as a table, JSON or Markdown."""
    if fmt == "json":
        data = difference.to_data()
        data.pop("unchanged")
        click.echo(json.dumps(data, indent=2))
        return
    sections: list[tuple[str, list[tuple[str, str, str, str]]]] = [
        ("new", [(s.id, s.severity or "", s.status or "", s.title or "") for s in difference.new]),
        ("fixed", [(s.id, s.severity or "", s.status or "", s.title or "") for s in difference.fixed]),
        (
            "changed",
            [(c.id, c.after.severity or "", c.after.status or "", c.describe()) for c in difference.changed],
        ),
    ]
    if fmt == "md":
        lines = []
        for name, rows in sections:
            lines += [f"## {name.capitalize()} ({len(rows)})", ""]
            if rows:
                lines += ["| finding | severity | status | detail |", "|---|---|---|---|"]
                lines += [f"| `{a}` | {b} | {c} | {_md_cell(d)} |" for a, b, c, d in rows]
            lines.append("")
        lines.append(f"{len(difference.unchanged)} unchanged")
        click.echo("\n".join(lines))
        return
    console = _console()
    for (name, rows), style in zip(sections, ("red", "green", "yellow"), strict=True):
        if not rows:
            continue
        table = Table(title=f"{name} ({len(rows)})", title_style=style)
        for column in ("finding", "severity", "status", "detail"):
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(*(escape(cell) for cell in row))
        console.print(table)
    counts = ", ".join(f"{len(rows)} {name}" for name, rows in sections)
    console.print(f"{counts}, {len(difference.unchanged)} unchanged")
