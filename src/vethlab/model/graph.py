"""Pictures of a topology: Graphviz dot (rendered to .svg/.png by `dot`), Mermaid, and a
self-contained HTML page (webpage.py) that `vethlab web` also serves live.

A picture shows what `up` builds, not only what the file names: it is drawn from
the compiled desired state (desired.py) with IPAM's choices, so a Docker-style
network appears as its bridge (with the bridge's real interface name, subnet and
gateway) joined to each member by an edge labelled with the member's interface
and address, the node holding the bridge (`host` by default) joined to it by the
gateway, uplinks as the real NICs they are, macvlan networks as the parent's LAN,
and published ports as `host:8080 → web:80/tcp` on the member's edge.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import field
from typing import Any

from ..deferred import dataclass
from ..errors import ConflictError, UsageError

#: vertex kinds, each drawn in its own shape
NODE, HOST_NODE, BRIDGE, LAN, UPLINK = "node", "host", "bridge", "lan", "uplink"


@dataclass
class Vertex:
    ident: str  # unique in the picture (a node's name, `net:NAME`, `uplink:IF`)
    label: list[str]  # lines
    kind: str = NODE


@dataclass
class Edge:
    a: str
    b: str
    a_label: list[str] = field(default_factory=list)  # at a's end: interface, addresses
    b_label: list[str] = field(default_factory=list)
    label: list[str] = field(default_factory=list)  # in the middle: shaping, published ports
    ends: list[tuple[str, str]] = field(default_factory=list)  # (node, ifname) of each interface it stands for


@dataclass
class Picture:
    lab: str
    vertices: list[Vertex] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)

    def add(self, vertex: Vertex) -> None:
        if all(v.ident != vertex.ident for v in self.vertices):
            self.vertices.append(vertex)

    @property
    def nodes(self) -> list[str]:
        """The lab's nodes (`host` included when the lab uses it)."""
        return [v.ident for v in self.vertices if v.kind in (NODE, HOST_NODE)]


# -- Graphviz ----------------------------------------------------------------------------
def _q(lines: list[str] | str) -> str:
    """A dot string whose lines are joined by dot's own line break: escape first,
    then join, so the file holds `\\n` (a newline to dot), never `\\\\n` (a literal)."""
    parts = [lines] if isinstance(lines, str) else lines
    return '"' + "\\n".join(p.replace("\\", "\\\\").replace('"', '\\"') for p in parts) + '"'


_DOT_STYLE = {
    NODE: 'shape=box, style="rounded,filled", fillcolor="#e8f0fe"',
    HOST_NODE: 'shape=house, style=filled, fillcolor="#fde8e8"',
    BRIDGE: 'shape=ellipse, style=filled, fillcolor="#e6f4ea"',
    LAN: 'shape=ellipse, style="dashed,filled", fillcolor="#fef7e0"',
    UPLINK: 'shape=cds, style=filled, fillcolor="#f1f3f4"',
}


def to_dot(pic: Picture) -> str:
    lines = [f"graph {_q(pic.lab)} {{", "  graph [overlap=false, splines=true, nodesep=0.9, ranksep=1.0, fontname=Helvetica];",
             "  node [fontname=Helvetica];", "  edge [fontname=Helvetica, fontsize=9, labeldistance=2.2, labelfloat=false];"]
    for n, v in enumerate(pic.vertices):
        lines.append(f"  {_q(v.ident)} [id={_q(f'v{n}')}, label={_q(v.label)}, {_DOT_STYLE[v.kind]}];")
    for n, e in enumerate(pic.edges):
        attrs = [f"id={_q(f'e{n}')}"]
        if e.a_label:
            attrs.append(f"taillabel={_q(e.a_label)}")
        if e.b_label:
            attrs.append(f"headlabel={_q(e.b_label)}")
        if e.label:
            attrs.append(f"label={_q(e.label)}")
        lines.append(f"  {_q(e.a)} -- {_q(e.b)} [{', '.join(attrs)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


# -- Mermaid -----------------------------------------------------------------------------
_MMD_SHAPE = {NODE: ('["', '"]'), HOST_NODE: ('[/"', '"\\]'), BRIDGE: ('(["', '"])'), LAN: ('{{"', '"}}'),
              UPLINK: ('>"', '"]')}


def _mmd(text: str) -> str:
    return text.replace('"', "#quot;")


def to_mermaid(pic: Picture) -> str:
    ids = {v.ident: f"n{i}" for i, v in enumerate(pic.vertices)}
    lines = ["graph LR"]
    for v in pic.vertices:
        left, right = _MMD_SHAPE[v.kind]
        lines.append(f"  {ids[v.ident]}{left}{'<br/>'.join(_mmd(x) for x in v.label)}{right}")
    for e in pic.edges:
        words = [" ".join(e.a_label), "—", " ".join(e.b_label)] if (e.a_label or e.b_label) else []
        label = " ".join(w for w in [*words, *e.label] if w).strip(" —")
        middle = f'|"{_mmd(label)}"|' if label else ""
        lines.append(f"  {ids[e.a]} ---{middle} {ids[e.b]}")
    return "\n".join(lines) + "\n"


def write(pic: Picture, out: str) -> None:
    suffix = os.path.splitext(out)[1].lower()
    if suffix == ".dot":
        text = to_dot(pic)
    elif suffix in (".mmd", ".mermaid"):
        text = to_mermaid(pic)
    elif suffix in (".html", ".htm"):
        from .webpage import static_page

        text = static_page(pic)
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
        raise UsageError(f"cannot tell the picture format from {out!r}: use .svg, .png, .dot, .mmd or .html")
    with open(out, "w", encoding="utf-8") as fh:
        fh.write(text)


# -- building a picture ------------------------------------------------------------------
def from_spec(spec: object, allocation: dict[str, Any] | None = None) -> Picture:
    """The picture of a validated file.  `allocation`: IPAM's choices of a running lab
    (its state), so the picture shows the addresses it really has; without it, the
    choices a first `up` would make on an empty host."""
    from ..errors import VethlabError
    from ..topology.schema import HOST, LabSpec
    from . import ipam
    from .desired import bridge_name, compile_lab, port_name

    assert isinstance(spec, LabSpec)
    try:
        alloc = ipam.allocate(spec, ipam.Allocation.previous(allocation))
    except VethlabError:  # e.g. the pool is exhausted: draw without addresses rather than fail
        alloc = ipam.Allocation()
    desired = compile_lab(spec, alloc)
    pic = Picture(spec.name)
    for name in spec.nodes:
        pic.add(Vertex(name, [name], HOST_NODE if name == HOST else NODE))
    if HOST in desired.nodes:
        pic.add(Vertex(HOST, [HOST], HOST_NODE))
    for link in spec.links:
        shaping = [s.describe() for s in (link.shaping_a, link.shaping_b) if s]
        pic.edges.append(Edge(link.a.node, link.b.node, [link.a.ifname, *link.addresses_a],
                              [link.b.ifname, *link.addresses_b], list(dict.fromkeys(shaping)),
                              [(link.a.node, link.a.ifname), (link.b.node, link.b.ifname)]))
    for net in spec.networks:
        ident = f"net:{net.name}"
        subnets = [s for s in (alloc.subnet.get(net.name), alloc.subnet6.get(net.name)) if s]
        flags = [word for word, on in (("nat", net.nat), ("internal", net.internal),
                                       ("not isolated", not net.isolated)) if on]
        if net.driver == "macvlan":
            pic.add(Vertex(ident, [f"network {net.name}", f"macvlan on {net.host}:{net.parent}", *subnets,
                                   *flags], LAN))
        else:
            bridge = bridge_name(spec.name, net)
            pic.add(Vertex(ident, [f"network {net.name}", f"bridge {bridge}", *subnets, *flags], BRIDGE))
            gateways = [g for g in (alloc.gateway.get(net.name), alloc.gateway6.get(net.name)) if g]
            holder_label = [bridge, *gateways] if gateways and not net.internal else [bridge]
            # mid-edge label: the gateway is the bridge itself.  No ends: a bridge has no
            # carrier of its own worth colouring (it follows its ports)
            pic.edges.append(Edge(net.host, ident, [], [], holder_label))
            for uplink in net.uplinks:
                pic.add(Vertex(f"uplink:{uplink}", [f"uplink {uplink}", "(a real NIC)"], UPLINK))
                pic.edges.append(Edge(ident, f"uplink:{uplink}", [], [], ["enslaved"]))
        for member in net.members:
            iface = desired.interfaces.get((member.node, member.ifname or ""))
            addresses = list(iface.addresses) if iface else []
            published = [f"{net.host}:{p.host_port} → {member.node}:{p.port}/{p.protocol}"
                         + (f" on {p.host_ip}" if p.host_ip else "") for p in member.publish]
            ends = [(member.node, member.ifname or "")]
            if net.driver != "macvlan":
                ends.append((net.host, port_name(spec.name, net.name, member.node)))
            pic.edges.append(Edge(member.node, ident, [member.ifname or "", *addresses], [], published, ends))
    return pic


def from_state(state: object) -> Picture:
    """A picture of a lab known only by its state (its file is gone): nodes and links."""
    from ..state.store import LabState

    assert isinstance(state, LabState)
    pic = Picture(state.lab)
    for name in state.nodes:
        pic.add(Vertex(name, [name], HOST_NODE if name == "host" else NODE))
    for a, a_if, b, b_if in state.links:
        for end in (a, b):
            pic.add(Vertex(end, [end], HOST_NODE if end == "host" else NODE))
        pic.edges.append(Edge(a, b, [a_if], [b_if], [], [(a, a_if), (b, b_if)]))
    return pic
