"""Pictures of a topology: Graphviz dot (rendered to .svg/.png by `dot`) and Mermaid."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field

from .errors import ConflictError, UsageError


@dataclass
class Picture:
    lab: str
    nodes: list[str] = field(default_factory=list)
    # (a_node, a_ifname, a_addresses, b_node, b_ifname, b_addresses)
    links: list[tuple[str, str, list[str], str, str, list[str]]] = field(default_factory=list)


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(pic: Picture) -> str:
    lines = [f"graph {_q(pic.lab)} {{", "  graph [overlap=false, splines=true, fontname=Helvetica];",
             "  node [shape=box, style=\"rounded,filled\", fillcolor=\"#e8f0fe\", fontname=Helvetica];",
             "  edge [fontname=Helvetica, fontsize=9];"]
    host_style = ', shape=house, fillcolor="#fde8e8"'
    for node in pic.nodes:
        lines.append(f"  {_q(node)} [label={_q(node)}{host_style if node == 'host' else ''}];")
    for a, a_if, a_addr, b, b_if, b_addr in pic.links:
        tail = "\\n".join([a_if, *a_addr])
        head = "\\n".join([b_if, *b_addr])
        lines.append(f"  {_q(a)} -- {_q(b)} [taillabel={_q(tail)}, headlabel={_q(head)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_mermaid(pic: Picture) -> str:
    ids = {node: f"n{i}" for i, node in enumerate(pic.nodes)}
    lines = ["graph LR"]
    for node, ident in ids.items():
        lines.append(f'  {ident}["{node}"]')
    for a, a_if, a_addr, b, b_if, b_addr in pic.links:
        label = f"{a_if} {' '.join(a_addr)} — {b_if} {' '.join(b_addr)}".strip().replace('"', "'")
        lines.append(f'  {ids[a]} ---|"{label}"| {ids[b]}')
    return "\n".join(lines) + "\n"


def write(pic: Picture, out: str) -> None:
    suffix = os.path.splitext(out)[1].lower()
    if suffix == ".dot":
        text = to_dot(pic)
    elif suffix in (".mmd", ".mermaid"):
        text = to_mermaid(pic)
    elif suffix in (".svg", ".png"):
        dot = shutil.which("dot")
        if dot is None:
            raise ConflictError("rendering .svg/.png needs Graphviz's `dot`; apt-get install graphviz "
                                "(or write .dot / .mmd)")
        result = subprocess.run([dot, f"-T{suffix[1:]}", "-o", out], input=to_dot(pic).encode(),
                                capture_output=True, check=False)
        if result.returncode != 0:
            raise ConflictError(f"dot failed: {result.stderr.decode(errors='replace').strip()}")
        return
    else:
        raise UsageError(f"cannot tell the picture format from {out!r}: use .svg, .png, .dot or .mmd")
    with open(out, "w", encoding="utf-8") as fh:
        fh.write(text)


def from_spec(spec: object) -> Picture:
    from .topology.schema import HOST, LabSpec

    assert isinstance(spec, LabSpec)
    pic = Picture(spec.name, list(spec.nodes))
    for link in spec.links:
        for end in link.endpoints:
            if end.node == HOST and HOST not in pic.nodes:
                pic.nodes.append(HOST)
        pic.links.append((link.a.node, link.a.ifname, list(link.addresses_a),
                          link.b.node, link.b.ifname, list(link.addresses_b)))
    return pic


def from_state(state: object) -> Picture:
    from .state.store import LabState

    assert isinstance(state, LabState)
    pic = Picture(state.lab, list(state.nodes))
    for a, a_if, b, b_if in state.links:
        pic.links.append((a, a_if, [], b, b_if, []))
    return pic
