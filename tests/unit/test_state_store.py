"""The state store trusts nothing it reads: names, shapes, owners, symlinks.

Real files in a private state root (tmp_path); the kernel is the fake one.  The
owner tests chown, so they need root (run the unit tests in `vethlab sandbox`)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vethlab.errors import StateDamaged, StateError, UsageError, ValidationError
from vethlab.kernel.fake import FakeKernel
from vethlab.ownership import lab_of, lab_of_table, parse_netns_tag
from vethlab.state import shared, store
from vethlab.state.lock import LabLock
from vethlab.topology import lab_from_dict
from vethlab.topology.naming import lab_problem, netns_problem, node_problem, sysctl_problem

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root (run inside `vethlab sandbox`)")
BAD_LABS = [".", "..", "../x", "../../tmp", "a/b", "", "x\n", "A", "abcdefghijklm", "-a", "a b", "a:b", None, 5]


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "state"
    monkeypatch.setenv("VETHLAB_STATE_DIR", str(path))
    return path


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    """A file elsewhere that no symlink may let vethlab change."""
    path = tmp_path / "canary"
    path.write_text("precious\n")
    path.chmod(0o644)
    return path


def snapshot(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), stat.S_IMODE(path.stat().st_mode)


def good_state(lab: str = "seed") -> dict[str, Any]:
    return {"lab": lab, "file": "/x/seed.yaml", "nodes": {"ns1": "ns1", "ns2": "seed-ns2", "host": None},
            "links": [["ns1", "vp1", "ns2", "vp2"]], "services": {"ns1": [[["sleep", "9"], 4242, 1234]]},
            "host_routes": [{"dst": "10.0.0.0/8", "via": "192.168.1.1", "dev": "vlbr-lan", "metric": None}],
            "host_sysctls": {"net.ipv4.ip_forward": "0"}, "exec_digests": {"ns1": "ab"},
            "routed": ["ns1"], "allocation": {"subnet": {"lan": "172.30.0.0/24"}, "subnet6": {},
                                              "address": {"lan": {"ns1": "172.30.0.2/24"}}, "address6": {}},
            "host_subnets": ["172.30.0.0/24"], "host_addresses": ["10.9.2.1/24"],
            "host_ports": ["127.0.0.1:8080/tcp"], "host_names": ["netns:ns1", "if:vlbr-lan"], "firewall_nodes": {"ns1": "ns1", "host": None},
            "uplinks": {"host:eth9": {"up": True, "netns": None}},
            "shaped": {"ns1:vp1": {"rate": 1000000, "delay": None, "jitter": None, "loss": 0.5}},
            "fingerprints": {"ns1": "f"}, "hosts_digest": "d", "netns_ids": {"ns1": 4026532000},
            "complete": True, "version": 1}


def write_state(root: Path, lab: str, data: Any) -> Path:
    directory = root / lab
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    root.chmod(0o700)
    path = directory / "state.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


# -- one family of name checks ---------------------------------------------------------
@pytest.mark.parametrize("name", BAD_LABS)
def test_lab_names_that_could_reach_a_path_are_refused(name: object) -> None:
    assert lab_problem(name)


@pytest.mark.parametrize("name", ["seed", "a", "a-1", "abcdefghijkl"])
def test_lab_names_of_the_contract_pass(name: str) -> None:
    assert lab_problem(name) is None


def test_node_and_netns_names() -> None:
    assert node_problem("ns1") is None and node_problem("Web_1") is None
    assert netns_problem("seed-ns1") is None
    for bad in ("..", "../../x", "a/b", "x\n", ".hidden", "", "a" * 77):
        assert node_problem(bad) and netns_problem(bad), bad


@pytest.mark.parametrize("key", ["net.//.//.//.etc.vethlab-canary", "net..x", "net.x.", "net./", "net.ipv4./..x",
                                 "kernel.panic", "net.ipv4.ip_forward\n"])
def test_sysctl_keys_that_leave_proc_sys_net_are_refused(key: str) -> None:
    """'/' in a key is '.' in the path: "net.//.//.//.etc.x" is /proc/sys/net/../../../etc/x."""
    assert sysctl_problem(key)


@pytest.mark.parametrize("key", ["net.ipv4.ip_forward", "net.ipv4.conf.vb/t/lan.route_localnet",
                                 "net.ipv6.conf.all.disable_ipv6"])
def test_sysctl_keys_of_real_sysctls_pass(key: str) -> None:
    assert sysctl_problem(key) is None


def test_topology_file_goes_through_the_same_checks() -> None:
    """validate.py uses naming.py: a sysctl key that climbs out of /proc/sys, or a
    name with a trailing newline ($ matched before it), is a validation error."""
    for data in ({"name": "t", "nodes": {"host": {"sysctls": {"net.//.//.//.etc.vethlab-canary": 1}}}},
                 {"name": "t\n", "nodes": {}}, {"name": "t", "nodes": {"a\n": {}}}):
        with pytest.raises(ValidationError):
            lab_from_dict(data)


def test_markers_with_names_vethlab_could_not_have_written_are_not_markers() -> None:
    assert lab_of("vethlab:seed") == "seed"
    for alias in ("vethlab:../../x", "vethlab:.", "vethlab:", "vethlab:a/b"):
        assert lab_of(alias) is None, alias
    assert parse_netns_tag(".vethlab:seed:ns1") == ("seed", "ns1")
    for tag in (".vethlab:..:ns1", ".vethlab:seed:..", ".vethlab::x", ".vethlab:Seed:x"):
        assert parse_netns_tag(tag) is None, tag
    assert lab_of_table("vethlab_my_lab") == "my-lab"
    assert lab_of_table("vethlab_") is None and lab_of_table("vethlab_..") is None


@pytest.mark.parametrize("name", BAD_LABS[:-2])
def test_store_and_lock_refuse_bad_names(root: Path, name: str) -> None:
    for call in (lambda: store.load(name), lambda: store.remove(name), lambda: store.lab_dir(name),
                 lambda: LabLock(name), lambda: store.save(store.LabState(name))):
        with pytest.raises(UsageError):
            call()
    assert not root.exists() or os.listdir(root) == []


# -- the state's shape ----------------------------------------------------------------
def test_round_trip(root: Path) -> None:
    data = good_state()
    store.save(store.LabState.from_json(data))
    assert vars(store.load("seed")) == data
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert stat.S_IMODE((root / "seed" / "state.json").stat().st_mode) == 0o600


def test_exists_says_what_load_says_without_parsing(root: Path) -> None:
    """store.exists (up's check that a refused run left no lab) agrees with load:
    no root, no lab, a lab, a damaged state (exists; load raises), one removed."""
    assert not store.exists("seed") and store.load("seed") is None  # no root at all
    store.save(store.LabState.from_json(good_state("other")))
    assert not store.exists("seed") and store.load("seed") is None  # no such lab
    store.save(store.LabState.from_json(good_state()))
    assert store.exists("seed") and store.load("seed") is not None
    (root / "seed" / "state.json").write_text("{nodes:")
    assert store.exists("seed")
    with pytest.raises(StateDamaged):
        store.load("seed")
    store.remove("seed")
    assert not store.exists("seed") and store.load("seed") is None


WRONG = {
    "issue": ({"lab": "seed", "nodes": "abc", "services": 5}, "nodes"),
    "netns-path": ({"lab": "seed", "nodes": {"a": "../../x"}}, "nodes.a"),
    "node-path": ({"lab": "seed", "nodes": {"../x": "x"}}, "nodes.../x"),
    "link-ifname": ({"lab": "seed", "links": [["a", "../e", "b", "e"]]}, "links[0][1]"),
    "link-short": ({"lab": "seed", "links": [["a", "e"]]}, "links[0]"),
    "pid-everything": ({"lab": "seed", "services": {"a": [[["x"], -1, 0]]}}, "services.a[0][1]"),
    "pid-bool": ({"lab": "seed", "services": {"a": [[["x"], True, 0]]}}, "services.a[0][1]"),
    "sysctl-path": ({"lab": "seed", "host_sysctls": {"net.//.//.//.etc.x": "1"}}, "host_sysctls"),
    "route-field": ({"lab": "seed", "host_routes": [{"dst": "10.0.0.0/8", "table": 5}]}, "host_routes[0].table"),
    "route-dst": ({"lab": "seed", "host_routes": [{"via": "1.2.3.4"}]}, "host_routes[0]"),
    "uplink-key": ({"lab": "seed", "uplinks": {"eth0": {"up": True}}}, "uplinks.eth0"),
    "shaping": ({"lab": "seed", "shaped": {"a:e": {"rate": "fast"}}}, "shaped.a:e.rate"),
    "subnet": ({"lab": "seed", "host_subnets": ["not a subnet"]}, "host_subnets[0]"),
    "allocation": ({"lab": "seed", "allocation": {"address": {"lan": {"a": 5}}}}, "allocation.address.lan.a"),
    "netns-id": ({"lab": "seed", "netns_ids": {"ns1": "x"}}, "netns_ids.ns1"),
    "complete": ({"lab": "seed", "complete": "yes"}, "complete"),
    "other-lab": ({"lab": "other", "nodes": {}}, "lab"),
    "no-lab": ({"nodes": {}}, "lab"),
    "bad-lab": ({"lab": "../x"}, "lab"),
    "list": ([], "JSON object"),
    "null": (None, "JSON object"),
    "not-json": ("{nodes:", "not valid JSON"),
    "deep": ("[" * 100000 + "]" * 100000, "not valid JSON"),
    "binary": ("\udcff", "not valid JSON"),
}


@pytest.mark.parametrize("case", list(WRONG), ids=list(WRONG))
def test_wrong_state_is_damaged_naming_file_and_field(root: Path, case: str) -> None:
    data, field = WRONG[case]
    if case == "binary":
        path = write_state(root, "seed", "")
        path.write_bytes(b"\xff\xfe{")
    else:
        path = write_state(root, "seed", data)
    with pytest.raises(StateDamaged) as info:
        store.load("seed")
    message = str(info.value)
    assert str(path) in message and field in message, message
    assert info.value.exit_code == 1


def _json() -> st.SearchStrategy[Any]:
    scalars = st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False) | st.text(max_size=8)
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=12)


def _plausible() -> st.SearchStrategy[dict[str, Any]]:
    """A good state with some fields replaced by arbitrary JSON, some by near-misses."""
    base = {**good_state(), "uplinks": {}}  # the fake kernel has no uplink eth9 to give back
    names = st.sampled_from(["ns1", "ns2", "host", "../x", "..", "a/b", "", "x\n", "seed-ns2", 5, None])
    near: dict[str, st.SearchStrategy[Any]] = {
        "nodes": st.dictionaries(st.text(max_size=4) | names, names, max_size=3),
        "links": st.lists(st.lists(names, max_size=5), max_size=2),
        "services": st.dictionaries(names.filter(lambda n: isinstance(n, str)),
                                    st.lists(st.tuples(st.lists(st.text(max_size=3), max_size=2),
                                                       st.integers(-3, 5), st.integers()).map(list), max_size=2)),
    }
    field = st.sampled_from(sorted(base))
    replaced = st.tuples(field, _json()) | st.sampled_from(sorted(near)).flatmap(
        lambda k: st.tuples(st.just(k), near[k]))
    return st.lists(replaced, min_size=1, max_size=3).map(lambda changes: {**base, **dict(changes)})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=_json() | _plausible())
def test_any_json_is_a_state_or_damaged_never_a_crash(root: Path, data: Any) -> None:
    """Whatever JSON the file holds: load gives a well-typed state that `status`
    and `down` can use, or StateDamaged; `ls` and `down` end cleanly either way."""
    from vethlab.cli.main import main
    from vethlab.ops.down import down
    from vethlab.ops.inspect import interfaces

    write_state(root, "seed", data)
    try:
        state = store.load("seed")
    except StateDamaged:
        state = None
    if state is not None:
        interfaces(FakeKernel(), state)
        assert set(vars(state)) >= set(store.LabState.__annotations__) - {"lab"}
    assert main(["ls"]) == 0
    down("seed", FakeKernel(), wait=1)  # damaged or not, the lab goes
    assert not (root / "seed").exists()


# -- the state root and everything under it ---------------------------------------------
@needs_root
def test_root_owned_by_another_user_is_refused(root: Path) -> None:
    write_state(root, "seed", good_state())
    os.chown(root, 65534, 65534)
    for call in (store.labs, lambda: store.load("seed"), lambda: LabLock("seed").acquire(),
                 lambda: store.save(store.LabState("seed"))):
        with pytest.raises(StateError, match=r"belongs to nobody \(uid 65534\), not to you .*chown root"):
            call()


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o702])
def test_root_writable_by_others_is_refused(root: Path, mode: int) -> None:
    write_state(root, "seed", good_state())
    root.chmod(mode)
    with pytest.raises(StateError, match=r"writable by .*chmod go-w"):
        store.labs()
    with pytest.raises(StateError):
        store.load("seed")


def test_lab_directory_writable_by_others_is_refused(root: Path) -> None:
    write_state(root, "seed", good_state())
    (root / "seed").chmod(0o777)
    with pytest.raises(StateError, match="writable by"):
        store.load("seed")


def test_default_root_is_made_0700(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VETHLAB_STATE_DIR", str(tmp_path / "a" / "b"))
    with LabLock("seed"):
        pass
    assert stat.S_IMODE((tmp_path / "a" / "b").stat().st_mode) == 0o700


def test_symlinked_root_component_is_refused(root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = tmp_path / "real"
    write_state(real, "seed", good_state())
    (tmp_path / "link").symlink_to(real)
    for path in (tmp_path / "link", tmp_path / "link" / "inner"):
        monkeypatch.setenv("VETHLAB_STATE_DIR", str(path))
        with pytest.raises(StateError, match="symbolic link"):
            store.labs()
    assert os.listdir(real) == ["seed"]


def test_parent_writable_by_everyone_without_sticky_bit_is_refused(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    parent = tmp_path / "open"
    parent.mkdir()
    parent.chmod(0o777)
    monkeypatch.setenv("VETHLAB_STATE_DIR", str(parent / "state"))
    with pytest.raises(StateError, match="writable by everyone"):
        store.labs()
    parent.chmod(0o1777)  # sticky, like /tmp: nobody can rename our entry
    assert store.labs() == []


def test_symlinked_lock_is_refused_and_target_unchanged(root: Path, canary: Path) -> None:
    root.mkdir(mode=0o700)
    (root / "seed.lock").symlink_to(canary)
    before = snapshot(canary)
    with pytest.raises(StateError, match="symbolic link"):
        LabLock("seed").acquire()
    assert snapshot(canary) == before


def test_symlinked_temp_state_is_removed_as_a_link_and_target_unchanged(root: Path, canary: Path) -> None:
    write_state(root, "seed", good_state())
    (root / "seed" / ".state.json.tmp").symlink_to(canary)
    before = snapshot(canary)
    store.save(store.LabState.from_json(good_state()))
    assert snapshot(canary) == before
    assert not (root / "seed" / ".state.json.tmp").exists() and store.load("seed") is not None


def test_symlinked_logs_is_refused_and_target_unchanged(root: Path, tmp_path: Path) -> None:
    write_state(root, "seed", good_state())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o755)
    (root / "seed" / "logs").symlink_to(elsewhere)
    with pytest.raises(StateError, match="symbolic link"):
        store.logs_dir("seed")
    assert os.listdir(elsewhere) == [] and stat.S_IMODE(elsewhere.stat().st_mode) == 0o755


def test_symlinked_state_file_or_lab_dir_is_damaged_and_down_removes_only_the_link(root: Path, canary: Path,
                                                                                  tmp_path: Path) -> None:
    from vethlab.ops.down import down

    write_state(root, "seed", good_state())
    (root / "seed" / "state.json").unlink()
    (root / "seed" / "state.json").symlink_to(canary)
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep").write_text("x")
    (root / "lab2").symlink_to(other)
    before = snapshot(canary)
    for lab in ("seed", "lab2"):
        with pytest.raises(StateDamaged, match="symbolic link"):
            store.load(lab)
    assert store.labs() == ["lab2", "seed"]
    down("seed", FakeKernel(), wait=1)
    down("lab2", FakeKernel(), wait=1)
    assert store.labs() == [] and snapshot(canary) == before and os.listdir(other) == ["keep"]


def test_remove_never_follows_a_symlink_inside_the_lab(root: Path, tmp_path: Path) -> None:
    write_state(root, "seed", good_state())
    victim = tmp_path / "victim"
    (victim / "sub").mkdir(parents=True)
    (victim / "sub" / "f").write_text("x")
    (root / "seed" / "logs").mkdir()
    (root / "seed" / "logs" / "a.log").symlink_to(victim / "sub" / "f")
    (root / "seed" / "logs" / "dir").symlink_to(victim)
    store.remove("seed")
    assert not (root / "seed").exists() and (victim / "sub" / "f").read_text() == "x"


def test_labs_lists_only_lab_names(root: Path) -> None:
    write_state(root, "seed", good_state())
    for junk in ("UPPER", "x y", ".hidden", "a" * 20):
        (root / junk).mkdir()
    (root / "seed.lock").write_text("")
    assert store.labs() == ["seed"]


def test_shared_ledger_is_not_written_through_symlinks(root: Path, canary: Path) -> None:
    root.mkdir(mode=0o700)
    before = snapshot(canary)
    (root / ".shared.json.tmp").symlink_to(canary)
    shared.hold("seed", "net.ipv4.ip_forward", lambda: "0", lambda v: None, "1")
    assert snapshot(canary) == before and shared.held_by("seed") == ["net.ipv4.ip_forward"]
    (root / ".shared.json").unlink()
    (root / ".shared.json").symlink_to(canary)
    with pytest.raises(StateError, match="symbolic link"):
        shared.release("seed", lambda k, v: None)
    (root / ".shared.lock").unlink()
    (root / ".shared.lock").symlink_to(canary)
    with pytest.raises(StateError, match="symbolic link"):
        shared.hold("seed", "net.ipv4.ip_forward", lambda: "0", lambda v: None, "1")
    assert snapshot(canary) == before
