"""The host-wide allocation lock: labs claiming host resources take turns.

Subnets, published host ports and addresses of the host namespace are shared by
every lab.  A lab that reads what the others hold, chooses, and records its choice
later races any lab doing the same in between: ten labs brought up at once got
duplicate bridge subnets in every round measured (tests/kernel/test_concurrency.py).
So the read-choose-record step runs under flock(2) on STATE/.alloc.lock, one lab at
a time.  The step is short (read the other labs' states and the host's addresses,
choose, save one state file): the lock is held for that only, never for a whole
`up`, and the wait for it is bounded with a message naming the holder.

The lock file is never removed (unlike a lab's lock): it is one empty-ish file per
state root, and removing it would reopen the inode race LabLock has to handle.
"""

from __future__ import annotations

import errno
import fcntl
import os
import sys
import time
from types import TracebackType

from ..errors import ConflictError, LockTimeout
from .store import state_root

LOCK_NAME = ".alloc.lock"


class AllocationLock:
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
        os.makedirs(state_root(), mode=0o700, exist_ok=True)
        # O_NOFOLLOW: nothing under the state root is opened through a symlink (SPEC §4)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise ConflictError(f"{self.path} is a symlink; vethlab does not follow links in its "
                                    "state directory: remove it") from None
            raise
        deadline = time.monotonic() + self.wait
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = _read_holder(fd)
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise LockTimeout(
                        f"lab {self.lab}: the host-wide allocation lock {self.path} is held by {holder}; "
                        f"gave up after {self.wait:g} s (use --wait SECONDS to wait longer); "
                        "nothing was changed") from None
                if self.say and not told:
                    print(f"vethlab: lab {self.lab} waits for the host-wide allocation lock, held by {holder}",
                          file=sys.stderr)
                    told = True
                time.sleep(0.02)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} (lab {self.lab}: {' '.join(sys.argv[:3])})".encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is None:
            return
        os.ftruncate(self.fd, 0)
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> AllocationLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        return os.pread(fd, 300, 0).decode(errors="replace") or "another vethlab process"
    except OSError:
        return "another vethlab process"
