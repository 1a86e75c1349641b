"""Macvlan networks: each member sits directly on a parent interface's LAN, no
bridge.  The parent must exist in its node; the member is made whole by vethlab."""

from __future__ import annotations

from ..deferred import dataclass
from ..kernel.api import Netns
from ..model.desired import DesiredInterface
from ..reconcile.actions import Action, ApplyContext, PlanContext
from ..reconcile.journal import Step, inside
from ..topology.schema import HOST
from . import link
from .base import Driver, ep


@dataclass(frozen=True)
class CreateMacvlan(Action):
    VERB = "create"
    KIND = "macvlan"
    PHASE = "veth"
    ACKED = True
    ifname: str
    parent: str | None
    mtu: int | None
    parent_netns: Netns

    def verified(self, created: set[str]) -> bool:
        return False  # made whole by this run in acknowledged requests, wherever it is

    def apply(self, ctx: ApplyContext) -> Step | None:
        k, ns, ifname = ctx.kernel, self.netns, self.ifname
        k.create_macvlan(self.parent_netns, self.parent or "", ns, ifname, self.mtu, ctx.marker)
        return Step(self.target, lambda: k.delete_link(ns, ifname), dies_with=inside(ns))


class MacvlanDriver(Driver):
    kind = "macvlan"

    def conflicts(self, ctx: PlanContext) -> list[str]:
        problems = []
        for key, want in ctx.desired.interfaces.items():
            if want.kind == "macvlan" and want.parent_node is not None:
                parent_node = ctx.observed.nodes.get(want.parent_node)
                if parent_node is not None and parent_node.exists and want.parent not in parent_node.links:
                    problems.append(f"macvlan parent {want.parent} of {ep(key)} does not exist in node "
                                    f"{want.parent_node}")
        return problems

    def plan(self, ctx: PlanContext) -> None:
        def create(want: DesiredInterface) -> CreateMacvlan:
            return CreateMacvlan(ep((want.node, want.ifname)), f"member on {want.parent}'s LAN is new", want.node,
                                 ctx.desired.netns(want.node), want.ifname, want.parent, want.mtu,
                                 ctx.desired.netns(want.parent_node or HOST))

        link.plan_made(ctx, "macvlan", create)


DRIVER = MacvlanDriver()
