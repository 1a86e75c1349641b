"""VXLAN interfaces: links across machines, and the ports that join a spanning
network's bridges (SPEC §7; model/placement.py decides what each machine has).

A VXLAN interface is made whole by vethlab, like a bridge: kept and changed in
place (MTU, state, addresses, master) while its VNI, local and remote addresses
and port are what the file asks; otherwise replaced.  A network port's flood
entries (all-zero MAC, one per other machine) are added and removed one by one.
"""

from __future__ import annotations

from dataclasses import field

from ..deferred import dataclass
from ..errors import VethlabError
from ..kernel.api import Kernel, Netns
from ..model.desired import Desired, DesiredInterface, IfKey, Vxlan
from ..ownership import lab_of
from ..reconcile.actions import Action, ApplyContext, PlanContext
from ..reconcile.journal import Step, inside
from ..reconcile.observe import Observed
from . import link
from .base import Driver, ep, link_of, reversible


@dataclass(frozen=True)
class CreateVxlan(Action):
    VERB = "create"
    KIND = "vxlan"
    PHASE = "veth"
    ifname: str
    vni: int
    local: str
    remote: str | None
    dev: str | None
    port: int
    mtu: int | None

    def apply(self, ctx: ApplyContext) -> Step | None:
        from ..model.placement import mac_of  # placement is loaded for labs across machines only

        k, ns, ifname = ctx.kernel, self.netns, self.ifname
        # the same MAC every time it is built: a rebuilt end (a rebooted machine) is not
        # a stranger to its peer's neighbour cache.  The machine's own address is part of
        # it: a spanning network's port has the same node ("host") and name on every
        # machine, and a bridge takes its lowest port's MAC, so one machine's gateway sent
        # from the MAC the others' own ports have, and their bridges dropped its frames
        k.create_vxlan(ns, ifname, self.vni, self.local, self.remote, port=self.port, dev=self.dev, mtu=self.mtu,
                       marker=ctx.marker, mac=mac_of(ctx.lab, self.node, ifname, self.local))
        return Step(self.target, lambda: k.delete_link(ns, ifname), dies_with=inside(ns))


@dataclass(frozen=True)
class AddFlood(Action):
    VERB = "create"
    KIND = "flood"
    PHASE = "interface"
    ifname: str
    dst: str  # the far machine's underlay address

    def apply(self, ctx: ApplyContext) -> Step | None:
        return reversible(self, ctx.kernel.fdb_append, ctx.kernel.fdb_delete, self.ifname, self.dst, on=self.ifname)


@dataclass(frozen=True)
class DeleteFlood(Action):
    VERB = "delete"
    KIND = "flood"
    PHASE = "delete-early"
    ifname: str
    dst: str

    def apply(self, ctx: ApplyContext) -> Step | None:
        ctx.kernel.fdb_delete(self.netns, self.ifname, self.dst)
        return None


@dataclass
class Seen:
    """What the kernel holds of the lab's VXLAN interfaces."""

    info: dict[IfKey, dict[str, object] | None]
    floods: dict[IfKey, list[str]]
    # every VXLAN device on this machine: (vni, port, IPv6?) -> (namespace, ifname, alias).
    # The kernel refuses a second device with the same VNI and port (and underlay family)
    # among those whose socket is in one namespace -- the machine's, for every lab
    taken: dict[tuple[int, int, bool], tuple[Netns, str, str | None]] = field(default_factory=dict)


def matches(want: Vxlan, info: dict[str, object] | None) -> bool:
    return info is not None and (info.get("vni"), info.get("local"), info.get("remote"), info.get("port")) == (
        want.vni, want.local, want.remote, want.port)


class VxlanDriver(Driver):
    kind = "vxlan"

    def observe(self, kernel: Kernel, desired: Desired, observed: Observed) -> None:
        seen = Seen({}, {})
        for key, want in desired.interfaces.items():
            have = link_of(observed, key)
            if want.kind != "vxlan" or want.vxlan is None or have is None or have.kind != "vxlan":
                continue
            ns = desired.netns(key[0])
            seen.info[key] = kernel.vxlan_info(ns, key[1])
            if want.vxlan.remote is None:
                seen.floods[key] = kernel.fdb_floods(ns, key[1])
        if any(want.kind == "vxlan" for want in desired.interfaces.values()):
            seen.taken = _taken(kernel)
        observed.extras[self.kind] = seen

    def conflicts(self, ctx: PlanContext) -> list[str]:
        """A VNI and port another lab (or anyone) already uses on this machine: the
        kernel would refuse the device half-way through `up` ("VNI already exists")."""
        seen = ctx.observed.extras.get(self.kind)
        if not isinstance(seen, Seen):
            return []
        # a lab's own namespaces and all in them are the lab's: a tunnel an interrupted `up`
        # made before marking it is replaced by the plan, not a conflict
        own = {seen.netns for seen in ctx.observed.nodes.values() if seen.owner == ctx.marker and seen.netns}
        problems = []
        for key, want in ctx.desired.interfaces.items():
            v = want.vxlan
            if want.kind != "vxlan" or v is None:
                continue
            holder = seen.taken.get((v.vni, v.port, ":" in v.local))
            if holder is None or holder[2] == ctx.marker or holder[0] in own:
                continue
            ns, ifname, alias = holder
            where = "the host namespace" if ns is None else f"namespace {ns}"
            other = lab_of(alias)
            whose = f"of lab {other}" if other else "not vethlab's"
            problems.append(f"{ep(key)}: VNI {v.vni} (UDP port {v.port}) is already used on this machine by "
                            f"interface {ifname} in {where}, {whose}: give the link another 'vni:'")
        return problems

    def plan(self, ctx: PlanContext) -> None:
        seen = ctx.observed.extras.get(self.kind)
        if not isinstance(seen, Seen):
            seen = Seen({}, {})
        for key, want in ctx.desired.interfaces.items():
            if want.kind != "vxlan" or want.vxlan is None:
                continue
            have = link_of(ctx.observed, key)
            ns = ctx.desired.netns(key[0])
            if have is not None and have.kind == "vxlan" and matches(want.vxlan, seen.info.get(key)):
                link.plan_in_place(ctx, want, have)
                present = seen.floods.get(key, [])
                for dst in want.vxlan.floods:
                    if dst not in present:
                        ctx.plan.add(AddFlood(f"{ep(key)} -> {dst}", f"flood to machine {dst}", key[0], ns,
                                              key[1], dst))
                for dst in present:
                    if dst not in want.vxlan.floods:
                        ctx.plan.add(DeleteFlood(f"{ep(key)} -> {dst}", "no member of the network is there any more",
                                                 key[0], ns, key[1], dst))
                continue
            if have is not None:
                link.replace(ctx, key, "its VNI, addresses or port differ from the file" if have.kind == "vxlan"
                             else "it is not the vxlan the file asks for")
            ctx.plan.add(self._create(ctx, want, ns))
            link.plan_new(ctx, want, "the link across machines is new")
            for dst in want.vxlan.floods:
                ctx.plan.add(AddFlood(f"{ep(key)} -> {dst}", f"flood to machine {dst}", key[0], ns, key[1], dst))

    @staticmethod
    def _create(ctx: PlanContext, want: DesiredInterface, ns: Netns) -> CreateVxlan:
        v = want.vxlan
        assert v is not None
        where = f"to {v.remote}" if v.remote else f"flooding to {', '.join(v.floods)}"
        return CreateVxlan(ep((want.node, want.ifname)), f"across machines: VNI {v.vni} {where}", want.node, ns,
                           want.ifname, v.vni, v.local, v.remote, v.dev, v.port, want.mtu)


def _taken(kernel: Kernel) -> dict[tuple[int, int, bool], tuple[Netns, str, str | None]]:
    """The VNIs in use on this machine, in its own namespace and every named one."""
    out: dict[tuple[int, int, bool], tuple[Netns, str, str | None]] = {}
    spaces: list[Netns] = [None, *kernel.list_namespaces()]
    for ns in spaces:
        try:
            links = kernel.links(ns, addresses=False)
        except VethlabError:  # gone meanwhile, or not a namespace we may enter: nothing of ours there
            continue
        for have in links:
            if have.kind != "vxlan":
                continue
            info = kernel.vxlan_info(ns, have.ifname)
            if info is None:
                continue
            local = str(info.get("local") or info.get("remote") or "")
            vni, port = info.get("vni"), info.get("port")
            if isinstance(vni, int) and isinstance(port, int):
                out.setdefault((vni, port, ":" in local), (ns, have.ifname, have.alias))
    return out


DRIVER = VxlanDriver()
