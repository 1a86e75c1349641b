"""Commands run inside a node.

`ip netns exec NS` is what users type and what they expect: besides entering the
network namespace it bind-mounts /etc/netns/NS/{hosts,resolv.conf} over /etc and
remounts /sys, so `getent hosts web` and `ls /sys/class/net` see the node's view.
The argv is passed as a list, never through a shell.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from ..errors import ConflictError, VethlabError


class CommandNotFound(VethlabError):
    """`vethlab exec NODE -- CMD` with a CMD that does not exist: 127, as shells say."""

    exit_code = 127


class CommandNotExecutable(VethlabError):
    """CMD exists but cannot be executed (a directory, no x bit): 126, as shells say."""

    exit_code = 126


def ip_binary() -> str:
    path = shutil.which("ip") or ("/usr/sbin/ip" if os.path.exists("/usr/sbin/ip") else None)
    if path is None:
        raise ConflictError("the `ip` command (iproute2) is not installed; apt-get install iproute2")
    return path


def node_argv(netns: str | None, argv: Sequence[str], view: bool = True) -> list[str]:
    """The argv that runs `argv` in a node (unchanged for the host node): in its
    network namespace, and — when the node has its own files, hostname or private
    directories (kernel/nodefs.py) and `view` is not turned off — in its mount and
    UTS namespaces first, so that `ip netns exec` runs inside the node's view."""
    if netns is None:
        return list(argv)
    from .nodepins import enter_argv

    return [*(enter_argv(netns) if view else []), ip_binary(), "netns", "exec", netns, *argv]


def run_in_node(netns: str | None, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[Any]:
    """subprocess.run of argv in the node; a command that cannot be found or
    executed gives 127 or 126 with the shell's message on its stderr, as
    `vethlab exec` does (not `ip netns exec`'s status 1)."""
    problem = command_problem(argv, netns)
    if problem is None:
        return subprocess.run(node_argv(netns, argv), check=False, **kwargs)
    return _refused(list(argv), problem, kwargs)


def _refused(argv: list[str], problem: tuple[int, str], kwargs: dict[str, Any]) -> subprocess.CompletedProcess[Any]:
    """What subprocess.run would return for a shell that could not run argv."""
    text = bool(kwargs.get("text") or kwargs.get("universal_newlines") or kwargs.get("encoding"))
    message = f"{problem[1]}\n"
    data: Any = message if text else message.encode()
    empty: Any = "" if text else b""
    capture = bool(kwargs.get("capture_output"))
    stdout = stderr = None
    if capture or kwargs.get("stdout") == subprocess.PIPE:
        stdout = data if kwargs.get("stderr") == subprocess.STDOUT else empty
    if capture or kwargs.get("stderr") == subprocess.PIPE:
        stderr = data
    elif kwargs.get("stderr") is None:
        sys.stderr.write(message)
    if kwargs.get("check"):
        raise subprocess.CalledProcessError(problem[0], argv, stdout, stderr)
    return subprocess.CompletedProcess(argv, problem[0], stdout, stderr)


def command_problem(argv: Sequence[str], netns: str | None = None) -> tuple[int, str] | None:
    """Why argv[0] cannot be executed, as (shell exit status, message), or None.

    Looked up before `ip netns exec` runs it: that exits 1 when its execvp fails
    (measured: `ip netns exec NS no-such-cmd` -> 1, a non-executable file -> 1),
    which a caller cannot tell from the command's own status 1.  The node sees
    the same PATH and files (`ip netns exec` only bind-mounts /etc/netns/NS's
    files over /etc and remounts /sys) — unless it has a view of its own: then
    the command is looked up inside that view."""
    if netns is not None:
        from .nodepins import call_in_view, has_view

        if has_view(netns):
            try:
                return call_in_view(netns, lambda: _problem(argv[0]))
            except OSError:
                return None  # cannot look: let the command itself say
    return _problem(argv[0])


def _problem(cmd: str) -> tuple[int, str] | None:
    if "/" not in cmd:
        return None if shutil.which(cmd) else (127, f"{cmd}: command not found")
    if not os.path.exists(cmd):
        return 127, f"{cmd}: No such file or directory"
    if os.path.isdir(cmd) or not os.access(cmd, os.X_OK):
        return 126, f"{cmd}: Permission denied" + (" (a directory)" if os.path.isdir(cmd) else "")
    return None


def missing_command(argv: Sequence[str], netns: str | None = None) -> str | None:
    problem = command_problem(argv, netns)
    return problem[1] if problem else None


def exec_in_node(netns: str | None, argv: Sequence[str]) -> None:
    """Replace this process by `argv` in the node: its stdout, stderr and exit status
    are the command's own; 127 when it cannot be found, 126 when it cannot be
    executed, like a shell."""
    problem = command_problem(argv, netns)
    if problem:
        raise (CommandNotFound if problem[0] == 127 else CommandNotExecutable)(problem[1])
    full = node_argv(netns, argv)
    try:
        os.execvp(full[0], full)
    except FileNotFoundError:
        raise CommandNotFound(f"{full[0]}: command not found") from None
    except PermissionError:
        raise CommandNotExecutable(f"{full[0]}: Permission denied") from None
