"""Routes as the planner compares them: a route of the file against one the kernel
holds.  Policy, so above the kernel: the kernel layer only adds, deletes and lists
(and knows the one fact compared here, the metric it gives a route without one)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..kernel.api import Route, default_metric, route_text

if TYPE_CHECKING:  # `down` (reconcile/removal.py) imports this module and needs no schema (~1.5 ms)
    from ..topology.schema import RouteSpec

__all__ = ["Route", "default_metric", "route_matches", "route_of", "route_text", "same_slot"]


def route_of(spec: RouteSpec) -> Route:
    return Route(dst=spec.dst, via=spec.via, dev=spec.dev, metric=spec.metric, src=spec.src)


def _metric(route: Route) -> int:
    return route.metric if route.metric is not None else default_metric(route.dst)


def route_matches(want: Route, have: Route) -> bool:
    """Does kernel route `have` satisfy `want`?  Unspecified fields of `want` are
    whatever the kernel chose (dev from the gateway, default metric)."""
    return (want.dst == have.dst and want.via == have.via
            and (want.dev is None or want.dev == have.dev)
            and _metric(want) == (have.metric or 0)
            and (want.src is None or want.src == have.src))


def same_slot(want: Route, have: Route) -> bool:
    """Would adding `want` replace `have` (same destination and metric)?"""
    return have.dst == want.dst and (have.metric or 0) == _metric(want)
