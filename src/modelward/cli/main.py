"""The ``modelward`` command line: threats, audit, lint, schema, catalog and checks."""

from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path
from typing import Any

import click

from modelward import __version__
from modelward.cli.errors import run_guarded
from modelward.core.errors import EXIT_FINDINGS, EXIT_OK
from modelward.core.files import write_text_atomic
from modelward.core.severity import Severity
from modelward.threats.model import Status

FORMATS = ("table", "md", "html", "json", "sarif", "csv", "mermaid", "dot", "threat-dragon")
SEVERITIES = [s.value for s in Severity] + ["never"]


class _DefaultToShow(click.Group):
    """``modelward threats PATH`` runs ``show``; ``modelward threats diff OLD NEW`` runs ``diff``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["show", *args]
        return super().parse_args(ctx, args)


def _parse_day(_ctx: click.Context, _param: click.Parameter, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)") from None


def _fail_on(value: str) -> Severity | None:
    return None if value == "never" else Severity.parse(value)


def _emit(text: str, out: Path | None) -> None:
    if out is None:
        click.echo(text, nl=not text.endswith("\n"))
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, text)
    click.echo(f"wrote {out}", err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="modelward")
def cli() -> None:
    """modelward: threat-model ML systems and tie every threat to executable evidence."""


# --- threats -----------------------------------------------------------------


@cli.group(cls=_DefaultToShow)
def threats() -> None:
    """Derive the threat register of a system (`threats PATH`), or compare two (`threats diff OLD NEW`)."""


_path_arg = click.argument("path", type=click.Path(path_type=Path))
_triage_opt = click.option(
    "--triage",
    "triage_file",
    type=click.Path(path_type=Path),
    help="Triage file (default: modelward.triage.yaml beside the system).",
)
_no_triage_opt = click.option("--no-triage", is_flag=True, help="Ignore the triage file.")
_catalog_opt = click.option(
    "--catalog",
    "catalogs",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Extra threat catalog file (repeatable).",
)
_today_opt = click.option(
    "--today", callback=_parse_day, help="Date used for review-by expiry (default: today), YYYY-MM-DD."
)


@threats.command("show")
@_path_arg
@click.option("--format", "-f", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option("--out", "-o", type=click.Path(path_type=Path), help="Write to this file instead of standard output.")
@_triage_opt
@_no_triage_opt
@_catalog_opt
@_today_opt
@click.option(
    "--fail-on",
    type=click.Choice(SEVERITIES, case_sensitive=False),
    default="never",
    show_default=True,
    help="Exit 1 when an open finding is at or above this severity.",
)
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice([s.value for s in Status]),
    help="Only findings with this status (repeatable).",
)
def threats_show(
    path: Path,
    fmt: str,
    out: Path | None,
    triage_file: Path | None,
    no_triage: bool,
    catalogs: tuple[Path, ...],
    today: date | None,
    fail_on: str,
    statuses: tuple[str, ...],
) -> None:
    """Derive, rate and triage the threats of the system at PATH (a modelward.yaml or its folder)."""
    from modelward.audit.project import load_project
    from modelward.cli import render
    from modelward.threats.register import build_register

    project = load_project(path, triage_file=triage_file, extra_catalogs=catalogs, use_triage=not no_triage)
    register = build_register(project.system, project.catalog, triage=project.triage, today=today)
    if statuses:
        wanted = set(statuses)
        register.findings = [f for f in register.findings if f.status.value in wanted]
    if fmt == "table" and out is None:
        render.print_register(register, project.system)
    elif fmt == "table":
        _emit(render.register_table_text(register, project.system), out)
    else:
        _emit(render.render_format(fmt, project, register), out)
    sys.exit(_exit_for(register.findings, _fail_on(fail_on)))


def _exit_for(findings: list[Any], threshold: Severity | None) -> int:
    if threshold is None:
        return EXIT_OK
    failing = [f for f in findings if f.status.is_open and f.severity >= threshold]
    if failing:
        click.echo(f"{len(failing)} open finding(s) at or above {threshold.value}", err=True)
        return EXIT_FINDINGS
    return EXIT_OK


@threats.command("diff")
@click.argument("old", type=click.Path(path_type=Path))
@click.argument("new", type=click.Path(path_type=Path))
@click.option("--format", "-f", "fmt", type=click.Choice(["table", "json", "md"]), default="table", show_default=True)
@_today_opt
@click.option(
    "--fail-on-new",
    type=click.Choice(SEVERITIES, case_sensitive=False),
    default="never",
    show_default=True,
    help="Exit 1 when a new open finding is at or above this severity.",
)
def threats_diff(old: Path, new: Path, fmt: str, today: date | None, fail_on_new: str) -> None:
    """Show new, fixed and changed findings between OLD and NEW (system files, folders or JSON reports)."""
    from modelward.cli import render

    difference = render.diff_inputs(old, new, today)
    render.print_diff(difference, fmt)
    threshold = _fail_on(fail_on_new)
    if threshold is not None and render.diff_has_new_at_least(difference, threshold):
        sys.exit(EXIT_FINDINGS)


# --- audit -------------------------------------------------------------------


@cli.command()
@_path_arg
@click.option(
    "--out", "-o", type=click.Path(path_type=Path), help="Report folder (default: reports/<system folder name>)."
)
@_triage_opt
@_no_triage_opt
@_catalog_opt
@_today_opt
@click.option(
    "--fail-on",
    type=click.Choice(SEVERITIES, case_sensitive=False),
    default="never",
    show_default=True,
    help="Also exit 1 when an open finding is at or above this severity.",
)
def audit(
    path: Path,
    out: Path | None,
    triage_file: Path | None,
    no_triage: bool,
    catalogs: tuple[Path, ...],
    today: date | None,
    fail_on: str,
) -> None:
    """Run threats and every check bound by the system's requirements, and write the report.

    Exits 1 when a requirement's check fails (or an open finding reaches --fail-on), 2 on bad input.
    """
    from modelward.audit.project import load_project
    from modelward.audit.runner import run_audit
    from modelward.cli import render
    from modelward.report.writer import DEFAULT_FORMATS, write_report

    project = load_project(path, triage_file=triage_file, extra_catalogs=catalogs, use_triage=not no_triage)
    out_dir = out or Path("reports") / project.system_file.parent.resolve().name
    result = run_audit(
        project.system,
        project.catalog,
        base_dir=project.system_file.parent,
        artifacts_dir=out_dir / "artifacts",
        triage=project.triage,
        today=today,
    )
    written = write_report(
        out_dir,
        project.system,
        result.register,
        evidence=result.evidence,
        formats=(*DEFAULT_FORMATS, "threat-dragon"),
        system_file=str(project.system_file),
        element_lines=project.lines,
    )
    render.print_audit_summary(result)
    click.echo(f"report: {', '.join(str(p) for p in written)}")
    code = EXIT_FINDINGS if result.failed_requirements else _exit_for(result.register.findings, _fail_on(fail_on))
    sys.exit(code)


# --- lint, schema ------------------------------------------------------------


@cli.command()
@_path_arg
@click.option("--format", "-f", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--strict", is_flag=True, help="Exit 1 on warnings too, not only on errors.")
def lint(path: Path, fmt: str, strict: bool) -> None:
    """Check a system description for gaps: unused data, isolated elements, personal data terms, ..."""
    from modelward.checks.registry import all_checks
    from modelward.cli import render
    from modelward.system.lint import LintLevel, lint_system
    from modelward.system.loader import load_system_document, resolve_system_path

    system_file = resolve_system_path(path)
    system, document = load_system_document(system_file)
    messages = lint_system(system, known_checks=set(all_checks()))
    render.print_lint(messages, document, fmt)
    failing = [m for m in messages if strict or m.level is LintLevel.ERROR]
    sys.exit(EXIT_FINDINGS if failing else EXIT_OK)


@cli.command()
@click.argument("what", type=click.Choice(["system", "triage", "report"]), default="system")
@click.option("--out", "-o", type=click.Path(path_type=Path), help="Write to this file instead of standard output.")
def schema(what: str, out: Path | None) -> None:
    """Print the JSON Schema of a system file (default), a triage file, or the JSON report."""
    from modelward.cli.render import schema_for

    _emit(json.dumps(schema_for(what), indent=2) + "\n", out)


# --- catalog, checks ---------------------------------------------------------


@cli.group()
def catalog() -> None:
    """Browse the threat catalog shipped with modelward."""


@catalog.command("list")
@click.option("--pack", help="Only this pack (stride, linddun, ml, llm).")
@click.option("--format", "-f", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def catalog_list(pack: str | None, fmt: str) -> None:
    """List every threat with its ids in each taxonomy."""
    from modelward.cli import render
    from modelward.threats.catalog import load_catalog

    render.print_catalog(load_catalog([]), pack, fmt)


@catalog.command("describe")
@click.argument("threat_id")
def catalog_describe(threat_id: str) -> None:
    """Show one threat in full: description, taxonomies, risk factors, mitigations, conditions."""
    from modelward.cli import render
    from modelward.threats.catalog import load_catalog

    render.print_threat(load_catalog([]), threat_id)


@cli.group()
def checks() -> None:
    """Browse the registered checks that requirements can bind."""


@checks.command("list")
def checks_list() -> None:
    """List every registered check with the threats it verifies."""
    from modelward.cli import render

    render.print_checks()


from modelward.cli import admin as _admin  # noqa: E402
from modelward.cli import audit_log as _audit_log  # noqa: E402
from modelward.cli import evasion as _evasion  # noqa: E402 - registers its commands on ``cli``
from modelward.cli import privacy as _privacy  # noqa: E402
from modelward.cli import serve as _serve  # noqa: E402
from modelward.cli import signing as _signing  # noqa: E402

_evasion.register(cli)
_privacy.register(cli)
_signing.register(cli)
_audit_log.register(cli)
_admin.register(cli)
_serve.register(cli)


def main() -> None:
    """Console entry point."""
    try:
        run_guarded(cli)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
        sys.exit(code)
    sys.exit(EXIT_OK)
