"""The host-wide allocation lock: labs claiming host resources take turns.

Subnets, published host ports and addresses of the host namespace are shared by
every lab.  A lab that reads what the others hold, chooses, and records its choice
later races any lab doing the same in between: ten labs brought up at once got
duplicate bridge subnets in every round measured (tests/kernel/test_concurrency.py).
So the read-choose-record step runs under flock(2) on STATE/.alloc.lock, one lab at
a time.  The step is short (read the other labs' states and the host's addresses,
choose, save one state file): the lock is held for that only, never for a whole
`up`, and the wait for it is bounded with a message naming the holder.

The lock file goes when the last lab does (`down` leaves an empty state root, as
STATE/.shared.lock does): whoever holds the lock and sees no lab state left
unlinks it before letting go.  A waiter that then wins the lock on the unlinked
inode notices (the path names another inode, or none) and opens the file anew,
as LabLock does, so two holders never coexist.
"""

from __future__ import annotations

import errno
import os
import sys

from ..errors import ConflictError, LockTimeout
from .flock import HeldLock, take
from .store import labs, state_root

LOCK_NAME = ".alloc.lock"


class AllocationLock(HeldLock):
    """flock on STATE/.alloc.lock with a bounded wait; usable as a context manager."""

    def __init__(self, lab: str, wait: float = 60.0, say: bool = True) -> None:
        self.lab = lab
        self.wait = wait
        self.say = say
        self.fd: int | None = None

    @property
    def path(self) -> str:
        return os.path.join(state_root(), LOCK_NAME)

    def acquire(self) -> None:
        def gave_up(holder: str) -> LockTimeout:
            return LockTimeout(f"lab {self.lab}: the host-wide allocation lock {self.path} is held by {holder}; "
                               f"gave up after {self.wait:g} s (use --wait SECONDS to wait longer); "
                               "nothing was changed")

        # holds last ~20 ms (10 labs up): polled finer than that
        self.fd = take(self._open, lambda fd: _current(fd, self.path),
                       f"pid {os.getpid()} (lab {self.lab}: {' '.join(sys.argv[:3])})", self.wait, 0.01, gave_up,
                       (lambda holder: f"vethlab: lab {self.lab} waits for the host-wide allocation lock, held by "
                        f"{holder}") if self.say else None)

    def _open(self) -> int:
        os.makedirs(state_root(), mode=0o700, exist_ok=True)
        # O_NOFOLLOW: nothing under the state root is opened through a symlink (SPEC §4)
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise ConflictError(f"{self.path} is a symlink; vethlab does not follow links in its "
                                    "state directory: remove it") from None
            raise

    def release(self) -> None:
        """Let go; the last one out (no lab state left) removes the lock file."""
        if self.fd is None:
            return
        if not labs():
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
        else:
            os.ftruncate(self.fd, 0)
        os.close(self.fd)
        self.fd = None


def tidy() -> None:
    """After a lab's state went (`down`): remove the lock file if no lab is left.
    Never waits: a holder will do it on release if it is the last."""
    lock = AllocationLock("-", wait=0.0, say=False)
    if not os.path.lexists(lock.path):
        return
    try:
        lock.acquire()
    except LockTimeout:
        return
    lock.release()


def _current(fd: int, path: str) -> bool:
    """Is the locked file still the one the path names?"""
    try:
        return os.fstat(fd).st_ino == os.lstat(path).st_ino
    except FileNotFoundError:
        return False
