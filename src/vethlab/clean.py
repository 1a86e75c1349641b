"""`vethlab clean`: remove labs whose run died, found by state and by markers."""

from __future__ import annotations

from typing import Any

from . import cleanup
from .errors import LockTimeout
from .lab import Lab, default_kernel
from .state import store
from .state.lock import LabLock


def clean(all_labs: bool = False, wait: float = 0.0) -> dict[str, Any]:
    """Remove every lab that is half-built with nobody working on it, or whose state
    is gone but whose marked objects remain; with `all_labs`, every lab.  A lab
    another vethlab process holds the lock of is skipped."""
    kernel = default_kernel()
    try:
        marked = cleanup.find(kernel).labs()
        report: dict[str, Any] = {"labs": [], "busy": [], "stopped": {}}
        for name in sorted(set(store.labs()) | marked):
            state = store.load(name)
            if not all_labs and state is not None and state.complete:
                continue
            try:
                with LabLock(name, wait, say=False):
                    pass
            except LockTimeout:
                report["busy"].append(name)
                continue
            stopped = Lab.existing(name, kernel=kernel).down(wait=wait)
            report["labs"].append(name)
            if stopped:
                report["stopped"][name] = stopped
        return report
    finally:
        kernel.close()
