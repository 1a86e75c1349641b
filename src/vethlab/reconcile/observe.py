"""Read what the kernel holds for one lab: its nodes' namespaces, their interfaces,
addresses, routes and the sysctls the file names.  Only reads: never creates a
namespace (sockets are opened on existing /run/netns files, read-only)."""

from __future__ import annotations

from dataclasses import field
from typing import TYPE_CHECKING, Any

from ..deferred import dataclass
from ..kernel.api import Kernel, LinkInfo, Netns, Route
from ..topology import HOST
from .services import ServiceSeen, observe_services

if TYPE_CHECKING:  # `down` imports this module (ServiceSeen) and must not load the compiler
    from ..model.desired import Desired


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
    hosts: str | None = None  # digest of the lab's entries in /etc/netns/NS/hosts
    known: bool = False  # named in the lab's state (so a dead file of that name is the lab's own debris)
    files: str | None = None  # /etc/netns/NS: None absent, else the marker it holds ("" none: not vethlab's)


@dataclass
class Observed:
    nodes: dict[str, ObservedNode] = field(default_factory=dict)
    firewalls: dict[str, list[str] | None] = field(default_factory=dict)  # host node -> chains of our table
    services: list[ServiceSeen] = field(default_factory=list)
    shaping: dict[str, str | None] = field(default_factory=dict)  # "node:ifname" -> root qdisc kind (tbf/netem)
    extras: dict[str, object] = field(default_factory=dict)  # a driver's own observations, by its kind


def observe(kernel: Kernel, desired: Desired, known_nodes: dict[str, Netns], marker: str,
            read_hosts: bool = True, only: set[str] | None = None, routed: set[str] | None = None,
            skip_addresses: set[str] | None = None, skip_routes: set[str] | None = None,
            host_part: bool = False, live: set[str] | None = None) -> Observed:
    """Observe the nodes of `desired` plus `known_nodes` (from the lab's state).

    `only` limits the nodes read (verification after a change re-reads just the
    nodes the plan touched).  Routes are dumped for nodes that have routes in the
    file or, per `routed`, had some when the lab was last built: only vethlab's own
    routes are managed, and a node that never had any cannot have any to remove.

    `host_part`: the host is in scope only as the peer of changed nodes (its part of
    the file unchanged; model.desired.restricted's peers_only): only the host
    interfaces `desired` names are read (host_names), and its routes only when the
    lab has routes or uplinks there.  Its other interfaces, the ports of members
    out of scope, are neither read nor judged.

    `live`: the namespaces mounted, when the caller read them just before and has
    changed nothing since (prepare.py); else mountinfo is read here."""
    wanted: dict[str, Netns] = dict(known_nodes)
    wanted.update({name: node.netns for name, node in desired.nodes.items()})
    if any(HOST in key for key in desired.interfaces) or HOST in known_nodes:
        wanted[HOST] = None
    if only is not None:
        wanted = {name: ns for name, ns in wanted.items() if name in only}
    routed = set(routed or ()) | {name for name, node in desired.nodes.items() if node.routes}
    out = Observed()
    if live is None:
        live = kernel.alive_namespaces()  # one read of mountinfo, not an open per namespace
    alive = {ns: ns in live for ns in wanted.values() if ns is not None and kernel.namespace_exists(ns)}
    kernel.open_namespaces([ns for ns, ok in alive.items() if ok])
    # /etc/netns/NS is read for every node, made or not: an admin's directory of that
    # name is a conflict even where no namespace exists (one listdir when there is none)
    dirs = kernel.node_files_owners([ns for ns in wanted.values() if ns]) if read_hosts else {}
    for name, ns in wanted.items():
        node = ObservedNode(name, ns, known=known_nodes.get(name, "") == ns)
        node.files = dirs.get(ns) if ns else None
        out.nodes[name] = node
        if ns is None:
            node.exists, node.owner = True, marker
        else:
            node.exists = ns in alive
            node.alive = alive.get(ns, True)
            if not node.exists or not node.alive:
                continue
        partial = host_part and ns is None
        links = kernel.links(ns, addresses=not (skip_addresses and name in skip_addresses),
                             names=host_names(desired) if partial else None)
        if ns is not None:
            # the namespace's marker is its lo's alias: read from the same dump
            node.owner = next((link.alias for link in links if link.index == 1), None)
            if node.owner != marker:
                continue
            if read_hosts and node.files == marker:
                node.hosts = kernel.node_hosts(ns)
        node.links = {link.ifname: link for link in links}
        host_routes = ns is None and not (partial and name not in routed and
                                          not any(up.node == name for up in desired.uplinks))
        if (name in routed or host_routes) and not (skip_routes and name in skip_routes):
            node.routes = kernel.routes(ns)
        spec = desired.nodes.get(name)
        keys = [key for key, _value in spec.sysctls] if spec else []
        if name != HOST:
            keys += desired.forwarding.get(name, ())
        for key in keys:
            node.sysctls[key] = kernel.read_sysctl(ns, key)
    return out


def host_names(desired: Desired) -> set[str]:
    """The host interfaces `desired` asks about: its own (bridges, the ends paired
    with nodes in it), their bridges, its uplinks, the parents of macvlans on it."""
    names: set[str] = set()
    for (node, ifname), iface in desired.interfaces.items():
        if node == HOST:
            names.add(ifname)
            if iface.master:
                names.add(iface.master)
        if iface.parent_node == HOST and iface.parent:
            names.add(iface.parent)
    names.update(n for up in desired.uplinks if up.node == HOST for n in (up.ifname, up.bridge))
    return names


def observe_extras(kernel: Kernel, observed: Observed, desired: Desired, table: str,
                   firewall_nodes: dict[str, Netns], services: dict[str, list[list[Any]]],
                   shaped: dict[str, Any] | None = None) -> None:
    """The lab's firewall tables, services and shaped links (from its state), as they are now."""
    keys = set(shaped or {}) | {f"{n}:{i}" for (n, i), iface in desired.interfaces.items() if iface.shaping}
    for key in keys:
        node_name, ifname = key.split(":", 1)
        seen = observed.nodes.get(node_name)
        if seen is not None and ifname in seen.links:
            observed.shaping[key] = kernel.shaping_kind(seen.netns, ifname)
    nodes = dict(firewall_nodes)
    nodes.update({name: desired.nodes[name].netns for name in desired.firewalls})
    for name, ns in nodes.items():
        seen = observed.nodes.get(name)
        if ns is None or (seen is not None and seen.exists and seen.alive and seen.owner is not None):
            observed.firewalls[name] = kernel.firewall_chains(ns, table)
        else:
            observed.firewalls[name] = None
    netns = {name: seen.netns for name, seen in observed.nodes.items()}
    netns.update({name: node.netns for name, node in desired.nodes.items()})
    observed.services = observe_services(kernel, desired.lab, {name: (node.netns, node.run) for name, node in
                                                               desired.nodes.items() if node.run}, services, netns)
