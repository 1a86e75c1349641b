"""nftables through its JSON interface: `nft -j -f -`, one atomic batch per change.

PyPI has no official nftables binding and Debian's python3-nftables imports only
under the system interpreter, so the `nft` command is the portable route; it runs
inside a node with `ip netns exec` (only for tables in lab namespaces).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import Any

from ..errors import ConflictError, KernelError
from ..ownership import table_owner
from .process import node_argv

Netns = str | None


def _nft() -> str:
    path = shutil.which("nft") or ("/usr/sbin/nft" if os.path.exists("/usr/sbin/nft") else None)
    if path is None:
        raise ConflictError("nftables is needed for nat, published ports and isolation: apt-get install nftables")
    return path


def _run(ns: Netns, args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(node_argv(ns, [_nft(), *args], view=False), input=stdin, capture_output=True, text=True, check=False)


def apply(ns: Netns, batch: dict[str, Any], what: str) -> None:
    result = _run(ns, ["-j", "-f", "-"], json.dumps(batch))
    if result.returncode != 0:
        raise KernelError(f"cannot {what}: nft said: {result.stderr.strip()[:600]}")


def tables(ns: Netns) -> dict[str, list[str]]:
    """The inet tables of a namespace that have chains, with their chain names (one
    `nft list chains`, however many tables there are): whose each is, is
    ownership.table_owner's to say."""
    result = _run(ns, ["-j", "list", "chains", "inet"])
    if result.returncode != 0:
        return {}
    by_table: dict[str, list[str]] = {}
    for item in json.loads(result.stdout or "{}").get("nftables", []):
        if "chain" in item:
            by_table.setdefault(item["chain"]["table"], []).append(item["chain"]["name"])
    return by_table


def ruleset(ns: Netns) -> list[dict[str, Any]]:
    """The whole ruleset of a namespace as nft's JSON items (tables, chains, rules of
    every family), or [] when nft cannot list it."""
    result = _run(ns, ["-j", "list", "ruleset"])
    if result.returncode != 0:
        return []
    try:
        items = json.loads(result.stdout or "{}").get("nftables", [])
    except ValueError:
        return []
    return [item for item in items if isinstance(item, dict)]


def chains(ns: Netns, table: str) -> list[str] | None:
    """Chain names of an inet table, or None when there is no such table."""
    result = _run(ns, ["-j", "list", "table", "inet", table])
    if result.returncode != 0:
        return None
    data = json.loads(result.stdout or "{}")
    return [item["chain"]["name"] for item in data.get("nftables", []) if "chain" in item]


def delete(ns: Netns, table: str) -> None:
    """Delete a lab's table; one without the lab's marker chain is not vethlab's and stays."""
    have = chains(ns, table)
    if have is None or table_owner(table, have) is None:
        return
    apply(ns, {"nftables": [{"delete": {"table": {"family": "inet", "name": table}}}]}, f"delete table {table}")
