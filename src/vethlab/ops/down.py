"""`down`: remove everything of one lab, importing only what that takes.

Kept apart from lab.py (planning, execution) so that `vethlab down` of a 1000-node
lab does not pay for loading the reconcile machinery it never uses."""

from __future__ import annotations

import sys

from ..errors import KernelError, StateDamaged, VethlabError
from ..kernel.api import Kernel, Removals
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
        seen_by = _subscribe(kernel)  # before `find` reads the host's links: see removal.Vanishing
        try:
            found = removal.find(kernel, {name}, candidates, state)
            if state:
                found.stale_files += removal.stale_files_of(state, kernel, found.alive)
            errors = removal.remove(kernel, found, {name: state} if state else {}, seen_by)
        finally:
            if seen_by is not None:
                seen_by.close()
        errors += _forget_joined(name)
        forwarding.release(kernel, name, recorded=state is not None)
        if errors:
            raise KernelError(f"lab {name} was not removed completely:\n" + "\n".join(errors))
        store.remove(name)
        lock.release(remove=True)
        stopped = found.stopped
    hostwide.tidy()  # the host-wide lock file goes with the last lab
    return stopped


def _subscribe(kernel: Kernel) -> Removals | None:
    """Link deletions in the host, followed from before `find` looks at its links,
    so that the wait for veth ends to go with their namespaces needs no second look;
    None if they cannot be (the wait then subscribes and looks itself)."""
    try:
        return kernel.link_removals(None)
    except (OSError, VethlabError):
        return None


def _forget_joined(name: str) -> list[str]:
    """Ports the CNI plugin published for containers joined to the lab (their host
    ends went with `removal`, their records go with the state directory)."""
    from ..cni.labside import forget_published
    from ..cni.protocol import CniError

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

