"""The `run:` services of a lab's nodes: which process is which service, whether a
service runs, and watching services start until they are ready.

A service is one `run:` item of one node.  Its label, LAB:NODE:KEY, is a pure
function of the lab, the node, the command and its occurrence among equal
commands of that node; `up` puts it in the service's environment, and a daemon's
children inherit it.  The label says *which* service a process in the node's
namespace is; that the process is in the lab's namespace says it is the lab's
(kernel/services.py): so a service started by a run that was killed before it
could record the pid is still found, and not started a second time.

The lab's state records each service before it starts (write-ahead: command and
label) and its pid, start time and namespace inode right after, as a list
[argv, pid, start time, label, done, netns inode] (older states: the first three).
"""

from __future__ import annotations

import json
import os
import shlex
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple

from ..deferred import dataclass
from ..errors import CommandFailed
from ..kernel.api import Kernel, Netns


@dataclass(frozen=True)
class ServiceSeen:
    """A service of the lab as `observe_services` finds it."""

    node: str
    argv: tuple[str, ...]
    pid: int
    started: int
    alive: bool
    label: str = ""  # LAB:NODE:KEY (labels()); "" in states written before labels
    netns: Netns = None
    done: bool = False  # a one-shot that finished


#: Without readiness checks, how long `up` watches new services before it returns:
#: a service that fails at start-up exits within it.  Measured here through
#: `ip netns exec`: `false` or a missing binary exits after 5-20 ms, a Python
#: program that fails at start (an import error, "Address already in use") after
#: ~60 ms; 0.5 s leaves a margin of 8 on a machine busy with other work.
SETTLE = 0.5
#: Bound on the wait for readiness checks (Compose's healthcheck gives up too);
#: VETHLAB_READY_TIMEOUT overrides it.
READY_TIMEOUT = 30.0
CHECK_TIMEOUT = 5.0  # one run of a readiness command
LOG_TAIL_LINES = 15


def ready_timeout() -> float:
    try:
        return float(os.environ.get("VETHLAB_READY_TIMEOUT") or READY_TIMEOUT)
    except ValueError:
        return READY_TIMEOUT


def labels(lab: str, node: str, run: Sequence[Sequence[str]]) -> list[str]:
    """The label of each `run:` item of a node, in order."""
    from ..digests import sha256  # here: `down` imports this module and never labels

    seen: dict[tuple[str, ...], int] = {}
    out = []
    for argv in run:
        nth = seen.get(tuple(argv), 0)
        seen[tuple(argv)] = nth + 1
        key = sha256(json.dumps([list(argv), nth]).encode()).hexdigest()[:12]
        out.append(f"{lab}:{node}:{key}")
    return out


def log_name(label: str) -> str:
    """The log file of a service, under the lab's logs directory: NODE-KEY.log."""
    _lab, node, key = label.split(":", 2)
    return f"{node}-{key}.log"


class Record(NamedTuple):
    """One service in the lab's state."""

    argv: list[str]
    pid: int  # 0: recorded before it started, pid not known yet
    started: int
    label: str = ""
    done: bool = False  # a one-shot service that exited 0 during `up`
    netns_id: int = 0  # inode of the node's namespace when it started

    @classmethod
    def of(cls, item: Sequence[Any]) -> Record:
        return cls([str(w) for w in item[0]], int(item[1]), int(item[2]),
                   str(item[3]) if len(item) > 3 else "", bool(item[4]) if len(item) > 4 else False,
                   int(item[5]) if len(item) > 5 else 0)

    def to_json(self) -> list[Any]:
        return [list(self.argv), self.pid, self.started, self.label, self.done, self.netns_id]


def records(services: dict[str, list[list[Any]]]) -> Iterator[tuple[str, Record]]:
    for node, items in services.items():
        for item in items:
            yield node, Record.of(item)


def running_labels(kernel: Kernel, namespaces: Iterable[Netns]) -> dict[str, dict[str, tuple[int, int]]]:
    """Per namespace, the labels carried by processes running in it, each with its
    oldest such process (pid, start time): one /proc pass."""
    names = sorted({ns for ns in namespaces if ns})
    if not names:
        return {}
    out: dict[str, dict[str, tuple[int, int]]] = {}
    for ns, procs in kernel.lab_processes(names, []).items():
        mine = out.setdefault(ns, {})
        for pid, started, label in sorted(procs, key=lambda p: p[1]):
            if label:
                mine.setdefault(label, (pid, started))
    return out


def is_running(kernel: Kernel, record: Record, ns: Netns, labelled: dict[str, dict[str, tuple[int, int]]]) -> bool:
    """A service runs while its recorded process does, or while any process in its
    node carries its label (a daemon whose parent exited); a one-shot that
    finished counts as satisfied."""
    return (record.done or kernel.service_alive(record.pid, record.started)
            or bool(record.label and ns and record.label in labelled.get(ns, ())))


def _finished_oneshot(kernel: Kernel, lab: str, label: str) -> bool:
    """A one-shot's gate wrote exit 0 beside its log (read without creating anything)."""
    import os

    from ..state import store

    return kernel.oneshot_succeeded(os.path.join(store.lab_dir(lab), "logs", log_name(label)))


def observe_services(kernel: Kernel, lab: str, desired_run: dict[str, tuple[Netns, Sequence[Sequence[str]]]],
                     recorded: dict[str, list[list[Any]]], netns: dict[str, Netns]) -> list[ServiceSeen]:
    """The services of the nodes looked at: those the state records, and those of
    the file found running by their label although the state does not know them
    (a run killed between starting them and recording them)."""
    spaces = {ns for ns, _run in desired_run.values()} | {netns.get(n) for n in recorded}
    labelled = running_labels(kernel, spaces)
    out: list[ServiceSeen] = []
    known: set[tuple[str, str]] = set()
    for node, rec in records(recorded):
        ns = netns.get(node)
        if not rec.done and rec.label and ns and rec.netns_id and _finished_oneshot(kernel, lab, rec.label) \
                and kernel.namespace_id(ns) == rec.netns_id:
            rec = rec._replace(done=True)  # its gate wrote exit 0 though the up that saw it start was killed
        out.append(ServiceSeen(node, tuple(rec.argv), rec.pid, rec.started, is_running(kernel, rec, ns, labelled),
                               rec.label, ns, rec.done))
        known.add((node, rec.label))
    for node, (ns, run) in desired_run.items():
        for argv, label in zip(run, labels(lab, node, run), strict=True):
            if (node, label) not in known and ns and label in labelled.get(ns, ()):
                out.append(ServiceSeen(node, tuple(argv), 0, 0, True, label, ns, False))
    return out


@dataclass
class Launch:
    """A service started by this run, watched until `up` returns."""

    node: str
    netns: Netns
    argv: list[str]
    label: str
    pid: int
    started: int
    oneshot: bool
    log: str
    finished: bool = False  # its first process exited (status 0: one-shot, or daemonised)


Checks = dict[str, tuple[Netns, list[tuple[str, ...]]]]  # node -> (its namespace, its readiness checks)


def supervise(kernel: Kernel, launches: list[Launch], checks: Checks,
              settle: float = SETTLE, timeout: float | None = None) -> set[str]:
    """Watch the services this run started until each node's readiness checks pass
    (or, for nodes without checks, for `settle` seconds), bounded by `timeout`.

    A service that exits fails `up`, unless it exits 0 and is one-shot, or exits 0
    leaving processes with its label in its node (it daemonised: it runs).
    Raises CommandFailed naming the service, its exit status and its log's tail.
    Returns the labels of one-shot services that finished."""
    timeout = ready_timeout() if timeout is None else timeout
    begin = time.monotonic()
    pending = {node: list(items) for node, (_ns, items) in checks.items() if items}
    done: set[str] = set()
    interval = 0.02
    while True:
        for launch in launches:
            if not launch.finished:
                _judge_exit(kernel, launch, done)
        for node in list(pending):
            ns = checks[node][0]
            # a check run never outlasts the wait: with CHECK_TIMEOUT alone, a 3 s check
            # passed under VETHLAB_READY_TIMEOUT=1, and hanging checks of N nodes waited N x 5 s
            left = max(0.05, timeout - (time.monotonic() - begin))
            while pending[node] and kernel.ready_check(ns, pending[node][0], min(CHECK_TIMEOUT, left)):
                pending[node].pop(0)
            if not pending[node]:
                del pending[node]
        elapsed = time.monotonic() - begin
        unchecked = any(launch.node not in checks and not launch.finished for launch in launches)
        if not pending and (elapsed >= settle or not unchecked):
            break
        if elapsed >= timeout:
            node, items = next(iter(pending.items()))
            owner = next((launch for launch in launches if launch.node == node), None)
            raise CommandFailed(f"node {node}: not ready after {timeout:g} s: {_describe(items[0])}"
                                f"{_log_tail(owner) if owner else ''}")
        time.sleep(interval)
        interval = min(interval * 1.5, 0.1)  # at most 0.1 s late
    for launch in launches:  # a last look: ready, but did it stay up?
        if not launch.finished:
            _judge_exit(kernel, launch, done)
    return done


def _judge_exit(kernel: Kernel, launch: Launch, done: set[str]) -> None:
    status = kernel.service_exit(launch.pid)
    if status is None:
        return
    launch.finished = True
    if status == 0 and launch.oneshot:
        done.add(launch.label)
        return
    if status == 0 and launch.netns:
        left = kernel.lab_processes([launch.netns], []).get(launch.netns, [])
        if any(label == launch.label for _pid, _started, label in left):
            return  # daemonised: its children run on, found by label
    what = f"exited with status {status}" if status >= 0 else f"was killed by signal {-status}"
    hint = "" if status else " (a service that exits 0 on purpose is declared {cmd: ..., oneshot: true})"
    raise CommandFailed(f"node {launch.node}: service `{shlex.join(launch.argv)}` {what} during `up`{hint}"
                        f"{_log_tail(launch)}")


def _describe(check: tuple[str, ...]) -> str:
    if len(check) == 1 and check[0].startswith("tcp:"):
        return f"nothing listens on TCP port {check[0][4:]} ({check[0]})"
    return f"`{shlex.join(check)}` did not exit 0"


def _log_tail(launch: Launch) -> str:
    try:
        with open(launch.log, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 8192))
            lines = fh.read().decode(errors="replace").splitlines()[-LOG_TAIL_LINES:]
    except OSError:
        return ""
    if not lines:
        return f"; its log {launch.log} is empty"
    return f"; last lines of its log ({launch.log}):\n" + "\n".join("  " + line for line in lines)
