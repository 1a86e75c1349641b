"""Long-running `run:` commands of nodes.

Each service runs in its node (`ip netns exec`), in its own session and process
group, with its output in a log file, and carries the environment variable
VETHLAB_SERVICE=LAB:NODE — its ownership marker, so `clean` finds it even when
the state is lost.  A process is identified by pid *and* start time, so a reused
pid is never mistaken for ours.  Stopping: SIGTERM to the group, then SIGKILL
after a grace period.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

from .process import node_argv

MARKER_VAR = "VETHLAB_SERVICE"


def start_time(pid: int) -> int | None:
    """The process' start time in clock ticks since boot (field 22 of stat)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    return int(data[data.rindex(b")") + 2:].split()[19])


def start(ns: str | None, argv: list[str], log_path: str, marker: str) -> tuple[int, int]:
    """Start a service; returns (pid, start time)."""
    os.makedirs(os.path.dirname(log_path), mode=0o700, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(node_argv(ns, argv), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, env={**os.environ, MARKER_VAR: marker}, close_fds=True)
    started = start_time(proc.pid)
    return proc.pid, started or 0


def alive(pid: int, started: int) -> bool:
    """Is this exact process (pid and start time) still running (and not a zombie)?"""
    if start_time(pid) != started:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
    except OSError:
        return False
    return state != b"Z"


def stop(pid: int, started: int, grace: float = 3.0) -> None:
    """SIGTERM the service's process group, SIGKILL it after `grace` seconds."""
    if not alive(pid, started):
        _reap(pid)
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            _reap(pid)
            if not alive(pid, started):
                return
            time.sleep(0.02)
    _reap(pid)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def marked(lab: str | None = None) -> list[tuple[int, int, str]]:
    """(pid, start time, LAB:NODE) of every process carrying vethlab's service marker."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                env = fh.read().split(b"\0")
        except OSError:
            continue
        for item in env:
            if item.startswith(MARKER_VAR.encode() + b"="):
                value = item.split(b"=", 1)[1].decode(errors="replace")
                if lab is None or value.split(":", 1)[0] == lab:
                    started = start_time(int(entry))
                    if started is not None:
                        out.append((int(entry), started, value))
    return out
