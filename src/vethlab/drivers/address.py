"""Addresses on the interfaces vethlab makes, added and removed in place.  Planned
by the interface's driver (drivers/link.py), which knows what the interface holds."""

from __future__ import annotations

from typing import Self

from ..deferred import dataclass
from ..model.desired import DesiredInterface
from ..reconcile.actions import Action, ApplyContext, PlanContext, hidden
from ..reconcile.journal import Step
from .base import reversible


@dataclass(frozen=True)
class _Address(Action):
    KIND = "address"
    ACKED = True  # acknowledged one by one: not re-read in a node this run made
    ifname: str
    cidr: str
    new: bool = hidden()  # on an interface this plan makes: acknowledged there too, wherever it is

    @classmethod
    def of(cls, ctx: PlanContext, want: DesiredInterface, cidr: str, reason: str, new: bool = False) -> Self:
        return cls(f"{cidr} on {want.node}:{want.ifname}", reason, want.node, ctx.desired.netns(want.node),
                   want.ifname, cidr, new)

    def verified(self, created: set[str]) -> bool:
        return not self.new and super().verified(created)


@dataclass(frozen=True)
class AddAddress(_Address):
    VERB = "create"
    PHASE = "address"

    def apply(self, ctx: ApplyContext) -> Step | None:
        return reversible(self, ctx.kernel.add_address, ctx.kernel.delete_address, self.ifname, self.cidr,
                          on=self.ifname)


@dataclass(frozen=True)
class DeleteAddress(_Address):
    VERB = "delete"
    PHASE = "delete-early"

    def apply(self, ctx: ApplyContext) -> Step | None:
        return reversible(self, ctx.kernel.delete_address, ctx.kernel.add_address, self.ifname, self.cidr, made=False)
