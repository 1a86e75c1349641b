"""Attachment state: what ADD did, so DEL, CHECK and GC can undo or verify it
even when the container's namespace (or the config's IPAM section) is gone.

Layout under the state root ($VETHLAB_STATE_DIR, default /run/vethlab; a dot
directory, so `vethlab ls` never takes it for a lab):

    .cni/NETWORK.lock              flock: one ADD/DEL/GC per network at a time
    .cni/NETWORK/CID:IFNAME.json   one attachment (ifname, netns, host veth, IPs, ports)
    .cni/.firewall.lock            flock: the shared nftables table is rewritten whole
    .cni/.firewall.json            what that table holds (ports.py)

No network's name can land on another's or on the firewall's: network names
start with a letter or digit (the firewall's files with a dot) and do not end in
`.lock` (config.py), so a network `firewall` does not wait on its own lock and a
network `firewall.json` or `a.lock` does not squat a file others need.

Files are written atomically (temp, fsync, rename) and reached only through
state/fs.py (owner and mode checked, never through a symlink).  Locks are bounded:
a wait longer than VETHLAB_CNI_LOCK_WAIT seconds (default 30) is code 11, "try
again later", and the runtime retries."""

from __future__ import annotations

import errno
import fcntl
import os
import time

from ..errors import StateError
from ..state import fs
from .jsonio import dumps, loads
from .protocol import STATE_FAILURE, TRY_AGAIN_LATER, CniError

TYPE_CHECKING = False  # typing itself is not imported at run time: start-up cost (main.py)
if TYPE_CHECKING:
    from types import TracebackType
    from typing import Any, Self

CNI_DIR = ".cni"
DEFAULT_ROOT = "/run/vethlab"


def state_root() -> str:
    return os.path.abspath(os.environ.get("VETHLAB_STATE_DIR") or DEFAULT_ROOT)


def lock_wait() -> float:
    try:
        return max(0.0, float(os.environ.get("VETHLAB_CNI_LOCK_WAIT", "30")))
    except ValueError:
        return 30.0


def _cni_dir() -> tuple[int, str]:
    """(fd, path) of STATE/.cni, made 0700 if missing."""
    root_path = state_root()
    try:
        root = fs.open_root(root_path, create=True)
        assert root is not None
        try:
            path = os.path.join(root_path, CNI_DIR)
            fd = fs.open_dir(root, CNI_DIR, path, True, "vethlab's CNI state directory")
            assert fd is not None
            return fd, path
        finally:
            os.close(root)
    except StateError as exc:
        raise CniError(STATE_FAILURE, str(exc)) from None
    except OSError as exc:
        raise CniError(STATE_FAILURE, f"cannot use the state directory {root_path}: {exc.strerror}") from None


def flock(dir_fd: int, name: str, path: str, wait: float, what: str) -> int:
    """An exclusive flock on dir/name within `wait` seconds, else code 11."""
    try:
        fd = fs.open_file(dir_fd, name, path, os.O_RDWR | os.O_CREAT, what)
    except StateError as exc:
        raise CniError(STATE_FAILURE, str(exc)) from None
    deadline = time.monotonic() + wait
    pause = 0.002
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                holder = os.pread(fd, 200, 0).decode(errors="replace") or "another process"
                os.close(fd)
                raise CniError(TRY_AGAIN_LATER, f"{what} {path} is held by {holder}; gave up after {wait:g} s "
                               "(VETHLAB_CNI_LOCK_WAIT)") from None
            time.sleep(pause)
            pause = min(pause * 2, 0.05)


def _mark_holder(fd: int, doing: str) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} (vethlab-cni {doing})".encode(), 0)


def write_json(dir_fd: int, name: str, path: str, data: dict[str, Any]) -> None:
    tmp = "." + name + ".tmp"
    try:
        fd = fs.open_scratch(dir_fd, tmp, path + ".tmp")
    except StateError as exc:
        raise CniError(STATE_FAILURE, str(exc)) from None
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(dumps(data, compact=True, sort_keys=True))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


def read_json(dir_fd: int, name: str, path: str) -> dict[str, Any] | None:
    try:
        fd = fs.open_file(dir_fd, name, path, os.O_RDONLY, "a CNI state file")
    except FileNotFoundError:
        return None
    except StateError as exc:
        raise CniError(STATE_FAILURE, str(exc)) from None
    with os.fdopen(fd, "rb") as fh:
        raw = fh.read()
    try:
        data = loads(raw)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise CniError(STATE_FAILURE, f"{path} is damaged (not a JSON object): remove it, then run DEL again")
    return data


def attachment_name(container_id: str, ifname: str) -> str:
    # both checked by protocol.read_env: no '/', and the id starts with a letter or digit.
    # ':' is in neither, so one name is one attachment: with '.', container "a.b" on
    # eth0 and container "a" on "b.eth0" shared a record, and DEL of one removed the other's port
    return f"{container_id}:{ifname}.json"


class _Held:
    """State held under a lock, as a context manager: leaving it (or close()) closes
    the descriptors named in FDS (-1: not open)."""

    FDS: tuple[str, ...] = ()

    def __init__(self, wait: float | None = None) -> None:
        self.wait = lock_wait() if wait is None else wait
        self.cni_fd = -1
        self.lock_fd = -1
        self.path = ""

    def __enter__(self) -> Self:
        self.cni_fd, cni_path = _cni_dir()
        try:
            self._take(cni_path)
        except BaseException:
            self.close()
            raise
        return self

    def _take(self, cni_path: str) -> None:
        """Take the lock (and open the state) below .cni, whose descriptor is cni_fd."""
        raise NotImplementedError

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        for attr in self.FDS:
            fd = getattr(self, attr)
            if fd >= 0:
                os.close(fd)
                setattr(self, attr, -1)


class NetworkState(_Held):
    """The attachments of one network, under its lock (a context manager)."""

    FDS = ("dir_fd", "lock_fd", "cni_fd")

    def __init__(self, network: str, doing: str, wait: float | None = None) -> None:
        super().__init__(wait)
        self.network = network
        self.doing = doing
        self.dir_fd = -1

    def _take(self, cni_path: str) -> None:
        self.lock_fd = flock(self.cni_fd, self.network + ".lock", os.path.join(cni_path, self.network + ".lock"),
                             self.wait, f"the lock of CNI network {self.network}")
        _mark_holder(self.lock_fd, f"{self.doing} on {self.network}")
        self.path = os.path.join(cni_path, self.network)
        try:
            fd = fs.open_dir(self.cni_fd, self.network, self.path, True, f"the state of CNI network {self.network}")
        except StateError as exc:
            raise CniError(STATE_FAILURE, str(exc)) from None
        assert fd is not None
        self.dir_fd = fd

    def load(self, container_id: str, ifname: str) -> dict[str, Any] | None:
        name = attachment_name(container_id, ifname)
        return read_json(self.dir_fd, name, os.path.join(self.path, name))

    def save(self, record: dict[str, Any]) -> None:
        name = attachment_name(record["containerID"], record["ifname"])
        write_json(self.dir_fd, name, os.path.join(self.path, name), record)

    def remove(self, container_id: str, ifname: str) -> None:
        fs.unlink(self.dir_fd, attachment_name(container_id, ifname))

    def all(self, damaged: list[str] | None = None) -> list[dict[str, Any]]:
        """Every readable record; the names of damaged ones go to `damaged` (GC says
        them; everyone else passes over them: the DEL that needs one reports it)."""
        out = []
        for name in sorted(os.listdir(self.dir_fd)):
            if name.endswith(".json") and not name.startswith("."):
                try:
                    record = read_json(self.dir_fd, name, os.path.join(self.path, name))
                except CniError:
                    record = {}
                if record is None:
                    continue  # removed meanwhile
                if isinstance(record.get("containerID"), str) and \
                        isinstance(record.get("ifname"), str) and isinstance(record.get("hostVeth"), str):
                    out.append(record)
                elif damaged is not None:
                    damaged.append(name)
        return out


class FirewallState(_Held):
    """The shared nftables table's inputs (.cni/.firewall.json), under its lock."""

    NAME = ".firewall.json"
    LOCK = ".firewall.lock"
    FDS = ("lock_fd", "cni_fd")

    def _take(self, cni_path: str) -> None:
        self.path = os.path.join(cni_path, self.NAME)
        self.lock_fd = flock(self.cni_fd, self.LOCK, os.path.join(cni_path, self.LOCK), self.wait,
                             "the CNI firewall lock")
        _mark_holder(self.lock_fd, "firewall")

    def load(self) -> dict[str, Any]:
        return read_json(self.cni_fd, self.NAME, self.path) or {"networks": {}, "publish": {}, "digest": ""}

    def save(self, data: dict[str, Any]) -> None:
        write_json(self.cni_fd, self.NAME, self.path, data)


def peek_firewall() -> dict[str, Any] | None:
    """.firewall.json read without its lock (ADD's fast path: is my network's NAT in
    the table already?); None when absent.  A stale read only costs a locked re-check."""
    root = state_root()
    try:
        fd = os.open(os.path.join(root, CNI_DIR, FirewallState.NAME), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as fh:
            data = loads(fh.read())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def unlink_quiet(path: str) -> None:
    try:
        os.unlink(path)
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise
