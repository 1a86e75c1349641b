"""Mount points a node's view needs and the machine does not have, made inside the
node's own mount namespace only: nothing is created on the machine.

A mount needs something to mount on.  When a private directory, a `mounts:`
target or a file of `files:` names a path the machine does not have (and no
private directory of the node holds it), the nearest directory the machine does
have on the way, A, becomes in the node an overlay: A as the machine has it
(the lower layer) under an empty tmpfs (the upper layer).  The missing
directories, and an empty file for a file, are made in the tmpfs; the mount then
goes on top.  The machine's A is never written.

An overlay shows only A's own file system, not what is mounted below A, so every
mount below A is bound back at its place (recursively, from the mount it covers:
it keeps receiving what the machine mounts there later — /run/netns files among
them), and so are /run/netns and /etc/netns, mounts or not (`LIVE`).  What the node writes directly into A stays in the tmpfs, in memory, and
goes with the node.  What the machine changes in A itself while the node lives
usually shows in the node, but an overlay does not promise it (the kernel's
overlayfs documentation calls changes to a lower layer undefined).

All of it runs in the worker thread that builds the node's namespaces
(kernel/nodefs.py), so the paths are the node's.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import stat

from .nodebacking import make_mount_point

#: directories vethlab and iproute2 change under a running node (namespace files,
#: each node's hosts file, replaced by rename): bound back from the machine like a
#: mount, so the node never sees an overlay's stale copy of them
LIVE = ("/run/netns", "/etc/netns")
MS_BIND = 4096
MS_REC = 16384
MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    if _libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None, flags,
                   data.encode() if data is not None else None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {fstype or 'bind'} on {target}: {os.strerror(err)}")


def _unescape(field: str) -> str:
    """A mountinfo path: space, tab, newline and backslash are octal escapes there."""
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def _option(path: str) -> str:
    """A path as an overlay mount option: ',' ends an option and ':' separates lower layers."""
    return path.replace("\\", "\\\\").replace(",", "\\,").replace(":", "\\:")


def submounts(top: str) -> list[str]:
    """The mount points strictly below `top` in this thread's mount namespace, each
    outermost one once (a recursive bind of it brings what is mounted below it)."""
    prefix = top.rstrip("/") + "/"
    with open("/proc/thread-self/mountinfo", encoding="utf-8", errors="surrogateescape") as fh:
        found = {_unescape(line.split(" ", 5)[4]) for line in fh}
    below = sorted(p for p in found if p.startswith(prefix))
    out: list[str] = []
    for path in below:
        if not any(path.startswith(outer + "/") for outer in out):
            out.append(path)
    return out


class MountPoints:
    """Makes missing mount points in a node's mount namespace (see the module's
    docstring).  `scratch` is a directory of the node's namespace where nothing is
    mounted and nothing of the node's needs to be seen (the views' root, unmounted
    there): the tmpfs of every overlay is mounted on it while the view is built,
    and detached by `close` (the overlays keep it)."""

    def __init__(self, scratch: str) -> None:
        self.scratch = scratch
        self.mounted = False
        self.overlays: set[int] = set()  # st_dev of each overlay made
        self.made: list[str] = []  # the directories made overlays, in order

    def ensure(self, target: str, directory: bool) -> None:
        """`target` exists in the node as a directory (or a file): made if missing."""
        try:
            st = os.stat(target)  # following links, as mount(2) does
        except FileNotFoundError:
            st = None
        except NotADirectoryError:
            st = None  # a file on the way: refused below with its name
        if st is not None:
            if stat.S_ISDIR(st.st_mode) != directory:
                raise OSError(errno.EEXIST, f"{target} exists and is not a {'directory' if directory else 'file'}")
            return
        base = target
        while True:
            base = os.path.dirname(base)
            if os.path.isdir(base):
                break
        real = os.path.realpath(base)
        if real == "/":  # refused when the file is checked (topology/nodeview.py): an overlay would hide every mount
            raise OSError(errno.ENOENT, f"{target}: no directory on its way exists on this machine but /")
        if os.stat(real).st_dev not in self.overlays:
            self._overlay(real)
        make_mount_point(real, target[len(base):].lstrip("/"), directory)

    def _overlay(self, lower: str) -> None:
        if not self.mounted:
            _mount("tmpfs", self.scratch, "tmpfs", 0, "mode=0700")
            self.mounted = True
        n = len(self.made)
        upper, work = os.path.join(self.scratch, f"u{n}"), os.path.join(self.scratch, f"w{n}")
        os.mkdir(upper, 0o755)
        os.mkdir(work, 0o700)
        with contextlib.suppress(OSError):
            st = os.stat(lower)
            os.chmod(upper, stat.S_IMODE(st.st_mode))  # the overlay's root has the upper layer's mode
        held: list[tuple[str, int]] = []
        try:
            below = submounts(lower)
            for live in LIVE:
                if live.startswith(lower.rstrip("/") + "/") and not any(
                        live == m or live.startswith(m + "/") for m in below):
                    os.makedirs(live, mode=0o755, exist_ok=True)  # vethlab's own: `up` makes it for every lab
                    below.append(live)
            for path in below:
                with contextlib.suppress(PermissionError, FileNotFoundError):  # unreachable: not seen anyway
                    held.append((path, os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)))
            try:
                _mount("overlay", lower, "overlay", 0,
                       f"lowerdir={_option(lower)},upperdir={_option(upper)},workdir={_option(work)}")
            except OSError as exc:
                raise OSError(exc.errno, f"cannot make a mount point below {lower} inside the node (an overlay "
                                         f"over it: {os.strerror(exc.errno or 0)})") from None
            for path, fd in held:
                _mount(f"/proc/thread-self/fd/{fd}", path, None, MS_BIND | MS_REC)
        finally:
            for _path, fd in held:
                os.close(fd)
        self.overlays.add(os.stat(lower).st_dev)
        self.made.append(lower)

    def close(self) -> None:
        """Detach the scratch tmpfs (each overlay keeps its own layers)."""
        if self.mounted and _libc.umount2(self.scratch.encode(), MNT_DETACH) != 0:
            err = ctypes.get_errno()
            if err not in (errno.EINVAL, errno.ENOENT):
                raise OSError(err, f"umount {self.scratch}: {os.strerror(err)}")
        self.mounted = False
