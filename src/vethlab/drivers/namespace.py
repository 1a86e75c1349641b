"""Nodes: one network namespace each, made marked (its lo carries the lab's
marker) and deleted with the processes and /etc/netns files inside it."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from ..deferred import dataclass
from ..errors import KernelError
from ..ownership import lab_of
from ..reconcile.actions import Action, ApplyContext, Phase, PlanContext, hidden
from ..reconcile.journal import Step, end_processes
from .base import Driver


@dataclass(frozen=True)
class CreateNode(Action):
    VERB = "create"
    KIND = "node"
    PHASE = "node"
    ACKED = True  # made and marked before it appears, or create_namespaces raised

    @classmethod
    def apply_all(cls, actions: Sequence[Action], ctx: ApplyContext) -> None:
        """All new namespaces in one batch."""
        names = [a.netns for a in actions if a.netns]
        k, marker = ctx.kernel, ctx.marker
        made = names
        try:
            k.create_namespaces(names, marker)
        except BaseException:
            # journal whatever of the batch exists and is ours, even after a failure half-way
            made = [name for name in names if k.namespace_exists(name) and k.namespace_owner(name) == marker]
            raise
        finally:
            for name in made:
                ctx.journal.add(f"namespace {name}", partial(k.delete_namespace, name), namespace=name)
            if made:  # undone before any namespace goes: what runs in them (exec's leftovers, services' children)
                ctx.journal.add("processes in the new nodes", lambda: end_processes(k, made), first=True)


@dataclass(frozen=True)
class DeleteNode(Action):
    VERB = "delete"
    KIND = "node"
    dead_file: bool = hidden()  # a dead /run/netns file of this lab: removed before anything is made

    @property
    def phase(self) -> Phase:
        return "delete-early" if self.dead_file else "delete-late"

    def apply(self, ctx: ApplyContext) -> Step | None:
        k, ns = ctx.kernel, self.netns
        if ns:
            end_processes(k, [ns])  # a process left inside would keep the namespace alive
            k.remove_node_files(ns, ctx.marker)
            k.delete_namespace(ns)
        return None

    @classmethod
    def apply_all(cls, actions: Sequence[Action], ctx: ApplyContext) -> None:
        """A shrinking lab: the removed nodes' namespaces go first, in one batch (the
        plan puts them before the phase's other deletions); what lived in them goes
        with them, and the veth ends elsewhere whose peer was in one of them are
        waited for, not deleted (DeleteInterface.apply_all, via ctx.gone)."""
        batch = [a for a in actions if isinstance(a, DeleteNode) and not a.dead_file and a.netns]
        super().apply_all([a for a in actions if all(a is not b for b in batch)], ctx)
        names = [a.netns for a in batch if a.netns]
        if not names:
            return
        k = ctx.kernel
        end_processes(k, names)  # a process left inside would keep the namespace alive
        failed = k.delete_namespaces(names, {name: ctx.marker for name in names})
        if failed:
            raise KernelError(f"cannot delete {len(failed)} namespaces: {next(iter(failed.values()))}")
        ctx.gone.update(a.node for a in batch)


class NamespaceDriver(Driver):
    kind = "node"

    def conflicts(self, ctx: PlanContext) -> list[str]:
        problems = []
        for name, node, seen in ctx.seen_nodes():
            if node.netns is None or not seen.exists:
                continue
            if not seen.alive:
                if not seen.known:  # a dead file of our own making is removed by the plan instead
                    problems.append(f"/run/netns/{node.netns} is a stale file with no namespace behind it (left "
                                    "from before a reboot?); `ip netns del` it, or `vethlab clean` if it was "
                                    "vethlab's")
            elif seen.owner != ctx.marker:
                other = lab_of(seen.owner)
                problems.append(f"namespace {node.netns} (node {name}) already exists and belongs to lab {other}"
                                if other else f"namespace {node.netns} (node {name}) already exists and is not "
                                "vethlab's")
        return problems

    def plan(self, ctx: PlanContext) -> None:
        """Namespaces to create and to delete; records the nodes created in ctx."""
        plan, observed = ctx.plan, ctx.observed
        for name, node in ctx.desired.nodes.items():
            seen = observed.nodes.get(name)
            if node.netns is not None and seen is not None and seen.exists and not seen.alive and seen.known:
                plan.add(DeleteNode(name, f"/run/netns/{node.netns} is a dead file left by an interrupted run of "
                                    "this lab", name, node.netns, dead_file=True))
                seen = None
            if node.netns is not None and (seen is None or not seen.exists):
                ctx.created.add(name)
                plan.add(CreateNode(name, f"namespace {node.netns} does not exist", name, node.netns))
        for name, seen in observed.nodes.items():
            if name not in ctx.desired.nodes and seen.netns is not None and seen.exists and seen.owner == ctx.marker:
                plan.add(DeleteNode(name, f"node {name} is no longer in the file", name, seen.netns))


DRIVER = NamespaceDriver()
