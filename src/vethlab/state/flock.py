"""What vethlab's two locks share (state/lock.py: one lab; state/hostwide.py: the
host-wide allocation step): flock(2) on a file with a bounded wait that names the
holder, and taking the file anew when its last holder removed it meanwhile."""

from __future__ import annotations

import fcntl
import os
import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import Self

from ..errors import LockTimeout

SOMEONE = "another vethlab process"


class HeldLock:
    """A lock used as a context manager: `with lock:` is acquire() ... release()."""

    def acquire(self) -> None:
        raise NotImplementedError

    def release(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def take(open_file: Callable[[], int], current: Callable[[int], bool], holder: str, wait: float, poll: float,
         gave_up: Callable[[str], LockTimeout], waiting: Callable[[str], str] | None) -> int:
    """flock the file `open_file()` opens and write `holder` into it; returns the
    locked descriptor.  While another process holds it: `waiting(holder)` is
    printed once (None: quietly), it is polled every `poll` seconds, and after
    `wait` seconds `gave_up(holder)` is raised.  A locked file that is no longer
    the one at its path (`current(fd)` False: its last holder removed it) is let go
    and the file there now is taken instead, so two holders never coexist."""
    deadline = time.monotonic() + wait
    told = False
    while True:
        fd = open_file()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            them = read_holder(fd)
            os.close(fd)
            if time.monotonic() >= deadline:
                raise gave_up(them) from None
            if waiting is not None and not told:
                print(waiting(them), file=sys.stderr)
                told = True
            time.sleep(poll)
            continue
        if current(fd):
            os.ftruncate(fd, 0)
            os.pwrite(fd, holder.encode(), 0)
            return fd
        os.close(fd)


def read_holder(fd: int) -> str:
    """Who holds the lock, as the holder wrote it."""
    try:
        return os.pread(fd, 300, 0).decode(errors="replace") or SOMEONE
    except OSError:
        return SOMEONE
