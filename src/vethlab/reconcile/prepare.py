"""IPAM, compile, scope, observe, remember, plan: everything `up` and `plan` share.

After a complete run the state holds a fingerprint of each node's part of the
file; nodes whose fingerprint is unchanged, whose namespace is still there and
whose services still run are trusted and not re-read (a one-link edit of a
1000-node lab reads a few namespaces, not 1000).  `refresh` re-reads them all,
which also repairs drift made behind vethlab's back.
"""

from __future__ import annotations

from ..drivers import registry
from ..kernel.api import Kernel, Netns, Route
from ..model import ipam
from ..model.desired import Desired, compile_lab, fingerprints, restricted
from ..ownership import marker, table_name
from ..state import shared, store
from ..topology import HOST, LabSpec
from .actions import Memory, Plan
from .forward_policy import forward_warnings
from .hostclaims import allocate
from .observe import Observed, observe, observe_extras
from .planner import make_plan
from .removal import birth_tags
from .services import records as service_records


def prepare(kernel: Kernel, spec: LabSpec, state: store.LabState | None, refresh: bool = False,
            allocation: ipam.Allocation | None = None) -> tuple[Desired, Plan]:
    """The whole desired state and the plan.  `allocation`: IPAM's choices already
    claimed by `up`; `plan` computes (and checks) them here."""
    if allocation is None:
        allocation = allocate(kernel, spec, state)
    full = compile_lab(spec, allocation)
    if spec.machine is not None:  # SPEC §7: only this machine's part
        from ..model.placement import localize

        full = localize(full, spec, spec.machine)
    for driver in registry.DRIVERS:
        driver.preflight(kernel, full)
    prints = fingerprints(full)
    # one read of mountinfo for scope and observe_lab: between them this run only reads
    # the kernel (and holds the lab's lock), so no namespace of vethlab's comes or goes
    alive = kernel.alive_namespaces()
    changed = None if refresh else scope(kernel, full, state, prints, alive)
    nodes = None if changed is None else changed | peers_of(full, changed)
    # the host pulled in only as the peer of changed members: just their ports (and
    # its bridges) are read and judged, not the ports of every member of its networks
    part = frozenset({HOST} if nodes is not None and changed is not None and HOST in nodes - changed else ())
    desired = full if nodes is None else restricted(full, nodes, part)
    observed = observe_lab(kernel, desired, state, nodes, host_part=bool(part), alive=alive)
    memory = remembered(kernel, desired, state, nodes)
    observe_extras(kernel, observed, desired, table_name(spec.name), memory.firewall_nodes,
                   {n: s for n, s in (state.services if state else {}).items() if nodes is None or n in nodes},
                   memory.shaped)
    registry.observe_kinds(kernel, desired, observed)
    plan = make_plan(desired, observed, marker(spec.name), memory=memory, full=full)
    plan.warnings = forward_warnings(kernel, full)
    plan.fingerprints = prints
    plan.scope = nodes
    return full, plan


def scope(kernel: Kernel, full: Desired, state: store.LabState | None, prints: dict[str, str],
          alive: set[str] | None = None) -> set[str] | None:
    """The nodes whose part of the file or of the kernel changed (to re-read with
    their link peers, peers_of), or None to re-read all of them.  `alive`: the
    namespaces mounted, if just read."""
    if state is None or not state.complete or not state.fingerprints:
        return None  # first run, or after a crash: trust nothing
    changed = {n for n, fp in prints.items() if state.fingerprints.get(n) != fp}
    changed |= set(state.nodes) - set(full.nodes)
    if alive is None:
        alive = kernel.alive_namespaces()
    changed |= {n for n, node in full.nodes.items() if node.netns and node.netns not in alive}
    changed |= {n for n, rec in service_records(state.services)
                if not (rec.done or kernel.service_alive(rec.pid, rec.started))}
    return changed


def peers_of(full: Desired, nodes: set[str]) -> set[str]:
    """The nodes at the other end of the veths of `nodes`."""
    return {iface.peer[0] for key, iface in full.interfaces.items() if key[0] in nodes and iface.peer}


def remembered(kernel: Kernel, desired: Desired, state: store.LabState | None, nodes: set[str] | None) -> Memory:
    """What the state remembers of earlier runs, about the nodes planned."""
    if state is None:
        return Memory(forwarding=_forwarding_in_force(kernel, desired))

    def mine(node: str) -> bool:
        return nodes is None or node in nodes

    return Memory(exec_digests=state.exec_digests,
                  host_routes=[Route(**r) for r in state.host_routes] if mine(HOST) else [],
                  firewall_nodes={n: ns for n, ns in state.firewall_nodes.items() if mine(n)},
                  uplinks={k: v for k, v in state.uplinks.items() if mine(k.split(":")[0])},
                  forwarding=_forwarding_in_force(kernel, desired),
                  shaped={k: v for k, v in state.shaped.items() if mine(k.split(":")[0])},
                  # the nodes not re-read hold the hosts files last written
                  hosts_digest=state.hosts_digest if nodes is not None else None)


def _forwarding_in_force(kernel: Kernel, desired: Desired) -> set[str]:
    """Host forwarding keys this lab holds in the shared ledger and that are on."""
    held = set(shared.held_by(desired.lab))
    return {key for key in desired.forwarding.get(HOST, ()) if key in held and kernel.read_sysctl(None, key) == "1"}


def observe_lab(kernel: Kernel, desired: Desired, state: store.LabState | None,
                nodes: set[str] | None = None, host_part: bool = False, alive: set[str] | None = None) -> Observed:
    """`alive`: the namespaces mounted, if just read (observe's `live`)."""
    known: dict[str, Netns] = {n: ns for n, ns in (state.nodes if state else {}).items()
                               if nodes is None or n in nodes}
    # a dead namespace file still linked to this lab's birth marker is the lab's own
    linked = {ns for lab, ns, same in birth_tags(kernel) if lab == desired.lab and same}
    for name, node in desired.nodes.items():
        if node.netns in linked:
            known.setdefault(name, node.netns)
    return observe(kernel, desired, known, marker(desired.lab), routed=set(state.routed) if state else None,
                   only=nodes, host_part=host_part, live=alive)

