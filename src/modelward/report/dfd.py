"""The system's data-flow diagram as Mermaid and Graphviz DOT, coloured by open-finding severity.

Trust boundaries become nested Mermaid ``subgraph`` s / DOT clusters; shapes follow the DFD
kind (external entity: rectangle, process: rounded box, data store: cylinder); a node takes
the colour of the most serious open finding on it, a flow edge that of the findings on the
flow. Ids are re-encoded (injectively) for both languages and every label is escaped, so
a hostile element name cannot break out of the diagram. ``render_svg`` runs Graphviz when
it is installed (the only subprocess here: ``dot`` found by ``shutil.which``, fixed args, no shell).
"""

from __future__ import annotations

import re
import shutil
import subprocess  # nosec B404
from collections.abc import Iterator
from dataclasses import dataclass, field

from modelward.core.severity import Severity
from modelward.report.common import (
    NO_FINDINGS_COLOUR,
    OUT_OF_SCOPE_COLOUR,
    SEVERITIES_DESC,
    SEVERITY_COLOURS,
    open_severity_by_element,
    open_severity_by_flow,
)
from modelward.system.model import Boundary, Element, Flow, System
from modelward.system.references import nested_in_itself
from modelward.system.vocabulary import DfdKind, TrustLevel
from modelward.threats.model import Register

__all__ = [
    "BOUNDARY_COLOURS",
    "boundary_node_id",
    "element_node_id",
    "inline_svg",
    "render_dot",
    "render_mermaid",
    "render_svg",
]

#: Stroke colour of a trust boundary by its trust level.
BOUNDARY_COLOURS: dict[TrustLevel, str] = {
    TrustLevel.UNTRUSTED: "#c62828",
    TrustLevel.PARTNER: "#ef6c00",
    TrustLevel.INTERNAL: "#1565c0",
    TrustLevel.PRIVILEGED: "#6a1b9a",
}
_EDGE_COLOUR = "#555555"
_ID_CODES = {"_": "__", "-": "_h", ".": "_d", ":": "_c"}


# --- ids and escaping --------------------------------------------------------


def _encode(ident: str) -> str:
    """Injective re-encoding of an id into ``[A-Za-z0-9_]``."""
    out = []
    for char in ident:
        if char.isascii() and char.isalnum():
            out.append(char)
        else:
            out.append(_ID_CODES.get(char, f"_u{ord(char):x}_"))
    return "".join(out)


def element_node_id(element_id: str) -> str:
    """The diagram id of an element: safe in Mermaid and DOT, never a keyword, unique per element."""
    return "e_" + _encode(element_id)


def boundary_node_id(boundary_id: str) -> str:
    """The diagram id of a trust boundary (a Mermaid subgraph; DOT adds the ``cluster_`` prefix)."""
    return "b_" + _encode(boundary_id)


_MERMAID_ENTITIES = str.maketrans(
    {
        "#": "#35;",
        '"': "#quot;",
        "&": "#amp;",
        "<": "#lt;",
        ">": "#gt;",
        "|": "#124;",
        "`": "#96;",
        "%": "#37;",  # "%%" starts a Mermaid comment or an init directive
        "\n": " ",
        "\r": " ",
        "\t": " ",
    }
)


def _mermaid_text(text: str) -> str:
    """Text for inside a quoted Mermaid label: markup and quote characters as entity codes."""
    return text.translate(_MERMAID_ENTITIES)


def _dot_text(text: str) -> str:
    """Text for inside a double-quoted DOT string: backslash and quote escaped, newlines as ``\\n``."""
    text = text.replace("\\", "\\\\").replace('"', '\\"')
    return text.replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n")


# --- structure shared by both languages ---------------------------------------


@dataclass
class _Tree:
    """Boundaries as a forest, with the elements placed directly in each."""

    children: dict[str | None, list[Boundary]] = field(default_factory=dict)
    members: dict[str | None, list[Element]] = field(default_factory=dict)
    non_empty: set[str] = field(default_factory=set)


def _tree(system: System) -> _Tree:
    known = {b.id: b for b in system.boundaries}
    parents = {b.id: b.parent for b in system.boundaries}
    tree = _Tree()
    for boundary in system.boundaries:
        parent = boundary.parent if boundary.parent in known and not nested_in_itself(boundary.id, parents) else None
        tree.children.setdefault(parent, []).append(boundary)
    for element in system.elements:
        home = element.boundary if element.boundary in known else None
        tree.members.setdefault(home, []).append(element)
    for boundary_id in list(tree.members):
        current = boundary_id
        seen: set[str] = set()
        while current is not None and current not in seen:
            seen.add(current)
            tree.non_empty.add(current)
            parent = known[current].parent
            current = parent if parent in known else None
    return tree


def _walk(tree: _Tree, parent: str | None, depth: int) -> Iterator[tuple[str, Boundary | Element, int]]:
    """Depth-first: ('open', boundary), members, children, ('close', boundary)."""
    for element in tree.members.get(parent, []):
        yield "element", element, depth
    for boundary in tree.children.get(parent, []):
        if boundary.id not in tree.non_empty:
            continue
        yield "open", boundary, depth
        yield from _walk(tree, boundary.id, depth + 1)
        yield "close", boundary, depth


def _boundary_title(boundary: Boundary) -> str:
    return f"{boundary.label} ({boundary.trust.value})"


def _flow_title(flow: Flow) -> str:
    label = flow.label
    if flow.data:
        label += " [" + ", ".join(flow.data) + "]"
    return label


def _node_class(element: Element, severities: dict[str, Severity]) -> str:
    if not element.in_scope:
        return "oos"
    severity = severities.get(element.id)
    return f"sev_{severity.value}" if severity else "clean"


# --- Mermaid ---------------------------------------------------------------------


def render_mermaid(system: System, register: Register | None = None) -> str:
    """The DFD as a Mermaid ``flowchart LR`` with nested subgraphs and severity classes."""
    severities = open_severity_by_element(register)
    flow_severities = open_severity_by_flow(register)
    tree = _tree(system)
    lines = ["flowchart LR"]
    for event, item, depth in _walk(tree, None, 1):
        pad = "  " * depth
        if isinstance(item, Element):
            lines.append(pad + _mermaid_node(item))
        elif event == "open":
            lines.append(f'{pad}subgraph {boundary_node_id(item.id)}["{_mermaid_text(_boundary_title(item))}"]')
            lines.append(f"{pad}  direction LR")
        else:
            lines.append(f"{pad}end")
    link_styles: list[str] = []
    known = {e.id for e in system.elements}
    index = 0
    for flow in system.flows:
        if flow.source not in known or flow.target not in known:
            continue
        source, target = element_node_id(flow.source), element_node_id(flow.target)
        lines.append(f'  {source} -->|"{_mermaid_text(_flow_title(flow))}"| {target}')
        severity = flow_severities.get(flow.fid)
        if severity is not None:
            link_styles.append(f"  linkStyle {index} stroke:{SEVERITY_COLOURS[severity][0]},stroke-width:3px")
        index += 1
    lines.extend(_mermaid_classes())
    for element in system.elements:
        lines.append(f"  class {element_node_id(element.id)} {_node_class(element, severities)}")
    for event, item, _depth in _walk(tree, None, 1):
        if event == "open" and isinstance(item, Boundary):
            colour = BOUNDARY_COLOURS[item.trust]
            lines.append(f"  style {boundary_node_id(item.id)} fill:none,stroke:{colour},stroke-dasharray:5 5")
    lines.extend(link_styles)
    return "\n".join(lines) + "\n"


def _mermaid_node(element: Element) -> str:
    node = element_node_id(element.id)
    text = _mermaid_text(f"{element.label} ({element.type.value})")
    if element.kind is DfdKind.DATA_STORE:
        return f'{node}[("{text}")]'
    if element.kind is DfdKind.PROCESS:
        return f'{node}("{text}")'
    return f'{node}["{text}"]'


def _mermaid_classes() -> list[str]:
    lines = []
    for severity in SEVERITIES_DESC:
        fill, text = SEVERITY_COLOURS[severity]
        lines.append(f"  classDef sev_{severity.value} fill:{fill},stroke:#333333,color:{text}")
    lines.append(f"  classDef clean fill:{NO_FINDINGS_COLOUR[0]},stroke:{NO_FINDINGS_COLOUR[1]},color:#000000")
    fill, stroke = OUT_OF_SCOPE_COLOUR
    lines.append(f"  classDef oos fill:{fill},stroke:{stroke},color:#616161,stroke-dasharray:4 4")
    return lines


# --- Graphviz DOT --------------------------------------------------------------------


def render_dot(system: System, register: Register | None = None) -> str:
    """The DFD as Graphviz DOT: clusters for boundaries, DFD shapes, severity fill colours."""
    severities = open_severity_by_element(register)
    flow_severities = open_severity_by_flow(register)
    tree = _tree(system)
    lines = [
        "digraph dfd {",
        f'  graph [rankdir=LR, fontname="Helvetica", fontsize=12, labelloc=t, label="{_dot_text(system.name)}"];',
        '  node [fontname="Helvetica", fontsize=10, style="filled", penwidth=1.2];',
        '  edge [fontname="Helvetica", fontsize=9];',
    ]
    for event, item, depth in _walk(tree, None, 1):
        pad = "  " * depth
        if isinstance(item, Element):
            lines.append(pad + _dot_node(item, severities))
        elif event == "open":
            colour = BOUNDARY_COLOURS[item.trust]
            lines.append(f'{pad}subgraph "cluster_{boundary_node_id(item.id)}" {{')
            lines.append(f'{pad}  label="{_dot_text(_boundary_title(item))}";')
            lines.append(f'{pad}  style="dashed,rounded"; color="{colour}"; fontcolor="{colour}"; penwidth=1.5;')
        else:
            lines.append(f"{pad}}}")
    known = {e.id for e in system.elements}
    for flow in system.flows:
        if flow.source not in known or flow.target not in known:
            continue
        severity = flow_severities.get(flow.fid)
        colour = SEVERITY_COLOURS[severity][0] if severity else _EDGE_COLOUR
        width = 2.2 if severity else 1.0
        lines.append(
            f'  "{element_node_id(flow.source)}" -> "{element_node_id(flow.target)}" '
            f'[label="{_dot_text(_flow_title(flow))}", color="{colour}", fontcolor="{colour}", penwidth={width}];'
        )
    lines.append("}")
    return "\n".join(lines) + "\n"


def _dot_node(element: Element, severities: dict[str, Severity]) -> str:
    shape = {DfdKind.DATA_STORE: "cylinder", DfdKind.PROCESS: "box"}.get(element.kind, "box")
    styles = ["filled"]
    if element.kind is DfdKind.PROCESS:
        styles.append("rounded")
    label = f"{element.label}\n«{element.type.value}»"
    if not element.in_scope:
        fill, stroke = OUT_OF_SCOPE_COLOUR
        text = "#616161"
        styles.append("dashed")
    else:
        severity = severities.get(element.id)
        if severity is None:
            fill, stroke = NO_FINDINGS_COLOUR
            text = "#000000"
        else:
            fill, text = SEVERITY_COLOURS[severity]
            stroke = "#333333"
    return (
        f'"{element_node_id(element.id)}" [label="{_dot_text(label)}", shape={shape}, style="{",".join(styles)}", '
        f'fillcolor="{fill}", color="{stroke}", fontcolor="{text}"];'
    )


# --- SVG ------------------------------------------------------------------------------


def render_svg(dot_source: str, *, timeout: float = 30.0) -> str | None:
    """SVG from DOT via the Graphviz ``dot`` binary, or None when it is absent, fails or times out."""
    executable = shutil.which("dot")
    if executable is None:
        return None
    try:
        # The executable path comes from shutil.which, the arguments are fixed, and no shell is involved.
        completed = subprocess.run(  # noqa: S603 # nosec B603
            [executable, "-Tsvg"],
            input=dot_source.encode("utf-8"),
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if completed.returncode != 0 or not completed.stdout:
        return None
    return completed.stdout.decode("utf-8", errors="replace")


_PROLOGUE = re.compile(r"\A\s*(?:<\?xml[^>]*\?>\s*|<!DOCTYPE[^>]*>\s*|<!--.*?-->\s*)*", re.DOTALL)
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_DANGEROUS = re.compile(
    r"<\s*(?:script|foreignObject|iframe|object|embed|use)\b|\son[a-z]+\s*=|javascript:|data:text/html",
    re.IGNORECASE,
)


def inline_svg(svg: str | None) -> str | None:
    """Graphviz SVG ready to embed in HTML (prologue and comments stripped), or None if it is unsafe.

    Graphviz escapes label text itself; this is a second line of defence that refuses any
    SVG carrying scripts, event handlers or embedded documents instead of trying to clean it.
    """
    if not svg:
        return None
    body = _COMMENT.sub("", _PROLOGUE.sub("", svg, count=1)).strip()
    if not body.startswith("<svg") or _DANGEROUS.search(body):
        return None
    return body
