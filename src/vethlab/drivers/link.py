"""What every interface vethlab makes shares, whatever its kind (veth end, bridge,
macvlan): its settings changed in place (master, MTU, admin state, the lab's
marker in its alias, its addresses), its deletion, the interfaces the file no
longer has, and the foreign interface that takes a name the file wants."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from typing import Any

from ..deferred import dataclass
from ..kernel.api import LinkInfo, Netns
from ..model.desired import DesiredInterface
from ..ownership import lab_of
from ..reconcile.actions import Action, ApplyContext, Phase, PlanContext, hidden
from ..reconcile.journal import Step, indexes, wait_vanished
from ..reconcile.observe import Observed
from .address import AddAddress, DeleteAddress
from .base import Driver, ep, link_of


@dataclass(frozen=True)
class SetInterface(Action):
    VERB = "modify"
    KIND = "interface"
    PHASE = "interface"
    ACKED = True  # acknowledged one by one: not re-read in a node this run made
    ifname: str
    mtu: int | None = None
    up: bool | None = None
    alias: str | None = None
    master: str | None = None
    new: bool = hidden()  # on an interface this plan makes: acknowledged there too, wherever it is

    def verified(self, created: set[str]) -> bool:
        return not self.new and super().verified(created)

    def params(self) -> dict[str, Any]:
        return {key: value for key, value in (("ifname", self.ifname), ("up", self.up), ("alias", self.alias),
                                              ("master", self.master), ("mtu", self.mtu)) if value is not None}

    def apply(self, ctx: ApplyContext) -> Step | None:
        ctx.kernel.set_link(self.netns, self.ifname, mtu=self.mtu, up=self.up, alias=self.alias, master=self.master)
        return None


@dataclass(frozen=True)
class DeleteInterface(Action):
    VERB = "delete"
    KIND = "interface"
    ifname: str
    # nodes of the veth peers: a node deleted in the same phase takes this end along
    # (the executor waits for it); None for a delete that frees a name early
    peers: tuple[str, ...] | None = None
    late: bool = hidden()

    def params(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ifname": self.ifname}
        if self.peers is not None:
            out["peers"] = list(self.peers)
        return out

    @property
    def phase(self) -> Phase:
        return "delete-late" if self.late else "delete-early"

    def apply(self, ctx: ApplyContext) -> Step | None:
        ctx.kernel.delete_link(self.netns, self.ifname)
        return None

    @classmethod
    def apply_all(cls, actions: Sequence[Action], ctx: ApplyContext) -> None:
        """Ends whose peer's namespace this run deleted are destroyed by the kernel in
        one batch: wait (bounded) for them rather than delete them one by one (one
        RCU grace period each); delete the rest, and those still there."""
        dying = [a for a in actions if isinstance(a, DeleteInterface) and ctx.gone & set(a.peers or ())]
        left = wait_vanished(ctx.kernel, indexes(ctx.kernel, {(a.netns, a.ifname) for a in dying}))
        waited = {id(a) for a in dying if (a.netns, a.ifname) not in left}
        super().apply_all([a for a in actions if id(a) not in waited], ctx)


def replace(ctx: PlanContext, key: tuple[str, str], reason: str) -> None:
    """Delete what holds the name before the right object is made."""
    ctx.plan.add(DeleteInterface(ep(key), reason, key[0], ctx.desired.netns(key[0]), key[1]))


def plan_new(ctx: PlanContext, end: DesiredInterface, why: str) -> None:
    """A new interface: its state, the lab's marker, its master, its addresses.  The
    interface is made by this plan, whole: what the kernel acknowledges here needs
    no re-read after apply (Action.verified), whichever node it is in."""
    reason = f"set {'up' if end.up else 'down'}, mark as this lab's"
    if end.master:
        reason += f", port of bridge {end.master}"
    ctx.plan.add(SetInterface(ep((end.node, end.ifname)), reason, end.node, ctx.desired.netns(end.node), end.ifname,
                              up=end.up, alias=ctx.marker, master=end.master, new=True))
    for cidr in end.addresses:
        ctx.plan.add(AddAddress.of(ctx, end, cidr, why, new=True))


def plan_in_place(ctx: PlanContext, want: DesiredInterface, have: LinkInfo) -> None:
    """An interface that is there: change what differs, in place."""
    plan, target, ns = ctx.plan, ep((want.node, want.ifname)), ctx.desired.netns(want.node)
    if want.master:
        node = ctx.observed.nodes.get(want.node)
        bridge = node.links.get(want.master) if node else None
        if bridge is None or have.master != bridge.index:
            plan.add(SetInterface(target, f"port of bridge {want.master}", want.node, ns, want.ifname,
                                  master=want.master))
    if want.mtu is not None and have.mtu != want.mtu:
        plan.add(SetInterface(target, f"mtu {have.mtu} -> {want.mtu}", want.node, ns, want.ifname, mtu=want.mtu))
    if have.admin_up != want.up:
        plan.add(SetInterface(target, f"admin state {'up' if have.admin_up else 'down'} -> "
                              f"{'up' if want.up else 'down'}", want.node, ns, want.ifname, up=want.up))
    if have.alias != ctx.marker:
        plan.add(SetInterface(target, "mark as this lab's", want.node, ns, want.ifname, alias=ctx.marker))
    present = set(have.addresses)
    if present == set(want.addresses):
        return  # written as the kernel lists them (the common case): no need to parse them
    wanted = {str(ipaddress.ip_interface(a)) for a in want.addresses}
    for cidr in want.addresses:
        if str(ipaddress.ip_interface(cidr)) not in present:
            plan.add(AddAddress.of(ctx, want, cidr, f"address {cidr} added to {target}"))
    for cidr in sorted(present - wanted):
        plan.add(DeleteAddress.of(ctx, want, cidr, f"address {cidr} removed from {target}"))


def peers_of(observed: Observed, link: LinkInfo) -> set[tuple[str, int]]:
    """(node, ifindex) of the interfaces that are this veth's peer."""
    return {(name, other.index) for name, node in observed.nodes.items() for other in node.links.values()
            if other.peer_index == link.index and link.peer_index == other.index}


class LinkDriver(Driver):
    """Interfaces as such: foreign names in the way, and the lab's interfaces the
    file no longer has (one action per pair)."""

    kind = "interface"

    def conflicts(self, ctx: PlanContext) -> list[str]:
        problems = []
        for key in ctx.desired.interfaces:
            seen = ctx.observed.nodes.get(key[0])
            # A lab's own namespace and everything in it are the lab's (down removes them
            # all); only in a namespace vethlab does not own can a name be taken.
            if seen is None or seen.owner != ctx.marker or seen.netns is not None:
                continue
            have = seen.links.get(key[1])
            if have is not None and have.alias != ctx.marker:
                other = lab_of(have.alias)
                where = _where(seen.netns)
                problems.append(f"interface {key[1]} already exists in {where} and belongs to lab {other}" if other
                                else f"interface {key[1]} already exists in {where} and is not vethlab's")
        return problems

    def plan(self, ctx: PlanContext) -> None:
        handled: set[tuple[str, int]] = set()
        for name, seen in ctx.observed.nodes.items():
            if seen.owner != ctx.marker or not seen.exists or (name not in ctx.desired.nodes
                                                               and seen.netns is not None):
                continue
            for ifname, link in seen.links.items():
                if ifname == "lo" or link.alias != ctx.marker or (name, ifname) in ctx.desired.interfaces:
                    continue
                if (name, link.index) in handled:
                    continue
                handled.add((name, link.index))
                peers = peers_of(ctx.observed, link)
                handled.update(peers)
                ctx.plan.add(DeleteInterface(f"{name}:{ifname}", "link is no longer in the file", name, seen.netns,
                                             ifname, tuple(sorted({node for node, _ in peers})), late=True))


def _where(ns: Netns) -> str:
    return "the host namespace" if ns is None else f"namespace {ns}"


DRIVER = LinkDriver()


def plan_made(ctx: PlanContext, kind: str, create: Callable[[DesiredInterface], Action]) -> None:
    """Interfaces of one kind that vethlab makes whole (bridges, macvlans): changed in
    place when there, else (re)made; something else of that name is replaced."""
    for key, want in ctx.desired.interfaces.items():
        if want.kind != kind:
            continue
        have = link_of(ctx.observed, key)
        if have is not None and have.kind == kind:
            plan_in_place(ctx, want, have)
            continue
        if have is not None:
            replace(ctx, key, f"it is not the {kind} the file asks for")
        ctx.plan.add(create(want))
        plan_new(ctx, want, f"the {kind} is new")
