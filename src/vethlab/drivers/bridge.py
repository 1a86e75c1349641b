"""Bridge networks: the Linux bridge (Docker's bridge driver) and the uplinks, the
host node's existing interfaces enslaved to it (L2 to a real LAN) and released as
they were.  The members' veth pairs are the veth driver's; the bridge's firewall
the firewall driver's."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..deferred import dataclass
from ..kernel.api import Links
from ..model.desired import DesiredInterface
from ..reconcile.actions import Action, ApplyContext, PlanContext, SelfChecked
from ..reconcile.journal import Step, inside
from . import link
from .base import Driver, ep

if TYPE_CHECKING:
    from ..state.store import LabState


@dataclass(frozen=True)
class CreateBridge(Action):
    VERB = "create"
    KIND = "bridge"
    PHASE = "bridge"
    ACKED = True
    ifname: str
    mtu: int | None

    def verified(self, created: set[str]) -> bool:
        return False  # made whole by this run in acknowledged requests, wherever it is

    def apply(self, ctx: ApplyContext) -> Step | None:
        k, ns, ifname = ctx.kernel, self.netns, self.ifname
        k.create_bridge(ns, ifname, self.mtu, ctx.marker)
        return Step(self.target, lambda: k.delete_link(ns, ifname), dies_with=inside(ns), detaches=True,
                    ends=((ns, ifname),))


@dataclass(frozen=True)
class _UplinkAction(SelfChecked):  # the next plan compares master and state
    VERB = "modify"
    KIND = "uplink"
    ifname: str
    was_up: bool  # before the lab took it

    def _release(self, kernel: Links) -> None:
        """Out of the bridge, and up or down as it was before the lab took it."""
        kernel.set_link(self.netns, self.ifname, master="", up=self.was_up)


@dataclass(frozen=True)
class EnslaveUplink(_UplinkAction):
    PHASE = "uplink"
    bridge: str

    def apply(self, ctx: ApplyContext) -> Step | None:
        k = ctx.kernel
        k.set_link(self.netns, self.ifname, master=self.bridge, up=True)
        return Step(self.target, lambda: self._release(k))

    def intend(self, state: LabState) -> None:
        """How it was, recorded before it changes: `down` restores it."""
        if self.target not in state.uplinks:
            state.uplinks[self.target] = {"up": self.was_up, "netns": self.netns}


@dataclass(frozen=True)
class ReleaseUplink(_UplinkAction):
    PHASE = "delete-early"
    release: bool

    def apply(self, ctx: ApplyContext) -> Step | None:
        self._release(ctx.kernel)
        return None


class BridgeDriver(Driver):
    kind = "bridge"

    def plan(self, ctx: PlanContext) -> None:
        def create(want: DesiredInterface) -> CreateBridge:
            return CreateBridge(ep((want.node, want.ifname)), "network bridge is new", want.node,
                                ctx.desired.netns(want.node), want.ifname, want.mtu)

        link.plan_made(ctx, "bridge", create)


class UplinkDriver(Driver):
    """Planned after every interface is made: the bridge must exist to take ports."""

    kind = "uplink"

    def conflicts(self, ctx: PlanContext) -> list[str]:
        problems = []
        for up in ctx.desired.uplinks:
            node = ctx.observed.nodes.get(up.node)
            if node is None or not node.exists:
                continue
            have = node.links.get(up.ifname)
            where = "the host namespace" if node.netns is None else f"node {up.node}"
            if have is None:
                problems.append(f"uplink {up.ifname} of network {up.network} does not exist in {where}")
                continue
            bridge = node.links.get(up.bridge)
            if have.master is not None and (bridge is None or have.master != bridge.index):
                problems.append(f"uplink {up.ifname} is already a port of another bridge")
            if have.addresses:
                problems.append(f"uplink {up.ifname} carries addresses ({', '.join(have.addresses)}); enslaving it "
                                "would cut them off — move them to the bridge yourself, or pick an interface "
                                "without addresses")
            if any(r.dev == up.ifname and r.dst in ("0.0.0.0/0", "::/0") for r in node.routes):
                problems.append(f"uplink {up.ifname} carries the default route of {where}")
        return problems

    def plan(self, ctx: PlanContext) -> None:
        wanted = set()
        for up in ctx.desired.uplinks:
            wanted.add(f"{up.node}:{up.ifname}")
            node = ctx.observed.nodes.get(up.node)
            have = node.links.get(up.ifname) if node else None
            bridge = node.links.get(up.bridge) if node else None
            if have is not None and bridge is not None and have.master == bridge.index and have.admin_up:
                continue
            ctx.plan.add(EnslaveUplink(f"{up.node}:{up.ifname}", f"enslaved to bridge {up.bridge} (network "
                                       f"{up.network}); released as it was at down", up.node,
                                       ctx.desired.netns(up.node), up.ifname,
                                       have.admin_up if have is not None else False, up.bridge))
        for key, original in ctx.memory.uplinks.items():
            if key not in wanted:
                node_name, ifname = key.split(":", 1)
                ctx.plan.add(ReleaseUplink(key, "no longer an uplink in the file: released as it was", node_name,
                                           original.get("netns"), ifname, original.get("up", False), True))


DRIVER = BridgeDriver()
UPLINKS = UplinkDriver()
