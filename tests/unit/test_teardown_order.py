"""Removal order against the fake kernel: namespaces first, host-side veth ends
never deleted one by one (each such RTM_DELLINK waits for its own RCU grace
period in the real kernel: 4.4 s for 200 of them instead of 0.17 s)."""

from __future__ import annotations

import pytest

from helpers import star_lab
from vethlab.errors import CommandFailed
from vethlab.kernel.fake import FakeKernel
from vethlab.lab import Lab
from vethlab.reconcile import verify
from vethlab.topology import lab_from_text

N = 60


star = star_lab


@pytest.fixture
def kernel(tmp_path, monkeypatch) -> FakeKernel:
    monkeypatch.setenv("VETHLAB_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setattr(verify, "verify", lambda *args, **kwargs: None)  # the fake has no carrier to wait for
    return FakeKernel()


def link_deletes(kernel: FakeKernel, since: int) -> list[str]:
    """The interfaces (NETNS:IFNAME, None for the host) vethlab asked to delete one by one."""
    return [entry.removeprefix("delete link ") for entry in kernel.log[since:] if entry.startswith("delete link ")]


def nothing_but_lo(kernel: FakeKernel) -> None:
    assert set(kernel.spaces) == {None}, sorted(n for n in kernel.spaces if n)
    assert [link.ifname for link in kernel.links(None)] == ["lo"]
    assert kernel.files == {} and kernel.tables == {} and kernel.services == {}


def test_down_deletes_namespaces_not_ports(kernel: FakeKernel) -> None:
    lab = Lab(lab_from_text(star(N)), kernel=kernel)
    lab.up()
    assert len(kernel.links(None)) == N + 2  # lo, the bridge, a port per member
    mark = len(kernel.log)
    lab.down()
    assert link_deletes(kernel, mark) == ["None:vb.star.lan"]  # the bridge, and none of its N veths
    assert sum(entry.startswith("delete namespace") for entry in kernel.log[mark:]) == N
    nothing_but_lo(kernel)


def test_rollback_deletes_namespaces_not_ports(kernel: FakeKernel) -> None:
    kernel.command_status["false"] = 1
    lab = Lab(lab_from_text(star(N, exec_last="false")), kernel=kernel)
    with pytest.raises(CommandFailed, match="everything this run created was removed again"):
        lab.up()
    assert link_deletes(kernel, 0) == ["None:vb.star.lan"]
    nothing_but_lo(kernel)


def test_shrinking_deletes_namespaces_not_ports(kernel: FakeKernel) -> None:
    Lab(lab_from_text(star(N)), kernel=kernel).up()
    mark = len(kernel.log)
    smaller = Lab(lab_from_text(star(N // 2)), kernel=kernel)
    plan = smaller.up()
    assert sum(a.kind == "node" and a.verb == "delete" for a in plan.actions) == N - N // 2
    assert link_deletes(kernel, mark) == []
    assert len(kernel.links(None)) == N // 2 + 2
    assert not smaller.plan()  # converged: nothing left to remove
    smaller.down()
    nothing_but_lo(kernel)


def test_down_file_names_its_lab_without_yaml_only_when_the_state_agrees(tmp_path, monkeypatch) -> None:
    """`down FILE` reads the name from the one top-level `name:` line (no YAML: 0.2 s for
    1000 nodes) only if that lab's state says it was built from this very file."""
    from vethlab.cli.lifecycle import _lab_name, _quick_name
    from vethlab.state import store

    monkeypatch.setenv("VETHLAB_STATE_DIR", str(tmp_path / "state"))
    built, other = tmp_path / "built.yaml", tmp_path / "other.yaml"
    built.write_text("name: alpha  # the lab\nnodes: {a: {}}\n")
    other.write_text("name: alpha\nnodes: {a: {}}\n")
    assert _quick_name(str(built)) is None  # no state: the parser decides
    store.save(store.LabState("alpha", file=str(built)))
    assert _quick_name(str(built)) == "alpha"
    assert _quick_name(str(other)) is None  # the state records another file
    # flow style, a quoted name, or two candidates: the parser decides, and it is right
    for text, name in (("{name: beta, nodes: {a: {}}}\n", "beta"), ('name: "alpha"\nnodes: {}\n', "alpha"),
                       ("nodes: {a: {}}\nname: gamma\n", "gamma")):
        built.write_text(text)
        assert _lab_name(str(built)) == name
    built.write_text("name: alpha\nnodes:\n  x: {}\nname: beta\n")
    assert _quick_name(str(built)) is None
