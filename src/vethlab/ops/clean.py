"""`vethlab clean`: remove labs whose run died, found by state and by markers."""

from __future__ import annotations

from typing import Any

from ..errors import LockTimeout, StateDamaged
from ..kernel import open_kernel
from ..reconcile import forwarding, removal
from ..state import store
from ..state.lock import LabLock
from ..topology.naming import lab_problem
from .down import down


def clean(all_labs: bool = False, wait: float = 0.0) -> dict[str, Any]:
    """Remove every lab that is half-built with nobody working on it, or whose state
    is gone but whose marked objects remain; with `all_labs`, every lab.  A lab
    another vethlab process holds the lock of is skipped."""
    known = store.labs()  # first: an untrustworthy state directory is refused before the kernel is searched
    kernel = open_kernel()
    try:
        # a service's marker is an environment variable anyone may set: a lab name
        # taken from any marker must pass the lab-name rules before it names a path
        marked = {name for name in removal.find(kernel).labs() if not lab_problem(name)}
        report: dict[str, Any] = {"labs": [], "busy": [], "stopped": {}}
        for name in sorted(set(known) | marked):
            try:
                state = store.load(name)
            except StateDamaged:
                state = None  # removed by its markers, like a lab whose state is lost
            if not all_labs and state is not None and state.complete:
                continue
            try:
                with LabLock(name, wait, say=False):
                    # read again under the lock: the `up` that held it may have
                    # finished since, and its lab is complete now, not a leftover
                    if not all_labs and _complete(name):
                        continue
                stopped = down(name, kernel, wait)
            except LockTimeout:  # busy, or taken again between our look and `down`
                report["busy"].append(name)
                continue
            report["labs"].append(name)
            if stopped:
                report["stopped"][name] = stopped
        # host forwarding held by labs of which nothing is left (state and markers gone)
        forwarding.release_orphans(kernel, lambda: set(store.labs()) | (marked - set(report["labs"])))
        return report
    finally:
        kernel.close()


def _complete(name: str) -> bool:
    try:
        state = store.load(name)
    except StateDamaged:
        return False
    return state is not None and state.complete
