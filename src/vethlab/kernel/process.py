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
from collections.abc import Sequence
from typing import Any

from ..errors import ConflictError


def ip_binary() -> str:
    path = shutil.which("ip") or ("/usr/sbin/ip" if os.path.exists("/usr/sbin/ip") else None)
    if path is None:
        raise ConflictError("the `ip` command (iproute2) is not installed; apt-get install iproute2")
    return path


def node_argv(netns: str | None, argv: Sequence[str]) -> list[str]:
    """The argv that runs `argv` in a node (unchanged for the host node)."""
    if netns is None:
        return list(argv)
    return [ip_binary(), "netns", "exec", netns, *argv]


def run_in_node(netns: str | None, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[Any]:
    return subprocess.run(node_argv(netns, argv), check=False, **kwargs)


def exec_in_node(netns: str | None, argv: Sequence[str]) -> None:
    """Replace this process by `argv` in the node: its stdout, stderr and exit status
    are the command's own."""
    full = node_argv(netns, argv)
    try:
        os.execvp(full[0], full)
    except FileNotFoundError:
        raise ConflictError(f"command not found: {full[0]}") from None
