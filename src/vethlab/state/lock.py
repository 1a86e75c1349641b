"""The per-lab lock: two vethlab processes on one lab never interleave.

flock(2) on STATE/LAB.lock; the holder writes its pid and command into the file
so a waiter can say for whom it waits.  `down` removes the lock file while holding
it; a waiter that then wins the lock on the removed inode notices (inode changed)
and takes the new file instead."""

from __future__ import annotations

import fcntl
import os
import sys
import time
from types import TracebackType

from ..errors import LockTimeout
from .store import state_root


class LabLock:
    def __init__(self, lab: str, wait: float = 60.0, say: bool = True) -> None:
        self.lab = lab
        self.wait = wait
        self.say = say
        self.path = os.path.join(state_root(), f"{lab}.lock")
        self.fd: int | None = None

    def acquire(self) -> None:
        os.makedirs(state_root(), mode=0o700, exist_ok=True)
        deadline = time.monotonic() + self.wait
        told = False
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                if time.monotonic() >= deadline:
                    raise LockTimeout(f"lab {self.lab} is busy: held by {holder}; gave up after {self.wait:g} s "
                                      "(use --wait SECONDS to wait longer)") from None
                if self.say and not told:
                    print(f"vethlab: waiting for lab {self.lab}, held by {holder}", file=sys.stderr)
                    told = True
                time.sleep(0.05)
                continue
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} ({' '.join(sys.argv[:3])})".encode(), 0)
            self.fd = fd
            return

    def release(self, remove: bool = False) -> None:
        if self.fd is None:
            return
        if remove:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> LabLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        return os.pread(fd, 200, 0).decode(errors="replace") or "another vethlab process"
    except OSError:
        return "another vethlab process"
