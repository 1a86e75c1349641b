"""The driver seam: every action type is complete, `plan --json` keeps its keys,
and a new kind of resource is one module plus one registration -- planned,
applied, verified and rolled back by the same machinery, with nothing else
edited."""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import pytest

from vethlab import Lab
from vethlab.drivers import registry
from vethlab.drivers.base import Driver
from vethlab.errors import VethlabError
from vethlab.kernel.api import Kernel
from vethlab.kernel.fake import FakeKernel
from vethlab.model.desired import Desired
from vethlab.reconcile import actions as actions_module
from vethlab.reconcile.actions import PHASES, Action, ApplyContext, PlanContext
from vethlab.reconcile.journal import Step, inside
from vethlab.reconcile.observe import Observed
from vethlab.topology import lab_from_text

SEED = """\
name: seed
nodes:
  ns1: {}
  ns2:
    routes: ["10.9.0.0/16 via 192.168.1.1"]
links:
  - endpoints: [ns1:vp1, ns2:vp2]
    addresses: [192.168.1.1/24, 192.168.1.2/24]
"""


def action_types() -> list[type[Action]]:
    import vethlab.drivers.address
    import vethlab.drivers.bridge  # noqa: F401 - all registered drivers' modules are loaded by the registry

    seen: list[type[Action]] = []
    todo = [Action]
    while todo:
        for sub in todo.pop().__subclasses__():
            todo.append(sub)
            if not sub.__name__.startswith("_") and sub.__module__.startswith("vethlab.drivers."):
                seen.append(sub)
    return seen


def test_every_action_type_says_what_it_is_and_how_it_applies() -> None:
    types = action_types()
    assert len(types) >= 20
    for cls in types:
        assert cls.VERB in ("create", "delete", "modify", "run"), cls
        assert cls.KIND, cls
        if "PHASE" in {k for c in cls.__mro__ for k in vars(c)}:
            assert cls.PHASE in PHASES, cls
        # apply (or a batching apply_all) is its own, not the base's NotImplementedError
        assert cls.apply is not Action.apply or cls.apply_all.__func__ is not Action.apply_all.__func__, cls


@pytest.fixture
def state_root(tmp_path, monkeypatch) -> str:
    monkeypatch.setenv("VETHLAB_STATE_DIR", str(tmp_path / "state"))
    return str(tmp_path / "state")


def test_plan_json_keeps_its_keys(state_root: str) -> None:
    doc = Lab(lab_from_text(SEED), kernel=FakeKernel()).plan().to_json()
    assert set(doc) == {"lab", "changes", "actions", "hosts"}
    for action in doc["actions"]:
        assert set(action) == {"verb", "kind", "target", "reason", "node", "netns", "params"}
    by_kind: dict[tuple[str, str], dict] = {}
    for a in doc["actions"]:
        by_kind.setdefault((a["verb"], a["kind"]), a)
    assert by_kind[("create", "node")]["params"] == {}
    assert by_kind[("create", "veth")]["params"] == {"a_netns": "ns1", "a_ifname": "vp1", "b_netns": "ns2",
                                                     "b_ifname": "vp2", "mtu": None}
    assert by_kind[("modify", "interface")]["params"] == {"ifname": "vp1", "up": True, "alias": "vethlab:seed"}
    assert by_kind[("create", "address")]["params"] == {"ifname": "vp1", "cidr": "192.168.1.1/24"}
    assert by_kind[("create", "route")]["params"] == {"route": {
        "dst": "10.9.0.0/16", "via": "192.168.1.1", "dev": None, "metric": None, "src": None, "proto": None}}


# -- a new kind, written as its own module would be -----------------------------------
ARP_IGNORE = "net.ipv4.conf.all.arp_ignore"


@dataclass(frozen=True)
class IgnoreArp(Action):
    VERB = "modify"
    KIND = "arp"
    PHASE = "sysctl"
    previous: str | None

    def apply(self, ctx: ApplyContext) -> Step | None:
        k, ns, previous = ctx.kernel, self.netns, self.previous
        k.write_sysctl(ns, ARP_IGNORE, "1")
        return Step(self.target, lambda: k.write_sysctl(ns, ARP_IGNORE, previous or "0"), dies_with=inside(ns))


@dataclass
class ArpSeen:
    values: dict[str, str | None]


class ArpDriver(Driver):
    """Every lab node ignores ARP for addresses of its other interfaces."""

    kind = "arp"

    def observe(self, kernel: Kernel, desired: Desired, observed: Observed) -> None:
        observed.extras[self.kind] = ArpSeen({name: kernel.read_sysctl(seen.netns, ARP_IGNORE)
                                              for name, seen in observed.nodes.items()
                                              if seen.netns and seen.exists and seen.owner})

    def plan(self, ctx: PlanContext) -> None:
        seen = ctx.observed.extras.get(self.kind)
        values = seen.values if isinstance(seen, ArpSeen) else {}
        for name, node in ctx.desired.nodes.items():
            if node.netns and (name in ctx.created or values.get(name) != "1"):
                ctx.plan.add(IgnoreArp(f"{name}: arp_ignore", "nodes ignore foreign ARP", name, node.netns,
                                       values.get(name)))


@pytest.fixture
def with_arp(monkeypatch):
    monkeypatch.setattr(registry, "DRIVERS", (*registry.DRIVERS, ArpDriver()))  # the one registration line


def test_a_new_kind_is_planned_applied_verified_and_kept(state_root: str, with_arp) -> None:
    kernel = FakeKernel()
    plan = Lab(lab_from_text(SEED), kernel=kernel).up(wait=1.0)
    assert sorted(a.target for a in plan.actions if isinstance(a, IgnoreArp)) == ["ns1: arp_ignore",
                                                                                  "ns2: arp_ignore"]
    assert {ns: kernel.read_sysctl(ns, ARP_IGNORE) for ns in ("ns1", "ns2")} == {"ns1": "1", "ns2": "1"}
    assert not Lab(lab_from_text(SEED), kernel=kernel).plan(refresh=True)


def test_a_new_kind_is_verified_after_apply(state_root: str, with_arp, monkeypatch) -> None:
    """An apply that does not take is caught by the re-read, and rolled back."""
    monkeypatch.setattr(IgnoreArp, "apply", lambda self, ctx: None)
    kernel = FakeKernel()
    with pytest.raises(VethlabError, match="still differs from the file:\n  modify arp ns1: arp_ignore"):
        Lab(lab_from_text(SEED), kernel=kernel).up(wait=1.0)
    assert set(kernel.spaces) == {None}


def test_a_new_kind_is_rolled_back_at_every_step(state_root: str, with_arp) -> None:
    clean = FakeKernel()
    Lab(lab_from_text(SEED), kernel=clean).up(wait=1.0)
    arp_steps = [i + 1 for i, entry in enumerate(clean.log) if ARP_IGNORE in entry]
    assert arp_steps
    for step in range(1, clean.calls + 1):
        kernel = FakeKernel(fail_at=step)
        with pytest.raises(VethlabError):
            Lab(lab_from_text(SEED), kernel=kernel).up(wait=1.0)
        assert set(kernel.spaces) == {None}, step


def test_shared_types_live_in_one_module() -> None:
    """The planner, the executor and the drivers import reconcile/actions.py, not each other."""
    import vethlab.drivers as drivers
    import vethlab.reconcile.executor as executor

    mods = [m for _n, m in inspect.getmembers(drivers, inspect.ismodule) if m.__name__.startswith("vethlab.")]
    assert len(mods) >= 12
    for module in [actions_module, executor, *mods]:
        source = inspect.getsource(module)
        assert "reconcile.planner" not in source and "from .planner" not in source, module.__name__
    assert "reconcile.executor" not in inspect.getsource(registry)
