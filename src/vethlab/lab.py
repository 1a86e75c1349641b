"""The Lab facade: load → validate → compile → observe → plan → execute → verify.

The CLI, the Python API and the pytest plugin are thin fronts over this class.
The kernel layer (and with it pyroute2, ~0.2 s to import) is loaded only when a
method needs the kernel.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

from . import ipam
from .desired import Desired, compile_lab, fingerprints, restricted
from .errors import ConflictError, KernelError, UsageError, VethlabError
from .firewall import table_name
from .kernel.api import Kernel, Netns
from .kernel.nodefiles import digest
from .kernel.process import run_in_node
from .ownership import marker
from .progress import report as report_progress
from .reconcile.executor import Executor, Outcome, wait_until
from .reconcile.observe import Observed, observe, observe_extras
from .reconcile.planner import Action, Memory, Plan, make_plan, route_of
from .state import shared, store
from .state.lock import LabLock
from .topology import HOST, LabSpec, lab_from_dict, load_lab

VERIFY_TIMEOUT = 10.0


def default_kernel() -> Kernel:
    from .kernel.rtnl import NetlinkKernel

    return NetlinkKernel()


class Node:
    """One node of a lab, for running commands in it."""

    def __init__(self, lab: str, name: str, netns: Netns) -> None:
        self.lab, self.name, self.netns = lab, name, netns

    def exec(self, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        """Run argv in the node (as `ip netns exec` does); returns CompletedProcess.
        Keyword arguments go to subprocess.run (capture_output=True, text=True, …)."""
        return run_in_node(self.netns, argv, **kwargs)

    def __repr__(self) -> str:
        return f"Node({self.lab}:{self.name})"


class Lab:
    def __init__(self, spec: LabSpec | None, name: str | None = None, kernel: Kernel | None = None) -> None:
        self.spec = spec
        self.name = spec.name if spec else str(name)
        self._kernel = kernel
        self.marker = marker(self.name)

    # -- construction ---------------------------------------------------------
    @classmethod
    def load(cls, path: str, kernel: Kernel | None = None) -> Lab:
        return cls(load_lab(path), kernel=kernel)

    @classmethod
    def from_dict(cls, data: dict[str, Any], kernel: Kernel | None = None) -> Lab:
        return cls(lab_from_dict(data), kernel=kernel)

    @classmethod
    def existing(cls, name: str, kernel: Kernel | None = None) -> Lab:
        """A lab known only by name (for down, status, exec)."""
        return cls(None, name=name, kernel=kernel)

    @property
    def kernel(self) -> Kernel:
        if self._kernel is None:
            self._kernel = default_kernel()
        return self._kernel

    def close(self) -> None:
        if self._kernel is not None:
            self._kernel.close()

    # -- the reconcile loop ------------------------------------------------------
    def _spec(self) -> LabSpec:
        if self.spec is None:
            raise UsageError(f"lab {self.name}: this needs the topology file")
        return self.spec

    def _taken(self, spec: LabSpec) -> dict[str, list[tuple[str, str]]]:
        """Subnets in use in the host namespace that this lab's networks must avoid:
        other labs' networks there, and addresses of interfaces not this lab's."""
        if not any(net.host == HOST for net in spec.networks):
            return {}
        taken: list[tuple[str, str]] = []
        for other in store.labs():
            state = store.load(other) if other != self.name else None
            for subnet in state.host_subnets if state else []:
                taken.append((subnet, f"lab {other}"))
        for link in self.kernel.links(None):
            if link.alias != self.marker:
                for cidr in link.addresses:
                    net = ipaddress.ip_interface(cidr).network
                    if not net.is_loopback:
                        taken.append((str(net), f"interface {link.ifname} of the host namespace"))
        return {HOST: taken}

    def _prepare(self, state: store.LabState | None, refresh: bool = False) -> tuple[Desired, Plan]:
        """IPAM, compile, observe, plan: everything `up` and `plan` share.

        After a complete run the state holds a fingerprint of each node's part of the
        file; nodes whose fingerprint is unchanged, whose namespace is still there and
        whose services still run are trusted and not re-read (a one-link edit of a
        1000-node lab reads a few namespaces, not 1000).  `refresh` re-reads them all,
        which also repairs drift made behind vethlab's back."""
        spec = self._spec()
        allocation = ipam.allocate(spec, ipam.Allocation.previous(state.allocation if state else None),
                                   self._taken(spec))
        full = compile_lab(spec, allocation)
        kinds = {iface.shaping.qdisc for iface in full.interfaces.values() if iface.shaping}
        require_qdiscs(self.kernel, kinds)
        prints = fingerprints(full)
        scope = None if refresh else self._scope(full, state, prints)
        desired = full if scope is None else restricted(full, scope)
        observed = self._observe(desired, state, scope)

        def mine(node: str) -> bool:
            return scope is None or node in scope

        observe_extras(self.kernel, observed, desired, table_name(self.name),
                       {n: ns for n, ns in (state.firewall_nodes if state else {}).items() if mine(n)},
                       {n: s for n, s in (state.services if state else {}).items() if mine(n)},
                       {k: v for k, v in (state.shaped if state else {}).items() if mine(k.split(":")[0])})
        memory = Memory(exec_digests=state.exec_digests if state else {},
                        host_routes=_host_routes(state) if mine(HOST) else [],
                        firewall_nodes={n: ns for n, ns in (state.firewall_nodes if state else {}).items() if mine(n)},
                        uplinks={k: v for k, v in (state.uplinks if state else {}).items() if mine(k.split(":")[0])},
                        forwarding=self._forwarding_in_force(desired),
                        shaped={k: v for k, v in (state.shaped if state else {}).items() if mine(k.split(":")[0])})
        plan = make_plan(desired, observed, self.marker, memory=memory)
        plan.hosts = full.hosts_entries()  # every node's hosts file lists every node
        plan.fingerprints = prints
        if scope is not None and state is not None and digest(plan.hosts) != state.hosts_digest:
            planned = {a.node for a in plan.actions if a.kind == "hosts"}
            for name, node in full.nodes.items():
                if node.netns is not None and name not in planned:
                    plan.add(Action("modify", "hosts", f"/etc/netns/{node.netns}/hosts",
                                    "name resolution of the lab's nodes changed", "hosts", name, node.netns, {}))
        return full, plan

    def _scope(self, full: Desired, state: store.LabState | None, prints: dict[str, str]) -> set[str] | None:
        """The nodes to re-read, or None for all of them."""
        if state is None or not state.complete or not state.fingerprints:
            return None  # first run, or after a crash: trust nothing
        changed = {n for n, fp in prints.items() if state.fingerprints.get(n) != fp}
        changed |= set(state.nodes) - set(full.nodes)
        alive = self.kernel.alive_namespaces()
        changed |= {n for n, node in full.nodes.items() if node.netns and node.netns not in alive}
        changed |= {n for n, items in state.services.items()
                    if any(not self.kernel.service_alive(pid, started) for _argv, pid, started in items)}
        peers = {iface.peer[0] for key, iface in full.interfaces.items() if key[0] in changed and iface.peer}
        return changed | peers

    def _forwarding_in_force(self, desired: Desired) -> set[str]:
        """Host forwarding keys this lab holds in the shared ledger and that are on."""
        held = set(shared.held_by(self.name))
        return {key for key in desired.forwarding.get(HOST, ()) if key in held
                and self.kernel.read_sysctl(None, key) == "1"}

    def _observe(self, desired: Desired, state: store.LabState | None, scope: set[str] | None = None) -> Observed:
        known: dict[str, Netns] = {n: ns for n, ns in (state.nodes if state else {}).items()
                                   if scope is None or n in scope}
        # a dead namespace file still linked to this lab's birth marker is the lab's own
        linked = {ns for lab, ns, same in self.kernel.birth_markers() if lab == self.name and same}
        for name, node in desired.nodes.items():
            if node.netns in linked:
                known.setdefault(name, node.netns)
        return observe(self.kernel, desired, known, self.marker, routed=set(state.routed) if state else None,
                       only=scope)

    def plan(self, refresh: bool = False) -> Plan:
        """What `up` would change; touches nothing."""
        return self._prepare(store.load(self.name), refresh)[1]

    def up(self, keep_on_error: bool = False, wait: float = 60.0,
           progress: Callable[[Action], None] | None = None, refresh: bool = False) -> Plan:
        """Make the kernel match the file; return the plan that was carried out.
        Returns once links are up and addresses usable; rolls back on failure."""
        self._spec()
        with LabLock(self.name, wait) as lock:
            try:
                return self._up_locked(keep_on_error, progress, refresh)
            finally:
                if store.load(self.name) is None:  # refused or rolled back: not even a lock file stays
                    lock.release(remove=True)

    def _up_locked(self, keep_on_error: bool, progress: Callable[[Action], None] | None, refresh: bool) -> Plan:
        """up() under the lab's lock: prepare, execute, verify, record."""
        existed = store.load(self.name)
        state = existed or store.LabState(self.name)
        desired, plan = self._prepare(existed, refresh)
        if plan:
            self._record_intent(state, desired, plan)
            executor = Executor(self.kernel, self.marker, progress, os.path.join(store.lab_dir(self.name), "logs"))
            try:
                executor.run(plan, keep_on_error)
                try:
                    self._verify(desired, {a.node for a in plan.actions if a.kind != "hosts"},
                                 {a.node for a in plan.actions if a.kind == "node" and a.verb == "create"})
                except VethlabError as exc:
                    if keep_on_error:
                        raise
                    problems = executor.journal.unwind()  # what this run made goes, as on any failure
                    tail = ("\nrollback was incomplete:\n" + "\n".join(problems)) if problems else \
                        "\neverything this run created was removed again"
                    raise type(exc)(f"{exc}{tail}") from None
            except BaseException:
                if existed is None and not keep_on_error:
                    self._forget(state)  # a first `up` that failed leaves no lab behind
                else:
                    self._remember_services(state, executor.outcome)
                    store.save(state)
                raise
            self._remember_services(state, executor.outcome)
        self._record_done(state, desired, plan)
        return plan

    def _linkwatch_nudger(self, created: set[str] | None) -> Callable[..., None] | None:
        """A way to hurry the kernel's linkwatch, which applies carrier changes at most
        100 devices per run and leaves the rest to a run paced at one per second
        unless an urgent event comes: with 2000 new veth ends the last ones would come
        up a second or more late.  Flapping a scratch veth pair (inside a namespace
        this run made: it dies with it) is such an urgent event, each time."""
        ns = next((self.spec.netns_of(n) for n in sorted(created or ()) if self.spec and self.spec.netns_of(n)), None)
        if ns is None:
            return None
        kernel = self.kernel
        kernel.create_veth(ns, "vlnudge0", ns, "vlnudge1", None, self.marker)
        kernel.set_link(ns, "vlnudge1", up=True)
        kernel.flush()
        state = {"up": False}

        def nudge(done: bool = False) -> None:
            if done:
                kernel.delete_link(ns, "vlnudge0")
                kernel.flush()
                return
            state["up"] = not state["up"]
            kernel.set_link(ns, "vlnudge0", up=state["up"])
            kernel.flush()

        return nudge

    def _forget(self, state: store.LabState) -> None:
        from .teardown import restore_sysctl

        shared.release(self.name, lambda key, value: restore_sysctl(self.kernel, key, value))
        store.remove(self.name)

    def _remember_services(self, state: store.LabState, outcome: Outcome) -> None:
        for node, items in list(state.services.items()):
            state.services[node] = [item for item in items if item[1] not in outcome.stopped
                                    and self.kernel.service_alive(item[1], item[2])]
        for node, argv, pid, started in outcome.started:
            state.services.setdefault(node, []).append([argv, pid, started])
        state.services = {node: items for node, items in state.services.items() if items}

    def _record_intent(self, state: store.LabState, desired: Desired, plan: Plan) -> None:
        """Before touching the kernel, remember every node we may create, so a
        killed run is found again by `down` even before its markers are read."""
        state.file = self.spec.file if self.spec else state.file
        for name, node in desired.nodes.items():
            state.nodes[name] = node.netns
        state.complete = False
        state.routed = sorted(set(state.routed) | {n for n, node in desired.nodes.items() if node.routes})
        state.allocation = desired.allocation.to_json()
        state.host_subnets = sorted(set(state.host_subnets) | _host_subnets(desired))
        for holder in desired.firewalls:
            state.firewall_nodes[holder] = desired.netns(holder)
        for action in plan.actions:
            if action.kind == "uplink" and not action.params.get("release") and action.target not in state.uplinks:
                state.uplinks[action.target] = {"up": action.params["was_up"], "netns": action.netns}
        host = desired.nodes.get(HOST)
        if host:
            for key, _value in host.sysctls:
                if key not in state.host_sysctls and key not in desired.own_sysctls:
                    current = self.kernel.read_sysctl(None, key)
                    if current is not None:
                        state.host_sysctls[key] = current
            state.host_routes = [route_of(r)._asdict() for r in host.routes]
        store.save(state)

    def _record_done(self, state: store.LabState, desired: Desired, plan: Plan) -> None:
        state.nodes = {name: node.netns for name, node in desired.nodes.items()}
        state.exec_digests = {n: plan.exec_digests.get(n, state.exec_digests.get(n, "")) for n in desired.nodes}
        state.fingerprints = plan.fingerprints
        state.hosts_digest = digest(plan.hosts)
        state.netns_ids = {ns: ident for node in desired.nodes.values() if (ns := node.netns)
                           and (ident := self.kernel.namespace_id(ns)) is not None}
        state.links = [[*veth.a, *veth.b] for veth in desired.veths]
        state.routed = sorted(n for n, node in desired.nodes.items() if node.routes)
        state.allocation = desired.allocation.to_json()
        state.host_subnets = sorted(_host_subnets(desired))
        state.firewall_nodes = {node: desired.netns(node) for node in desired.firewalls}
        state.shaped = {f"{n}:{i}": iface.shaping.to_json() for (n, i), iface in desired.interfaces.items()
                        if iface.shaping}
        wanted_uplinks = {f"{u.node}:{u.ifname}" for u in desired.uplinks}
        state.uplinks = {k: v for k, v in state.uplinks.items() if k in wanted_uplinks}
        state.complete = True
        if HOST not in desired.nodes:
            state.host_routes = []
        store.save(state)

    def _verify(self, desired: Desired, touched: set[str], created: set[str] | None = None) -> None:
        """Re-read the nodes the plan touched: everything planned is there, every link
        meant to be up is operationally up (so the first packet is not lost to a link
        still coming up).  Untouched nodes were just observed to match the file."""
        # read the touched nodes' neighbours too: a veth pair is judged from both ends
        neighbours = {iface.peer[0] for key, iface in desired.interfaces.items() if key[0] in touched and iface.peer}
        # veths: a bridge without ports, or a macvlan on a parent without carrier, is rightly not UP
        up_wanted = {key for key, iface in desired.interfaces.items()
                     if iface.up and iface.peer and (key[0] in touched or iface.peer[0] in touched)}
        last: dict[str, Any] = {}
        scope = restricted(desired, touched | neighbours)  # plan over what is read, not all N nodes
        # Nodes made by this run: their address and route requests were acknowledged
        # one by one; what is left to wait for there is the links' state.
        observed = observe(self.kernel, scope, {}, self.marker, read_hosts=False, only=touched | neighbours,
                           skip_addresses=created, skip_routes=created)

        def pending() -> set[tuple[str, str]]:
            return {(node, ifname) for node, ifname in up_wanted
                    if (link := observed.nodes[node].links.get(ifname)) is None or link.operstate != "UP"}

        waiting = pending()
        report_progress("waiting for links to come up", len(up_wanted) - len(waiting), len(up_wanted), "up", force=True)
        refreshed: set[str] = set()
        nudger = self._linkwatch_nudger(created) if len(waiting) > 100 else None

        def settled() -> bool:
            # re-read only the nodes still waiting: a 1000-node build does not re-dump
            # 1000 namespaces while the kernel's linkwatch works through its queue
            nonlocal waiting
            if not waiting:
                return True
            if nudger:
                nudger()
            nodes = {node for node, _ in waiting}
            for node in nodes:
                seen = observed.nodes[node]
                seen.links = {link.ifname: link for link in self.kernel.links(seen.netns, addresses=False)}
                refreshed.add(node)
            waiting = pending()
            report_progress("waiting for links to come up", len(up_wanted) - len(waiting), len(up_wanted), "up")
            if waiting:
                node, ifname = next(iter(waiting))
                link = observed.nodes[node].links.get(ifname)
                last["waiting"] = f"{node}:{ifname} is {link.operstate if link else 'missing'}"
            return not waiting

        last["observed"] = observed
        try:
            if not wait_until(settled, VERIFY_TIMEOUT):
                raise KernelError(f"lab {self.name} did not settle within {VERIFY_TIMEOUT:g} s: "
                                  f"{last.get('waiting')}")
        finally:
            if nudger:
                nudger(done=True)
        for node in refreshed - (created or set()):  # polled without addresses: read them once, now
            seen = observed.nodes[node]
            seen.links = {link.ifname: link for link in self.kernel.links(seen.netns)}
        host = desired.nodes.get(HOST)
        remaining = make_plan(scope, last["observed"], self.marker, None,
                              [route_of(r) for r in host.routes] if host else [])
        # checked by their own means (digest chain, pids, ledger, qdisc kind on the next plan)
        left = [a for a in remaining.actions if a.kind not in ("exec", "hosts", "firewall", "service", "uplink",
                                                               "forwarding", "shaping") and a.node in touched
                and not (a.kind in ("address", "route") and created and a.node in created)]
        if left:
            raise KernelError("after applying, the kernel still differs from the file:\n" +
                              "\n".join(f"  {a.verb} {a.kind} {a.target}: {a.reason}" for a in left))

    def down(self, wait: float = 60.0) -> None:
        """Remove everything of this lab.  A lab that does not exist: nothing to do."""
        from .teardown import down

        down(self.name, self.kernel, wait)

    # -- using a lab -----------------------------------------------------------------
    def nodes(self) -> dict[str, Netns]:
        if self.spec is not None:
            return {name: self.spec.netns_of(name) for name in self.spec.nodes}
        state = store.load(self.name)
        return dict(state.nodes) if state else {}

    def node(self, name: str) -> Node:
        nodes = self.nodes()
        if name != HOST and name not in nodes:
            raise UsageError(f"lab {self.name} has no node {name} (it has: {', '.join(sorted(nodes)) or 'none'})")
        return Node(self.name, name, nodes.get(name))

    def __enter__(self) -> Lab:
        self.up()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            self.down()
        finally:
            self.close()


def require_qdiscs(kernel: Kernel, kinds: set[str]) -> None:
    """Refuse, before anything is built, shaping this kernel cannot do."""
    missing = sorted(kind for kind in kinds if not kernel.qdisc_supported(kind))
    if missing:
        raise ConflictError(
            f"this kernel lacks the qdisc {', '.join(missing)} (kernel module "
            f"{', '.join('sch_' + k for k in missing)}), needed for "
            f"{'delay, jitter or loss' if 'netem' in missing else 'rate'}: load it with `modprobe "
            f"sch_{missing[0]}` if the module exists, or keep only what tbf does (rate); nothing was changed")


def _host_subnets(desired: Desired) -> set[str]:
    alloc = desired.allocation
    return {subnet for nets in (alloc.subnet, alloc.subnet6) for name, subnet in nets.items()
            if any(n.name == name for n in desired.firewalls.get(HOST, []))}


def _host_routes(state: store.LabState | None) -> list[Any]:
    from .kernel.api import Route

    return [Route(**r) for r in state.host_routes] if state else []


# -- runtime views and faults (used by `status` and `link up|down`) -------------------
def lab_status(name: str, kernel: Kernel | None = None) -> dict[str, Any]:
    """Nodes and, per interface: node, peer (node:ifname), addresses, MTU, admin
    state, operational state, carrier and counters."""
    from .inspect import interfaces, lab_state

    state = lab_state(name)
    kernel = kernel or default_kernel()
    try:
        exists, views = interfaces(kernel, state)
    finally:
        kernel.close()
    from .kernel import services

    return {
        "lab": name, "file": state.file, "complete": state.complete,
        "nodes": [{"name": n, "netns": ns, "exists": exists.get(n, False)} for n, ns in state.nodes.items()],
        "interfaces": [v.to_json() for v in views],
        "services": [{"node": node, "command": " ".join(argv), "pid": pid,
                      "state": "running" if services.alive(pid, started) else "exited",
                      "log": os.path.join(store.lab_dir(name), "logs", f"{node}-{i}.log")}
                     for node, items in state.services.items() for i, (argv, pid, started) in enumerate(items)],
    }


def set_link_state(name: str, node: str, ifname: str, up: bool, timeout: float = 5.0,
                   kernel: Kernel | None = None) -> None:
    """Fault injection: set one end down or up, and return once its peer shows it
    (no carrier, operationally down / carrier, operationally up)."""
    from .inspect import lab_state, peers

    state = lab_state(name)
    peer = peers(state).get((node, ifname))
    if peer is None:
        raise UsageError(f"{node}:{ifname} is not a link end of lab {name}")
    if state.fingerprints.pop(node, None) is not None:  # differs from the file now: re-read at the next up
        store.save(state)
    kernel = kernel or default_kernel()
    try:
        kernel.set_link(state.nodes.get(node), ifname, up=up)
        peer_ns = state.nodes.get(peer[0])

        def shows() -> bool:
            for link in kernel.links(peer_ns):
                if link.ifname == peer[1]:
                    peer_up = link.admin_up
                    want_carrier = up and peer_up
                    return link.carrier == want_carrier and (link.operstate == "UP") == want_carrier
            return False

        if not wait_until(shows, timeout):
            raise KernelError(f"{peer[0]}:{peer[1]} did not show {node}:{ifname} going {'up' if up else 'down'} "
                              f"within {timeout:g} s")
    finally:
        kernel.close()
