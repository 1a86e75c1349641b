"""`up` and `plan` of one lab: the reconcile loop, in the order STYLE.md draws it.

    lock → claim host-wide names and subnets → prepare (IPAM, compile, scope,
    observe, plan) → write-ahead → execute (undo journal) → verify (re-read) →
    record

A failure at any point after the claim gives back what this run took: the
journal unwinds what it made, a first run leaves no state behind.
"""

from __future__ import annotations

from collections.abc import Callable

from ..drivers.namespace import CreateNode
from ..errors import VethlabError
from ..kernel.api import Kernel
from ..ownership import marker
from ..state import hostwide, store
from ..state.lock import LabLock
from ..topology import LabSpec
from . import servicestate
from . import verify as verifying
from .actions import Action, Plan
from .executor import Executor
from .hostclaims import CLAIM_FIELDS, claim, unclaim
from .prepare import prepare
from .record import forget, record_done, record_intent, remove_temp_files


def plan(kernel: Kernel, spec: LabSpec, refresh: bool = False) -> Plan:
    """What `up` would change; touches nothing."""
    return prepare(kernel, spec, store.load(spec.name), refresh)[1]


def up(kernel: Kernel, spec: LabSpec, keep_on_error: bool = False, wait: float = 60.0,
       progress: Callable[[Action], None] | None = None, refresh: bool = False) -> Plan:
    """Make the kernel match the file; return the plan that was carried out.
    Returns once links are up and addresses usable; rolls back on failure."""
    with LabLock(spec.name, wait) as lock:
        try:
            return _locked(kernel, spec, keep_on_error, progress, refresh, wait)
        finally:
            if not store.exists(spec.name):  # refused or rolled back: not even a lock file stays
                lock.release(remove=True)
                hostwide.tidy()


def _locked(kernel: Kernel, spec: LabSpec, keep_on_error: bool, progress: Callable[[Action], None] | None,
            refresh: bool, wait: float) -> Plan:
    existed = store.load(spec.name)
    state = existed or store.LabState(spec.name)
    remove_temp_files(kernel, spec.name)
    before = {key: getattr(state, key) for key in CLAIM_FIELDS}
    allocation = claim(kernel, spec, state, existed, wait)
    try:
        desired, plan = prepare(kernel, spec, existed, refresh, allocation)
    except BaseException:
        unclaim(state, existed, before)
        raise
    watched: set[str] = set()
    if plan:
        record_intent(kernel, spec, state, desired, plan)
        executor = Executor(kernel, marker(spec.name), progress, store.logs_dir(spec.name),
                            record=lambda outcome: servicestate.save_started(state, outcome))
        try:
            executor.run(plan, keep_on_error)
            try:
                verifying.verify(kernel, desired, {a.node for a in plan.actions if a.RE_READ},
                                 {a.node for a in plan.actions if isinstance(a, CreateNode)}, plan.actions)
            except VethlabError as exc:
                if keep_on_error:
                    raise
                problems = executor.journal.unwind()  # what this run made goes, as on any failure
                tail = ("\nrollback was incomplete:\n" + "\n".join(problems)) if problems else \
                    "\neverything this run created was removed again"
                raise type(exc)(f"{exc}{tail}") from None
        except BaseException:
            if existed is None and not keep_on_error:
                forget(kernel, spec.name)  # a first `up` that failed leaves no lab behind
            else:
                servicestate.remember(kernel, state, executor.outcome)
                store.save(state)
            raise
        servicestate.remember(kernel, state, executor.outcome)
        watched = {launch.node for launch in executor.launches}
    servicestate.await_ready(kernel, desired, existed, watched)
    servicestate.adopt(kernel, state, desired, existed)
    record_done(kernel, spec, state, desired, plan)
    return plan
