"""Routes of a node, marked with vethlab's protocol number.  In the host namespace
only the routes this lab recorded are its own, and a route that would replace one
vethlab did not make is a conflict."""

from __future__ import annotations

from typing import Any

from ..deferred import dataclass
from ..kernel.api import Route
from ..model.routes import route_matches, route_of, route_text, same_slot
from ..ownership import ROUTE_PROTO
from ..reconcile.actions import Action, ApplyContext, PlanContext
from ..reconcile.journal import Step
from .address import DeleteAddress
from .base import Driver, reversible


@dataclass(frozen=True)
class _RouteAction(Action):
    KIND = "route"
    ACKED = True  # acknowledged one by one: not re-read in a node this run made
    route: Route

    def params(self) -> dict[str, Any]:
        return {"route": self.route._asdict()}


@dataclass(frozen=True)
class AddRoute(_RouteAction):
    VERB = "create"
    PHASE = "route"

    def apply(self, ctx: ApplyContext) -> Step | None:
        return reversible(self, ctx.kernel.add_route, ctx.kernel.delete_route, self.route)


@dataclass(frozen=True)
class DeleteRoute(_RouteAction):
    VERB = "delete"
    PHASE = "delete-early"

    def apply(self, ctx: ApplyContext) -> Step | None:
        return reversible(self, ctx.kernel.delete_route, ctx.kernel.add_route, self.route, made=False)


class RouteDriver(Driver):
    """Planned after the interfaces: it looks at address deletions."""

    kind = "route"

    def conflicts(self, ctx: PlanContext) -> list[str]:
        problems = []
        for _name, node, seen in ctx.seen_nodes():
            if node.netns is not None:
                continue  # only the host namespace holds routes that are not the lab's
            for spec in node.routes:
                wanted = route_of(spec)
                for existing in seen.routes:
                    if existing.proto != ROUTE_PROTO and same_slot(wanted, existing):
                        problems.append(f"route {route_text(wanted)} in the host namespace would replace the "
                                        f"existing route {route_text(existing)}, which is not vethlab's")
        return problems

    def plan(self, ctx: PlanContext) -> None:
        from .link import DeleteInterface  # a replaced interface loses its routes as a removed address does

        lost_addresses = {a.node for a in ctx.plan.actions if isinstance(a, (DeleteAddress, DeleteInterface))}
        for name, node in ctx.desired.nodes.items():
            seen = ctx.observed.nodes.get(name)
            mine = [r for r in (seen.routes if seen else []) if r.proto == ROUTE_PROTO]
            if node.netns is None:  # in the host, only the routes this lab recorded are its own
                mine = [r for r in mine if any(route_matches(h, r) for h in ctx.memory.host_routes)]
            wanted = [route_of(spec) for spec in node.routes]
            # removing an address makes the kernel drop routes through it: those are re-added
            readd = name in lost_addresses
            for want in wanted:
                if readd or not any(route_matches(want, have) for have in mine):
                    ctx.plan.add(AddRoute(f"{name}: {route_text(want)}", "route is in the file but not in the kernel",
                                          name, node.netns, want))
            for have in mine:
                if not any(route_matches(want, have) for want in wanted):
                    ctx.plan.add(DeleteRoute(f"{name}: {route_text(have)}", "route is no longer in the file", name,
                                             node.netns, have))


DRIVER = RouteDriver()
