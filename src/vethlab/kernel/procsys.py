"""Writing the sysctls of many network namespaces, each from inside it, at a cost
that does not grow with the number of namespaces.

/proc/sys shows each thread its own network namespace's sysctls, and the dcache
keeps one dentry per namespace for each directory it has looked up: the
`ipv6` (or `ipv4`) under /proc/sys/net of every namespace ever opened there sits
in one hash chain, and each lookup compares against all of them
(proc_sys_compare).  Opening /proc/sys/net/ipv6/conf/default/accept_dad in the
1000th new namespace walks ~1000 entries two or three times: measured ~180 us an
open, a fifth of the kernel time of making 1000 namespaces, and quadratic in N.

A procfs instance of our own has a dcache of its own.  It is made with the mount
API (fsopen/fsconfig/fsmount, Linux 5.2): detached, in no mount table, gone once
its descriptor is closed.  Renewed every RENEW writes, its chains stay short
(~40 us to make one).  Where the kernel refuses (older kernel, a security
policy), the writer falls back to /proc, as before.
"""

from __future__ import annotations

import os

SYS_FSOPEN, SYS_FSCONFIG, SYS_FSMOUNT = 430, 431, 432  # the same number on every architecture (unified since 5.1)
FSOPEN_CLOEXEC, FSMOUNT_CLOEXEC, FSCONFIG_CMD_CREATE = 1, 1, 6
RENEW = 32  # writes per procfs instance: chains of at most ~32 dentries


class SysctlWriter:
    """Writes sysctls of the calling thread's network namespace (`net/ipv6/...`
    paths, relative to /proc/sys).  One thread at a time; close() when done."""

    def __init__(self, renew: int = RENEW) -> None:
        self.renew = renew
        self._root = -1  # the current instance's mount fd; -1: none yet
        self._writes = 0
        self._fallback = False

    def write(self, path: str, value: str) -> None:
        """Write `value` to /proc/sys/`path`; FileNotFoundError if there is no such sysctl."""
        root = self._instance()
        if root < 0:
            write_proc(path, value)
            return
        _write(os.open("sys/" + path, os.O_WRONLY | os.O_CLOEXEC, dir_fd=root), value)

    def _instance(self) -> int:
        if self._fallback:
            return -1
        if self._root >= 0 and self._writes < self.renew:
            self._writes += 1
            return self._root
        self.close()
        try:
            self._root = _fresh_proc()
        except OSError:
            self._fallback = True
            return -1
        self._writes = 1
        return self._root

    def close(self) -> None:
        if self._root >= 0:
            os.close(self._root)
            self._root = -1


def write_proc(path: str, value: str) -> None:
    """Write `value` to /proc/sys/`path` through /proc itself: the host namespace's
    sysctls (a lookup there meets no pile of namespaces' entries, and an instance of
    our own would cost a grace period to close), and the fallback of SysctlWriter."""
    _write(os.open("/proc/sys/" + path, os.O_WRONLY | os.O_CLOEXEC), value)


def _write(fd: int, value: str) -> None:
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _fresh_proc() -> int:
    """A new, detached procfs instance: its mount's file descriptor."""
    import ctypes

    from .libc import _libc as libc

    def fail(what: str) -> OSError:
        err = ctypes.get_errno()
        return OSError(err, f"{what}: {os.strerror(err)}")

    fs = libc.syscall(SYS_FSOPEN, b"proc", FSOPEN_CLOEXEC)
    if fs < 0:
        raise fail("fsopen proc")
    try:
        if libc.syscall(SYS_FSCONFIG, fs, FSCONFIG_CMD_CREATE, None, None, 0) < 0:
            raise fail("fsconfig proc")
        mnt = libc.syscall(SYS_FSMOUNT, fs, FSMOUNT_CLOEXEC, 0)
        if mnt < 0:
            raise fail("fsmount proc")
        return int(mnt)
    finally:
        os.close(fs)
