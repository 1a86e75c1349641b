"""Plan and apply nodes' own views (`hostname:`, `files:`, `private:`, `mounts:`).

Self-contained: the planner's other parts never look at a view, and a lab whose
nodes have none gets no action and no kernel call from here beyond one listdir of
STATE/.nodes (nothing there: nothing to do).

A view is rebuilt whole when its part of the file changed or it is gone (a
digest of that part is kept in the lab's state); private directories keep their
content across rebuilds (they live in the lab's state directory until `down`).
Running services keep the view they started with until they are restarted.
"""

from __future__ import annotations

import hashlib
import json
import os

from ..kernel.api import Kernel
from ..kernel.nodefs import File, Mount, Private, View
from ..topology.schema import LabSpec, NodeSpec
from .planner import Action, Plan

PHASE = "view"


def view_of(node: NodeSpec, backing_dir: str) -> View | None:
    """The node's view with its backing paths under `backing_dir` (STATE/LAB/fs/NODE);
    None for a node without one."""
    if not node.has_view:
        return None

    def name(kind: str, path: str) -> str:
        return os.path.join(backing_dir, f"{kind}-{hashlib.sha256(path.encode()).hexdigest()[:16]}")

    return View(node.hostname or node.name,
                tuple(Private(p.path, name("p", p.path), p.copy, p.owner, p.mode) for p in node.private),
                tuple(File(f.path, f.content.decode("utf-8", "surrogateescape"), f.mode, name("f", f.path))
                      for f in node.files),
                tuple(Mount(m.source, m.target, m.writable) for m in node.mounts))


def digest(view: View) -> str:
    return hashlib.sha256(json.dumps(view.to_json(), sort_keys=True).encode()).hexdigest()[:16]


def backing_dir(lab: str, node: str) -> str:
    from ..state import store

    return os.path.join(store.lab_dir(lab), "fs", node)


def wanted(spec: LabSpec) -> dict[str, tuple[str, View]]:
    """node -> (netns, view) for every node of the file that has a view."""
    out = {}
    for name, node in spec.nodes.items():
        ns = spec.netns_of(name)
        view = view_of(node, backing_dir(spec.name, name))
        if ns is not None and view is not None:
            out[name] = (ns, view)
    return out


def digests(spec: LabSpec) -> dict[str, str]:
    """What the lab's state records once `up` succeeded."""
    return {name: digest(view) for name, (_ns, view) in wanted(spec).items()}


def plan_views(plan: Plan, spec: LabSpec, kernel: Kernel, marker: str, recorded: dict[str, str],
               created: set[str]) -> None:
    """Add the actions that make every node's view match the file: build what is
    missing, rebuild what changed (or whose node is new), remove what is no longer
    wanted (by its owner file: the lab's, whatever the state says)."""
    want = wanted(spec)
    owners = kernel.view_owners()
    for name, (ns, view) in want.items():
        have = owners.get(ns)
        fresh = digest(view)
        if have == marker and name not in created and recorded.get(name) == fresh and kernel.view_alive(ns):
            continue
        if have is not None and have not in (marker, ""):
            continue  # another lab's: the namespace's own conflict check refuses the node
        what = ", ".join(part for part in (
            f"hostname {view.hostname}", f"{len(view.files)} files" if view.files else "",
            f"private {' '.join(p.target for p in view.private)}" if view.private else "",
            f"mounts {' '.join(m.target for m in view.mounts)}" if view.mounts else "") if part)
        reason = ("node is new" if name in created or have is None else
                  "its files, private directories, mounts or hostname changed" if kernel.view_alive(ns)
                  else "its namespaces are gone")
        plan.add(Action("create", "view", f"{name}: {what}", reason, PHASE, name, ns,
                        {"view": view.to_json(), "replace": have is not None}))
    mine = {ns for ns, _view in want.values()}
    for ns, owner in owners.items():
        if owner == marker and ns not in mine:
            plan.add(Action("delete", "view", f"view of namespace {ns}", "the node no longer has its own files, "
                            "private directories, mounts or hostname", "delete-late", ns, ns, {}))


def apply(kernel: Kernel, action: Action, marker: str) -> None:
    """Carry out one view action (the executor journals the undo)."""
    assert action.netns is not None
    if action.verb == "delete":
        kernel.remove_view(action.netns, marker)
    else:
        kernel.create_view(action.netns, marker, View.from_json(action.params["view"]),
                           bool(action.params.get("replace")))
