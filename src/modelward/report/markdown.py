"""The security-review report as Markdown (renders on GitHub and GitLab, Mermaid DFD included)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from modelward.checks.base import Evidence
from modelward.report.context import ReportContext, build_context, environment
from modelward.system.model import System
from modelward.threats.model import Register

__all__ = ["render_markdown", "render_markdown_context"]

TEMPLATE = "report.md"


def render_markdown_context(context: ReportContext) -> str:
    """Render an already-built view model with the Markdown template."""
    return environment().get_template(TEMPLATE).render(ctx=context)


def render_markdown(
    system: System,
    register: Register,
    *,
    evidence: Iterable[Evidence] | None = None,
    svg_file: str | None = None,
    generated_at: datetime | str | None = None,
) -> str:
    """The report as Markdown; ``svg_file`` names a rendered DFD image to link next to the Mermaid block."""
    context = build_context(system, register, evidence=evidence, svg_file=svg_file, generated_at=generated_at)
    return render_markdown_context(context)
