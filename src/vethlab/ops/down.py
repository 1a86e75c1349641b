"""`down`: remove everything of one lab, importing only what that takes.

Kept apart from lab.py (planning, execution) so that `vethlab down` of a 1000-node
lab does not pay for loading the reconcile machinery it never uses."""

from __future__ import annotations

import sys

from ..errors import KernelError, StateDamaged
from ..kernel.api import Kernel
from ..reconcile import forwarding, removal
from ..state import hostwide, store
from ..state.lock import LabLock


def down(name: str, kernel: Kernel, wait: float = 60.0) -> dict[str, int]:
    """Remove every object of lab `name`.  A lab that does not exist: nothing to do.
    A lab whose state is damaged is removed by its kernel markers alone.  Returns how
    many processes were ended, per node."""
    with LabLock(name, wait) as lock:  # LabLock checks the name before it becomes a path
        state = load_or_warn(name)
        candidates = [ns for ns in state.nodes.values() if ns] if state and state.complete else None
        found = removal.find(kernel, {name}, candidates, state)
        if state:
            found.stale_files += removal.stale_files_of(state, kernel, found.alive)
        errors = removal.remove(kernel, found, {name: state} if state else {})
        errors += _forget_joined(name)
        forwarding.release(kernel, name, recorded=state is not None)
        if errors:
            raise KernelError(f"lab {name} was not removed completely:\n" + "\n".join(errors))
        store.remove(name)
        lock.release(remove=True)
        stopped = found.stopped
    hostwide.tidy()  # the host-wide lock file goes with the last lab
    return stopped


def _forget_joined(name: str) -> list[str]:
    """Ports the CNI plugin published for containers joined to the lab (their host
    ends went with `removal`, their records go with the state directory)."""
    from ..cni.labside import forget_published
    from ..cni.protocol import CniError
    from ..errors import VethlabError

    try:
        forget_published(name)
    except (CniError, VethlabError) as exc:
        return [f"ports published for containers joined to lab {name}: {getattr(exc, 'details', exc)}"]
    return []


def load_or_warn(name: str) -> store.LabState | None:
    """The lab's state; None, with a warning, when it is damaged: the kernel
    markers then say what to remove (what only the state knew — host routes and
    sysctls — cannot be undone, and the warning says so)."""
    try:
        return store.load(name)
    except StateDamaged as exc:
        print(f"vethlab: warning: {exc.path}: {exc.reason}; removing lab {name} by its kernel markers "
              "(host routes and sysctls it changed, known only to the state, stay as they are)", file=sys.stderr)
        return None

