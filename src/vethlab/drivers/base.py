"""What every driver is: one kind of resource, owning its conflicts (foreign
objects in the way), its diff against the kernel (actions with reasons), and --
through its action types (reconcile/actions.py) -- apply with undo and verify."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVarTuple

from ..kernel.api import Kernel, LinkInfo, Netns
from ..model.desired import Desired, IfKey
from ..reconcile.actions import Action, PlanContext
from ..reconcile.journal import Step, inside
from ..reconcile.observe import Observed

Ts = TypeVarTuple("Ts")


class Driver:
    """One kind of resource.  Subclass, override what the kind needs, and list an
    instance in drivers.registry.DRIVERS."""

    #: the word users read in `vethlab plan` for this kind
    kind: str = ""

    def preflight(self, kernel: Kernel, desired: Desired) -> None:
        """Refuse (ConflictError), before anything is observed or built, what this
        kernel cannot do for the file (a missing qdisc, a missing link type)."""

    def observe(self, kernel: Kernel, desired: Desired, observed: Observed) -> None:
        """Read what this kind needs beyond what reconcile/observe.py reads (every
        link of each node with its kind, peer, master and addresses; the lab's
        routes, the file's sysctls, firewall chains, services, qdisc kinds) into
        observed.extras[self.kind].  Only nodes in observed.nodes that exist and
        are the lab's may be entered; never create anything."""

    def conflicts(self, ctx: PlanContext) -> list[str]:
        """Objects vethlab does not own that stand in the way: one line each.  The
        planner raises them all together, before anything is touched."""
        return []

    def plan(self, ctx: PlanContext) -> None:
        """Add to ctx.plan the actions that take the kernel from ctx.observed to
        ctx.desired, each with its reason."""


def reversible(action: Action, do: Callable[[Netns, *Ts], None], undo: Callable[[Netns, *Ts], None], *args: *Ts,
               made: bool = True, on: str | None = None) -> Step:
    """`do(netns, *args)` in the action's node, and its undo `undo(netns, *args)`.
    made: the action made the object, so it goes with the node's namespace (not
    undone one by one when that goes); on: the interface it is on, which takes it
    along too.  (A deletion is reversible the same way, made=False.)"""
    ns = action.netns
    do(ns, *args)
    return Step(action.target, lambda: undo(ns, *args), dies_with=inside(ns) if made else (),
                on=(ns, on) if on is not None else None)


def ep(key: IfKey) -> str:
    """An interface as users write it: NODE:IFNAME."""
    return f"{key[0]}:{key[1]}"


def link_of(observed: Observed, key: IfKey) -> LinkInfo | None:
    node = observed.nodes.get(key[0])
    return node.links.get(key[1]) if node else None
