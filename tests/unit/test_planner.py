"""Planning and execution against the fake kernel: no privileges needed."""

from __future__ import annotations

import pytest

from vethlab.errors import ConflictError, KernelError
from vethlab.kernel.fake import Crash, FakeKernel
from vethlab.model.desired import compile_lab
from vethlab.ownership import marker
from vethlab.reconcile.executor import Executor
from vethlab.reconcile.observe import observe
from vethlab.reconcile.planner import make_plan
from vethlab.topology import lab_from_text

SEED = """\
name: seed
nodes:
  ns1: {}
  ns2:
    sysctls: {net.ipv4.ip_forward: 1}
    routes: ["10.9.0.0/16 via 192.168.1.1"]
    exec: ["ip addr add 10.99.0.1/32 dev lo"]
links:
  - endpoints: [ns1:vp1, ns2:vp2]
    addresses: [192.168.1.1/24, 192.168.1.2/24]
"""


def plan_for(text: str, kernel: FakeKernel, known: dict | None = None, exec_done: dict | None = None):
    desired = compile_lab(lab_from_text(text))
    observed = observe(kernel, desired, known or {}, marker(desired.lab))
    return desired, make_plan(desired, observed, marker(desired.lab), exec_done)


def apply(text: str, kernel: FakeKernel, known: dict | None = None, exec_done: dict | None = None):
    desired, plan = plan_for(text, kernel, known, exec_done)
    Executor(kernel, marker(desired.lab)).run(plan)
    return plan


def kinds(plan) -> list[tuple[str, str]]:
    return [(a.verb, a.kind) for a in plan.ordered()]


def test_fresh_plan_has_every_step_with_reasons() -> None:
    _, plan = plan_for(SEED, FakeKernel())
    assert kinds(plan) == [("create", "node"), ("create", "node"), ("create", "veth"), ("modify", "interface"),
                           ("modify", "interface"), ("modify", "sysctl"), ("create", "address"),
                           ("create", "address"), ("create", "route"), ("modify", "hosts"), ("modify", "hosts"),
                           ("run", "exec")]
    assert all(a.reason for a in plan.actions)


def test_second_plan_is_empty_and_exec_not_rerun() -> None:
    kernel = FakeKernel()
    first = apply(SEED, kernel)
    _, again = plan_for(SEED, kernel, exec_done=first.exec_digests)
    assert not again, [(a.kind, a.target, a.reason) for a in again.actions]
    assert len(kernel.commands) == 1


def test_address_change_is_in_place() -> None:
    kernel = FakeKernel()
    first = apply(SEED, kernel)
    index = {link.ifname: link.index for link in kernel.links("ns2")}["vp2"]
    changed = SEED.replace("192.168.1.2/24]", "[192.168.1.2/24, 192.168.1.3/24]]")
    _, plan = plan_for(changed, kernel, exec_done=first.exec_digests)
    assert [(a.verb, a.kind, a.target) for a in plan.actions if a.kind != "hosts"] == [
        ("create", "address", "192.168.1.3/24 on ns2:vp2")]
    assert "address 192.168.1.3/24 added to ns2:vp2" in [a.reason for a in plan.actions]
    Executor(kernel, marker("seed")).run(plan)
    assert {link.ifname: link.index for link in kernel.links("ns2")}["vp2"] == index


def test_mtu_and_state_change_in_place() -> None:
    kernel = FakeKernel()
    apply(SEED, kernel)
    _, plan = plan_for(SEED.replace("192.168.1.2/24]", "192.168.1.2/24]\n    mtu: 9000\n    state: down"), kernel)
    reasons = sorted(a.reason for a in plan.actions if a.kind == "interface")
    assert reasons == ["admin state up -> down", "admin state up -> down", "mtu 1500 -> 9000", "mtu 1500 -> 9000"]


def test_removed_link_and_node_are_deleted() -> None:
    kernel = FakeKernel()
    three = SEED + "  - endpoints: [ns1:vp3, ns3:vp4]\n"
    three = three.replace("  ns1: {}\n", "  ns1: {}\n  ns3: {}\n")
    apply(three, kernel)
    assert "ns3" in kernel.spaces
    _, plan = plan_for(SEED, kernel, known={"ns3": "ns3"})
    assert ("delete", "node", "ns3") in [(a.verb, a.kind, a.target) for a in plan.actions]
    assert ("delete", "interface", "ns1:vp3") in [(a.verb, a.kind, a.target) for a in plan.actions]


def test_foreign_namespace_is_a_conflict_before_anything() -> None:
    kernel = FakeKernel()
    kernel.create_namespaces(["ns1"], "something-else")
    kernel.spaces["ns1"].links[1].alias = None
    before = kernel.calls
    with pytest.raises(ConflictError, match="namespace ns1 \\(node ns1\\) already exists and is not vethlab's"):
        plan_for(SEED, kernel)
    assert kernel.calls == before


def test_other_labs_namespace_is_named() -> None:
    kernel = FakeKernel()
    kernel.create_namespaces(["ns1"], marker("other"))
    with pytest.raises(ConflictError, match="belongs to lab other"):
        plan_for(SEED, kernel)


def test_foreign_interface_in_host_is_a_conflict() -> None:
    kernel = FakeKernel()
    kernel.create_veth(None, "vl-a", None, "x", None)
    text = "name: t\nnodes: {a: {}}\nlinks: [{endpoints: [a:e0, host:vl-a]}]\n"
    with pytest.raises(ConflictError, match="interface vl-a already exists in the host namespace and is not vethlab's"):
        plan_for(text, kernel)


def count_steps() -> int:
    kernel = FakeKernel()
    apply(SEED, kernel)
    return kernel.calls


STEPS = count_steps()


@pytest.mark.parametrize("step", range(1, STEPS + 1))
def test_failure_at_every_step_rolls_back_everything(step: int) -> None:
    kernel = FakeKernel(fail_at=step)
    with pytest.raises(KernelError, match="injected failure"):
        apply(SEED, kernel)
    assert set(kernel.spaces) == {None}, f"left after failing at step {step}: {kernel.log}"
    assert [link.ifname for link in kernel.links(None)] == ["lo"]
    assert kernel.files == {}


def test_exec_failure_rolls_back() -> None:
    kernel = FakeKernel()
    kernel.command_status["ip"] = 2
    from vethlab.errors import CommandFailed

    with pytest.raises(CommandFailed, match="exec in node ns2: `ip addr add 10.99.0.1/32 dev lo` exited with status 2"):
        apply(SEED, kernel)
    assert set(kernel.spaces) == {None}


def test_step_count_covers_all() -> None:
    assert 8 <= STEPS <= 13


@pytest.mark.parametrize("step", range(1, STEPS + 1))
def test_crash_at_every_step_then_up_completes(step: int) -> None:
    """A crash (nothing unwound) leaves a state from which `up` converges."""
    kernel = FakeKernel(crash_at=step)
    with pytest.raises(Crash):
        apply(SEED, kernel)
    kernel.crash_at = None
    apply(SEED, kernel, known={"ns1": "ns1", "ns2": "ns2"})
    _, again = plan_for(SEED, kernel)
    assert [a.kind for a in again.actions] in ([], ["exec"]) or not [a for a in again.actions if a.kind != "exec"]


CHAIN = """\
name: chain
nodes:
  ns1: {}
  ns2: {}
  ns3: {}
links:
  - endpoints: [ns1:a, ns2:a]
    addresses: [10.0.1.1/24, 10.0.1.2/24]
  - endpoints: [ns1:b, ns3:b]
    addresses: [10.0.2.1/24, 10.0.2.3/24]
"""


def test_a_sysctl_edit_plans_only_the_sysctl(tmp_path, monkeypatch) -> None:
    """A re-run plans only the nodes whose part of the file changed (and their
    peers); the hosts files list every node all the same, so they are unchanged."""
    from vethlab.lab import Lab

    monkeypatch.setenv("VETHLAB_STATE_DIR", str(tmp_path / "state"))
    kernel = FakeKernel()
    Lab(lab_from_text(CHAIN), kernel=kernel).up(wait=1.0)
    edited = CHAIN.replace("  ns3: {}", "  ns3: {sysctls: {net.ipv4.ip_forward: 1}}")
    plan = Lab(lab_from_text(edited), kernel=kernel).plan()
    assert [(a.verb, a.kind, a.target) for a in plan.actions] == [("modify", "sysctl", "ns3: net.ipv4.ip_forward")]


def test_a_renamed_address_rewrites_every_hosts_file(tmp_path, monkeypatch) -> None:
    """...and when a node's first address changes, every node's file changes, the
    nodes not re-read included."""
    from vethlab.lab import Lab

    monkeypatch.setenv("VETHLAB_STATE_DIR", str(tmp_path / "state"))
    kernel = FakeKernel()
    Lab(lab_from_text(CHAIN), kernel=kernel).up(wait=1.0)
    edited = CHAIN.replace("10.0.2.3/24", "10.0.2.4/24")
    plan = Lab(lab_from_text(edited), kernel=kernel).plan()
    assert sorted(a.target for a in plan.actions if a.kind == "hosts") == [
        f"/etc/netns/ns{i}/hosts" for i in (1, 2, 3)]
