"""The per-lab lock: two vethlab processes on one lab never interleave.

flock(2) on STATE/LAB.lock; the holder writes its pid and command into the file
so a waiter can say for whom it waits.  `down` removes the lock file while holding
it; a waiter that then wins the lock on the removed inode notices (inode changed)
and takes the new file instead.

The file is opened relative to the state root's descriptor with O_NOFOLLOW
(state/fs.py): a symlink planted as LAB.lock is refused, never written through."""

from __future__ import annotations

import os
import sys

from ..errors import LockTimeout
from . import fs
from .flock import HeldLock, take
from .store import lab_dir, state_root


class LabLock(HeldLock):
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
        def current(fd: int) -> bool:
            try:
                return os.fstat(fd).st_ino == os.stat(self.name, dir_fd=root, follow_symlinks=False).st_ino
            except FileNotFoundError:
                return False

        self.fd = take(
            lambda: fs.open_file(root, self.name, self.path, os.O_RDWR | os.O_CREAT, f"the lock file of lab {self.lab}"),
            current, f"pid {os.getpid()} ({' '.join(sys.argv[:3])})", self.wait, 0.05,
            lambda holder: LockTimeout(f"lab {self.lab} is busy: held by {holder}; gave up after {self.wait:g} s "
                                       "(use --wait SECONDS to wait longer)"),
            (lambda holder: f"vethlab: waiting for lab {self.lab}, held by {holder}") if self.say else None)

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
