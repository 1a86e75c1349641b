"""Shaping (tc) of an interface, changed in place: only the qdisc, never the link.
tbf for a rate alone, netem for delay, jitter or loss (Shaping.qdisc decides)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..reconcile.actions import Action, ApplyContext, PlanContext
from ..reconcile.journal import Step
from .base import Driver


@dataclass(frozen=True)
class _Shaping(Action):
    KIND = "shaping"
    PHASE = "shaping"
    ifname: str
    shaping: dict[str, Any] | None = field(hash=False, compare=False)

    def apply(self, ctx: ApplyContext) -> Step | None:
        ctx.kernel.set_shaping(self.netns, self.ifname, self.shaping)
        return None

    def verified(self, created: set[str]) -> bool:
        return False  # the qdisc kind says on the next plan


@dataclass(frozen=True)
class SetShaping(_Shaping):
    VERB = "modify"


@dataclass(frozen=True)
class RemoveShaping(_Shaping):
    VERB = "delete"


class ShapingDriver(Driver):
    kind = "shaping"

    def plan(self, ctx: PlanContext) -> None:
        memory, observed = ctx.memory, ctx.observed
        for (node, ifname), iface in ctx.desired.interfaces.items():
            key, ns = f"{node}:{ifname}", ctx.desired.netns(node)
            if iface.shaping:
                want = iface.shaping.to_json()
                if memory.shaped.get(key) == want and observed.shaping.get(key) == iface.shaping.qdisc:
                    continue
                ctx.plan.add(SetShaping(key, f"{iface.shaping.qdisc}: {iface.shaping.describe()}", node, ns, ifname,
                                        dict(want)))
            elif key in memory.shaped and observed.shaping.get(key):
                ctx.plan.add(RemoveShaping(key, "shaping is no longer in the file", node, ns, ifname, None))


DRIVER = ShapingDriver()
