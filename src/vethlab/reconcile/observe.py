"""Read what the kernel holds for one lab: its nodes' namespaces, their interfaces,
addresses, routes and the sysctls the file names.  Only reads: never creates a
namespace (sockets are opened on existing /run/netns files, read-only)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..desired import Desired
from ..kernel.api import Kernel, LinkInfo, Netns, Route
from ..topology.schema import HOST


@dataclass
class ObservedNode:
    name: str
    netns: Netns
    exists: bool = False
    alive: bool = True
    owner: str | None = None  # the lo alias: our marker, another lab's, or None (foreign)
    links: dict[str, LinkInfo] = field(default_factory=dict)
    routes: list[Route] = field(default_factory=list)
    sysctls: dict[str, str | None] = field(default_factory=dict)
    hosts: list[tuple[str, str]] | None = None  # the lab's entries in /etc/netns/NS/hosts
    known: bool = False  # named in the lab's state (so a dead file of that name is the lab's own debris)


@dataclass
class Observed:
    nodes: dict[str, ObservedNode] = field(default_factory=dict)


def observe(kernel: Kernel, desired: Desired, known_nodes: dict[str, Netns], marker: str,
            read_hosts: bool = True) -> Observed:
    """Observe the nodes of `desired` plus `known_nodes` (from the lab's state)."""
    wanted: dict[str, Netns] = dict(known_nodes)
    wanted.update({name: node.netns for name, node in desired.nodes.items()})
    if any(HOST in key for key in desired.interfaces) or HOST in known_nodes:
        wanted[HOST] = None
    out = Observed()
    existing = [ns for ns in wanted.values() if ns is not None and kernel.namespace_exists(ns)]
    opener = getattr(kernel, "open_namespaces", None)
    if opener and existing:
        opener([ns for ns in existing if kernel.namespace_alive(ns)])
    for name, ns in wanted.items():
        node = ObservedNode(name, ns, known=known_nodes.get(name, "") == ns)
        out.nodes[name] = node
        if ns is None:
            node.exists, node.owner = True, marker
        else:
            node.exists = ns in existing
            if not node.exists:
                continue
            node.alive = kernel.namespace_alive(ns)
            if not node.alive:
                continue
            node.owner = kernel.namespace_owner(ns)
            if node.owner != marker:
                continue
            if read_hosts:
                node.hosts = kernel.node_hosts(ns)
        node.links = {link.ifname: link for link in kernel.links(ns)}
        node.routes = kernel.routes(ns)
        spec = desired.nodes.get(name)
        for key, _value in spec.sysctls if spec else ():
            node.sysctls[key] = kernel.read_sysctl(ns, key)
    return out
