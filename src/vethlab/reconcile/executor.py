"""Execute a plan with an undo journal; roll back on failure; wait until it works.

Each successful step registers its inverse right away (CNI cmdAdd's deferred
release); a failure unwinds the journal in reverse, keeps going past errors in the
unwinding and reports them together (netavark's teardown).  Independent steps of
one kind are handed to the kernel layer together where it can batch them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .. import forwarding
from ..errors import CommandFailed, KernelError, VethlabError
from ..firewall import table_name
from ..kernel.api import Kernel, Route
from ..ownership import lab_of
from .planner import Action, Plan
from .services import Launch, Record, log_name, supervise

Undo = Callable[[], None]
EXEC_TIMEOUT = 300.0


@dataclass
class Journal:
    steps: list[tuple[str, Undo]] = field(default_factory=list)

    def add(self, what: str, undo: Undo) -> None:
        self.steps.append((what, undo))

    def unwind(self) -> list[str]:
        errors = []
        for what, undo in reversed(self.steps):
            try:
                undo()
            except Exception as exc:  # keep going: report every failure of the unwinding
                errors.append(f"could not undo {what}: {exc}")
        self.steps.clear()
        return errors


@dataclass
class Outcome:
    """What a run did that the lab's state must remember."""

    started: list[tuple[str, Record]] = field(default_factory=list)  # node, service record
    stopped: set[int | str] = field(default_factory=set)  # pids and labels of services stopped


Recorder = Callable[[Outcome], None]


class Executor:
    def __init__(self, kernel: Kernel, marker: str, progress: Callable[[Action], None] | None = None,
                 log_dir: str = "/tmp", record: Recorder | None = None) -> None:
        self.kernel = kernel
        self.marker = marker
        self.lab = lab_of(marker) or ""
        self.progress = progress
        self.journal = Journal()
        self.outcome = Outcome()
        self.log_dir = log_dir
        self.record = record  # persists started services before they are watched
        self.launches: list[Launch] = []

    def run(self, plan: Plan, keep_on_error: bool = False) -> None:
        try:
            for phase, actions in _phases(plan.ordered()):
                if self.progress:
                    for action in actions:
                        self.progress(action)
                if phase == "node":
                    self._create_namespaces([a for a in actions if a.verb == "create"])
                    actions = [a for a in actions if a.verb != "create"]
                if phase == "hosts":
                    self._write_hosts([a.netns for a in actions if a.netns], plan.hosts)
                    actions = []
                for action in actions:
                    self._apply(action)
                if phase == "service":
                    self._watch_services(actions)
                if phase not in _FLUSH_LATER:
                    self.kernel.flush()  # requests of one phase go to the kernel together
        except VethlabError as exc:
            if keep_on_error:
                raise
            problems = self.journal.unwind()
            if problems:
                raise type(exc)(f"{exc}\nrollback was incomplete:\n" + "\n".join(problems)) from None
            raise type(exc)(f"{exc}\neverything this run created was removed again") from None
        except BaseException:
            if not keep_on_error:
                self.journal.unwind()
            raise

    def _create_namespaces(self, actions: list[Action]) -> None:
        names = [a.netns for a in actions if a.netns]
        try:
            self.kernel.create_namespaces(names, self.marker)
        finally:
            # journal whatever of the batch exists and is ours, even after a failure half-way
            made = [name for name in names
                    if self.kernel.namespace_exists(name) and self.kernel.namespace_owner(name) == self.marker]
            for name in made:
                self.journal.add(f"namespace {name}", self._deleter(name))
            if made:  # undone first: whatever runs in them by then (exec's leftovers, services' children)
                self.journal.add("processes in the new nodes", lambda: end_processes(self.kernel, made))

    def _write_hosts(self, namespaces: list[str], entries: list[tuple[str, str]]) -> None:
        """All nodes' hosts files at once (one content, hard-linked)."""
        k, marker = self.kernel, self.marker
        # journalled first: a failure half-way leaves no directory of ours behind, and
        # removal touches only directories that carry this lab's marker
        for ns in namespaces:
            self.journal.add(f"/etc/netns/{ns}", lambda n=ns: k.remove_node_files(n, marker))  # type: ignore[misc]
        self.kernel.write_node_files(namespaces, entries, marker)

    def _deleter(self, ns: str) -> Undo:
        return lambda: self.kernel.delete_namespace(ns)

    def _apply(self, a: Action) -> None:
        k, p, ns = self.kernel, a.params, a.netns
        if a.kind == "veth" and a.verb == "create":
            k.create_veth(p["a_netns"], p["a_ifname"], p["b_netns"], p["b_ifname"], p["mtu"], self.marker)
            self.journal.add(a.target, lambda: k.delete_link(p["a_netns"], p["a_ifname"]))
        elif a.kind == "interface" and a.verb == "delete":
            k.delete_link(ns, p["ifname"])
        elif a.kind == "interface":
            k.set_link(ns, p["ifname"], mtu=p.get("mtu"), up=p.get("up"), alias=p.get("alias"), master=p.get("master"))
        elif a.kind == "bridge":
            k.create_bridge(ns, p["ifname"], p.get("mtu"), self.marker)
            self.journal.add(a.target, lambda: k.delete_link(ns, p["ifname"]))
        elif a.kind == "macvlan":
            k.create_macvlan(p["parent_netns"], p["parent"], ns, p["ifname"], p.get("mtu"), self.marker)
            self.journal.add(a.target, lambda: k.delete_link(ns, p["ifname"]))
        elif a.kind == "uplink" and p.get("release"):
            k.set_link(ns, p["ifname"], master="", up=p["was_up"])
        elif a.kind == "uplink":
            k.set_link(ns, p["ifname"], master=p["bridge"], up=True)
            self.journal.add(a.target, lambda: k.set_link(ns, p["ifname"], master="", up=p["was_up"]))
        elif a.kind == "firewall" and a.verb == "delete":
            k.firewall_delete(ns, table_name(self.lab))
        elif a.kind == "firewall":
            k.firewall_apply(ns, p["batch"], f"apply the firewall of lab {self.lab} in {a.node}")
            if not p.get("replace"):
                self.journal.add(a.target, lambda: k.firewall_delete(ns, table_name(self.lab)))
        elif a.kind == "forwarding":
            forwarding.hold(k, self.lab, p["key"])
        elif a.kind == "shaping":
            k.set_shaping(ns, p["ifname"], p["shaping"])
        elif a.kind == "service" and a.verb == "run":
            self._start_service(a)
        elif a.kind == "service":
            k.stop_service(ns, p.get("label", ""), p["pid"], p["started"])
            self.outcome.stopped.update({p["pid"], p.get("label") or p["pid"]})
        elif a.kind == "address" and a.verb == "create":
            k.add_address(ns, p["ifname"], p["cidr"])
            self.journal.add(a.target, lambda: k.delete_address(ns, p["ifname"], p["cidr"]))
        elif a.kind == "address":
            k.delete_address(ns, p["ifname"], p["cidr"])
            self.journal.add(a.target, lambda: k.add_address(ns, p["ifname"], p["cidr"]))
        elif a.kind == "route":
            route = Route(**p["route"])
            if a.verb == "create":
                k.add_route(ns, route)
                self.journal.add(a.target, lambda: k.delete_route(ns, route))
            else:
                k.delete_route(ns, route)
                self.journal.add(a.target, lambda: k.add_route(ns, route))
        elif a.kind == "sysctl":
            k.write_sysctl(ns, p["key"], p["value"])
            if p.get("previous") is not None:
                self.journal.add(a.target, lambda: k.write_sysctl(ns, p["key"], p["previous"]))
        elif a.kind == "exec":
            status, output = k.run_command(ns, p["argv"], EXEC_TIMEOUT)
            if status != 0:
                output = output.strip()
                raise CommandFailed(f"exec in node {a.node}: `{' '.join(p['argv'])}` exited with status {status}"
                                    + (f":\n{output}" if output else ""))
        elif a.kind == "node" and a.verb == "delete" and ns:
            end_processes(k, [ns])  # a process left inside would keep the namespace alive
            k.remove_node_files(ns, self.marker)
            k.delete_namespace(ns)
        else:  # pragma: no cover - planner and executor disagree
            raise KernelError(f"no way to carry out {a.verb} {a.kind} {a.target}")


    def _start_service(self, a: Action) -> None:
        from ..kernel.process import missing_command

        k, p, ns = self.kernel, a.params, a.netns
        problem = missing_command(p["argv"])
        if problem:
            raise CommandFailed(f"node {a.node}: service `{' '.join(p['argv'])}`: {problem}")
        label = p["label"]
        log = os.path.join(self.log_dir, log_name(label))
        pid, started = k.start_service(ns, p["argv"], log, label)
        self.journal.add(a.target, lambda: k.stop_service(ns, label, pid, started))
        inode = (k.namespace_id(ns) or 0) if ns else 0
        self.outcome.started.append((a.node, Record(p["argv"], pid, started, label, False, inode)))
        self.launches.append(Launch(a.node, ns, p["argv"], label, pid, started, bool(p.get("oneshot")), log))

    def _watch_services(self, actions: list[Action]) -> None:
        """Record what was started (a kill from now on leaves nothing unknown), then
        watch it until ready: a service that exits fails the run."""
        if not self.launches:
            return
        if self.record:
            self.record(self.outcome)  # write-ahead: recorded before any of them runs
        for launch in self.launches:
            self.kernel.release_service(launch.pid)
        checks = {a.node: (a.netns, [tuple(c) for c in a.params.get("ready", [])]) for a in actions
                  if a.verb == "run" and a.params.get("ready")}
        finished = supervise(self.kernel, self.launches, checks)
        self.outcome.started = [(node, rec._replace(done=rec.label in finished)) for node, rec in self.outcome.started]


# Phases whose requests may share a send() with the next phase's: a socket applies its
# requests in order (links up, then addresses, then routes through them), so one
# flush per namespace serves them all; every other phase ends with a flush.
_FLUSH_LATER = {"interface", "shaping", "uplink", "sysctl", "address"}


def end_processes(kernel: Kernel, namespaces: list[str], grace: float = 3.0) -> None:
    """End every process inside these namespaces of the lab (TERM, then KILL)."""
    for _round in range(3):
        procs = [(pid, started) for items in kernel.lab_processes(namespaces, []).values()
                 for pid, started, _label in items]
        if not procs:
            return
        kernel.stop_processes(procs, grace)


def _phases(actions: list[Action]) -> list[tuple[str, list[Action]]]:
    """Consecutive actions grouped by phase (the plan is already in phase order)."""
    groups: list[tuple[str, list[Action]]] = []
    for action in actions:
        if not groups or groups[-1][0] != action.phase:
            groups.append((action.phase, []))
        groups[-1][1].append(action)
    return groups


def wait_until(check: Callable[[], Any], timeout: float, interval: float = 0.01) -> Any:
    """Poll `check` until it returns a truthy value or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() >= deadline:
            return result
        time.sleep(interval)
        interval = min(interval * 1.5, 0.2)
