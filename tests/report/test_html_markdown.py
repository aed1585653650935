"""HTML and Markdown reports: complete sections, escaped user text, no scripts, DFD fallback."""

from __future__ import annotations

import re

import pytest
from conftest import EVIL, make_evidence, make_register, make_system

from modelward.report.html import render_html
from modelward.report.markdown import render_markdown

STAMP = "2026-11-23T10:00:00Z"
SVG = '<?xml version="1.0"?>\n<!-- generated -->\n<svg xmlns="http://www.w3.org/2000/svg"><g id="graph0"/></svg>'


@pytest.fixture(scope="module")
def html() -> str:
    return render_html(make_system(), make_register(), evidence=make_evidence(), generated_at=STAMP)


@pytest.fixture(scope="module")
def markdown() -> str:
    return render_markdown(make_system(), make_register(), evidence=make_evidence(), generated_at=STAMP)


def test_html_escapes_hostile_names(html: str) -> None:
    assert EVIL not in html
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Demo &lt;b&gt;moderation&lt;/b&gt; &amp; &#34;friends&#34;" in html


def test_html_is_self_contained(html: str) -> None:
    assert "<style>" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html.split("</head>")[0])
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    assert 'href="javascript:' not in html  # a javascript: reference is shown as text, never as a link
    assert '<a href="https://atlas.mitre.org/techniques/AML.T0043"' in html


def test_html_has_every_section(html: str) -> None:
    for section in (
        "summary",
        "system",
        "dfd",
        "coverage",
        "register",
        "details",
        "evidence",
        "orphans",
        "out-of-scope",
    ):
        assert f'<section id="{section}">' in html
    assert html.count('<article class="finding"') == 7
    assert 'id="finding-ML-EVASION-WHITEBOX@moderation-model"' in html
    assert 'href="#finding-ML-EVASION-WHITEBOX@moderation-model"' in html


def test_html_register_and_details_content(html: str) -> None:
    assert "AML.T0043.000, AML.T0015" in html  # register ATLAS column
    assert "ML01:2023" in html and "CWE-1039" in html
    assert "AML.M0003" in html  # mitigation ATLAS id
    assert "<code>adversarial-training</code>" in html  # mitigation controls
    assert "SL:6/M:9/O:7/S:9/ED:7/EE:5/A:9/ID:9/LC:2/LI:7/LAV:1/LAC:7" in html
    assert "no control among: adversarial-training" in html
    assert "SEC-1" in html and "2027-01-31" in html  # triage
    assert "check failing" in html and "verified" in html


def test_html_evidence_table(html: str) -> None:
    section = html.split('<section id="evidence">')[1].split("</section>")[0]
    assert "membership-inference" in section and "artifact-scan" in section
    assert "auc = <strong>0.71</strong>" in section
    assert "0.6" in section and "artifacts/mi/roc.png" in section
    assert "&#10008; failed" in section and "&#10004; passed" in section
    assert "&lt;script&gt;" in section


def test_html_without_evidence_has_no_evidence_section() -> None:
    page = render_html(make_system(), make_register(), generated_at=STAMP)
    assert '<section id="evidence">' not in page


def test_html_mermaid_fallback_without_svg(html: str) -> None:
    assert '<pre class="mermaid">flowchart LR' in html
    assert "Graphviz was not available" in html
    assert "#lt;script#gt;" in html  # mermaid's own escaping, then HTML escaping of that text


def test_html_inlines_svg_when_given() -> None:
    page = render_html(make_system(), make_register(), svg=SVG, generated_at=STAMP)
    assert '<div class="dfd"><svg xmlns="http://www.w3.org/2000/svg"><g id="graph0"/></svg></div>' in page
    assert '<pre class="mermaid">' not in page


def test_html_refuses_unsafe_svg() -> None:
    page = render_html(make_system(), make_register(), svg="<svg><script>x()</script></svg>", generated_at=STAMP)
    assert "<script" not in page and '<pre class="mermaid">' in page


def test_html_for_an_empty_register() -> None:
    page = render_html(make_system(), make_register([]), generated_at=STAMP)
    assert "No findings." in page


def test_markdown_sections_and_tables(markdown: str) -> None:
    for heading in (
        "## Severity summary",
        "## System",
        "## Data-flow diagram",
        "## Coverage matrix",
        "## Threat register",
        "## Findings in detail",
        "## Evidence",
        "## Orphan triage entries",
        "## Out of scope",
    ):
        assert heading in markdown
    assert "```mermaid\nflowchart LR\n" in markdown
    register_rows = [line for line in markdown.splitlines() if line.startswith("| `") and "@" in line]
    assert len(register_rows) == 7
    assert "| critical | 1 | 1 |" in markdown


def test_markdown_escapes_user_text(markdown: str) -> None:
    assert EVIL not in markdown
    assert "\\<script\\>alert(1)\\</script\\>" in markdown
    assert 'User "quoted" \\#1 \\| pipe' in markdown
    assert "- <https://atlas.mitre.org/techniques/AML.T0043>" in markdown
    assert "<javascript:" not in markdown


def test_markdown_links_the_svg_when_written() -> None:
    text = render_markdown(make_system(), make_register(), svg_file="dfd.svg", generated_at=STAMP)
    assert "![Data-flow diagram](dfd.svg)" in text
    assert "```mermaid" in text


def test_markdown_lists_keep_their_lines(markdown: str) -> None:
    # trim_blocks must not glue list items or headings together
    assert "\n- **Where:** Moderation model\n" in markdown
    assert "\n- **STRIDE:** Tampering\n" in markdown
    assert "\n- Adversarial training — controls: `adversarial-training` — ATLAS: AML.M0003\n" in markdown
    assert not re.search(r"\S### ", markdown)
