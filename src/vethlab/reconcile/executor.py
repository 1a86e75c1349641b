"""Execute a plan with an undo journal; roll back on failure.

Each action is carried out by its own type (the driver's `apply`, found through
the action's class: no table of strings), which returns its undo; the journal
(reconcile/journal.py) unwinds them in reverse on failure, keeping going past
errors and reporting them together.  Consecutive actions of one type go to their
type's `apply_all`, which may hand them to the kernel as one batch; the requests
of one phase are flushed together.

Removal, in a rollback as in a shrinking `up`, goes in the order that lets the
kernel batch (see removal.remove_in_kernel_order): the namespaces go first, and
what lives in them is not deleted object by object but waited for.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import VethlabError
from ..kernel.api import Kernel
from ..ownership import lab_of
from .actions import Action, ApplyContext, Outcome, Phase, Plan
from .journal import Journal, end_processes, wait_until
from .progress import report as report_progress
from .services import Launch

__all__ = ["Executor", "Outcome", "end_processes", "wait_until"]

Recorder = Callable[[Outcome], None]


class Executor:
    def __init__(self, kernel: Kernel, marker: str, progress: Callable[[Action], None] | None = None,
                 log_dir: str = "/tmp", record: Recorder | None = None) -> None:
        self.kernel = kernel
        self.marker = marker
        self.lab = lab_of(marker) or ""
        self.progress = progress
        self.journal = Journal(kernel=kernel, marker=marker)
        self.outcome = Outcome()
        self.log_dir = log_dir
        self.record = record  # persists started services before they are watched
        self.launches: list[Launch] = []

    def run(self, plan: Plan, keep_on_error: bool = False) -> None:
        ctx = ApplyContext(self.kernel, self.marker, self.lab, self.journal, plan, self.log_dir, self.outcome,
                           self.launches, self.record)
        try:
            done, total = 0, len(plan.actions)
            for phase, actions in _phases(plan.ordered()):
                report_progress(_PHASE_WORDS.get(phase, phase), done, total, "changes", force=True)
                done += len(actions)
                if self.progress:
                    for action in actions:
                        self.progress(action)
                for run in _runs(actions):
                    type(run[0]).apply_all(run, ctx)
                if phase not in _FLUSH_LATER:
                    self.kernel.flush()  # requests of one phase go to the kernel together
            # every acknowledgement is in before the run counts as done: verify trusts
            # what the kernel acknowledged (Action.verified) and may read nothing at all
            self.kernel.flush()
        except VethlabError as exc:
            if keep_on_error:
                raise
            problems = self.journal.unwind()
            if problems:
                raise type(exc)(f"{exc}\nrollback was incomplete:\n" + "\n".join(problems)) from None
            raise type(exc)(f"{exc}\neverything this run created was removed again") from None
        except BaseException:
            if not keep_on_error:
                self.journal.unwind()
            raise


# What a phase does, in the words of the progress line
_PHASE_WORDS: dict[Phase, str] = {
    "delete-early": "removing what changed", "node": "namespaces", "view": "node views", "bridge": "bridges",
    "veth": "veth pairs",
    "interface": "interfaces", "address": "addresses", "route": "routes", "firewall": "firewall",
    "hosts": "hosts files", "exec": "exec", "service": "services", "delete-late": "removing what is gone"}


# Phases whose requests may share a send() with the next phase's: a socket applies its
# requests in order (links up, then addresses, then routes through them), so one
# flush per namespace serves them all; every other phase ends with a flush.
_FLUSH_LATER: set[Phase] = {"interface", "shaping", "uplink", "sysctl", "address"}


def _phases(actions: list[Action]) -> list[tuple[Phase, list[Action]]]:
    """Consecutive actions grouped by phase (the plan is already in phase order)."""
    groups: list[tuple[Phase, list[Action]]] = []
    for action in actions:
        if not groups or groups[-1][0] != action.phase:
            groups.append((action.phase, []))
        groups[-1][1].append(action)
    return groups


def _runs(actions: list[Action]) -> list[list[Action]]:
    """Consecutive actions of one type: what one `apply_all` call carries out."""
    runs: list[list[Action]] = []
    for action in actions:
        if not runs or type(runs[-1][0]) is not type(action):
            runs.append([])
        runs[-1].append(action)
    return runs
