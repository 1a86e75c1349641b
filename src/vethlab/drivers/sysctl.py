"""Sysctls of a node, and IP forwarding where a network routes: a sysctl in a lab
node; in the host, a key shared by all labs (reconcile/forwarding.py's ledger),
restored when the last lab needing it goes down."""

from __future__ import annotations

from ..deferred import dataclass
from ..reconcile import forwarding
from ..reconcile.actions import Action, ApplyContext, PlanContext, SelfChecked
from ..reconcile.journal import Step, inside
from ..topology.schema import HOST
from .base import Driver


@dataclass(frozen=True)
class SetSysctl(Action):
    VERB = "modify"
    KIND = "sysctl"
    PHASE = "sysctl"
    key: str
    value: str
    previous: str | None

    def apply(self, ctx: ApplyContext) -> Step | None:
        k, ns, key, previous = ctx.kernel, self.netns, self.key, self.previous
        k.write_sysctl(ns, key, self.value)
        if previous is None:
            return None
        return Step(self.target, lambda: k.write_sysctl(ns, key, previous), dies_with=inside(ns))


@dataclass(frozen=True)
class HoldForwarding(SelfChecked):  # the ledger says on the next plan
    VERB = "modify"
    KIND = "forwarding"
    PHASE = "sysctl"
    key: str

    def apply(self, ctx: ApplyContext) -> Step | None:
        forwarding.hold(ctx.kernel, ctx.lab, self.key)
        return None


class SysctlDriver(Driver):
    kind = "sysctl"

    def plan(self, ctx: PlanContext) -> None:
        for name, node in ctx.desired.nodes.items():
            seen = ctx.observed.nodes.get(name)
            for key, value in node.sysctls:
                current = seen.sysctls.get(key) if seen else None
                if name in ctx.created or current is None or current.split() != value.split():
                    ctx.plan.add(SetSysctl(f"{name}: {key}", f"{current or 'unset'} -> {value}", name, node.netns,
                                           key, value, current))


class ForwardingDriver(Driver):
    kind = "forwarding"

    def plan(self, ctx: PlanContext) -> None:
        for node, keys in ctx.desired.forwarding.items():
            seen = ctx.observed.nodes.get(node)
            for key in keys:
                if node == HOST and key not in ctx.memory.forwarding:
                    ctx.plan.add(HoldForwarding(f"host: {key}", "a network routes through the host", node, None,
                                                key))
                elif node != HOST and (seen is None or seen.sysctls.get(key) != "1"):
                    ctx.plan.add(SetSysctl(f"{node}: {key}", "a network routes through this node", node,
                                           ctx.desired.netns(node), key, "1", None))


DRIVER = SysctlDriver()
FORWARDING = ForwardingDriver()
