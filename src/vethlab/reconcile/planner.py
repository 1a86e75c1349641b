"""Plan: the difference between the desired state and what the kernel holds, as a
list of actions, each with the reason a user reads in `vethlab plan`.

The plan is a value (containerlab's apply, pyinfra's operations): `plan` prints
it, `up` executes exactly it.  Each kind of resource is planned by its driver
(drivers/registry.py); conflicts with objects vethlab does not own are found by
the drivers too, all before any action is planned and before anything is touched.
"""

from __future__ import annotations

from dataclasses import replace

from ..drivers import registry
from ..errors import ConflictError
from ..kernel.api import Route
from ..model.desired import Desired
from .actions import PHASES, Action, Memory, Plan, PlanContext
from .observe import Observed

__all__ = ["PHASES", "Action", "Memory", "Plan", "make_plan"]


def make_plan(desired: Desired, observed: Observed, marker: str, previous_exec: dict[str, str] | None = None,
              host_routes: list[Route] | None = None, memory: Memory | None = None,
              full: Desired | None = None) -> Plan:
    """Compute the actions that take the kernel from `observed` to `desired`.
    `full`: the whole lab when `desired` is a part of it (what every node shares,
    the hosts files, comes from the whole).
    Raises ConflictError, naming the object, if a foreign object is in the way."""
    memory = memory or Memory()
    if previous_exec is not None:
        memory = replace(memory, exec_digests=previous_exec)
    if host_routes is not None:
        memory = replace(memory, host_routes=host_routes)
    ctx = PlanContext(desired, observed, marker, memory, Plan(desired.lab), full or desired)
    problems = [problem for driver in registry.DRIVERS for problem in driver.conflicts(ctx)]
    if problems:
        raise ConflictError("\n".join(problems) + "\nnothing was changed")
    for driver in registry.DRIVERS:
        driver.plan(ctx)
    return ctx.plan
