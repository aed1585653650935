"""The security-review report as one self-contained HTML page (inline CSS, no scripts, no network)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from modelward.checks.base import Evidence
from modelward.report.context import ReportContext, build_context, environment
from modelward.system.model import System
from modelward.threats.model import Register

__all__ = ["render_html", "render_html_context"]

TEMPLATE = "report.html"


def render_html_context(context: ReportContext) -> str:
    """Render an already-built view model with the HTML template (autoescaped)."""
    return environment().get_template(TEMPLATE).render(ctx=context)


def render_html(
    system: System,
    register: Register,
    *,
    evidence: Iterable[Evidence] | None = None,
    svg: str | None = None,
    generated_at: datetime | str | None = None,
) -> str:
    """The report as HTML; ``svg`` is Graphviz output to inline, else the DFD is shown as Mermaid source."""
    context = build_context(system, register, evidence=evidence, svg=svg, generated_at=generated_at)
    return render_html_context(context)
