"""A node's own view of the machine: its mount namespace and UTS namespace.

A node with `hostname:`, `files:`, `private:` or `mounts:` gets, besides its
network namespace, a mount namespace (a copy of the host's, made a slave of it:
what the host mounts later — new /run/netns files among them — shows inside,
nothing mounted inside leaks out) and a UTS namespace (its own hostname).  A
node without those keys gets neither and costs nothing here.

Both are pinned the way iproute2 pins network namespaces: the nsfs file is
bind-mounted onto a file, STATE/.nodes/NETNS/{mnt,uts}, so they live without a
process in them.  STATE/.nodes is a private bind mount of itself (a mount
namespace can only be pinned on a mount that does not propagate into it), made
on first use and removed with the last pin.

Ownership: STATE/.nodes/NETNS/owner names the lab (`vethlab:LAB`) and is written
before anything else in the directory, so a run killed half-way leaves a
directory whose owner is known: `down` and `clean` find it by that file.

What the node sees differently from the host:

* `private:` directories are bind mounts of directories under the lab's state
  directory (STATE/LAB/fs/NODE/p-HASH), empty or seeded with a copy of the host's;
* `files:` inside a private directory are written into it; elsewhere, a file
  under STATE/LAB/fs/NODE/ is bind-mounted at that path;
* `mounts:` are bind mounts of host paths, read-only unless asked.

Nothing is made on the host outside the lab's state directory: a mount point the
host does not have is made inside the node only, on an overlay of the nearest
directory the host has (kernel/nodepoints.py).

Files are written without following any symlink (kernel/nodebacking.py): a node
that replaced /etc/frr/frr.conf by a link to /etc/shadow on the host does not get
/etc/shadow overwritten by the next `up`.

Commands enter a node's view with nsenter(1) (mount and UTS namespaces), then
`ip netns exec` as before (network namespace, /etc/netns files, /sys).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import stat
from collections.abc import Iterator
from typing import NamedTuple

from .api import File, Mount, Private, View
from .libc import (
    CLONE_FS,
    CLONE_NEWNS,
    CLONE_NEWUTS,
    MNT_DETACH,
    MS_BIND,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    MS_SLAVE,
)
from .netns import run_in_thread
from .nodebacking import check_way, make_mount_point, overwrite_file, prepare_private, write_file
from .nodepins import KINDS, VIEWS_DIR, call_in_view, has_view, pin_dir, state_root, views_root
from .nodepoints import MountPoints

__all__ = ["KINDS", "VIEWS_DIR", "File", "Layer", "Mount", "Private", "View", "build", "call_in_view", "create", "has_view",
           "owner", "pin_dir", "remove", "state_root", "views", "views_root"]


#: statvfs f_flag bits that equal their MS_ mount flags (nosuid, nodev, noexec, noatime,
#: nodiratime, relatime): a read-only remount must keep them, or a user namespace refuses it
_KEPT_FLAGS = 2 | 4 | 8 | 1024 | 2048 | 4096
OWNER_FILE = "owner"


_libc = ctypes.CDLL(None, use_errno=True)


class Layer(NamedTuple):
    """One mount of a node's view, made inside its mount namespace.

    kind: "dir" (a private directory: bind `source`, a backing directory),
    "file" (bind the backing file `source` at `target`),
    "bind" (a host path, read-only unless `writable`).  `make`: a missing target
    is made inside the node (kernel/nodepoints.py); inside a private directory
    it is made in the backing beforehand."""

    kind: str
    source: str
    target: str
    writable: bool = True
    directory: bool = True  # the target is a directory (else a file)
    make: bool = False  # a missing target is made inside the node (outside every private directory)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str | None, target: str, flags: int) -> None:
    _check(_libc.mount(source.encode() if source else None, target.encode(), None, flags, None), f"mount {target}")


def _umount(path: str) -> None:
    if _libc.umount2(path.encode(), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOENT):
            raise OSError(err, f"umount {path}: {os.strerror(err)}")


@contextlib.contextmanager
def _root_lock() -> Iterator[None]:
    """flock on the state root: making STATE/.nodes a mount point and removing it with
    the last pin must not interleave with another lab adding a pin."""
    os.makedirs(state_root(), mode=0o700, exist_ok=True)
    fd = os.open(state_root(), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _is_mount_point(path: str) -> bool:
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as fh:
        return any(line.split(" ", 5)[4] == path for line in fh)


def _ensure_root() -> str:
    """STATE/.nodes, a private bind mount of itself (0700, never through a symlink)."""
    root = views_root()
    try:
        os.mkdir(root, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(root)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise OSError(errno.EEXIST, f"{root} is not a directory of ours")
    if not _is_mount_point(root):
        _mount(root, root, MS_BIND)
        try:
            _mount(None, root, MS_PRIVATE)
        except BaseException:
            _umount(root)
            raise
    return root


def _tidy_root() -> None:
    """Unmount and remove STATE/.nodes once no pin is left (called under the lock)."""
    root = views_root()
    try:
        if os.listdir(root):
            return
    except FileNotFoundError:
        return
    _umount(root)
    with contextlib.suppress(OSError):
        os.rmdir(root)


# -- owners ------------------------------------------------------------------------------------
def _owner_file(ns: str) -> tuple[str, str] | None:
    """(marker, digest) from STATE/.nodes/NETNS/owner; None when there is no such
    directory, ("", "") for one without a readable owner."""
    directory = pin_dir(ns)
    try:
        fd = os.open(os.path.join(directory, OWNER_FILE), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return ("", "") if os.path.lexists(directory) else None
    except OSError:
        return "", ""
    try:
        lines = os.read(fd, 300).decode("utf-8", "replace").split("\n")
    finally:
        os.close(fd)
    return lines[0].strip(), (lines[1].strip() if len(lines) > 1 else "")


def owner(ns: str) -> str | None:
    """The marker in STATE/.nodes/NETNS/owner; None when there is no such directory,
    "" for one without a readable owner."""
    found = _owner_file(ns)
    return found[0] if found else None


def views() -> dict[str, tuple[str, str]]:
    """Every node view's (owner marker, digest of what it was built from), by
    namespace name: one listdir, and nothing more when there is no view at all."""
    try:
        names = os.listdir(views_root())
    except (FileNotFoundError, NotADirectoryError):
        return {}
    return {name: _owner_file(name) or ("", "") for name in names if not name.startswith(".")}


# -- creating and removing -------------------------------------------------------------
def create(ns: str, marker: str, hostname: str, layers: list[Layer], digest: str = "") -> None:
    """Make namespace `ns`'s view: a mount and a UTS namespace set up as `layers` and
    `hostname` say, pinned under STATE/.nodes/NETNS.  Targets and backing files must
    exist (see `prepare_*`).  Raises FileExistsError if the node has a view already."""
    with _root_lock():
        root = _ensure_root()
        directory = pin_dir(ns)
        os.mkdir(directory, 0o700)
        try:
            fd = os.open(os.path.join(directory, OWNER_FILE), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                         0o600)
            try:
                os.write(fd, f"{marker}\n{digest}\n".encode())
            finally:
                os.close(fd)
            for kind in KINDS:
                os.close(os.open(os.path.join(directory, kind), os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                                 0o400))
            _pin(root, directory, hostname, layers)
        except BaseException:
            _remove_dir(directory)
            _tidy_root()
            raise


def _pin(root: str, directory: str, hostname: str, layers: list[Layer]) -> None:
    """Make the namespaces (in a worker thread) and bind them onto directory/{mnt,uts}.

    The kernel refuses (EINVAL) to pin a mount namespace whose id is not above the
    pinning process' own (it could otherwise make a loop).  On kernel 6.18 ids are
    handed out per CPU, so in a mount namespace of its own — `vethlab sandbox`, a
    container — a namespace made on another CPU can get a lower id: measured here,
    3 tries in 10 failed, none with the process bound to one CPU.  So a refused one
    is dropped and made again on each CPU in turn: the CPU that numbered ours numbers
    the next one higher."""
    cpus = sorted(os.sched_getaffinity(0))
    for attempt in range(len(cpus) + 1):
        cpu = cpus[(attempt - 1) % len(cpus)] if attempt else None
        fds = run_in_thread(lambda cpu=cpu: _build(root, hostname, layers, cpu))  # type: ignore[misc]
        try:
            try:
                _mount(f"/proc/self/fd/{fds[0]}", os.path.join(directory, KINDS[0]), MS_BIND)
            except OSError as exc:
                if exc.errno == errno.EINVAL and attempt < len(cpus):
                    continue
                raise
            _mount(f"/proc/self/fd/{fds[1]}", os.path.join(directory, KINDS[1]), MS_BIND)
            return
        finally:
            for nsfd in fds:
                os.close(nsfd)


def _build(root: str, hostname: str, layers: list[Layer], cpu: int | None = None) -> list[int]:
    """In a worker thread (on `cpu`, when given): new mount and UTS namespaces, set
    up; fds of both."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})  # this thread only
    _check(_libc.unshare(CLONE_FS | CLONE_NEWNS | CLONE_NEWUTS), "unshare(CLONE_NEWNS | CLONE_NEWUTS)")
    _mount(None, "/", MS_REC | MS_SLAVE)
    _umount(root)  # the pins are not the node's business (and would keep others' namespaces alive)
    name = hostname.encode()
    _check(_libc.sethostname(name, len(name)), "sethostname")
    # every source is held before any overlay is laid (kernel/nodepoints.py): an overlay
    # over a directory that holds a source would otherwise give the node its copy
    ordered = sorted(layers, key=lambda item: item.target.count("/"))  # parents before what is in them
    sources: list[int] = []
    try:
        for layer in ordered:
            sources.append(os.open(layer.source, os.O_PATH | os.O_CLOEXEC))
        points = MountPoints(root)  # the views' root, just unmounted here: scratch space for overlays
        for layer, fd in zip(ordered, sources, strict=True):
            if layer.make:
                points.ensure(layer.target, layer.directory)
            _mount(f"/proc/thread-self/fd/{fd}", layer.target, MS_BIND | MS_REC)
            if not layer.writable:
                _read_only(layer.target)
        points.close()
    finally:
        for fd in sources:
            os.close(fd)
    out: list[int] = []
    try:
        for kind in KINDS:
            out.append(os.open(f"/proc/thread-self/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC))
    except BaseException:
        for fd in out:
            os.close(fd)
        raise
    return out


def _read_only(target: str) -> None:
    """Make the mount just bound at `target` and every mount of its tree read-only.
    The bind is recursive (what is mounted below a host directory comes with it), and
    a read-only remount covers one mount only: without this, a read-only `mounts:` of
    a directory with a file system mounted below it let the node write there.  The
    tree is found by mount ids, not paths: mounts the machine had below `target`
    before the bind are covered by it, not part of it."""
    from .nodepoints import _unescape

    rows = []
    with open("/proc/thread-self/mountinfo", encoding="utf-8", errors="surrogateescape") as fh:
        for line in fh:
            words = line.split(" ", 5)
            rows.append((int(words[0]), int(words[1]), _unescape(words[4])))
    here = [r for r in rows if r[2] == target]
    top = next(r for r in here if not any(o[1] == r[0] for o in here))  # the mount stacked last there
    tree, ids = [top], {top[0]}
    grown = True
    while grown:  # mountinfo usually lists a mount after its parent; do not rely on it
        grown = False
        for row in rows:
            if row[1] in ids and row[0] not in ids:
                tree.append(row)
                ids.add(row[0])
                grown = True
    for _id, _parent, point in tree:
        flags = os.statvfs(point).f_flag & _KEPT_FLAGS
        _mount(None, point, MS_BIND | MS_REMOUNT | MS_RDONLY | flags)


def remove(ns: str, marker: str) -> bool:
    """Unmount and remove namespace `ns`'s view if lab `marker` made it (a directory
    with no readable owner, the debris of a crash before its owner was written, is
    removed too: nothing of anyone's is in it).  True if something was removed."""
    who = owner(ns)
    if who is None or who not in (marker, ""):
        return False
    with _root_lock():
        _remove_dir(pin_dir(ns))
        _tidy_root()
    return True


def _remove_dir(directory: str) -> None:
    for kind in KINDS:
        _umount(os.path.join(directory, kind))
    for name in (*KINDS, OWNER_FILE):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(directory, name))
    with contextlib.suppress(FileNotFoundError):
        os.rmdir(directory)


def build(ns: str, marker: str, view: View, replace: bool = False, digest: str = "") -> None:
    """Prepare every backing directory and file of `view`, then create the node's
    namespaces (`create`) — with `replace`, removing the node's current view only
    once all that worked, so a refused file (a symlink on the way) leaves the node
    the view it had.

    Nothing is made on the machine outside the lab's state directory.  A mount point
    inside a private directory is made in its backing; anywhere else, a missing one
    is made inside the node only, on an overlay (kernel/nodepoints.py).  A file
    outside every private directory is a backing file bound over the path (made
    so, when the machine has no such file)."""
    private = sorted(view.private, key=lambda p: p.target.count("/"))

    def holder(path: str) -> tuple[str, str] | None:
        """(backing, relative path) of the deepest private directory holding `path`."""
        best = None
        for item in private:
            if path.startswith(item.target + "/"):
                best = item
        return (best.backing, path[len(best.target) + 1:]) if best else None

    def layer(kind: str, source: str, target: str, directory: bool, writable: bool = True) -> Layer:
        inside = holder(target)
        if inside:
            make_mount_point(inside[0], inside[1], directory)
        return Layer(kind, source, target, writable, directory, make=inside is None)

    for parent in {os.path.dirname(backing) for backing in [p.backing for p in view.private] + [f.backing for f in view.files]}:
        os.makedirs(parent, mode=0o700, exist_ok=True)
    layers = []
    for item in private:
        prepare_private(item.backing, item.target, item.copy, item.owner, item.mode)
        layers.append(layer("dir", item.backing, item.target, True))
    for mount in view.mounts:
        layers.append(layer("bind", mount.source, mount.target, os.path.isdir(mount.source), mount.writable))
    for file in view.files:  # every way checked before any file is written: a refused one changes nothing
        inside = holder(file.target)
        if inside:
            check_way(inside[0], inside[1])
    for file in view.files:
        data = file.content.encode("utf-8", "surrogateescape")
        inside = holder(file.target)
        if inside:
            write_file(inside[0], inside[1], data, file.mode)
            continue
        overwrite_file(file.backing, data, file.mode)
        layers.append(layer("file", file.backing, file.target, False))
    if replace:
        remove(ns, marker)
    create(ns, marker, view.hostname, layers, digest)
