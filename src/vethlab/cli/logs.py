"""`vethlab logs [--lab NAME] NODE [SERVICE]`: a service's output.

Each `run:` service writes stdout and stderr to one file in the lab's state
directory (logs/NODE-KEY.log); this prints it, like `docker logs`.  SERVICE is the
command as written, its program name, or its position in the node's `run:`
list counted from 0 (as in `nodes.NODE.run[0]`); without it, every service of
the node, each under a `==> COMMAND <==` header as `tail` does for several files.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time

from ..errors import UsageError, VethlabError
from ..state import store
from .common import resolve_lab


def _services(lab: str, node: str) -> list[tuple[str, str]]:
    """(command, log path) of each service of `node` the lab's state records."""
    from ..reconcile.services import log_name, records

    state = store.load(lab)
    if state is None:
        raise UsageError(f"lab {lab} does not exist")
    if node not in state.nodes:
        raise UsageError(f"lab {lab} has no node {node} (it has: {', '.join(sorted(state.nodes))})")
    logs = os.path.join(store.lab_dir(lab), "logs")
    out = []
    for index, (_node, rec) in enumerate(r for r in records(state.services) if r[0] == node):
        name = log_name(rec.label) if rec.label else f"{node}-{index}.log"
        out.append((shlex.join(rec.argv), os.path.join(logs, name)))
    return out


def _choose(services: list[tuple[str, str]], wanted: str, lab: str, node: str) -> list[tuple[str, str]]:
    if wanted.isdigit() and int(wanted) < len(services):
        return [services[int(wanted)]]
    try:
        words = shlex.split(wanted)
    except ValueError:
        words = []
    exact = [s for s in services if s[0] == wanted or shlex.split(s[0]) == words]
    if exact:
        return exact[:1]
    by_program = [s for s in services if os.path.basename(shlex.split(s[0])[0]) == wanted]
    if len(by_program) == 1:
        return by_program
    names = "; ".join(f"{i}: {cmd}" for i, (cmd, _log) in enumerate(services))
    if by_program:
        raise UsageError(f"node {node} of lab {lab} has several services named {wanted}; choose one of: {names}")
    raise UsageError(f"node {node} of lab {lab} has no service {wanted!r} (it has: {names})")


def _read(path: str, tail: int | None) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return b""
    except OSError as exc:
        raise VethlabError(f"cannot read the log {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as fh:
        data = fh.read()
    if tail is not None:
        lines = data.splitlines(keepends=True)
        data = b"".join(lines[-tail:]) if tail else b""
    return data


def cmd_logs(args: argparse.Namespace) -> int:
    lab = resolve_lab(args.lab, args.node)
    services = _services(lab, args.node)
    if not services:
        raise VethlabError(f"node {args.node} of lab {lab} runs no services")
    chosen = _choose(services, args.service, lab, args.node) if args.service else services
    out = sys.stdout.buffer
    for i, (command, path) in enumerate(chosen):
        if len(chosen) > 1:
            out.write(f"{chr(10) if i else ''}==> {command} <==\n".encode())
        out.write(_read(path, args.tail))
    out.flush()
    if args.follow:
        _follow([path for _command, path in chosen], out)
    return 0


def _follow(paths: list[str], out: object) -> None:
    """Print what is appended to the logs until interrupted (Ctrl-C: exit 130)."""
    sizes = {path: os.path.getsize(path) if os.path.exists(path) else 0 for path in paths}
    while True:
        for path in paths:
            try:
                size = os.path.getsize(path)
            except OSError:
                continue
            if size > sizes[path]:
                with open(path, "rb") as fh:
                    fh.seek(sizes[path])
                    out.write(fh.read(size - sizes[path]))  # type: ignore[attr-defined]
                    out.flush()  # type: ignore[attr-defined]
                sizes[path] = size
        time.sleep(0.2)
