"""Compile a LabSpec into the desired kernel state: typed resources with stable keys.

This is containerlab's `RawLink.Resolve()` step: the file's words (node names,
`NODE:IFNAME`) become what the kernel will hold (namespace names, interfaces with
their peers, addresses, routes, sysctls).  Pure: no kernel, no I/O.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from .topology.schema import HOST, LabSpec, RouteSpec

IfKey = tuple[str, str]  # (node, ifname)


@dataclass(frozen=True)
class DesiredNode:
    name: str
    netns: str | None  # None: the host namespace
    sysctls: tuple[tuple[str, str], ...] = ()
    routes: tuple[RouteSpec, ...] = ()
    exec: tuple[tuple[str, ...], ...] = ()


@dataclass(frozen=True)
class DesiredInterface:
    node: str
    ifname: str
    peer: IfKey
    mtu: int | None
    up: bool
    addresses: tuple[str, ...]


@dataclass(frozen=True)
class DesiredVeth:
    a: IfKey
    b: IfKey


@dataclass
class Desired:
    lab: str
    prefix: bool
    nodes: dict[str, DesiredNode] = field(default_factory=dict)
    interfaces: dict[IfKey, DesiredInterface] = field(default_factory=dict)
    veths: list[DesiredVeth] = field(default_factory=list)

    def netns(self, node: str) -> str | None:
        return self.nodes[node].netns

    def first_address(self, node: str) -> str | None:
        """The address a node's name resolves to: its first address, in file order."""
        for iface in self.interfaces.values():
            if iface.node == node and iface.addresses:
                return str(ipaddress.ip_interface(iface.addresses[0]).ip)
        return None

    def hosts_entries(self) -> list[tuple[str, str]]:
        """(address, node) for every node that has an address."""
        out = []
        for name in self.nodes:
            if name == HOST:
                continue
            addr = self.first_address(name)
            if addr:
                out.append((addr, name))
        return out


def compile_lab(spec: LabSpec) -> Desired:
    desired = Desired(lab=spec.name, prefix=spec.prefix)
    for name, node in spec.nodes.items():
        desired.nodes[name] = DesiredNode(name, spec.netns_of(name), node.sysctls, node.routes, node.exec)
    if HOST not in desired.nodes and any(HOST in (link.a.node, link.b.node) for link in spec.links):
        desired.nodes[HOST] = DesiredNode(HOST, None)
    for link in spec.links:
        a, b = (link.a.node, link.a.ifname), (link.b.node, link.b.ifname)
        desired.veths.append(DesiredVeth(a, b))
        desired.interfaces[a] = DesiredInterface(a[0], a[1], b, link.mtu, link.up, link.addresses_a)
        desired.interfaces[b] = DesiredInterface(b[0], b[1], a, link.mtu, link.up, link.addresses_b)
    return desired
