"""Per-lab state: one directory per lab under $VETHLAB_STATE_DIR (default
/run/vethlab, cleared at reboot like the namespaces it describes), readable by
root only, written atomically (write a temp file, fsync, rename: CNI host-local's
disk backend).  The state is a convenience, never the only truth: every object is
also marked in the kernel (ownership.py), so losing it loses nothing."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from typing import Any

DEFAULT_DIR = "/run/vethlab"
VERSION = 1


def state_root() -> str:
    return os.environ.get("VETHLAB_STATE_DIR") or DEFAULT_DIR


def lab_dir(lab: str) -> str:
    return os.path.join(state_root(), lab)


_DEFAULTS: dict[str, Callable[[], Any]] = {
    "file": lambda: None, "nodes": dict, "host_routes": list, "host_sysctls": dict, "exec_digests": dict,
    "links": list, "routed": list, "allocation": dict, "host_subnets": list, "firewall_nodes": dict,
    "uplinks": dict, "services": dict, "shaped": dict, "fingerprints": dict, "hosts_digest": str,
    "netns_ids": dict, "complete": lambda: False, "version": lambda: VERSION,
    "host_addresses": list, "host_ports": list, "host_names": list,
}


class LabState:
    """A lab's state.  A plain class, not a dataclass: `vethlab exec` reads it and
    must not pay for importing dataclasses (~10 ms of a ~50 ms budget)."""

    lab: str
    file: str | None
    nodes: dict[str, str | None]  # node -> netns (None: host)
    host_routes: list[dict[str, Any]]
    host_sysctls: dict[str, str]  # key -> value before vethlab changed it
    exec_digests: dict[str, str]
    links: list[list[str]]  # [a_node, a_ifname, b_node, b_ifname]
    routed: list[str]  # nodes that had routes in the file
    allocation: dict[str, Any]  # IPAM's choices (ipam.Allocation.to_json)
    host_subnets: list[str]  # subnets of networks in the host namespace
    host_addresses: list[str]  # "ip/prefix" of link ends in the host namespace (claims.py)
    host_ports: list[str]  # published host ports, "[IP:]PORT/PROTO" (claims.py)
    host_names: list[str]  # host-wide names: "netns:NAME", "if:IFNAME" in the host namespace (claims.py)
    firewall_nodes: dict[str, str | None]  # node -> netns holding our table
    uplinks: dict[str, dict[str, Any]]  # "node:ifname" -> {"up", "netns"}
    services: dict[str, list[list[Any]]]  # node -> [[argv, pid, start time]]
    shaped: dict[str, dict[str, Any]]  # "node:ifname" -> Shaping.to_json()
    fingerprints: dict[str, str]  # node -> desired.fingerprints() at the last full up
    hosts_digest: str
    netns_ids: dict[str, int]  # netns -> nsfs inode when vethlab made it
    complete: bool
    version: int

    def __init__(self, lab: str, **values: Any) -> None:
        self.lab = lab
        for name, default in _DEFAULTS.items():
            setattr(self, name, values[name] if name in values else default())

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LabState:
        known = {k: v for k, v in data.items() if k in cls.__annotations__ and k != "lab"}
        return cls(str(data["lab"]), **known)


def load(lab: str) -> LabState | None:
    """The lab's state, or None if it has none (or it is unreadable: the kernel
    markers are then the truth)."""
    try:
        with open(os.path.join(lab_dir(lab), "state.json"), encoding="utf-8") as fh:
            return LabState.from_json(json.load(fh))
    except (OSError, ValueError, TypeError):
        return None


def save(state: LabState) -> None:
    directory = lab_dir(state.lab)
    os.makedirs(state_root(), mode=0o700, exist_ok=True)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    tmp = os.path.join(directory, ".state.json.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        # the fields are plain JSON values already: no deep copy (asdict) of a 1000-node state
        json.dump(vars(state), fh, separators=(",", ":"), sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, os.path.join(directory, "state.json"))


def remove(lab: str) -> None:
    shutil.rmtree(lab_dir(lab), ignore_errors=True)


def labs() -> list[str]:
    """Labs that have a state directory."""
    try:
        return sorted(e for e in os.listdir(state_root())
                      if os.path.isdir(os.path.join(state_root(), e)) and not e.startswith("."))
    except OSError:
        return []
