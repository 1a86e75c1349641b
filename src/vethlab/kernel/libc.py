"""The few libc calls Python's os module lacks, through ctypes, in one place.

mount/umount2 (namespace files, the sandbox's private /run and /etc/netns),
unshare/setns (a worker thread's or the sandbox's namespaces), fstatfs (is a file
an nsfs mount?) and renameat2 (rename without replacing).  Each raises OSError
with the errno and the object it was about, as the os module does.
"""

from __future__ import annotations

import ctypes
import os

CLONE_FS = 0x00000200
CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 1
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MNT_DETACH = 2
NSFS_MAGIC = 0x6E736673
AT_FDCWD = -100
RENAME_NOREPLACE = 1

_libc = ctypes.CDLL(None, use_errno=True)


def _fail(what: str) -> OSError:
    err = ctypes.get_errno()
    return OSError(err, f"{what}: {os.strerror(err)}")


def mount(source: str, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    if _libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None, flags,
                   data.encode() if data else None) != 0:
        raise _fail(f"mount {target}")


def umount(target: str, flags: int = 0) -> None:
    if _libc.umount2(target.encode(), flags) != 0:
        raise _fail(f"umount {target}")


def unshare(flags: int, what: str = "unshare") -> None:
    """Give the *calling thread* (or, single-threaded, the process) new namespaces."""
    if _libc.unshare(flags) != 0:
        raise _fail(what)


def setns(fd: int, nstype: int) -> None:
    """Move the *calling thread* into the namespace `fd` refers to."""
    if _libc.setns(fd, nstype) != 0:
        raise _fail("setns")


def is_nsfs(fd: int) -> bool:
    """Is `fd` a namespace file (an nsfs bind mount), not a plain file left behind?"""
    buf = (ctypes.c_long * 16)()
    if _libc.fstatfs(fd, buf) != 0:
        return False
    return bool(buf[0] == NSFS_MAGIC)


def rename_noreplace(source: str, target: str) -> None:
    """rename(2) that fails with EEXIST instead of replacing `target`.  OSError with
    EINVAL or ENOSYS: the file system or kernel cannot do it."""
    if _libc.renameat2(AT_FDCWD, source.encode(), AT_FDCWD, target.encode(), RENAME_NOREPLACE) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), target)
