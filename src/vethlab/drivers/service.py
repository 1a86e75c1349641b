"""Services (`run:`): started in their node under their label, recorded before they
are watched (a kill from then on leaves nothing `down` does not know), watched
until ready; a service the file no longer has is stopped.  Which process is which
service, and the watching, live in reconcile/services.py."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..deferred import dataclass
from ..errors import CommandFailed
from ..reconcile.actions import Action, ApplyContext, PlanContext, SelfChecked
from ..reconcile.journal import Step
from ..reconcile.services import Launch, Record, ServiceSeen, labels, log_name, supervise
from .base import Driver

if TYPE_CHECKING:
    from ..state.store import LabState


@dataclass(frozen=True)
class RunService(SelfChecked):  # watched until ready by apply_all
    VERB = "run"
    KIND = "service"
    PHASE = "service"
    argv: tuple[str, ...]
    index: int
    label: str
    oneshot: bool
    ready: tuple[tuple[str, ...], ...]

    def params(self) -> dict[str, Any]:
        return {"argv": list(self.argv), "index": self.index, "label": self.label, "oneshot": self.oneshot,
                "ready": [list(c) for c in self.ready]}

    def apply(self, ctx: ApplyContext) -> Step | None:
        k, ns, argv, label = ctx.kernel, self.netns, list(self.argv), self.label
        problem = k.missing_command(ns, argv)  # in the node's view, where the service will run
        if problem:
            raise CommandFailed(f"node {self.node}: service `{' '.join(argv)}`: {problem}")
        log = os.path.join(ctx.log_dir, log_name(label))
        pid, started = k.start_service(ns, argv, log, label, self.oneshot)
        step = Step(self.target, lambda: k.stop_service(ns, label, pid, started))
        inode = (k.namespace_id(ns) or 0) if ns else 0
        ctx.outcome.started.append((self.node, Record(argv, pid, started, label, False, inode)))
        ctx.launches.append(Launch(self.node, ns, argv, label, pid, started, self.oneshot, log))
        return step

    @classmethod
    def apply_all(cls, actions: Sequence[Action], ctx: ApplyContext) -> None:
        """Start them all, record what was started (a kill from now on leaves nothing
        unknown), then watch it until ready: a service that exits fails the run."""
        super().apply_all(actions, ctx)
        if not ctx.launches:
            return
        if ctx.record:
            ctx.record(ctx.outcome)  # write-ahead: recorded before any of them runs
        for launch in ctx.launches:
            ctx.kernel.release_service(launch.pid)
        checks = {a.node: (a.netns, list(a.ready)) for a in actions if isinstance(a, RunService) and a.ready}
        finished = supervise(ctx.kernel, ctx.launches, checks)
        ctx.outcome.started = [(node, rec._replace(done=rec.label in finished)) for node, rec in ctx.outcome.started]

    def intend(self, state: LabState) -> None:
        """Write-ahead: the service (command and label) is in the state before it starts."""
        items = state.services.setdefault(self.node, [])
        if not any(Record.of(item).label == self.label for item in items):
            items.append(Record(list(self.argv), 0, 0, self.label).to_json())


@dataclass(frozen=True)
class StopService(SelfChecked):  # the next plan finds it gone (by pid and label)
    VERB = "delete"
    KIND = "service"
    PHASE = "delete-early"
    pid: int
    started: int
    label: str

    def apply(self, ctx: ApplyContext) -> Step | None:
        ctx.kernel.stop_service(self.netns, self.label, self.pid, self.started)
        ctx.outcome.stopped.update({self.pid, self.label or self.pid})
        return None


RESTART_STOP = "the node's view changes: restarted in the new one"
RESTART_RUN = "the node's view changed: restarted in it"


def moved_views(ctx: PlanContext) -> set[str]:
    """Nodes (not new) whose view this plan builds, rebuilds or removes
    (drivers/view.py, planned before services): their running services see the
    old view, a mount namespace nothing else holds, until they are restarted."""
    return {a.node for a in ctx.plan.actions if a.KIND == "view"} - ctx.created


class ServiceDriver(Driver):
    """A service is known by its label (node, command, occurrence): one found
    running, recorded or not, is not started a second time -- unless its node's
    view changes (a one-shot that finished is not run again)."""

    kind = "service"

    def plan(self, ctx: PlanContext) -> None:
        running: dict[tuple[str, str], list[ServiceSeen]] = {}
        for seen in ctx.observed.services:
            running.setdefault((seen.node, seen.label), []).append(seen)
        moved = moved_views(ctx)
        for name, node in ctx.desired.nodes.items():
            new = name in ctx.created
            for index, (argv, label) in enumerate(zip(node.run, labels(ctx.desired.lab, name, node.run),
                                                      strict=True)):
                alive = [s for s in running.pop((name, label), []) if s.alive and not new]
                restart = [s for s in alive if not s.done] if name in moved else []
                if alive and not restart:
                    continue
                for seen in restart:  # it runs in the view being replaced: stopped, then started in the new one
                    ctx.plan.add(StopService(f"{name}: {' '.join(seen.argv)} (pid {seen.pid})", RESTART_STOP, name,
                                             seen.netns, seen.pid, seen.started, seen.label))
                ctx.plan.add(RunService(f"{name}: {' '.join(argv)}", "node is new" if new else RESTART_RUN
                                        if restart else "service is not running", name, node.netns, tuple(argv),
                                        index, label, index in node.oneshot, tuple(tuple(c) for c in node.ready)))
        for items in running.values():
            for seen in items:
                if not seen.alive and not seen.pid:
                    continue  # recorded before a start that never happened: nothing to stop
                ctx.plan.add(StopService(f"{seen.node}: {' '.join(seen.argv)} (pid {seen.pid})",
                                         "no longer in the file" if seen.alive else "exited; forgotten", seen.node,
                                         seen.netns, seen.pid, seen.started, seen.label))


DRIVER = ServiceDriver()
