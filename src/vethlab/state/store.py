"""Per-lab state: one directory per lab under $VETHLAB_STATE_DIR (default
/run/vethlab, cleared at reboot like the namespaces it describes), readable by
root only, written atomically (write a temp file, fsync, rename: CNI host-local's
disk backend).  The state is a convenience, never the only truth: every object is
also marked in the kernel (ownership.py), so losing it loses nothing.

Nothing here trusts the directory: it is opened through state/fs.py (owner and
mode checked, never through a symlink), every lab name is checked by
topology.naming before it becomes a path, and every state is checked by
state/shape.py before it is returned."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ..errors import StateDamaged, StateError
from ..topology.naming import check_lab, lab_problem
from . import fs
from .shape import ShapeError, check

DEFAULT_DIR = "/run/vethlab"
VERSION = 1
STATE_FILE = "state.json"
TMP_FILE = ".state.json.tmp"


def state_root() -> str:
    return os.path.abspath(os.environ.get("VETHLAB_STATE_DIR") or DEFAULT_DIR)


def lab_dir(lab: str) -> str:
    """The path of lab `lab`'s directory: the one place a lab name becomes a path,
    and only once the name is checked (a name like "../x" never gets this far)."""
    return os.path.join(state_root(), check_lab(lab, "lab"))


@contextmanager
def open_root(create: bool) -> Iterator[int | None]:
    """A checked descriptor of the state root (fs.open_root), closed on exit; None
    when it does not exist and `create` is false."""
    fd = fs.open_root(state_root(), create)
    try:
        yield fd
    finally:
        if fd is not None:
            os.close(fd)


@contextmanager
def _lab_fd(lab: str, create: bool) -> Iterator[int | None]:
    path = lab_dir(lab)
    with open_root(create) as root:
        fd = None if root is None else fs.open_dir(root, lab, path, create, f"the state directory of lab {lab}")
        try:
            yield fd
        finally:
            if fd is not None:
                os.close(fd)


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
    def from_json(cls, data: dict[str, Any], lab: str | None = None, checked: bool = False) -> LabState:
        """A state from its JSON form, checked (shape.ShapeError if it is wrong)
        unless `checked`: the caller has checked these very data before."""
        if not checked:
            check(data, lab)
        known = {k: v for k, v in data.items() if k in cls.__annotations__ and k != "lab"}
        return cls(data["lab"], **known)


#: lab -> the bytes of its state file this process last read and found well-shaped.
#: One command reads a lab's state several times (`down FILE`: which lab the file
#: names, then the lab under its lock; `up`: five times); the same bytes again need
#: no second shape check (4 ms for a 200-node state here).  Bytes, not the object:
#: every load returns a fresh LabState of its own to change.
_CHECKED: dict[str, bytes] = {}


def load(lab: str) -> LabState | None:
    """The lab's state, or None if it has none.  StateDamaged (exit 1, naming the
    file and the field) when it is there but does not parse, has the wrong shape
    or is reached through a symlink; StateError when the state root cannot be
    trusted or the state cannot be read at all (permission)."""
    path = os.path.join(lab_dir(lab), STATE_FILE)
    with open_root(create=False) as root:
        if root is None:
            return None
        try:
            fd = fs.read_in_lab(root, lab, lab_dir(lab), STATE_FILE, "the state file")
            if fd is None:
                return None
        except fs.StateDenied:
            raise
        except StateError as exc:  # a symlink, or a stranger, where the lab's directory or file belongs
            raise StateDamaged(lab, path, str(exc)) from None
    with os.fdopen(fd, "rb") as fh:
        raw = fh.read()
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise StateDamaged(lab, path, f"not valid JSON ({str(exc)[:100]})") from None
    try:
        state = LabState.from_json(data, lab, checked=_CHECKED.get(lab) == raw)
    except ShapeError as exc:
        raise StateDamaged(lab, path, str(exc)) from None
    _CHECKED[lab] = raw
    return state


def exists(lab: str) -> bool:
    """Does the lab have a state file?  What `load(lab) is not None` says, without
    reading and parsing a 1000-node state (~2 ms) only to throw it away.  A state
    that is there but damaged exists (load would raise)."""
    with open_root(create=False) as root:
        if root is None:
            return False
        try:
            fd = fs.read_in_lab(root, lab, lab_dir(lab), STATE_FILE, "the state file")
        except StateError:
            return True
    if fd is None:
        return False
    os.close(fd)
    return True


def save(state: LabState) -> None:
    with _lab_fd(state.lab, create=True) as lab_fd:
        assert lab_fd is not None
        fd = fs.open_scratch(lab_fd, TMP_FILE, os.path.join(lab_dir(state.lab), TMP_FILE))
        # The fields are plain JSON values already: no deep copy (asdict) of a
        # 1000-node state.  json.dumps, not json.dump: only the one-shot encoder is
        # the C one (json.dump to a file runs the pure-Python encoder, 5-10x slower).
        data = json.dumps(vars(state), separators=(",", ":"), sort_keys=True).encode()
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(TMP_FILE, STATE_FILE, src_dir_fd=lab_fd, dst_dir_fd=lab_fd)


def remove(lab: str) -> None:
    """Remove the lab's directory and everything in it, following no symlink."""
    path = lab_dir(lab)
    with open_root(create=False) as root:
        if root is None:
            return
        try:
            fs.remove_tree(root, lab)
        except OSError as exc:
            raise StateError(f"cannot remove {path}: {exc.strerror}") from None


def logs_dir(lab: str) -> str:
    """The lab's log directory, made if missing (0700, never through a symlink)."""
    path = os.path.join(lab_dir(lab), "logs")
    with _lab_fd(lab, create=True) as lab_fd:
        assert lab_fd is not None
        fd = fs.open_dir(lab_fd, "logs", path, True, f"the log directory of lab {lab}")
        assert fd is not None
        os.close(fd)
    return path


def labs() -> list[str]:
    """Labs that have a state directory.  Entries whose name is not a lab name are
    never listed (nor, so, acted on); a symlink named like a lab is (its state
    then reads as damaged, and `down` removes the link)."""
    with open_root(create=False) as root:
        if root is None:
            return []
        out = []
        for name in os.listdir(root):
            if lab_problem(name):
                continue
            try:
                st = os.stat(name, dir_fd=root, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode):
                out.append(name)
        return sorted(out)
