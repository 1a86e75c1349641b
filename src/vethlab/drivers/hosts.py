"""/etc/netns/NODE/hosts: every node resolves every other node of its lab by name.
Every node's file has the same lab lines, written once for all nodes (hard-linked)
and compared through the digest line each file carries.  A directory of that name
vethlab did not make is a conflict, never taken over (SPEC §4).

Containers a runtime joined to the lab through the CNI plugin (docs/cni.md) are
in every node's file too, after the lab's nodes: their lines come from the lab's
attachment records (cni/labside.py), so a re-run `up` keeps them, in the very
order ADD and DEL write them (equal digests: `plan` has nothing to say)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from ..deferred import dataclass
from ..kernel.api import Kernel
from ..model.desired import Desired
from ..model.hosts import hosts_digest
from ..ownership import LEGACY_NODE_DIR, lab_of
from ..reconcile.actions import Action, ApplyContext, PlanContext, SelfChecked
from ..reconcile.observe import Observed
from .base import Driver


@dataclass(frozen=True)
class WriteHosts(SelfChecked):  # the digest line says on the next plan
    VERB = "modify"
    KIND = "hosts"
    PHASE = "hosts"
    RE_READ = False

    @classmethod
    def apply_all(cls, actions: Sequence[Action], ctx: ApplyContext) -> None:
        """All nodes' hosts files at once (one content, hard-linked)."""
        k, marker = ctx.kernel, ctx.marker
        namespaces = [a.netns for a in actions if a.netns]
        # journalled first: a failure half-way leaves no directory of ours behind, and
        # removal touches only directories that carry this lab's marker
        for ns in namespaces:
            ctx.journal.add(f"/etc/netns/{ns}", partial(k.remove_node_files, ns, marker))
        k.write_node_files(namespaces, ctx.plan.hosts, marker, hosts_digest(ctx.plan.hosts))


@dataclass(frozen=True)
class Joined:
    """(address, name) lines of the containers joined to the lab (observe)."""

    lines: tuple[tuple[str, str], ...]


class HostsDriver(Driver):
    kind = "hosts"

    def observe(self, kernel: Kernel, desired: Desired, observed: Observed) -> None:
        from ..cni.labside import attachments, host_lines

        observed.extras[self.kind] = Joined(tuple(host_lines(attachments(desired.lab))))

    def conflicts(self, ctx: PlanContext) -> list[str]:
        problems = []
        for name, node, seen in ctx.seen_nodes():
            if node.netns is None or seen.files in (None, ctx.marker, LEGACY_NODE_DIR):
                continue
            other = lab_of(seen.files)
            problems.append(f"/etc/netns/{node.netns} (node {name}) already exists and "
                            + (f"belongs to lab {other}" if other else "is not vethlab's (no .vethlab marker in it)"))
        return problems

    def plan(self, ctx: PlanContext) -> None:
        # the lines come from the whole lab, also when only part of it is planned:
        # every node's file lists every node
        joined = ctx.observed.extras.get(self.kind)
        ctx.plan.hosts = ctx.full.hosts_entries() + list(joined.lines if isinstance(joined, Joined) else ())
        want = hosts_digest(ctx.plan.hosts)
        planned = set()
        for name, node in ctx.desired.nodes.items():
            seen = ctx.observed.nodes.get(name)
            if node.netns is not None and (name in ctx.created or seen is None or seen.hosts != want):
                planned.add(name)
                ctx.plan.add(WriteHosts(f"/etc/netns/{node.netns}/hosts", "name resolution of the lab's nodes",
                                        name, node.netns))
        if ctx.memory.hosts_digest is None or ctx.memory.hosts_digest == want:
            return
        # the nodes not re-read hold the lines last written: those changed
        for name, node in ctx.full.nodes.items():
            if node.netns is not None and name not in ctx.desired.nodes and name not in planned:
                ctx.plan.add(WriteHosts(f"/etc/netns/{node.netns}/hosts",
                                        "name resolution of the lab's nodes changed", name, node.netns))


DRIVER = HostsDriver()
