"""Processes of a lab: the `run:` services `up` starts, and whatever else runs in
the lab's namespaces.

Ownership (SPEC §4).  A process is the lab's only if provably so:

* it runs inside one of the lab's own network namespaces: /proc/PID/ns/net is the
  nsfs file (device and inode) that /run/netns/NS is, for a namespace the caller
  proved the lab's, and that is never the namespace vethlab itself runs in (the
  host node, nobody's to stop); or
* vethlab recorded it when it started it: pid, start time (the pair is unique
  for the life of the machine) and the inode of the node's namespace, in the
  lab's state, which no other sandbox can write.

The environment variable VETHLAB_SERVICE=LAB:NODE:KEY is only a label: it tells
which service of a node a process belongs to (a daemon's children inherit it),
and is never a reason to signal anything, because any process anywhere can set it.

Signals go through pidfds, checked against the start time after opening: a pid
that is reused between looking and signalling cannot be hit.
"""

from __future__ import annotations

import os
import select
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from . import netns as nsmod

if TYPE_CHECKING:  # subprocess, signal and .process are imported where used (~1.5 ms of start-up):
    import subprocess  # `up` and `down` of a lab without services never need them

LABEL_VAR = "VETHLAB_SERVICE"
Ident = tuple[int, int]  # (st_dev, st_ino) of an nsfs file: one network namespace
Proc = tuple[int, int, str | None]  # pid, start time, service label

#: services this process started: their exit status is ours to collect (a daemon's
#: parent exits 0 at once; a failed service exits with its own status)
_children: dict[int, subprocess.Popen[bytes]] = {}


def _proc_file(pid: int, name: str) -> bytes | None:
    """/proc/PID/NAME, or None when it cannot be read (the process is gone, or not ours to read)."""
    try:
        with open(f"/proc/{pid}/{name}", "rb") as fh:
            return fh.read()
    except OSError:
        return None


def start_time(pid: int) -> int | None:
    """The process' start time in clock ticks since boot (field 22 of stat)."""
    data = _proc_file(pid, "stat")
    if data is None:
        return None
    return int(data[data.rindex(b")") + 2:].split()[19])


#: The gate a service waits at until `release`: it reads one line from its stdin
#: (a pipe held by this process), then runs the command with stdin from /dev/null.
#: Should vethlab die before releasing it, the pipe closes, `read` meets EOF and
#: the service never runs: nothing starts that the state does not record.
GATE = 'read -r go || exit 125; exec "$@" </dev/null'
#: A one-shot's gate does not exec: it waits for the command and writes its exit
#: status beside the log, so the next `up` knows it finished even when the `up`
#: that started it was killed before it saw the exit (the state would not say so).
ONESHOT_GATE = 'read -r go || exit 125; status=$1; shift; "$@" </dev/null; s=$?; echo "$s" > "$status"; exit "$s"'
_gates: dict[int, int] = {}  # pid -> write end of its gate


def status_path(log_path: str) -> str:
    """Where a one-shot's gate writes its exit status."""
    return log_path + ".exit"


def oneshot_succeeded(log_path: str) -> bool:
    """Did the one-shot logging to `log_path` exit 0 (its gate says so)?"""
    try:
        fd = os.open(status_path(log_path), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    with os.fdopen(fd, "rb") as fh:
        return fh.read(16).strip() == b"0"


def start(ns: str | None, argv: list[str], log_path: str, label: str, oneshot: bool = False) -> tuple[int, int]:
    """Start a service in its own session, its output appended to `log_path`,
    held at its gate until `release(pid)`; returns (pid, start time), which stay
    the command's own (the gate's shell execs it, as `ip netns exec` does)."""
    import subprocess

    from .process import node_argv

    os.makedirs(os.path.dirname(log_path), mode=0o700, exist_ok=True)
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    gate, extra = GATE, []
    if oneshot:
        gate, extra = ONESHOT_GATE, [status_path(log_path)]
        try:
            os.unlink(status_path(log_path))  # an earlier run's: this one has not finished
        except FileNotFoundError:
            pass
    gate_r, gate_w = os.pipe2(os.O_CLOEXEC)
    try:
        proc = subprocess.Popen(["/bin/sh", "-c", gate, "vethlab-service", *extra, *node_argv(ns, argv)], stdin=gate_r,
                                stdout=fd, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, LABEL_VAR: label}, close_fds=True)
    except BaseException:
        os.close(gate_w)
        raise
    finally:
        os.close(fd)
        os.close(gate_r)
    _children[proc.pid] = proc
    _gates[proc.pid] = gate_w
    return proc.pid, start_time(proc.pid) or 0


def release(pid: int) -> None:
    """Let a service started by `start` run (once the state records it)."""
    fd = _gates.pop(pid, None)
    if fd is not None:
        try:
            os.write(fd, b"go\n")
        except OSError:  # it is gone already (stopped): nothing to release
            pass
        finally:
            os.close(fd)


def exit_status(pid: int) -> int | None:
    """The exit status of a service this process started, or None while it runs
    (and for a process that is not our child: nothing to collect)."""
    proc = _children.get(pid)
    return proc.poll() if proc is not None else None


def alive(pid: int, started: int) -> bool:
    """Is this exact process (pid and start time) still running (and not a zombie)?"""
    if pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return False
    fields = data[data.rindex(b")") + 2:].split()
    return int(fields[19]) == started and fields[0] != b"Z"


def ns_ident(path: str) -> Ident | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def host_idents() -> set[Ident]:
    """The namespaces that are never a lab's: the one vethlab runs in (the host
    node) and init's.  A lab namespace file that points at one of them (a bind
    mount of /proc/1/ns/net under /run/netns) is refused as a place to stop anything."""
    return {ident for path in ("/proc/self/ns/net", "/proc/1/ns/net") if (ident := ns_ident(path))}


def label_of(pid: int) -> str | None:
    env = _proc_file(pid, "environ")
    if env is None:
        return None
    prefix = LABEL_VAR.encode() + b"="
    for item in env.split(b"\0"):
        if item.startswith(prefix):
            return item[len(prefix):].decode(errors="replace")
    return None


def lab_processes(namespaces: Iterable[str], recorded: Iterable[tuple[int, int, int]] = ()) -> dict[str, list[Proc]]:
    """Every live process inside the named namespaces (keyed by namespace name),
    plus, keyed "", those inside a namespace whose file is gone but in which a
    recorded service (pid, start time, namespace inode) still runs.

    One pass over /proc: a stat of /proc/PID/ns/net per process (~300 processes:
    ~2 ms); zombies have no namespace any more and are skipped."""
    host = host_idents()
    idents: dict[Ident, str] = {}
    for ns in namespaces:
        ident = ns_ident(nsmod.ns_path(ns))
        if ident is not None and ident not in host:
            idents[ident] = ns
    for pid, started, inode in recorded:
        if inode and alive(pid, started):
            ident = ns_ident(f"/proc/{pid}/ns/net")
            if ident is not None and ident[1] == inode and ident not in host:
                idents.setdefault(ident, "")
    out: dict[str, list[Proc]] = {}
    if not idents:
        return out
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        ident = ns_ident(f"/proc/{entry}/ns/net")
        if ident is None or ident not in idents:
            continue
        when = start_time(int(entry))
        if when is not None:
            out.setdefault(idents[ident], []).append((int(entry), when, label_of(int(entry))))
    return out


def signal_all(procs: list[tuple[int, int]], grace: float = 3.0) -> int:
    """SIGTERM every process, SIGKILL those still there after `grace` seconds (as
    `docker stop` does); returns how many were signalled.  Each is opened as a
    pidfd and checked against its start time first, so only these exact processes
    are hit."""
    import signal

    fds: dict[int, int] = {}
    try:
        for pid, started in procs:
            try:
                fd = os.pidfd_open(pid)
            except OSError:
                continue
            if start_time(pid) != started:
                os.close(fd)
                continue
            fds[pid] = fd
        count = len(fds)
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
            for fd in fds.values():
                try:
                    signal.pidfd_send_signal(fd, sig)
                except OSError:
                    pass
            _wait_exit(fds, wait)
            if not fds:
                break
        return count
    finally:
        for fd in fds.values():
            os.close(fd)
        _reap()


def _wait_exit(fds: dict[int, int], timeout: float) -> None:
    """Wait until the processes behind `fds` exit (a pidfd polls readable then);
    drops those that did from `fds`."""
    deadline = time.monotonic() + timeout
    while fds:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        poller = select.poll()
        for fd in fds.values():
            poller.register(fd, select.POLLIN)
        done = {fd for fd, _ev in poller.poll(max(1, int(left * 1000)))}
        for pid in [pid for pid, fd in fds.items() if fd in done]:
            os.close(fds.pop(pid))
        _reap()


def _reap() -> None:
    """Collect the exit status of our own children that ended (no zombies left
    behind by the Python API, whose process lives on after `down`)."""
    for pid, proc in list(_children.items()):
        if proc.poll() is not None:
            del _children[pid]


def stop(ns: str | None, label: str, pid: int, started: int, grace: float = 3.0) -> int:
    """Stop one service: its recorded leader, and every process in its node's
    namespace that carries its label (a daemon's children).  Returns how many."""
    gate = _gates.pop(pid, None)
    if gate is not None:  # never released: closing the gate ends it (EOF), signalled below too
        os.close(gate)
    procs = [(pid, started)] if alive(pid, started) else []
    if ns is not None and label:
        found = lab_processes([ns]).get(ns, [])
        procs += [(p, s) for p, s, lab in found if lab == label and p != pid]
    return signal_all(procs, grace) if procs else 0


def listening(ns: str, port: int) -> bool:
    """Does a TCP socket listen on `port` (any address, IPv4 or IPv6) in the node?
    Read from the node's /proc/net/tcp{,6} by a thread inside its namespace: no
    process to fork, no connection the service would see."""
    want = f":{port:04X}"

    def read() -> bool:
        for name in ("tcp", "tcp6"):
            try:
                with open(f"/proc/thread-self/net/{name}", encoding="ascii") as fh:
                    next(fh, None)
                    for line in fh:
                        fields = line.split()
                        if len(fields) > 3 and fields[3] == "0A" and fields[1].endswith(want):
                            return True
            except OSError:
                continue
        return False

    return nsmod.call_inside(ns, read)


def check_command(ns: str | None, argv: list[str], timeout: float) -> bool:
    """A readiness command: ready when it exits 0 within `timeout`."""
    import subprocess

    from .process import node_argv

    try:
        return subprocess.run(node_argv(ns, argv), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=timeout, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False
