"""Veth pairs: a link of the file, or a network member's cable to its bridge.  An
intact pair is changed in place; anything else of those names is replaced and the
pair (re)built, each end marked in the same request that creates it."""

from __future__ import annotations

from ..deferred import dataclass
from ..kernel.api import Netns
from ..reconcile.actions import Action, ApplyContext, PlanContext
from ..reconcile.journal import Step
from . import link
from .base import Driver, ep, link_of


@dataclass(frozen=True)
class CreateVeth(Action):
    VERB = "create"
    KIND = "veth"
    PHASE = "veth"
    ACKED = True
    a_netns: Netns
    a_ifname: str
    b_netns: Netns
    b_ifname: str
    mtu: int | None

    def verified(self, created: set[str]) -> bool:
        return False  # made whole by this run in acknowledged requests, wherever it is

    def apply(self, ctx: ApplyContext) -> Step | None:
        k, ns, ifname = ctx.kernel, self.a_netns, self.a_ifname
        k.create_veth(self.a_netns, self.a_ifname, self.b_netns, self.b_ifname, self.mtu, ctx.marker)
        # the pair goes when either end's namespace does; an end in a namespace that
        # stays (the host's) is there until the kernel has destroyed the other
        ends = ((self.a_netns, self.a_ifname), (self.b_netns, self.b_ifname))
        return Step(self.target, lambda: k.delete_link(ns, ifname), dies_with=tuple(n for n, _ in ends if n),
                    ends=ends)


class VethDriver(Driver):
    kind = "veth"

    def plan(self, ctx: PlanContext) -> None:
        desired = ctx.desired
        for veth in desired.veths:
            a, b = desired.interfaces[veth.a], desired.interfaces[veth.b]
            have_a, have_b = link_of(ctx.observed, veth.a), link_of(ctx.observed, veth.b)
            if (have_a is not None and have_b is not None and have_a.kind == "veth" and have_b.kind == "veth"
                    and have_a.peer_index == have_b.index and have_b.peer_index == have_a.index):
                link.plan_in_place(ctx, a, have_a)
                link.plan_in_place(ctx, b, have_b)
                continue
            rebuilt = False
            for key, have in ((veth.a, have_a), (veth.b, have_b)):
                if have is not None:
                    rebuilt = True
                    other = veth.b if key == veth.a else veth.a
                    link.replace(ctx, key, f"it is not the veth peer of {ep(other)} the file asks for")
            ctx.plan.add(CreateVeth(f"{ep(veth.a)} <-> {ep(veth.b)}",
                                    "link is rebuilt with the right peer" if rebuilt else "link is new", veth.a[0],
                                    desired.netns(veth.a[0]), desired.netns(veth.a[0]), veth.a[1],
                                    desired.netns(veth.b[0]), veth.b[1], a.mtu))
            for end in (a, b):
                link.plan_new(ctx, end, "the link is new")


DRIVER = VethDriver()
