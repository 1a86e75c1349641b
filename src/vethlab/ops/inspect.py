"""What a lab looks like in the kernel right now: `status` and the link-fault verbs
share this view (interfaces with their peers, addresses, states, counters)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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


def interfaces(kernel: Kernel, state: store.LabState) -> tuple[dict[str, bool], list[InterfaceView]]:
    """(node -> exists, interface views) for every node and link end of the lab."""
    peer_of = peers(state)
    exists: dict[str, bool] = {}
    views = []
    opener = getattr(kernel, "open_namespaces", None)
    mounted = kernel.alive_namespaces()
    live = [ns for ns in state.nodes.values() if ns and ns in mounted]
    if opener:
        opener(live)
    for node, ns in state.nodes.items():
        exists[node] = ns is None or ns in live
        if not exists[node]:
            continue
        for link in kernel.links(ns, stats=True):
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
