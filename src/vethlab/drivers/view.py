"""A node's own view: `hostname:`, `files:`, `private:`, `mounts:` — its mount and
UTS namespaces (kernel/nodefs.py), built after its network namespace and before
anything runs in it (exec, services), so every command sees the node's files.

Observed state is the kernel's own: STATE/.nodes/NETNS/owner holds the lab's
marker and a digest of what the view was built from.  A view whose digest differs
from the file's, or whose namespaces are gone, is rebuilt whole (private
directories keep their content: they live in the lab's state directory until
`down`); one the lab owns for a node that no longer asks for one is removed.
Nodes without these keys cost one listdir of a directory that does not exist.

A node's running services see the view they started in: when its view is
built, rebuilt or removed, drivers/service.py restarts them (`plan` says so)."""

from __future__ import annotations

import os
from typing import Any

from ..deferred import dataclass
from ..digests import sha256
from ..kernel.api import File, Kernel, Mount, Private, View
from ..model.desired import Desired, DesiredNode
from ..reconcile.actions import Action, ApplyContext, PlanContext, hidden
from ..reconcile.journal import Step
from ..reconcile.observe import Observed
from .base import Driver


@dataclass(frozen=True)
class BuildView(Action):
    VERB = "create"
    KIND = "view"
    PHASE = "view"
    hostname: str
    files: tuple[str, ...]
    private: tuple[str, ...]
    mounts: tuple[str, ...]
    view: dict[str, Any] = hidden()  # the whole View (file contents included): not printed by `plan --json`
    replace: bool = hidden()

    def apply(self, ctx: ApplyContext) -> Step | None:
        assert self.netns is not None
        k, ns, marker = ctx.kernel, self.netns, ctx.marker
        k.create_view(ns, marker, View.from_json(self.view), self.replace)
        return Step(self.target, lambda: _drop(k, ns, marker))


@dataclass(frozen=True)
class RemoveView(Action):
    VERB = "delete"
    KIND = "view"
    PHASE = "delete-late"

    def apply(self, ctx: ApplyContext) -> Step | None:
        assert self.netns is not None
        ctx.kernel.remove_view(self.netns, ctx.marker)
        return None


def _drop(kernel: Kernel, ns: str, marker: str) -> None:
    kernel.remove_view(ns, marker)


def has_view(node: DesiredNode) -> bool:
    return bool(node.hostname or node.files or node.private or node.mounts)


def view_of(node: DesiredNode, backing_dir: str) -> View:
    """The node's view with its backing paths under `backing_dir` (STATE/LAB/fs/NODE),
    named by a hash of the node path, so a rebuilt view finds its private content."""
    def name(kind: str, path: str) -> str:
        return os.path.join(backing_dir, f"{kind}-{sha256(path.encode()).hexdigest()[:16]}")

    return View(node.hostname or node.name,
                tuple(Private(p.path, name("p", p.path), p.copy, p.owner, p.mode) for p in node.private),
                tuple(File(f.path, f.content.decode("utf-8", "surrogateescape"), f.mode, name("f", f.path))
                      for f in node.files),
                tuple(Mount(m.source, m.target, m.writable) for m in node.mounts))


def backing_dir(lab: str, node: str) -> str:
    from ..state import store

    return os.path.join(store.lab_dir(lab), "fs", node)


class ViewDriver(Driver):
    kind = "view"

    def observe(self, kernel: Kernel, desired: Desired, observed: Observed) -> None:
        found = kernel.views()
        observed.extras[self.kind] = {ns: (owner, digest, kernel.view_alive(ns), kernel.view_dir(ns))
                                      for ns, (owner, digest) in found.items()}

    def conflicts(self, ctx: PlanContext) -> list[str]:
        seen = _seen(ctx)
        problems = []
        for name, node in ctx.desired.nodes.items():
            have = seen.get(node.netns or "")
            if node.netns and has_view(node) and have is not None and have[0] not in (ctx.marker, ""):
                problems.append(f"namespace {node.netns} (node {name}) already has a view of its own "
                                f"({have[3]}) that is not this lab's")
        return problems

    def plan(self, ctx: PlanContext) -> None:
        seen = _seen(ctx)
        for name, node in ctx.desired.nodes.items():
            if node.netns is None or not has_view(node):
                continue
            view = view_of(node, backing_dir(ctx.desired.lab, name))
            have = seen.get(node.netns)
            if have is not None and have[0] == ctx.marker and have[1] == view.digest() and have[2] \
                    and name not in ctx.created:
                continue
            reason = ("node is new" if name in ctx.created or have is None else
                      "its namespaces are gone" if not have[2] else
                      "its files, private directories, mounts or hostname changed")
            parts = [f"hostname {view.hostname}"] + ([f"{len(view.files)} files"] if view.files else []) \
                + ([f"private {' '.join(p.target for p in view.private)}"] if view.private else []) \
                + ([f"mounts {' '.join(m.target for m in view.mounts)}"] if view.mounts else [])
            ctx.plan.add(BuildView(f"{name}: {', '.join(parts)}", reason, name, node.netns, view.hostname,
                                   tuple(f.target for f in view.files), tuple(p.target for p in view.private),
                                   tuple(f"{m.source}:{m.target}{':rw' if m.writable else ''}" for m in view.mounts),
                                   view.to_json(), have is not None))
        # the lab's views that no node of the file asks for (any more); those of nodes
        # not re-read this time (ctx.full, not ctx.desired) are left as they are
        wanted = {node.netns for node in ctx.full.nodes.values() if node.netns and has_view(node)}
        for ns, (owner, _digest, _alive, _pins) in seen.items():
            if owner == ctx.marker and ns not in wanted:
                who = next((n for n, d in ctx.full.nodes.items() if d.netns == ns), ns)
                ctx.plan.add(RemoveView(f"view of {who}", "the node no longer has its own files, private "
                                        "directories, mounts or hostname", who, ns))


def _seen(ctx: PlanContext) -> dict[str, tuple[str, str, bool, str]]:
    """netns -> (owner marker, digest of what it was built from, alive, where it is pinned)"""
    found = ctx.observed.extras.get(ViewDriver.kind)
    return found if isinstance(found, dict) else {}


DRIVER = ViewDriver()
