"""What the command modules share: finding the lab a command means, and output."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from ..errors import NotPermitted, StateDamaged, UsageError
from ..state import store
from ..topology.naming import check_lab

DEFAULT_FILE = "vethlab.yaml"


def topology_file(path: str | None) -> str:
    path = path or DEFAULT_FILE
    if not os.path.exists(path):
        raise UsageError(f"no topology file {path}" + (" (give FILE, or run where vethlab.yaml is)" if path == DEFAULT_FILE else ""))
    return path


def resolve_lab(lab: str | None, node: str | None = None) -> str:
    """The lab a command means: --lab, else the only lab, else the only lab that has
    `node`; otherwise exit 2 naming the candidates.  A --lab that is no lab name is
    refused here too (cli/main.py checks it first), before it reaches any path."""
    if lab:
        return check_lab(lab)
    labs = store.labs()
    if node is not None:
        damaged: list[StateDamaged] = []
        having = [name for name in labs if node in _nodes_of(name, damaged)]
        if len(having) == 1:
            return having[0]
        if not having and damaged:
            raise damaged[0]  # perhaps the node is there: say why it cannot be known
        if not having:
            raise UsageError(f"no lab has a node named {node}" + (f" (labs: {', '.join(labs)})" if labs else " (no lab exists)"))
        raise UsageError(f"node {node} is in several labs: {', '.join(having)}; choose one with --lab")
    if len(labs) == 1:
        return labs[0]
    if not labs:
        raise UsageError("no lab exists; build one with `vethlab up FILE`")
    raise UsageError(f"several labs exist: {', '.join(labs)}; choose one with --lab")


def _nodes_of(lab: str, damaged: list[StateDamaged]) -> dict[str, str | None]:
    """The lab's nodes; none, noted in `damaged`, when its state is damaged
    (another lab's damage must not stop a command meant for a healthy one)."""
    try:
        state = store.load(lab)
    except StateDamaged as exc:
        damaged.append(exc)
        return {}
    return state.nodes if state else {}


#: CAP_NET_ADMIN (12) and CAP_SYS_ADMIN (21): interfaces, and entering namespaces
_NEEDED_CAPS = (1 << 12) | (1 << 21)


def require_privileges(command: str) -> None:
    """Refuse, with what to do, a command that changes the kernel when this process
    cannot: otherwise the first namespace it touches ends it with a bare
    PermissionError.  Root, and root in `vethlab sandbox`'s user namespace, hold
    both capabilities; nobody outside a sandbox holds neither."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            caps = next((int(line.split()[1], 16) for line in fh if line.startswith("CapEff:")), 0)
    except OSError:
        caps = _NEEDED_CAPS if os.geteuid() == 0 else 0
    if caps & _NEEDED_CAPS != _NEEDED_CAPS:
        raise NotPermitted(f"`vethlab {command}` needs root: it creates and removes namespaces and interfaces; "
                           "run it as root (sudo), or inside `vethlab sandbox -- ...` (rootless)")


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=False, default=str)
    sys.stdout.write("\n")


def console() -> Any:
    """rich's Console, imported only when a human table is printed (~60 ms)."""
    from rich.console import Console

    # Piped output keeps whole lines (rich would wrap at 80 columns).
    return Console() if sys.stdout.isatty() else Console(width=250)


def table(title: str | None, columns: list[str], rows: list[list[str]]) -> None:
    from rich.table import Table

    t = Table(title=title, box=None, header_style="bold", pad_edge=False)
    for col in columns:
        t.add_column(col)
    for row in rows:
        t.add_row(*row)
    console().print(t)


def split_endpoint(text: str) -> tuple[str, str]:
    if text.count(":") != 1 or not all(text.split(":")):
        raise UsageError(f"expected NODE:IFNAME, not {text!r}")
    node, ifname = text.split(":")
    return node, ifname
