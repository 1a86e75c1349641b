"""Ownership markers of host objects, pure and against the fake kernel: firewall
tables (marker chain), /etc/netns directories (inode-bound marker file, in a
scratch directory), the kernel's copy of the forwarding ledger, and the analysis of
foreign forward chains.  No privileges needed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from vethlab.errors import ConflictError
from vethlab.kernel import nodefiles
from vethlab.kernel.fake import FakeKernel
from vethlab.model import firewall
from vethlab.model.desired import compile_lab
from vethlab.model.ipam import allocate
from vethlab.ownership import LEGACY_NODE_DIR, lab_of_table, lab_of_temp, marker, table_marker, table_owner
from vethlab.reconcile import forward_policy, forwarding
from vethlab.reconcile.executor import Executor
from vethlab.reconcile.observe import observe, observe_extras
from vethlab.reconcile.planner import make_plan
from vethlab.topology import lab_from_text

NAT = "name: x\nnodes: {a: {}, b: {}}\nnetworks:\n  lan:\n    nat: true\n    members: {a: {}, b: {}}\n"


# -- names and markers -------------------------------------------------------------------
def test_table_names_prove_nothing_without_the_marker_chain() -> None:
    assert lab_of_table("vethlab_my_lab") == "my-lab"
    assert lab_of_table("vethlab__forwarding") is None  # the forwarding record is no lab's table
    assert lab_of_table("vethlab_") is None and lab_of_table("vethlab_Bad") is None
    assert table_owner("vethlab_my_lab", ["postrouting", "v-0123456789"]) is None
    assert table_owner("vethlab_my_lab", [table_marker("my-lab")]) == "my-lab"
    assert table_owner("vethlab_my_lab", [table_marker("other")]) is None
    # an older vethlab's table, before the marker chain: adopted by its exact shape
    assert table_owner("vethlab_my_lab", ["v-0123456789abcdef", "postrouting", "forward"]) == "my-lab"
    assert table_owner("vethlab_my_lab", ["v-0123456789abcdef", "postrouting", "input"]) is None
    assert table_owner("vethlab_my_lab", ["v-0123456789abcdef", "v-fedcba9876543210"]) is None
    assert lab_of_temp(".vethlab-tmp.seed.k3y8w2") == "seed" and lab_of_temp(".vethlab-hosts.x") is None


def test_a_new_table_is_created_with_its_marker_a_changed_one_replaced_with_it() -> None:
    spec = lab_from_text(NAT)
    desired = compile_lab(spec, allocate(spec))
    new = firewall.batch("x", desired.firewalls["host"], replace=False)["nftables"]
    assert new[0] == {"create": {"table": {"family": "inet", "name": "vethlab_x"}}}
    assert new[1] == {"add": {"chain": {"family": "inet", "table": "vethlab_x", "name": "owner-vethlab-x"}}}
    changed = firewall.batch("x", desired.firewalls["host"], replace=True)["nftables"]
    assert [next(iter(c)) for c in changed[:4]] == ["add", "delete", "add", "add"]
    assert changed[3]["add"]["chain"]["name"] == "owner-vethlab-x"


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VETHLAB_STATE_DIR", str(tmp_path))
    return tmp_path


# -- conflicts, planned before anything is built --------------------------------------
def plan(kernel: FakeKernel, text: str = NAT) -> Any:
    spec = lab_from_text(text)
    desired = compile_lab(spec, allocate(spec))
    observed = observe(kernel, desired, {}, marker(desired.lab))
    observe_extras(kernel, observed, desired, firewall.table_name(desired.lab), {}, {})
    return make_plan(desired, observed, marker(desired.lab))


def test_foreign_node_dir_is_a_conflict() -> None:
    kernel = FakeKernel()
    kernel.file_owners["a"] = ""
    kernel.file_owners["b"] = "vethlab:other"
    with pytest.raises(ConflictError) as err:
        plan(kernel)
    assert "/etc/netns/a (node a) already exists and is not vethlab's" in str(err.value)
    assert "/etc/netns/b (node b) already exists and belongs to lab other" in str(err.value)
    assert kernel.log == []


def test_foreign_table_named_like_the_labs_is_a_conflict() -> None:
    kernel = FakeKernel()
    kernel.tables[(None, "vethlab_x")] = ["input"]
    with pytest.raises(ConflictError, match="firewall table inet vethlab_x already exists in the host namespace"):
        plan(kernel)
    assert kernel.log == []
    kernel.firewall_delete(None, "vethlab_x")  # and the kernel layer will not delete it either
    assert kernel.tables == {(None, "vethlab_x"): ["input"]}


def test_own_table_and_dirs_are_no_conflict(state_dir: Path) -> None:
    kernel = FakeKernel()
    Executor(kernel, marker("x")).run(plan(kernel))
    assert table_marker("x") in kernel.tables[(None, "vethlab_x")]
    assert kernel.file_owners == {"a": "vethlab:x", "b": "vethlab:x"}
    owned = [table for table, chains in kernel.firewall_tables(None).items() if table_owner(table, chains)]
    assert owned == ["vethlab_x"]  # not the forwarding record
    assert sorted(kernel.tables) == [(None, forwarding.TABLE), (None, "vethlab_x")]
    plan(kernel)  # no ConflictError


# -- /etc/netns directories, in a scratch directory ------------------------------------
@pytest.fixture
def etc_netns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(nodefiles, "ETC_NETNS", str(tmp_path))
    return tmp_path


def listing(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): (None if p.is_dir() else p.read_bytes()) for p in sorted(root.rglob("*"))}


def test_node_dir_is_born_marked_and_removed_whole(etc_netns: Path) -> None:
    nodefiles.write_files(["n1"], [("10.0.0.1", "n1")], "vethlab:lab", "d")
    assert sorted(os.listdir(etc_netns)) == [".vethlab-owner.n1", "n1"]
    assert sorted(os.listdir(etc_netns / "n1")) == ["hosts", "resolv.conf"]  # nothing ip netns exec would bind
    assert nodefiles.owners(None) == {"n1": "vethlab:lab"}
    assert nodefiles.temps() == []
    nodefiles.remove_files("n1", "vethlab:other")  # not that lab's: stays
    assert nodefiles.owners(["n1"]) == {"n1": "vethlab:lab"}
    nodefiles.remove_files("n1", "vethlab:lab")
    assert listing(etc_netns) == {}


def test_a_rewrite_replaces_every_hosts_file_and_each_resolv_conf_not_as_written(
        etc_netns: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A one-link edit rewrites every node's hosts; its resolv.conf only where it is
    not what would be written (content, mode 0644, a regular file): a node whose copy
    was edited or re-made gets it back whole."""
    resolv = nodefiles.HEADER + "nameserver 10.0.0.53\n"
    monkeypatch.setattr(nodefiles, "resolv_content", lambda: resolv)
    monkeypatch.setattr(nodefiles, "_read", lambda path: "127.0.0.1\tlocalhost\n")
    nodes = ["n1", "n2", "n3", "n4"]

    def whole(entries: list[tuple[str, str]], digest: str) -> dict[str, tuple[bytes | None, int]]:
        hosts = nodefiles.hosts_content(entries, digest).encode()
        out: dict[str, tuple[bytes | None, int]] = {}
        for node in nodes:
            out[f"{node}/hosts"] = (hosts, 0o644)
            out[f"{node}/resolv.conf"] = (resolv.encode(), 0o644)
        return out

    def files() -> dict[str, tuple[bytes | None, int]]:
        return {name: (content, os.lstat(etc_netns / name).st_mode & 0o7777)
                for name, content in listing(etc_netns).items() if content is not None}

    nodefiles.write_files(nodes, [("10.0.0.2", "n1")], "vethlab:lab", "d1")
    marks = {node: (etc_netns / f".vethlab-owner.{node}").read_bytes() for node in nodes}
    kept = os.stat(etc_netns / "n1" / "resolv.conf").st_ino
    (etc_netns / "n2" / "resolv.conf").unlink()
    (etc_netns / "n2" / "resolv.conf").write_text("nameserver 192.0.2.1\n")  # edited by hand
    (etc_netns / "n3" / "resolv.conf").unlink()
    (etc_netns / "n3" / "resolv.conf").write_text(resolv)  # same bytes, its own file, mode 0600
    os.chmod(etc_netns / "n3" / "resolv.conf", 0o600)
    (etc_netns / "n4" / "resolv.conf").unlink()
    (etc_netns / "n4" / "resolv.conf").symlink_to(etc_netns / "n1" / "resolv.conf")

    nodefiles.write_files(nodes, [("10.0.255.250", "n1")], "vethlab:lab", "d2")
    expected = whole([("10.0.255.250", "n1")], "d2")
    expected.update({name: value for name, value in files().items() if name.startswith(".vethlab-owner.")})
    assert files() == expected
    assert not any(os.path.islink(etc_netns / node / "resolv.conf") for node in nodes)
    assert {node: (etc_netns / f".vethlab-owner.{node}").read_bytes() for node in nodes} == marks
    assert os.stat(etc_netns / "n1" / "resolv.conf").st_ino == kept  # as written: not written again
    assert nodefiles.read_digest("n2") == "d2" and nodefiles.temps() == []

    resolv = nodefiles.HEADER + "nameserver 10.0.0.54\n"  # the host's changed: every node's follows
    nodefiles.write_files(nodes, [("10.0.255.250", "n1")], "vethlab:lab", "d2")
    expected.update(whole([("10.0.255.250", "n1")], "d2"))
    assert files() == expected


def test_foreign_dir_is_refused_even_at_write_time(etc_netns: Path) -> None:
    (etc_netns / "n1").mkdir()
    (etc_netns / "n1" / "resolv.conf").write_bytes(b"nameserver 10.0.0.53\n")
    before = listing(etc_netns)
    assert nodefiles.owners(None) == {"n1": ""}
    with pytest.raises(ConflictError, match="/etc/netns/n1 already exists and is not vethlab's"):
        nodefiles.write_files(["n1"], [], "vethlab:lab", "d")
    nodefiles.remove_files("n1", "vethlab:lab")
    assert listing(etc_netns) == before  # no temporary file left either


def test_marker_binds_the_directory_not_its_name(etc_netns: Path) -> None:
    """ext4 gives a new directory the inode number just freed: the marker's
    generation number tells the admin's new directory from the lab's old one."""
    for _ in range(8):
        nodefiles.write_files(["n1"], [], "vethlab:lab", "d")
        mark = (etc_netns / ".vethlab-owner.n1").read_bytes()
        nodefiles.remove_files("n1", "vethlab:lab")
        (etc_netns / "n1").mkdir()  # someone else's, under the same name
        (etc_netns / ".vethlab-owner.n1").write_bytes(mark)  # our marker, left by a kill
        assert nodefiles.owners(None) == {"n1": ""}
        assert nodefiles.temps() == [("vethlab:lab", ".vethlab-owner.n1")]  # the marker, raw: ownership decodes it
        nodefiles.remove_temp(".vethlab-owner.n1")
        assert listing(etc_netns) == {"n1": None}
        (etc_netns / "n1").rmdir()


def test_admins_files_in_a_labs_dir_stay(etc_netns: Path) -> None:
    nodefiles.write_files(["n1"], [], "vethlab:lab", "d")
    (etc_netns / "n1" / "custom.conf").write_bytes(b"admin's\n")
    nodefiles.remove_files("n1", "vethlab:lab")
    assert listing(etc_netns) == {"n1": None, "n1/custom.conf": b"admin's\n"}
    assert nodefiles.owners(None) == {"n1": ""}


def test_rewrite_keeps_the_directory_and_leaves_no_temporary_file(etc_netns: Path) -> None:
    nodefiles.write_files(["n1", "n2"], [("10.0.0.1", "n1")], "vethlab:lab", "d")
    inode = os.stat(etc_netns / "n1").st_ino
    nodefiles.write_files(["n1", "n2"], [("10.0.0.9", "n1")], "vethlab:lab", "d")
    assert os.stat(etc_netns / "n1").st_ino == inode
    assert b"10.0.0.9\tn1\n" in (etc_netns / "n2" / "hosts").read_bytes()
    assert sorted(os.listdir(etc_netns)) == [".vethlab-owner.n1", ".vethlab-owner.n2", "n1", "n2"]


def test_a_dir_an_older_vethlab_wrote_is_adopted_not_refused(etc_netns: Path) -> None:
    old = etc_netns / "n1"
    old.mkdir()
    (old / "hosts").write_text("127.0.0.1 localhost\n" + nodefiles.HEADER)
    (old / "resolv.conf").write_text(nodefiles.HEADER + "nameserver 10.0.0.53\n")
    (old / ".hosts.tmp").write_text("")
    admins = etc_netns / "n2"
    admins.mkdir()
    (admins / "resolv.conf").write_text("nameserver 10.0.0.53\n")  # same names, not our header
    assert nodefiles.owners(None) == {"n1": LEGACY_NODE_DIR, "n2": ""}
    nodefiles.write_files(["n1"], [("10.0.0.1", "n1")], "vethlab:lab", "d")
    assert nodefiles.owners(["n1"]) == {"n1": "vethlab:lab"}
    assert sorted(os.listdir(old)) == ["hosts", "resolv.conf"]
    nodefiles.remove_files("n1", "vethlab:lab")
    nodefiles.remove_files("n2", "vethlab:lab")
    assert listing(etc_netns) == {"n2": None, "n2/resolv.conf": b"nameserver 10.0.0.53\n"}


# -- the kernel's copy of the forwarding ledger -----------------------------------------
KEY = "net.ipv4.ip_forward"


def lose_ledger(state_dir: Path) -> None:
    for entry in state_dir.iterdir():
        entry.unlink()


def test_forwarding_restored_from_the_kernels_copy_when_the_ledger_is_lost(state_dir: Path) -> None:
    kernel = FakeKernel()
    kernel.write_sysctl(None, KEY, "0")
    forwarding.hold(kernel, "a", KEY)
    assert kernel.read_sysctl(None, KEY) == "1"
    assert sorted(kernel.tables[(None, forwarding.TABLE)]) == ["held-by.a", "owner-vethlab", f"was.{KEY}.0"]
    lose_ledger(state_dir)
    forwarding.release(kernel, "a")
    assert kernel.read_sysctl(None, KEY) == "0"
    assert kernel.tables == {}


def test_a_lost_ledger_does_not_make_vethlabs_1_the_original(state_dir: Path) -> None:
    kernel = FakeKernel()
    kernel.write_sysctl(None, KEY, "0")
    forwarding.hold(kernel, "a", KEY)
    lose_ledger(state_dir)
    forwarding.hold(kernel, "b", KEY)  # the ledger starts again: the original comes from the kernel
    forwarding.release(kernel, "b", recorded=True)
    assert kernel.read_sysctl(None, KEY) == "1", "lab a still holds it"
    forwarding.release_orphans(kernel, living=lambda: {"a"})
    assert kernel.read_sysctl(None, KEY) == "1"
    forwarding.release_orphans(kernel, living=set)  # a: state and markers gone
    assert kernel.read_sysctl(None, KEY) == "0"
    assert kernel.tables == {} and list(state_dir.iterdir()) == []


def test_the_ledger_restores_when_the_kernels_copy_was_flushed(state_dir: Path) -> None:
    kernel = FakeKernel()
    kernel.write_sysctl(None, KEY, "0")
    forwarding.hold(kernel, "a", KEY)
    kernel.tables.clear()  # `nft flush ruleset` by a firewall reload
    forwarding.release(kernel, "a", recorded=True)
    assert kernel.read_sysctl(None, KEY) == "0"


def test_a_foreign_table_named_like_the_record_is_left_alone(state_dir: Path) -> None:
    kernel = FakeKernel()
    kernel.tables[(None, forwarding.TABLE)] = ["someones"]
    kernel.write_sysctl(None, KEY, "0")
    forwarding.hold(kernel, "a", KEY)
    assert kernel.read_sysctl(None, KEY) == "1"
    forwarding.release(kernel, "a", recorded=True)
    assert kernel.read_sysctl(None, KEY) == "0"  # the ledger alone restored it
    assert kernel.tables == {(None, forwarding.TABLE): ["someones"]}


def test_forwarding_the_host_had_on_stays_on(state_dir: Path) -> None:
    kernel = FakeKernel()
    kernel.write_sysctl(None, KEY, "1")
    forwarding.hold(kernel, "a", KEY)
    lose_ledger(state_dir)
    forwarding.release(kernel, "a")
    assert kernel.read_sysctl(None, KEY) == "1"


# -- foreign forward chains ---------------------------------------------------------------
def chain(family: str, table: str, name: str, **base: Any) -> dict[str, Any]:
    return {"chain": {"family": family, "table": table, "name": name, **base}}


def rule(family: str, table: str, name: str, *expr: dict[str, Any]) -> dict[str, Any]:
    return {"rule": {"family": family, "table": table, "chain": name, "expr": list(expr)}}


def iif(name: str) -> dict[str, Any]:
    return {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": name}}


FORWARD = {"type": "filter", "hook": "forward", "prio": 0}
DOCKER = [chain("ip", "filter", "FORWARD", **FORWARD, policy="drop"), chain("ip", "filter", "DOCKER-USER"),
          rule("ip", "filter", "FORWARD", {"jump": {"target": "DOCKER-USER"}}),
          rule("ip", "filter", "FORWARD", iif("docker0"), {"accept": None})]
NF_ON = {"ip": True, "ip6": True}
NF_OFF = {"ip": False, "ip6": False}


def test_dockers_forward_drop_is_named_with_the_iptables_fix() -> None:
    found = forward_policy.blockers(DOCKER, ["vb.x.lan"], NF_ON, routed=False)
    assert [(b.family, b.table, b.chain, b.reason, b.bridges) for b in found] == [
        ("ip", "filter", "FORWARD", "policy drop", ("vb.x.lan",))]
    assert found[0].commands() == [
        "iptables -I DOCKER-USER -i vb.x.lan -j ACCEPT",
        "iptables -I DOCKER-USER -o vb.x.lan -m conntrack --ctstate RELATED,ESTABLISHED,DNAT -j ACCEPT"]
    assert "net.bridge.bridge-nf-call-iptables = 1" in found[0].message()


def test_an_accept_for_the_bridge_in_a_jumped_to_chain_lets_it_through() -> None:
    accepted = DOCKER + [rule("ip", "filter", "DOCKER-USER", iif("vb.x.lan"), {"counter": None}, {"accept": None})]
    assert forward_policy.blockers(accepted, ["vb.x.lan"], NF_ON, routed=False) == []
    wildcard = DOCKER + [rule("ip", "filter", "DOCKER-USER", iif("vb.*"), {"accept": None})]
    assert forward_policy.blockers(wildcard, ["vb.x.lan"], NF_ON, routed=False) == []
    # established-only does not let a new connection through
    ct = {"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["established"]}}
    only_replies = DOCKER + [rule("ip", "filter", "DOCKER-USER", iif("vb.x.lan"), ct, {"accept": None})]
    assert len(forward_policy.blockers(only_replies, ["vb.x.lan"], NF_ON, routed=False)) == 1


def test_when_the_chain_sees_the_labs_traffic() -> None:
    assert forward_policy.blockers(DOCKER, ["vb.x.lan"], NF_OFF, routed=False) == []  # bridged, not hooked
    routed = forward_policy.blockers(DOCKER, ["vb.x.lan"], NF_OFF, routed=True)
    assert len(routed) == 1 and routed[0].sysctl is None
    bridge_family = [chain("bridge", "f", "fw", **FORWARD, policy="drop")]
    assert forward_policy.blockers(bridge_family, ["vb.x.lan"], NF_OFF, routed=False)[0].commands() == [
        'nft insert rule bridge f fw meta ibrname "vb.x.lan" accept']


def test_final_drop_rule_and_own_tables() -> None:
    final = [chain("inet", "fw", "forward_filter", **FORWARD, policy="accept"),
             rule("inet", "fw", "forward_filter", {"counter": None}, {"drop": None})]
    found = forward_policy.blockers(final, ["br0"], NF_ON, routed=False)
    assert [(b.reason, b.commands()[0]) for b in found] == [
        ("a final drop rule", 'nft insert rule inet fw forward_filter iifname "br0" accept')]
    firewalld = [chain("inet", "firewalld", "filter_FORWARD", **FORWARD, policy="accept"),
                 rule("inet", "firewalld", "filter_FORWARD",
                      {"reject": {"type": "icmpx", "expr": "admin-prohibited"}})]
    assert [b.reason for b in forward_policy.blockers(firewalld, ["br0"], NF_ON, routed=False)] == [
        "a final reject rule"]
    conditional = final[:1] + [rule("inet", "fw", "forward_filter", iif("eth9"), {"drop": None})]
    assert forward_policy.blockers(conditional, ["br0"], NF_ON, routed=False) == []
    ours = [chain("inet", "vethlab_x", "forward", **FORWARD, policy="drop"), chain("inet", "vethlab_x", "owner-vethlab-x")]
    assert forward_policy.blockers(ours, ["br0"], NF_ON, routed=True) == []
    fake_ours = [chain("inet", "vethlab_x", "forward", **FORWARD, policy="drop")]
    assert len(forward_policy.blockers(fake_ours, ["br0"], NF_ON, routed=True)) == 1
