"""The undo journal: each applied step registers its inverse right away (CNI
cmdAdd's deferred release); a failure unwinds it in reverse, keeps going past
errors and reports them together (netavark's teardown).

Unwinding goes in the order that lets the kernel batch (see
removal.remove_in_kernel_order): processes and bridges first, then the namespaces
this run made, then a bounded wait for what dies with them -- never object by
object (one RCU grace period per interface).  A driver declares where its undo
belongs with the keyword arguments of `Step`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import field
from functools import partial
from typing import Any

from ..deferred import dataclass
from ..errors import VethlabError
from ..kernel.api import Kernel, Netns
from .removal import VANISH_TIMEOUT, VANISH_TIMEOUT_PER_INTERFACE, wait_gone

Undo = Callable[[], None]


@dataclass
class Step:
    """One undo, with what the unwinding needs to order it."""

    what: str
    undo: Undo
    namespace: str | None = None  # the undo deletes this namespace (made by this run)
    dies_with: tuple[str, ...] = ()  # the object goes when any of these namespaces is deleted...
    ends: tuple[tuple[Netns, str], ...] = ()  # ...and its interface ends elsewhere, once the kernel is done
    first: bool = False  # undone before any namespace goes (a process keeps its namespace alive)
    detaches: bool = False  # a bridge: undone before the namespaces, unless it goes with one (see removal)
    on: tuple[Netns, str] | None = None  # the interface the object is on: moot once that is gone


@dataclass
class Journal:
    steps: list[Step] = field(default_factory=list)
    kernel: Kernel | None = None  # to wait for what dies with the namespaces; None: undo every step itself
    marker: str | None = None  # the lab's: the /etc/netns files of its namespaces go with them

    def add(self, what: str, undo: Undo, **order: Any) -> None:
        self.steps.append(Step(what, undo, **order))

    def unwind(self) -> list[str]:
        """Undo every step, keep going past errors, return them all.  Processes and
        bridges first, then every namespace this run made, then a bounded wait for the interface
        ends elsewhere that die with those namespaces, then the rest in reverse
        order -- skipping what went with a namespace (deleting it object by object
        would cost one RCU grace period per interface)."""
        errors: list[str] = []

        def attempt(what: str, fn: Undo) -> bool:
            try:
                fn()
                return True
            except Exception as exc:  # keep going: report every failure of the unwinding
                errors.append(f"could not undo {what}: {exc}")
                return False

        steps = list(reversed(self.steps))
        self.steps = []
        kernel = self.kernel
        if kernel is None:
            for step in steps:
                attempt(step.what, step.undo)
            return errors
        planned = {step.namespace for step in steps if step.namespace}
        early = [step for step in steps if step.first or (step.detaches and not set(step.dies_with) & planned)]
        for step in early:
            attempt(step.what, step.undo)
        if early:
            attempt("the unwinding", kernel.flush)
        dying = [ns for step in steps if (ns := step.namespace)]
        failed = kernel.delete_namespaces(dying, {ns: self.marker for ns in dying} if self.marker else {}) \
            if dying else {}
        for ns, exc in failed.items():
            errors.append(f"could not undo namespace {ns}: {exc}")
        deleted = set(dying) - set(failed)
        outside = {end for step in steps if set(step.dies_with) & deleted for end in step.ends if end[0] not in deleted}
        left = wait_vanished(kernel, indexes(kernel, outside))
        for ns, ifname in sorted(left, key=str):  # held alive by something: delete that end after all
            attempt(f"interface {ifname} in {ns or 'the host'}", partial(kernel.delete_link, ns, ifname))
        done = {id(step) for step in early}
        bridges = {end for step in early if step.detaches for end in step.ends}
        for step in steps:
            if id(step) in done or step.namespace or set(step.dies_with) & deleted or step.on in bridges:
                continue
            attempt(step.what, step.undo)
        attempt("the unwinding", kernel.flush)
        return errors


def inside(ns: Netns) -> tuple[str, ...]:
    """An object in namespace `ns` goes with it (nothing does with the host's)."""
    return (ns,) if ns else ()


def indexes(kernel: Kernel, ends: set[tuple[Netns, str]]) -> dict[tuple[Netns, str], int]:
    """The ifindex of each (netns, ifname) still there: what `wait_gone` follows."""
    out: dict[tuple[Netns, str], int] = {}
    for ns in {ns for ns, _ in ends}:
        try:
            links = {link.ifname: link.index for link in kernel.links(ns, addresses=False)}
        except VethlabError:
            continue
        out.update({(ns, name): links[name] for n, name in ends if n == ns and name in links})
    return out


def wait_vanished(kernel: Kernel, ends: dict[tuple[Netns, str], int]) -> set[tuple[Netns, str]]:
    """Wait (bounded) for interface ends to vanish with their namespaces; those left."""
    left: set[tuple[Netns, str]] = set()
    for ns in {ns for ns, _ in ends}:
        mine = {name: index for (n, name), index in ends.items() if n == ns}
        timeout = VANISH_TIMEOUT + VANISH_TIMEOUT_PER_INTERFACE * len(mine)
        left |= {(ns, name) for name in wait_gone(kernel, mine, timeout, ns)}
    return left


def end_processes(kernel: Kernel, namespaces: list[str], grace: float = 3.0) -> None:
    """End every process inside these namespaces of the lab (TERM, then KILL)."""
    for _round in range(3):
        procs = [(pid, started) for items in kernel.lab_processes(namespaces, []).values()
                 for pid, started, _label in items]
        if not procs:
            return
        kernel.stop_processes(procs, grace)


def wait_until(check: Callable[[], Any], timeout: float, interval: float = 0.01) -> Any:
    """Poll `check` until it returns a truthy value or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() >= deadline:
            return result
        time.sleep(interval)
        interval = min(interval * 1.5, 0.2)
