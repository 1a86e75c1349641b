"""What a lab looks like in the kernel right now.

One reader of the lab's interfaces (`read_links`) serves them all: `status` and the
live page (link ends with their peers, addresses, states, counters: `interfaces`,
`lab_status`), and `ping`, `pingall` and `perf` (every node's addresses:
`node_addresses`).
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import field
from typing import Any

from ..deferred import dataclass
from ..errors import UsageError
from ..kernel.api import Kernel, LinkInfo
from ..state import store


@dataclass
class InterfaceView:
    name: str
    node: str
    peer: str | None
    addresses: list[str]
    mtu: int
    admin_state: str
    operstate: str
    carrier: bool
    stats: dict[str, int] = field(default_factory=dict)
    shaping: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def lab_state(lab: str) -> store.LabState:
    state = store.load(lab)
    if state is None:
        raise UsageError(f"lab {lab} does not exist")
    return state


def peers(state: store.LabState) -> dict[tuple[str, str], tuple[str, str]]:
    out = {}
    for a_node, a_if, b_node, b_if in state.links:
        out[(a_node, a_if)] = (b_node, b_if)
        out[(b_node, b_if)] = (a_node, a_if)
    return out


def read_links(kernel: Kernel, state: store.LabState, stats: bool = False,
               ) -> tuple[dict[str, bool], dict[str, list[LinkInfo]]]:
    """(node -> its namespace is alive, node -> every interface in it) for every node
    of the state; the host's interfaces are all of the host's (callers keep theirs).
    The live namespaces' sockets are opened together first."""
    mounted = kernel.alive_namespaces()
    live = [ns for ns in state.nodes.values() if ns and ns in mounted]
    kernel.open_namespaces(live)
    exists: dict[str, bool] = {}
    links: dict[str, list[LinkInfo]] = {}
    for node, ns in state.nodes.items():
        exists[node] = ns is None or ns in live
        if exists[node]:
            links[node] = kernel.links(ns, stats=stats)
    return exists, links


def interfaces(kernel: Kernel, state: store.LabState) -> tuple[dict[str, bool], list[InterfaceView]]:
    """(node -> exists, interface views) for every node and link end of the lab."""
    peer_of = peers(state)
    exists, links = read_links(kernel, state, stats=True)
    views = []
    for node, found in links.items():
        for link in found:
            if (node, link.ifname) not in peer_of:
                continue
            view = _view(node, link, peer_of[(node, link.ifname)])
            shaped = state.shaped.get(f"{node}:{link.ifname}")
            if shaped:
                from ..topology.shaping import Shaping

                view.shaping = Shaping(**shaped).describe()
            views.append(view)
    return exists, views


def _view(node: str, link: LinkInfo, peer: tuple[str, str]) -> InterfaceView:
    return InterfaceView(name=link.ifname, node=node, peer=f"{peer[0]}:{peer[1]}", addresses=link.addresses,
                         mtu=link.mtu, admin_state="up" if link.admin_up else "down",
                         operstate=link.operstate, carrier=link.carrier, stats=link.stats)


def lab_status(name: str, kernel: Kernel | None = None, nodes: list[str] | None = None) -> dict[str, Any]:
    """Nodes and, per interface: node, peer (node:ifname), addresses, MTU, admin
    state, operational state, carrier and counters; the services and their logs.
    `nodes`: only those (the live page asks for the nodes on screen)."""
    from ..kernel import open_kernel
    from ..reconcile.services import Record, log_name

    state = lab_state(name)
    if nodes:
        unknown = [n for n in nodes if n not in state.nodes]
        if unknown:
            raise UsageError(f"lab {name} has no node {unknown[0]}")
        state.nodes = {n: state.nodes[n] for n in nodes}
        state.services = {n: items for n, items in state.services.items() if n in state.nodes}
    def log(node: str, index: int, label: str) -> str:
        return os.path.join(store.lab_dir(name), "logs", log_name(label) if label else f"{node}-{index}.log")

    own = kernel is None
    kernel = kernel or open_kernel()
    try:
        exists, views = interfaces(kernel, state)
        found = kernel.lab_processes([ns for node, ns in state.nodes.items() if ns and node in state.services], [])
        labelled = {label for procs in found.values() for _pid, _started, label in procs if label}
        services = [{"node": node, "command": " ".join(rec.argv), "pid": rec.pid,
                     "state": "running" if kernel.service_alive(rec.pid, rec.started) or rec.label in labelled else
                     "done" if rec.done else "exited", "log": log(node, i, rec.label)}
                    for node, items in state.services.items()
                    for i, rec in enumerate(Record.of(item) for item in items)]
    finally:
        if own:
            kernel.close()
    from ..cni.labjoin import joined  # containers a runtime attached through the CNI plugin (docs/cni.md)

    joined_nodes, joined_interfaces = joined(name) if not nodes else ([], [])
    return {
        "lab": name, "file": state.file, "complete": state.complete,
        "nodes": [{"name": n, "netns": ns, "exists": exists.get(n, False)} for n, ns in state.nodes.items()]
        + joined_nodes,
        "interfaces": [v.to_json() for v in views] + joined_interfaces,
        "services": services,
    }


def node_addresses(kernel: Kernel, state: store.LabState) -> dict[str, list[tuple[str, str]]]:
    """node -> [(ifname, cidr)] for every node of the lab whose namespace lives: in a
    lab node every interface's but lo's, in the host only the lab's link ends' (not
    bridges, not the admin's)."""
    ends = set(peers(state))
    _exists, links = read_links(kernel, state)
    out: dict[str, list[tuple[str, str]]] = {}
    for node, found in links.items():
        ns = state.nodes[node]
        out[node] = [(link.ifname, cidr) for link in found
                     if (node, link.ifname) in ends or (ns is not None and link.ifname != "lo")
                     for cidr in link.addresses if not ipaddress.ip_interface(cidr).is_loopback]
    return out


def pick_address(src: list[tuple[str, str]], dst: list[tuple[str, str]]) -> str | None:
    """DST's address on a subnet it shares with SRC, else DST's first address."""
    for _, theirs in dst:
        net = ipaddress.ip_interface(theirs).network
        if any(ipaddress.ip_interface(mine).network == net for _, mine in src):
            return str(ipaddress.ip_interface(theirs).ip)
    return str(ipaddress.ip_interface(dst[0][1]).ip) if dst else None
