"""`down`: remove everything of one lab, importing only what that takes.

Kept apart from lab.py (planning, execution) so that `vethlab down` of a 1000-node
lab does not pay for loading the reconcile machinery it never uses."""

from __future__ import annotations

from . import cleanup
from .errors import KernelError
from .kernel.api import Kernel
from .state import shared, store
from .state.lock import LabLock


def down(name: str, kernel: Kernel, wait: float = 60.0) -> dict[str, int]:
    """Remove every object of lab `name`.  A lab that does not exist: nothing to do.
    Returns how many processes were ended, per node."""
    with LabLock(name, wait) as lock:
        state = store.load(name)
        candidates = [ns for ns in state.nodes.values() if ns] if state and state.complete else None
        found = cleanup.find(kernel, {name}, candidates, state)
        if state:
            found.stale_files += cleanup.stale_files_of(state, kernel)
        errors = cleanup.remove(kernel, found, {name: state} if state else {})
        shared.release(name, lambda key, value: restore_sysctl(kernel, key, value))
        if errors:
            raise KernelError(f"lab {name} was not removed completely:\n" + "\n".join(errors))
        store.remove(name)
        lock.release(remove=True)
        return found.stopped


def restore_sysctl(kernel: Kernel, key: str, value: str) -> None:
    kernel.write_sysctl(None, key, value)
    kernel.flush()
