"""What `up` writes in the lab's state: write-ahead before the kernel is touched
(so `down` finds a killed run's objects before their markers are read), the
record of a complete run after (what the next run trusts), and forgetting a first
run that failed."""

from __future__ import annotations

from ..kernel.api import Kernel
from ..model import claims
from ..model.desired import Desired
from ..model.hosts import hosts_digest
from ..model.routes import route_of
from ..ownership import lab_of_node_entry
from ..state import store
from ..topology import HOST, LabSpec
from .actions import Plan
from .hostclaims import record_claims


def record_intent(kernel: Kernel, spec: LabSpec, state: store.LabState, desired: Desired, plan: Plan) -> None:
    """Before touching the kernel, remember every node we may create, so a
    killed run is found again by `down` even before its markers are read."""
    state.file = spec.file
    for name, node in desired.nodes.items():
        state.nodes[name] = node.netns
    state.complete = False
    state.routed = sorted(set(state.routed) | {n for n, node in desired.nodes.items() if node.routes})
    state.allocation = desired.allocation.to_json()
    record_claims(state, claims.of(spec, desired.allocation), keep=True)
    for holder in desired.firewalls:
        state.firewall_nodes[holder] = desired.netns(holder)
    for action in plan.actions:
        action.intend(state)  # each driver's write-ahead (uplinks as they were, services to start)
    host = desired.nodes.get(HOST)
    if host:
        for key, _value in host.sysctls:
            if key not in state.host_sysctls and key not in desired.own_sysctls:
                current = kernel.read_sysctl(None, key)
                if current is not None:
                    state.host_sysctls[key] = current
        state.host_routes = [route_of(r)._asdict() for r in host.routes]
    store.save(state)


def record_done(kernel: Kernel, spec: LabSpec, state: store.LabState, desired: Desired, plan: Plan) -> None:
    """After a complete run: the lab as built, trusted by the next run."""
    state.nodes = {name: node.netns for name, node in desired.nodes.items()}
    state.exec_digests = {n: plan.exec_digests.get(n, state.exec_digests.get(n, "")) for n in desired.nodes}
    state.fingerprints = plan.fingerprints
    state.hosts_digest = hosts_digest(plan.hosts)
    state.netns_ids = _namespace_ids(kernel, state, desired, plan.scope)
    state.links = [[*veth.a, *veth.b] for veth in desired.veths]
    if spec.machine is not None:  # links across machines: the far end is named from the file
        from ..model.placement import part

        state.links += [[c.node, c.ifname, c.peer_node, c.peer_ifname] for c in part(spec, spec.machine).cross]
    state.routed = sorted(n for n, node in desired.nodes.items() if node.routes)
    state.allocation = desired.allocation.to_json()
    record_claims(state, claims.of(spec, desired.allocation), keep=False)
    state.firewall_nodes = {node: desired.netns(node) for node in desired.firewalls}
    state.shaped = {f"{n}:{i}": iface.shaping.to_json() for (n, i), iface in desired.interfaces.items()
                    if iface.shaping}
    wanted_uplinks = {f"{u.node}:{u.ifname}" for u in desired.uplinks}
    state.uplinks = {k: v for k, v in state.uplinks.items() if k in wanted_uplinks}
    state.complete = True
    if HOST not in desired.nodes:
        state.host_routes = []
    store.save(state)


def _namespace_ids(kernel: Kernel, state: store.LabState, desired: Desired, scope: set[str] | None) -> dict[str, int]:
    """The nsfs inode of every node's namespace.  A node this run did not read (out of
    `scope`: its part of the file unchanged and its namespace alive) keeps the id
    recorded when vethlab made it — one stat each for 1000 untouched nodes is what a
    one-link edit need not pay, and a namespace replaced behind vethlab's back since
    must not have its id recorded as the lab's.  The nodes read are stat'ed."""
    out = {}
    for name, node in desired.nodes.items():
        ns = node.netns
        if not ns:
            continue
        ident = state.netns_ids.get(ns) if scope is not None and name not in scope else None
        if ident is None:
            ident = kernel.namespace_id(ns)
        if ident is not None:
            out[ns] = ident
    return out


def forget(kernel: Kernel, lab: str) -> None:
    """A first `up` that failed leaves no lab behind."""
    from . import forwarding

    forwarding.release(kernel, lab, recorded=True)
    store.remove(lab)


def remove_temp_files(kernel: Kernel, lab: str) -> None:
    """Temporary files a killed run of this lab left in /etc/netns (we hold the
    lab's lock: no run of it is writing them now)."""
    for mark, name in kernel.node_temp_files(()):
        if lab_of_node_entry(mark, name) == lab:
            kernel.remove_node_temp_file(name)
