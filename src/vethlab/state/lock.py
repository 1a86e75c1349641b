"""The per-lab lock: two vethlab processes on one lab never interleave.

flock(2) on STATE/LAB.lock; the holder writes its pid and command into the file
so a waiter can say for whom it waits.  `down` removes the lock file while holding
it; a waiter that then wins the lock on the removed inode notices (inode changed)
and takes the new file instead.

The file is opened relative to the state root's descriptor with O_NOFOLLOW
(state/fs.py): a symlink planted as LAB.lock is refused, never written through."""

from __future__ import annotations

import fcntl
import os
import sys
import time
from types import TracebackType

from ..errors import LockTimeout
from . import fs
from .store import lab_dir, state_root


class LabLock:
    def __init__(self, lab: str, wait: float = 60.0, say: bool = True) -> None:
        self.lab = lab
        self.wait = wait
        self.say = say
        self.path = lab_dir(lab) + ".lock"  # lab_dir: the name is checked before it becomes a path
        self.name = os.path.basename(self.path)
        self.fd: int | None = None
        self.root: int | None = None

    def acquire(self) -> None:
        self.root = fs.open_root(state_root(), create=True)
        assert self.root is not None
        try:
            self._acquire(self.root)
        except BaseException:
            self._close_root()
            raise

    def _acquire(self, root: int) -> None:
        deadline = time.monotonic() + self.wait
        told = False
        while True:
            fd = fs.open_file(root, self.name, self.path, os.O_RDWR | os.O_CREAT, f"the lock file of lab {self.lab}")
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
                same = os.fstat(fd).st_ino == os.stat(self.name, dir_fd=root, follow_symlinks=False).st_ino
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
        if remove and self.root is not None:
            fs.unlink(self.root, self.name)
        os.close(self.fd)
        self.fd = None
        self._close_root()

    def _close_root(self) -> None:
        if self.root is not None:
            os.close(self.root)
            self.root = None

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
