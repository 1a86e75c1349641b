"""Shaping (tc) of an interface, changed in place: only the qdisc, never the link.
tbf for a rate alone, netem for delay, jitter or loss (Shaping.qdisc decides)."""

from __future__ import annotations

from dataclasses import field
from typing import Any

from ..deferred import dataclass
from ..errors import ConflictError
from ..kernel.api import Kernel
from ..model.desired import Desired
from ..reconcile.actions import ApplyContext, PlanContext, SelfChecked
from ..reconcile.journal import Step
from .base import Driver


@dataclass(frozen=True)
class _Shaping(SelfChecked):  # the qdisc kind says on the next plan
    KIND = "shaping"
    PHASE = "shaping"
    ifname: str
    shaping: dict[str, Any] | None = field(hash=False, compare=False)

    def apply(self, ctx: ApplyContext) -> Step | None:
        ctx.kernel.set_shaping(self.netns, self.ifname, self.shaping)
        return None


@dataclass(frozen=True)
class SetShaping(_Shaping):
    VERB = "modify"


@dataclass(frozen=True)
class RemoveShaping(_Shaping):
    VERB = "delete"


def require_qdiscs(kernel: Kernel, kinds: set[str]) -> None:
    """Refuse, before anything is built, shaping this kernel cannot do."""
    missing = sorted(kind for kind in kinds if not kernel.qdisc_supported(kind))
    if missing:
        raise ConflictError(
            f"this kernel lacks the qdisc {', '.join(missing)} (kernel module "
            f"{', '.join('sch_' + k for k in missing)}), needed for "
            f"{'delay, jitter or loss' if 'netem' in missing else 'rate'}: load it with `modprobe "
            f"sch_{missing[0]}` if the module exists, or keep only what tbf does (rate); nothing was changed")


class ShapingDriver(Driver):
    kind = "shaping"

    def preflight(self, kernel: Kernel, desired: Desired) -> None:
        require_qdiscs(kernel, {iface.shaping.qdisc for iface in desired.interfaces.values() if iface.shaping})

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
