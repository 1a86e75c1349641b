"""Execute a plan with an undo journal; roll back on failure; wait until it works.

Each successful step registers its inverse right away (CNI cmdAdd's deferred
release); a failure unwinds the journal in reverse, keeps going past errors in the
unwinding and reports them together (netavark's teardown).  Independent steps of
one kind are handed to the kernel layer together where it can batch them.

Removal, in a rollback as in a shrinking `up`, goes in the order that lets the
kernel batch (see cleanup.remove_in_kernel_order): the namespaces go first, and
what lives in them is not deleted object by object but waited for.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from ..errors import CommandFailed, KernelError, VethlabError
from ..kernel.api import Kernel, Netns, Route
from ..model.firewall import table_name
from ..ownership import lab_of
from . import forwarding, views
from .planner import Action, Plan
from .progress import report as report_progress
from .removal import VANISH_TIMEOUT, VANISH_TIMEOUT_PER_INTERFACE, wait_gone
from .services import Launch, Record, log_name, supervise

Undo = Callable[[], None]
EXEC_TIMEOUT = 300.0


@dataclass
class Step:
    """One undo, with what the unwinding needs to order it."""

    what: str
    undo: Undo
    namespace: str | None = None  # the undo deletes this namespace (made by this run)
    dies_with: tuple[str, ...] = ()  # the object goes when any of these namespaces is deleted...
    ends: tuple[tuple[Netns, str], ...] = ()  # ...and its interface ends elsewhere, once the kernel is done
    first: bool = False  # undone before any namespace goes (a process keeps its namespace alive)
    detaches: bool = False  # a bridge: undone before the namespaces, unless it goes with one (see cleanup)
    on: tuple[Netns, str] | None = None  # the interface the object is on: moot once that is gone


@dataclass
class Journal:
    steps: list[Step] = field(default_factory=list)
    kernel: Kernel | None = None  # to wait for what dies with the namespaces; None: undo every step itself
    marker: str | None = None  # the lab's: the /etc/netns files of its namespaces go with them

    def add(self, what: str, undo: Undo, **order: Any) -> None:
        self.steps.append(Step(what, undo, **order))

    def unwind(self) -> list[str]:
        """Undo every step, keep going past errors, return them all.  Processes and
        bridges first, then every namespace this run made, then a bounded wait for the interface
        ends elsewhere that die with those namespaces, then the rest in reverse
        order -- skipping what went with a namespace (deleting it object by object
        would cost one RCU grace period per interface)."""
        errors: list[str] = []

        def attempt(what: str, fn: Undo) -> bool:
            try:
                fn()
                return True
            except Exception as exc:  # keep going: report every failure of the unwinding
                errors.append(f"could not undo {what}: {exc}")
                return False

        steps = list(reversed(self.steps))
        self.steps = []
        kernel = self.kernel
        if kernel is None:
            for step in steps:
                attempt(step.what, step.undo)
            return errors
        planned = {step.namespace for step in steps if step.namespace}
        early = [step for step in steps if step.first or (step.detaches and not set(step.dies_with) & planned)]
        for step in early:
            attempt(step.what, step.undo)
        if early:
            attempt("the unwinding", kernel.flush)
        dying = [ns for step in steps if (ns := step.namespace)]
        failed = kernel.delete_namespaces(dying, {ns: self.marker for ns in dying} if self.marker else {}) \
            if dying else {}
        for ns, exc in failed.items():
            errors.append(f"could not undo namespace {ns}: {exc}")
        deleted = set(dying) - set(failed)
        outside = {end for step in steps if set(step.dies_with) & deleted for end in step.ends if end[0] not in deleted}
        left = _wait_vanished(kernel, _indexes(kernel, outside))
        for ns, ifname in sorted(left, key=str):  # held alive by something: delete that end after all
            attempt(f"interface {ifname} in {ns or 'the host'}", partial(kernel.delete_link, ns, ifname))
        done = {id(step) for step in early}
        bridges = {end for step in early if step.detaches for end in step.ends}
        for step in steps:
            if id(step) in done or step.namespace or set(step.dies_with) & deleted or step.on in bridges:
                continue
            attempt(step.what, step.undo)
        attempt("the unwinding", kernel.flush)
        return errors


def _indexes(kernel: Kernel, ends: set[tuple[Netns, str]]) -> dict[tuple[Netns, str], int]:
    """The ifindex of each (netns, ifname) still there: what `wait_gone` follows."""
    out: dict[tuple[Netns, str], int] = {}
    for ns in {ns for ns, _ in ends}:
        try:
            links = {link.ifname: link.index for link in kernel.links(ns, addresses=False)}
        except VethlabError:
            continue
        out.update({(ns, name): links[name] for n, name in ends if n == ns and name in links})
    return out


def _wait_vanished(kernel: Kernel, ends: dict[tuple[Netns, str], int]) -> set[tuple[Netns, str]]:
    """Wait (bounded) for interface ends to vanish with their namespaces; those left."""
    left: set[tuple[Netns, str]] = set()
    for ns in {ns for ns, _ in ends}:
        mine = {name: index for (n, name), index in ends.items() if n == ns}
        timeout = VANISH_TIMEOUT + VANISH_TIMEOUT_PER_INTERFACE * len(mine)
        left |= {(ns, name) for name in wait_gone(kernel, mine, timeout, ns)}
    return left


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
        self.journal = Journal(kernel=kernel, marker=marker)
        self.outcome = Outcome()
        self.log_dir = log_dir
        self.record = record  # persists started services before they are watched
        self.launches: list[Launch] = []

    def run(self, plan: Plan, keep_on_error: bool = False) -> None:
        try:
            done, total = 0, len(plan.actions)
            for phase, actions in _phases(plan.ordered()):
                report_progress(_PHASE_WORDS.get(phase, phase), done, total, "changes", force=True)
                done += len(actions)
                if self.progress:
                    for action in actions:
                        self.progress(action)
                if phase == "node":
                    self._create_namespaces([a for a in actions if a.verb == "create"])
                    actions = [a for a in actions if a.verb != "create"]
                if phase == "delete-late":
                    actions = self._delete_nodes_first(actions)
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
                self.journal.add(f"namespace {name}", self._deleter(name), namespace=name)
            if made:  # undone before any namespace goes: what runs in them (exec's leftovers, services' children)
                self.journal.add("processes in the new nodes", lambda: end_processes(self.kernel, made), first=True)

    def _delete_nodes_first(self, actions: list[Action]) -> list[Action]:
        """A shrinking lab: the removed nodes' namespaces go first, and the veth ends
        elsewhere whose peer was in one of them are waited for as the kernel destroys
        them in one batch, not deleted one by one (one RCU grace period each).
        Returns the phase's other actions, and the deletes of ends that stayed."""
        nodes = [a for a in actions if a.kind == "node" and a.verb == "delete" and a.netns]
        if not nodes:
            return actions
        names = [a.netns for a in nodes if a.netns]
        end_processes(self.kernel, names)  # a process left inside would keep the namespace alive
        failed = self.kernel.delete_namespaces(names, {name: self.marker for name in names})
        if failed:
            raise KernelError(f"cannot delete {len(failed)} namespaces: {next(iter(failed.values()))}")
        gone = {a.node for a in nodes}
        dying = [a for a in actions if a.kind == "interface" and a.verb == "delete"
                 and gone & set(a.params.get("peers", ()))]
        left = _wait_vanished(self.kernel, _indexes(self.kernel, {(a.netns, a.params["ifname"]) for a in dying}))
        done = {id(a) for a in nodes} | {id(a) for a in dying if (a.netns, a.params["ifname"]) not in left}
        return [a for a in actions if id(a) not in done]

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
            self.journal.add(a.target, lambda: k.delete_link(p["a_netns"], p["a_ifname"]), **_veth_order(p))
        elif a.kind == "interface" and a.verb == "delete":
            k.delete_link(ns, p["ifname"])
        elif a.kind == "interface":
            k.set_link(ns, p["ifname"], mtu=p.get("mtu"), up=p.get("up"), alias=p.get("alias"), master=p.get("master"))
        elif a.kind == "bridge":
            k.create_bridge(ns, p["ifname"], p.get("mtu"), self.marker)
            self.journal.add(a.target, lambda: k.delete_link(ns, p["ifname"]), dies_with=_inside(ns), detaches=True,
                             ends=((ns, p["ifname"]),))
        elif a.kind == "macvlan":
            k.create_macvlan(p["parent_netns"], p["parent"], ns, p["ifname"], p.get("mtu"), self.marker)
            self.journal.add(a.target, lambda: k.delete_link(ns, p["ifname"]), dies_with=_inside(ns))
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
                self.journal.add(a.target, lambda: k.firewall_delete(ns, table_name(self.lab)), dies_with=_inside(ns))
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
            self.journal.add(a.target, lambda: k.delete_address(ns, p["ifname"], p["cidr"]), dies_with=_inside(ns),
                             on=(ns, p["ifname"]))
        elif a.kind == "address":
            k.delete_address(ns, p["ifname"], p["cidr"])
            self.journal.add(a.target, lambda: k.add_address(ns, p["ifname"], p["cidr"]))
        elif a.kind == "route":
            route = Route(**p["route"])
            if a.verb == "create":
                k.add_route(ns, route)
                self.journal.add(a.target, lambda: k.delete_route(ns, route), dies_with=_inside(ns))
            else:
                k.delete_route(ns, route)
                self.journal.add(a.target, lambda: k.add_route(ns, route))
        elif a.kind == "sysctl":
            k.write_sysctl(ns, p["key"], p["value"])
            if p.get("previous") is not None:
                self.journal.add(a.target, lambda: k.write_sysctl(ns, p["key"], p["previous"]), dies_with=_inside(ns))
        elif a.kind == "exec":
            status, output = k.run_command(ns, p["argv"], EXEC_TIMEOUT)
            if status != 0:
                output = output.strip()
                raise CommandFailed(f"exec in node {a.node}: `{' '.join(p['argv'])}` exited with status {status}"
                                    + (f":\n{output}" if output else ""))
        elif a.kind == "view":
            views.apply(k, a, self.marker)
            if a.verb == "create" and ns is not None:
                self.journal.add(a.target, partial(_drop_view, k, ns, self.marker))
        elif a.kind == "node" and a.verb == "delete" and ns:
            end_processes(k, [ns])  # a process left inside would keep the namespace alive
            k.remove_node_files(ns, self.marker)
            k.delete_namespace(ns)
        else:  # pragma: no cover - planner and executor disagree
            raise KernelError(f"no way to carry out {a.verb} {a.kind} {a.target}")


    def _start_service(self, a: Action) -> None:
        from ..kernel.process import missing_command

        k, p, ns = self.kernel, a.params, a.netns
        problem = missing_command(p["argv"], ns)
        if problem:
            raise CommandFailed(f"node {a.node}: service `{' '.join(p['argv'])}`: {problem}")
        label = p["label"]
        log = os.path.join(self.log_dir, log_name(label))
        pid, started = k.start_service(ns, p["argv"], log, label, bool(p.get("oneshot")))
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


def _drop_view(kernel: Kernel, ns: str, marker: str) -> None:
    kernel.remove_view(ns, marker)


def _inside(ns: Netns) -> tuple[str, ...]:
    """An object in namespace `ns` goes with it (nothing does with the host's)."""
    return (ns,) if ns else ()


def _veth_order(p: dict[str, Any]) -> dict[str, Any]:
    """A veth pair goes when either end's namespace does; an end in a namespace that
    stays (the host's) is there until the kernel has destroyed the other."""
    ends = ((p["a_netns"], p["a_ifname"]), (p["b_netns"], p["b_ifname"]))
    return {"dies_with": tuple(ns for ns, _ in ends if ns), "ends": ends}


# What a phase does, in the words of the progress line
_PHASE_WORDS = {"delete-early": "removing what changed", "node": "namespaces", "view": "node views",
                "bridge": "bridges", "veth": "veth pairs", "interface": "interfaces", "address": "addresses",
                "route": "routes",
                "firewall": "firewall", "hosts": "hosts files", "exec": "exec", "service": "services",
                "delete-late": "removing what is gone"}


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
