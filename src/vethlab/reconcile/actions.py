"""The plan's shared types: the `Action` every driver's actions derive from, the
`Plan`, the planner's `Memory` of earlier runs, and the contexts a driver plans and
applies in.  The planner, the executor and every driver import this module and
nothing of each other, so no import circle can appear.

An action is a typed value (one frozen dataclass per verb and kind, in its
driver's module): mypy checks what the planner puts in and what apply takes out.
`verb`, `kind`, `target` and `reason` are what `vethlab plan` prints; `to_json()`
keeps the `--json` document's keys (verb, kind, target, reason, node, netns,
params).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import field, fields
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from ..deferred import dataclass
from ..kernel.api import Kernel, Netns, Route
from ..model.desired import Desired, DesiredNode
from .journal import Journal, Step
from .observe import Observed, ObservedNode
from .services import Launch, Record

if TYPE_CHECKING:
    from ..state.store import LabState

Verb = Literal["create", "delete", "modify", "run"]
Phase = Literal["delete-early", "node", "view", "bridge", "veth", "interface", "shaping", "uplink", "sysctl", "address",
                "route", "firewall", "hosts", "exec", "service", "delete-late"]

# Execution order; deletions that free a name run early, the rest last so a failed
# creation is rolled back before anything the user had was removed.
PHASES: tuple[Phase, ...] = ("delete-early", "node", "view", "bridge", "veth", "interface", "shaping", "uplink", "sysctl",
                             "address", "route", "firewall", "hosts", "exec", "service", "delete-late")

_BASE = ("target", "reason", "node", "netns")


def hidden() -> Any:
    """A field the action needs but `plan --json` does not show under params."""
    return field(default=False, metadata={"hidden": True})


@dataclass(frozen=True)
class Action:
    """One change, with the reason a user reads.  Subclasses set VERB, KIND and PHASE
    and implement `apply`; their own fields are the action's params."""

    VERB: ClassVar[Verb]
    KIND: ClassVar[str]
    PHASE: ClassVar[Phase]
    #: after apply, the action's node is re-read (verify); False for what is not a
    #: network object of the node's namespace (the hosts files)
    RE_READ: ClassVar[bool] = True
    #: the re-read after apply re-plans; an action still planned then fails `up`.
    #: False for what is checked by its own means (digests, pids, the ledger, qdisc kinds)
    VERIFIED: ClassVar[bool] = True
    #: acknowledged one by one by the kernel: not re-read in a node this run made
    ACKED: ClassVar[bool] = False

    target: str
    reason: str
    node: str
    netns: Netns

    @property
    def verb(self) -> Verb:
        return self.VERB

    @property
    def kind(self) -> str:
        return self.KIND

    @property
    def phase(self) -> Phase:
        return self.PHASE

    def params(self) -> dict[str, Any]:
        """What `plan --json` shows under params: the subclass's own fields."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name not in _BASE and not f.metadata.get("hidden")}

    def to_json(self) -> dict[str, Any]:
        return {"verb": self.verb, "kind": self.kind, "target": self.target, "reason": self.reason,
                "node": self.node, "netns": self.netns, "params": self.params()}

    def apply(self, ctx: ApplyContext) -> Step | None:
        """Carry the action out; return its undo (None: nothing to undo)."""
        raise NotImplementedError(f"{type(self).__name__}.apply")

    @classmethod
    def apply_all(cls, actions: Sequence[Action], ctx: ApplyContext) -> None:
        """Carry out a run of consecutive actions of this type (override to batch them)."""
        for action in actions:
            step = action.apply(ctx)
            if step is not None:
                ctx.journal.steps.append(step)

    def verified(self, created: set[str]) -> bool:
        """Is this action's effect checked by re-planning after apply (`created`:
        the nodes this run made)?"""
        return self.VERIFIED and not (self.ACKED and self.node in created)

    def intend(self, state: LabState) -> None:
        """Write-ahead: what the lab's state must hold before this action runs."""


@dataclass(frozen=True)
class SelfChecked(Action):
    """An action whose effect the re-read after apply does not check (VERIFIED is
    False): it is checked by its own means -- a digest line, a pid, the ledger, a
    qdisc kind, an exit status -- said where each subclass is declared."""

    VERIFIED = False


@dataclass
class Memory:
    """What the lab's state remembers from earlier runs, for planning."""

    exec_digests: dict[str, str] = field(default_factory=dict)
    host_routes: list[Route] = field(default_factory=list)
    firewall_nodes: dict[str, Netns] = field(default_factory=dict)
    uplinks: dict[str, dict[str, Any]] = field(default_factory=dict)  # "node:ifname" -> {"up": bool, "netns": ...}
    forwarding: set[str] = field(default_factory=set)  # host forwarding keys this lab holds and that are on
    shaped: dict[str, dict[str, Any]] = field(default_factory=dict)  # "node:ifname" -> shaping applied
    hosts_digest: str | None = None  # of the hosts files as last written (None: not to be trusted)


@dataclass
class Plan:
    lab: str
    actions: list[Action] = field(default_factory=list)
    exec_digests: dict[str, str] = field(default_factory=dict)
    hosts: list[tuple[str, str]] = field(default_factory=list)  # (address, node) lines of every node's hosts file
    fingerprints: dict[str, str] = field(default_factory=dict)  # what the state records once this plan is applied
    warnings: list[str] = field(default_factory=list)  # what the host will do to the lab that vethlab may not change
    scope: set[str] | None = None  # the nodes read and planned (prepare.scope and their peers); None: all

    def add(self, action: Action) -> None:
        self.actions.append(action)

    def ordered(self) -> list[Action]:
        return sorted(self.actions, key=lambda a: PHASES.index(a.phase))

    def __bool__(self) -> bool:
        return bool(self.actions)

    def to_json(self) -> dict[str, Any]:
        return {"lab": self.lab, "changes": len(self.actions), "actions": [a.to_json() for a in self.ordered()],
                "hosts": [list(e) for e in self.hosts]}


@dataclass
class PlanContext:
    """What a driver plans from.  `desired` is the part of the file being planned
    (restricted to the nodes re-read); `full` is all of it, for what every node
    shares (the hosts files)."""

    desired: Desired
    observed: Observed
    marker: str
    memory: Memory
    plan: Plan
    full: Desired
    created: set[str] = field(default_factory=set)  # nodes whose namespace this plan creates

    def seen_nodes(self) -> Iterator[tuple[str, DesiredNode, ObservedNode]]:
        """(name, what the file asks, what was read) for each node being planned that
        was read from the kernel: what a driver's conflicts look at."""
        for name, node in self.desired.nodes.items():
            seen = self.observed.nodes.get(name)
            if seen is not None:
                yield name, node, seen


@dataclass
class Outcome:
    """What a run did that the lab's state must remember."""

    started: list[tuple[str, Record]] = field(default_factory=list)  # node, service record
    stopped: set[int | str] = field(default_factory=set)  # pids and labels of services stopped


@dataclass
class ApplyContext:
    """What a driver applies with."""

    kernel: Kernel
    marker: str
    lab: str
    journal: Journal
    plan: Plan
    log_dir: str = "/tmp"
    outcome: Outcome = field(default_factory=Outcome)
    launches: list[Launch] = field(default_factory=list)
    record: Callable[[Outcome], None] | None = None  # persists started services before they are watched
    gone: set[str] = field(default_factory=set)  # nodes whose namespace this run deleted
