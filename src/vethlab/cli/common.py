"""What the command modules share: finding the lab a command means, and output."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from ..errors import UsageError
from ..state import store

DEFAULT_FILE = "vethlab.yaml"


def topology_file(path: str | None) -> str:
    path = path or DEFAULT_FILE
    if not os.path.exists(path):
        raise UsageError(f"no topology file {path}" + (" (give FILE, or run where vethlab.yaml is)" if path == DEFAULT_FILE else ""))
    return path


def resolve_lab(lab: str | None, node: str | None = None) -> str:
    """The lab a command means: --lab, else the only lab, else the only lab that has
    `node`; otherwise exit 2 naming the candidates."""
    if lab:
        return lab
    labs = store.labs()
    if node is not None:
        having = [name for name in labs if node in ((store.load(name) or store.LabState(name)).nodes)]
        if len(having) == 1:
            return having[0]
        if not having:
            raise UsageError(f"no lab has a node named {node}" + (f" (labs: {', '.join(labs)})" if labs else " (no lab exists)"))
        raise UsageError(f"node {node} is in several labs: {', '.join(having)}; choose one with --lab")
    if len(labs) == 1:
        return labs[0]
    if not labs:
        raise UsageError("no lab exists; build one with `vethlab up FILE`")
    raise UsageError(f"several labs exist: {', '.join(labs)}; choose one with --lab")


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
