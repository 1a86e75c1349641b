"""The Lab facade: load → validate → compile → observe → plan → execute → verify.

The CLI, the Python API and the pytest plugin are thin fronts over this class.
The kernel layer (and with it pyroute2, ~0.2 s to import) is loaded only when a
method needs the kernel.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

from .errors import ConflictError, KernelError, UsageError, VethlabError
from .kernel.api import Kernel, Netns
from .kernel.listeners import listeners
from .kernel.nodefiles import digest
from .kernel.process import run_in_node
from .model import claims, ipam
from .model.desired import Desired, compile_lab, fingerprints, restricted
from .model.firewall import table_name
from .ownership import lab_of, marker
from .reconcile.executor import Executor, Outcome, wait_until
from .reconcile.observe import Observed, observe, observe_extras
from .reconcile.planner import Action, Memory, Plan, make_plan, route_of
from .reconcile.progress import report as report_progress
from .reconcile.services import Record as _Record
from .reconcile.services import records as service_records
from .state import hostwide, shared, store
from .state.hostwide import AllocationLock
from .state.lock import LabLock
from .topology import HOST, LabSpec, lab_from_dict, load_lab
from .topology.builder import Buildable, Draft

VERIFY_TIMEOUT = 10.0


def default_kernel() -> Kernel:
    from .kernel.rtnl import NetlinkKernel

    return NetlinkKernel()


class Node:
    """One node of a lab, for running commands in it."""

    def __init__(self, lab: str, name: str, netns: Netns) -> None:
        self.lab, self.name, self.netns = lab, name, netns

    def exec(self, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        """Run argv in the node (as `ip netns exec` does) and return the CompletedProcess,
        its output captured as text in `.stdout`/`.stderr` — what a test or a script
        wants to look at.  Keyword arguments go to subprocess.run: pass
        `capture_output=False` (or your own stdout=/stderr=) to let the output through
        to the terminal instead, `text=False` for bytes."""
        if not any(key in kwargs for key in ("capture_output", "stdout", "stderr")):
            kwargs["capture_output"] = True
        if kwargs.get("capture_output") and not any(k in kwargs for k in ("text", "encoding", "universal_newlines")) \
                and not isinstance(kwargs.get("input"), bytes):
            kwargs["text"] = True
        return run_in_node(self.netns, argv, **kwargs)

    def __repr__(self) -> str:
        return f"Node({self.lab}:{self.name})"


class Lab(Buildable):  # add_node, add_link, add_network on a Lab.new (topology/builder.py)
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
    def new(cls, name: str, prefix: bool | None = None, kernel: Kernel | None = None) -> Lab:
        """An empty lab to build in code with add_node, add_link, add_network, add_member."""
        draft = Draft(name, prefix)  # the lab name is checked here, the rest when first needed
        lab = cls(None, name=name, kernel=kernel)
        lab._start(draft)
        return lab

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

    def _taken(self, spec: LabSpec) -> claims.HostUse:
        """What others hold in the host namespace that this lab must not claim too:
        other labs' recorded claims (names, subnets, host link addresses, published
        ports), the addresses of interfaces not this lab's, and — when the lab
        publishes — the host's listening sockets.  `up` reads this under the
        host-wide lock; every lab takes it, since namespace names are host-wide."""
        use = claims.HostUse()
        for other in store.labs():
            state = store.load(other) if other != self.name else None
            if state is None:
                continue
            who = f"lab {other}"
            use.names += [(name, who) for name in state.host_names]
            use.subnets += [(subnet, who) for subnet in state.host_subnets]
            use.addresses += [(address, who) for address in state.host_addresses]
            use.ports += [(port, who) for port in state.host_ports]
        if not claims.wants_host(spec):
            return use  # nodes and networks all in the lab's own namespaces: only names can clash
        for link in self.kernel.links(None):
            if link.alias != self.marker:
                owner = lab_of(link.alias)
                who = f"interface {link.ifname} of the host namespace" + (f" (lab {owner})" if owner else "")
                use.addresses += [(cidr, who) for cidr in link.addresses]
        if any(m.publish for net in spec.networks if net.host == HOST for m in net.members):
            use.listeners = [(str(claims.Port(s.port, s.protocol, s.address)), "a process of the host namespace")
                             for s in listeners()]
        return use

    def _allocate(self, spec: LabSpec, state: store.LabState | None) -> ipam.Allocation:
        """IPAM's choices, checked against what others hold in the host namespace:
        ConflictError (exit 1) before anything is built."""
        use = self._taken(spec)
        allocation = ipam.allocate(spec, ipam.Allocation.previous(state.allocation if state else None),
                                   {HOST: use.taken_subnets()})
        claims.check(spec, use)
        return allocation

    def _claim(self, state: store.LabState, existed: store.LabState | None, wait: float) -> ipam.Allocation:
        """Choose and record the lab's host-namespace claims as one step under the
        host-wide lock, so a lab coming up in parallel sees them before it chooses
        (state/hostwide.py).  The lock covers reading, choosing and one state save."""
        spec = self._spec()
        self.kernel.links(None, addresses=False)  # pay netlink's import and socket before the lock, not in it
        with AllocationLock(self.name, wait):
            allocation = self._allocate(spec, existed)
            before = [getattr(state, key) for key in CLAIM_FIELDS]
            state.allocation = allocation.to_json()
            _record_claims(state, claims.of(spec, allocation), keep=True)
            if existed is None or [getattr(state, key) for key in CLAIM_FIELDS] != before:
                store.save(state)  # a re-run that claims nothing new writes nothing
        return allocation

    def _unclaim(self, state: store.LabState, existed: store.LabState | None, before: dict[str, Any]) -> None:
        """A refused `up` (a conflict found after the claim) gives its claims back."""
        if existed is None:
            store.remove(self.name)
            return
        for key, value in before.items():
            setattr(state, key, value)
        store.save(state)

    def _prepare(self, state: store.LabState | None, refresh: bool = False,
                 allocation: ipam.Allocation | None = None) -> tuple[Desired, Plan]:
        """IPAM, compile, observe, plan: everything `up` and `plan` share.

        After a complete run the state holds a fingerprint of each node's part of the
        file; nodes whose fingerprint is unchanged, whose namespace is still there and
        whose services still run are trusted and not re-read (a one-link edit of a
        1000-node lab reads a few namespaces, not 1000).  `refresh` re-reads them all,
        which also repairs drift made behind vethlab's back.  `allocation`: IPAM's
        choices already claimed by `up`; `plan` computes (and checks) them here."""
        spec = self._spec()
        if allocation is None:
            allocation = self._allocate(spec, state)
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
        plan.warnings = forward_warnings(self.kernel, full)
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
        changed |= {n for n, rec in service_records(state.services)
                    if not (rec.done or self.kernel.service_alive(rec.pid, rec.started))}
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
                return self._up_locked(keep_on_error, progress, refresh, wait)
            finally:
                if store.load(self.name) is None:  # refused or rolled back: not even a lock file stays
                    lock.release(remove=True)
                    hostwide.tidy()

    def _up_locked(self, keep_on_error: bool, progress: Callable[[Action], None] | None, refresh: bool,
                   wait: float = 60.0) -> Plan:
        """up() under the lab's lock: claim, prepare, execute, verify, record."""
        existed = store.load(self.name)
        state = existed or store.LabState(self.name)
        self._remove_temp_files()
        before = {key: getattr(state, key) for key in CLAIM_FIELDS}
        allocation = self._claim(state, existed, wait)
        try:
            desired, plan = self._prepare(existed, refresh, allocation)
        except BaseException:
            self._unclaim(state, existed, before)
            raise
        if plan:
            self._record_intent(state, desired, plan)
            executor = Executor(self.kernel, self.marker, progress, store.logs_dir(self.name),
                                record=lambda outcome: self._save_services(state, outcome))
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
        self._await_ready(desired, existed, {launch.node for launch in executor.launches} if plan else set())
        self._adopt_services(state, desired, existed)
        self._record_done(state, desired, plan)
        return plan

    def _remove_temp_files(self) -> None:
        """Temporary files a killed run of this lab left in /etc/netns (we hold the
        lab's lock: no run of it is writing them now)."""
        for lab, name in self.kernel.node_temp_files(()):
            if lab == self.name:
                self.kernel.remove_node_temp_file(name)

    def _adopt_services(self, state: store.LabState, desired: Desired, existed: store.LabState | None) -> None:
        """After a run that did not finish, record the services of the file that run
        in their node under their label but that the state does not know (the run
        was killed between starting them and recording them)."""
        if existed is None or existed.complete:
            return
        from .reconcile.services import labels, running_labels

        nodes = {name: node for name, node in desired.nodes.items() if node.run and node.netns}
        labelled = running_labels(self.kernel, [node.netns for node in nodes.values()]
                                  + [state.nodes.get(name) for name in state.services])
        known = {rec.label for _node, rec in service_records(state.services)}
        for name, items in state.services.items():  # recorded before they started: their pid now
            ns = state.nodes.get(name)
            for i, item in enumerate(items):
                rec = service_record(item)
                if ns and not rec.pid and rec.label in labelled.get(ns, {}):
                    pid, started = labelled[ns][rec.label]
                    items[i] = rec._replace(pid=pid, started=started,
                                            netns_id=self.kernel.namespace_id(ns) or 0).to_json()
        for name, node in nodes.items():
            found = labelled.get(node.netns or "", {})
            for argv, label in zip(node.run, labels(self.name, name, node.run), strict=True):
                if label not in known and label in found:
                    pid, started = found[label]
                    record = _Record(list(argv), pid, started, label, False,
                                     self.kernel.namespace_id(node.netns or "") or 0)
                    state.services.setdefault(name, []).append(record.to_json())

    def _await_ready(self, desired: Desired, existed: store.LabState | None, watched: set[str]) -> None:
        """After a run that did not finish (killed), services it started are found
        running and not started again, so this run did not watch them: wait for
        their readiness checks here, or `up` would return before they listen."""
        if existed is None or existed.complete:
            return
        from .reconcile.services import supervise

        checks = {name: (node.netns, list(node.ready)) for name, node in desired.nodes.items()
                  if node.ready and node.run and name not in watched}
        if checks:
            supervise(self.kernel, [], checks)

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
        from .reconcile import forwarding

        forwarding.release(self.kernel, self.name, recorded=True)
        store.remove(self.name)

    def _remember_services(self, state: store.LabState, outcome: Outcome) -> None:
        """The services the state keeps: those recorded or started by this run that
        still run (or, one-shot, finished), each once; the ones this run stopped or
        restarted are forgotten."""
        from .reconcile.services import is_running, running_labels

        fresh = {rec.label for _node, rec in outcome.started}
        candidates = [(node, rec) for node, rec in service_records(state.services)
                      if rec.label not in fresh and rec.pid not in outcome.stopped
                      and (not rec.label or rec.label not in outcome.stopped)]
        candidates += outcome.started
        labelled = running_labels(self.kernel, [state.nodes.get(node) for node, rec in candidates
                                                if not rec.done and not self.kernel.service_alive(rec.pid, rec.started)])
        kept: dict[str, list[list[Any]]] = {}
        for node, rec in candidates:
            ns = state.nodes.get(node)
            if is_running(self.kernel, rec, ns, labelled):
                if not rec.done and ns and not self.kernel.service_alive(rec.pid, rec.started):
                    # its first process is gone (it daemonised, or a killed run never recorded
                    # it): remember the process that carries its label, so the next run trusts it
                    rec = rec._replace(pid=labelled[ns][rec.label][0], started=labelled[ns][rec.label][1])
                kept.setdefault(node, []).append(rec.to_json())
        state.services = kept

    def _save_services(self, state: store.LabState, outcome: Outcome) -> None:
        """Record services the moment they are started (their pid and start time),
        before watching them: a kill from then on leaves nothing `down` does not know."""
        for node, rec in outcome.started:
            items = state.services.setdefault(node, [])
            items[:] = [item for item in items if service_record(item).label != rec.label]
            items.append(rec.to_json())
        store.save(state)

    def _intend_services(self, state: store.LabState, plan: Plan) -> None:
        """Write-ahead: every service this run will start is in the state (command
        and label) before it starts."""
        for action in plan.actions:
            if action.kind == "service" and action.verb == "run":
                label = action.params["label"]
                items = state.services.setdefault(action.node, [])
                if not any(service_record(item).label == label for item in items):
                    items.append(service_record([action.params["argv"], 0, 0, label]).to_json())

    def _record_intent(self, state: store.LabState, desired: Desired, plan: Plan) -> None:
        """Before touching the kernel, remember every node we may create, so a
        killed run is found again by `down` even before its markers are read."""
        state.file = self.spec.file if self.spec else state.file
        for name, node in desired.nodes.items():
            state.nodes[name] = node.netns
        state.complete = False
        state.routed = sorted(set(state.routed) | {n for n, node in desired.nodes.items() if node.routes})
        state.allocation = desired.allocation.to_json()
        _record_claims(state, claims.of(self._spec(), desired.allocation), keep=True)
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
        self._intend_services(state, plan)
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
        _record_claims(state, claims.of(self._spec(), desired.allocation), keep=False)
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

    def down(self, wait: float = 60.0) -> dict[str, int]:
        """Remove everything of this lab.  A lab that does not exist: nothing to do.
        Returns how many processes it ended, per node."""
        from .ops.down import down

        return down(self.name, self.kernel, wait)

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


def service_record(item: Sequence[Any]) -> _Record:
    return _Record.of(item)


def require_qdiscs(kernel: Kernel, kinds: set[str]) -> None:
    """Refuse, before anything is built, shaping this kernel cannot do."""
    missing = sorted(kind for kind in kinds if not kernel.qdisc_supported(kind))
    if missing:
        raise ConflictError(
            f"this kernel lacks the qdisc {', '.join(missing)} (kernel module "
            f"{', '.join('sch_' + k for k in missing)}), needed for "
            f"{'delay, jitter or loss' if 'netem' in missing else 'rate'}: load it with `modprobe "
            f"sch_{missing[0]}` if the module exists, or keep only what tbf does (rate); nothing was changed")


CLAIM_FIELDS = ("allocation", "host_subnets", "host_addresses", "host_ports", "host_names")


def _record_claims(state: store.LabState, mine: claims.HostClaims, keep: bool) -> None:
    """Put the lab's host-namespace claims in its state.  keep: add to what is
    recorded (before building: what an interrupted run may have made stays claimed
    until `down`); else replace (after a complete run)."""
    for key, values in (("host_subnets", mine.subnets), ("host_addresses", mine.addresses),
                        ("host_ports", mine.ports), ("host_names", mine.names)):
        setattr(state, key, sorted(set(getattr(state, key)) | values if keep else values))


def forward_warnings(kernel: Kernel, desired: Desired) -> list[str]:
    """Foreign forward chains of the host namespace that will drop this lab's traffic
    (Docker's FORWARD with policy drop): `up` still succeeds, and says so."""
    from .ops.forward_policy import check

    bridges = [iface.ifname for (node, _), iface in desired.interfaces.items()
               if node == HOST and iface.kind == "bridge"]
    return [b.message() for b in check(kernel, bridges, routed=bool(desired.forwarding.get(HOST)))]


def _host_routes(state: store.LabState | None) -> list[Any]:
    from .kernel.api import Route

    return [Route(**r) for r in state.host_routes] if state else []


# -- runtime views and faults (used by `status` and `link up|down`) -------------------
def lab_status(name: str, kernel: Kernel | None = None) -> dict[str, Any]:
    """Nodes and, per interface: node, peer (node:ifname), addresses, MTU, admin
    state, operational state, carrier and counters."""
    from .ops.inspect import interfaces, lab_state

    state = lab_state(name)
    kernel = kernel or default_kernel()
    try:
        exists, views = interfaces(kernel, state)
    finally:
        kernel.close()
    from .kernel import services
    from .reconcile.services import log_name

    def log(node: str, index: int, label: str) -> str:
        return os.path.join(store.lab_dir(name), "logs", log_name(label) if label else f"{node}-{index}.log")

    found = services.lab_processes([ns for node, ns in state.nodes.items() if ns and node in state.services])
    labelled = {label for procs in found.values() for _pid, _started, label in procs if label}

    return {
        "lab": name, "file": state.file, "complete": state.complete,
        "nodes": [{"name": n, "netns": ns, "exists": exists.get(n, False)} for n, ns in state.nodes.items()],
        "interfaces": [v.to_json() for v in views],
        "services": [{"node": node, "command": " ".join(rec.argv), "pid": rec.pid,
                      "state": "running" if services.alive(rec.pid, rec.started) or rec.label in labelled else
                      "done" if rec.done else "exited", "log": log(node, i, rec.label)}
                     for node, items in state.services.items()
                     for i, rec in enumerate(service_record(item) for item in items)],
    }


def set_link_state(name: str, node: str, ifname: str, up: bool, timeout: float = 5.0,
                   kernel: Kernel | None = None) -> None:
    """Fault injection: set one end down or up, and return once its peer shows it
    (no carrier, operationally down / carrier, operationally up)."""
    from .ops.inspect import lab_state, peers

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
