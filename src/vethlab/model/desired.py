"""Compile a LabSpec (plus IPAM's choices) into the desired kernel state.

This is containerlab's `RawLink.Resolve()` step: the file's words (node names,
`NODE:IFNAME`, networks) become what the kernel will hold — namespaces,
interfaces with their peers and masters, addresses, routes, sysctls, one
firewall table per namespace that holds networks, services.  Pure: no kernel, no
I/O.
"""

from __future__ import annotations

import ipaddress
from dataclasses import field
from typing import NamedTuple

from ..deferred import dataclass
from ..digests import blake2b, sha1
from ..topology.schema import HOST, FileSpec, LabSpec, MountSpec, NetworkSpec, PrivateSpec, PublishSpec, RouteSpec
from ..topology.shaping import Shaping
from .ipam import Allocation

IfKey = tuple[str, str]  # (node, ifname)


class DesiredNode(NamedTuple):
    name: str
    netns: str | None  # None: the host namespace
    sysctls: tuple[tuple[str, str], ...] = ()
    routes: tuple[RouteSpec, ...] = ()
    exec: tuple[tuple[str, ...], ...] = ()
    run: tuple[tuple[str, ...], ...] = ()
    oneshot: tuple[int, ...] = ()  # indexes of `run` items allowed to exit 0 during `up`
    ready: tuple[tuple[str, ...], ...] = ()  # what `up` waits for once the node's services started
    hostname: str | None = None  # the node's own view (drivers/view.py): set when it has one
    files: tuple[FileSpec, ...] = ()
    private: tuple[PrivateSpec, ...] = ()
    mounts: tuple[MountSpec, ...] = ()


class Vxlan(NamedTuple):
    """What makes a VXLAN interface (SPEC §7; model/placement.py computes it)."""

    vni: int
    local: str  # this machine's underlay address
    remote: str | None  # a link's far machine; None for a network's port (it floods to `floods`)
    dev: str | None = None  # the underlay interface, when the file names it
    port: int = 4789
    floods: tuple[str, ...] = ()  # all-zero FDB entries: the other machines of a spanning network


class DesiredInterface(NamedTuple):
    node: str
    ifname: str
    peer: IfKey | None  # veth peer; None for bridges and macvlan
    mtu: int | None
    up: bool
    addresses: tuple[str, ...]
    kind: str = "veth"  # veth | bridge | macvlan
    master: str | None = None  # the bridge this interface is a port of
    parent: str | None = None  # macvlan: the parent interface in `parent_node`
    parent_node: str | None = None
    shaping: Shaping | None = None  # egress shaping (tbf or netem)
    vxlan: Vxlan | None = None  # kind "vxlan": a link or network port across machines


class DesiredVeth(NamedTuple):
    a: IfKey
    b: IfKey


class Uplink(NamedTuple):
    node: str
    ifname: str
    bridge: str
    network: str


class NatNetwork(NamedTuple):
    """What the firewall of one namespace needs to know about one network."""

    name: str
    bridge: str
    subnet: str | None
    subnet6: str | None
    nat: bool
    internal: bool
    isolated: bool
    publish: tuple[tuple[PublishSpec, str, str | None], ...]  # (spec, member IPv4, member IPv6)


@dataclass
class Desired:
    lab: str
    prefix: bool
    nodes: dict[str, DesiredNode] = field(default_factory=dict)
    interfaces: dict[IfKey, DesiredInterface] = field(default_factory=dict)
    veths: list[DesiredVeth] = field(default_factory=list)
    uplinks: list[Uplink] = field(default_factory=list)
    firewalls: dict[str, list[NatNetwork]] = field(default_factory=dict)  # host node -> networks
    forwarding: dict[str, tuple[str, ...]] = field(default_factory=dict)  # node -> sysctl keys set to 1
    own_sysctls: set[str] = field(default_factory=set)  # sysctls of interfaces vethlab makes: nothing to restore
    allocation: Allocation = field(default_factory=Allocation)
    all_hosts: list[tuple[str, str]] | None = None  # one machine's part of a lab: every machine's nodes' names

    def netns(self, node: str) -> str | None:
        return self.nodes[node].netns

    def first_addresses(self) -> dict[str, str]:
        """The address each node's name resolves to: its first address (links in file
        order, then networks in file order)."""
        out: dict[str, str] = {}
        for iface in self.interfaces.values():
            if iface.addresses and iface.kind != "bridge" and iface.node not in out:
                out[iface.node] = iface.addresses[0].split("/")[0]
        return out

    def hosts_entries(self) -> list[tuple[str, str]]:
        """(address, node) for every node that has an address."""
        if self.all_hosts is not None:
            return list(self.all_hosts)
        first = self.first_addresses()
        return [(first[name], name) for name in self.nodes if name != HOST and name in first]


def fingerprints(desired: Desired) -> dict[str, str]:
    """Per node, a hash of everything the file asks of it (its own settings, its
    interfaces with their peers, addresses and shaping, the firewall and uplinks it
    holds).  Equal fingerprints between runs mean that node's part of the file did
    not change."""
    parts: dict[str, list[str]] = {name: [repr(node)] for name, node in desired.nodes.items()}
    for key in sorted(desired.interfaces):
        parts.setdefault(key[0], []).append(repr(desired.interfaces[key]))
    for node, nets in desired.firewalls.items():
        parts.setdefault(node, []).append(repr(nets))
    for node, keys in desired.forwarding.items():
        parts.setdefault(node, []).append(repr(keys))
    for up in desired.uplinks:
        parts.setdefault(up.node, []).append(repr(up))
    # BLAKE2b of 8 bytes: as long as the 16 hex digits of SHA-1 kept before, in half the
    # time (~1 ms of a 1000-node run); a state written with SHA-1 ones differs once: a full re-read
    return {name: blake2b("\n".join(items).encode(), digest_size=8).hexdigest() for name, items in parts.items()}


def restricted(desired: Desired, nodes: set[str], peers_only: frozenset[str] = frozenset()) -> Desired:
    """The part of `desired` about `nodes` (and the veth pairs among them).

    `peers_only`: nodes of `nodes` in scope only as the peer of a changed node (the
    host, whose part of the file is unchanged, holding the ports of 1000 members):
    of their interfaces only those not paired with a node out of scope are kept
    (their bridges, and the ends paired with nodes in scope), so what is read and
    judged of them is what the nodes in scope touch, not all 1000 ports."""
    out = Desired(lab=desired.lab, prefix=desired.prefix, allocation=desired.allocation,
                  own_sysctls=desired.own_sysctls, all_hosts=desired.all_hosts)
    out.nodes = {n: node for n, node in desired.nodes.items() if n in nodes}
    out.interfaces = {k: i for k, i in desired.interfaces.items() if k[0] in nodes and
                      (k[0] not in peers_only or i.peer is None or i.peer[0] in nodes)}
    out.veths = [v for v in desired.veths if v.a[0] in nodes and v.b[0] in nodes]
    out.uplinks = [u for u in desired.uplinks if u.node in nodes]
    out.firewalls = {n: f for n, f in desired.firewalls.items() if n in nodes}
    out.forwarding = {n: f for n, f in desired.forwarding.items() if n in nodes}
    return out


def short_hash(*parts: str, size: int = 9) -> str:
    return sha1(":".join(parts).encode()).hexdigest()[:size]


def bridge_name(lab: str, net: NetworkSpec) -> str:
    """The bridge's name: given, else `vb.LAB.NET` (unique: '.' is in neither name),
    else a hash when that exceeds the kernel's 15 bytes."""
    if net.bridge:
        return net.bridge
    name = f"vb.{lab}.{net.name}"
    return name if len(name) <= 15 else f"vb.{short_hash(lab, net.name, size=12)}"


def port_name(lab: str, network: str, member: str) -> str:
    """The host end of a member's veth: unique across labs, at most 15 bytes."""
    return f"vl{short_hash(lab, network, member)}"


def compile_lab(spec: LabSpec, allocation: Allocation | None = None) -> Desired:
    allocation = allocation or Allocation()
    desired = Desired(lab=spec.name, prefix=spec.prefix, allocation=allocation)
    for name, node in spec.nodes.items():
        desired.nodes[name] = DesiredNode(name, spec.netns_of(name), node.sysctls, node.routes, node.exec, node.run,
                                           node.oneshot, node.ready, node.hostname, node.files, node.private,
                                           node.mounts)
    needs_host = any(HOST in (link.a.node, link.b.node) for link in spec.links) or \
        any(net.host == HOST for net in spec.networks)
    if HOST not in desired.nodes and needs_host:
        desired.nodes[HOST] = DesiredNode(HOST, None)
    for link in spec.links:
        a, b = (link.a.node, link.a.ifname), (link.b.node, link.b.ifname)
        desired.veths.append(DesiredVeth(a, b))
        desired.interfaces[a] = DesiredInterface(a[0], a[1], b, link.mtu, link.up, link.addresses_a,
                                                 shaping=link.shaping_a)
        desired.interfaces[b] = DesiredInterface(b[0], b[1], a, link.mtu, link.up, link.addresses_b,
                                                 shaping=link.shaping_b)
    default_via: dict[str, dict[int, str]] = {}
    for net in spec.networks:
        _compile_network(desired, spec, net, allocation, default_via)
    _default_routes(desired, spec, default_via)
    return desired


def _compile_network(desired: Desired, spec: LabSpec, net: NetworkSpec, alloc: Allocation,
                     default_via: dict[str, dict[int, str]]) -> None:
    v4 = alloc.address.get(net.name, {})
    v6 = alloc.address6.get(net.name, {})
    gateway4 = alloc.gateway.get(net.name)
    gateway6 = alloc.gateway6.get(net.name)
    subnet4 = alloc.subnet.get(net.name)
    subnet6 = alloc.subnet6.get(net.name)
    if net.gateway and not net.internal:
        for version, subnet in ((4, subnet4), (6, subnet6)):
            if subnet:
                via = str(ipaddress.ip_network(subnet).network_address + 1)
                for member in net.members:
                    default_via.setdefault(member.node, {}).setdefault(version, via)
    for member in net.members:
        assert member.ifname is not None
        addresses = tuple(a for a in (v4.get(member.node), v6.get(member.node)) if a)
        key = (member.node, member.ifname)
        if net.driver == "macvlan":
            desired.interfaces[key] = DesiredInterface(member.node, member.ifname, None, net.mtu, True, addresses,
                                                       kind="macvlan", parent=net.parent, parent_node=net.host)
            continue
        port = (net.host, port_name(spec.name, net.name, member.node))
        desired.veths.append(DesiredVeth(key, port))
        desired.interfaces[key] = DesiredInterface(member.node, member.ifname, port, net.mtu, True, addresses)
        desired.interfaces[port] = DesiredInterface(net.host, port[1], key, net.mtu, True, (),
                                                    master=bridge_name(spec.name, net))
    if net.driver != "bridge":
        return
    bridge = bridge_name(spec.name, net)
    gateways = tuple(g for g in (gateway4, gateway6) if g) if not net.internal else ()
    desired.interfaces[(net.host, bridge)] = DesiredInterface(net.host, bridge, None, net.mtu, True, gateways,
                                                              kind="bridge")
    for uplink in net.uplinks:
        desired.uplinks.append(Uplink(net.host, uplink, bridge, net.name))
    publish = tuple((pub, v4[m.node].split("/")[0] if m.node in v4 else "",
                     v6[m.node].split("/")[0] if m.node in v6 else None)
                    for m in net.members for pub in m.publish)
    desired.firewalls.setdefault(net.host, []).append(NatNetwork(
        net.name, bridge, subnet4, subnet6, net.nat, net.internal, net.isolated, publish))
    if net.gateway and not net.internal:
        keys = ["net.ipv4.ip_forward"] if subnet4 else []
        if subnet6:
            keys.append("net.ipv6.conf.all.forwarding")
        desired.forwarding[net.host] = tuple(sorted(set(desired.forwarding.get(net.host, ())) | set(keys)))
    if any(pub.host_ip == "127.0.0.1" or pub.host_ip is None for _m, pub in
           ((m, p) for m in net.members for p in m.publish)):
        # published on 127.0.0.1: DNAT from loopback into the bridge needs route_localnet there
        localnet = f"net.ipv4.conf.{bridge.replace('.', '/')}.route_localnet"
        _add_sysctl(desired, net.host, localnet, "1")
        desired.own_sysctls.add(localnet)


def _add_sysctl(desired: Desired, node: str, key: str, value: str) -> None:
    current = desired.nodes[node]
    if any(k == key for k, _ in current.sysctls):
        return
    desired.nodes[node] = current._replace(sysctls=current.sysctls + ((key, value),))


def _default_routes(desired: Desired, spec: LabSpec, default_via: dict[str, dict[int, str]]) -> None:
    """A member routes default via the first of its networks that has a gateway,
    unless the file gives it a default route of that family itself."""
    for node, by_version in default_via.items():
        current = desired.nodes[node]
        own = {r.family for r in current.routes if r.dst in ("0.0.0.0/0", "::/0")}
        extra = tuple(RouteSpec(dst="0.0.0.0/0" if v == 4 else "::/0", via=via, text=f"default via {via}")
                      for v, via in sorted(by_version.items()) if v not in own)
        if extra:
            desired.nodes[node] = current._replace(routes=current.routes + extra)
