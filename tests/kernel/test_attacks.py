"""Attacks on SPEC §4 ("vethlab never deletes, moves, changes or kills anything it
did not create"), as a local unprivileged user or a careless root would mount them.

Each test runs in its own sandbox (tests/kernel/conftest.py) and compares whole
states: the namespace files, the processes, the file trees left behind."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from helpers import vethlab


def _wait_for(cond, what: str, tries: int = 100) -> None:  # type: ignore[no-untyped-def]
    for _ in range(tries):
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture
def rootless_netns():  # type: ignore[no-untyped-def]
    """A namespace user `nobody` made in a user namespace of their own, with vethlab's
    marker forged on its lo (they are root in there), attached by an administrator under
    /run/netns as `rootless` (as one does to look into a rootless container)."""
    # setuid in the child, then exec all the way down: proc.pid is the sleep itself
    proc = subprocess.Popen(["unshare", "--user", "--map-root-user", "--net",
                             "sh", "-c", "ip link set lo alias vethlab:victim && exec sleep 300"],
                            user="nobody", group="nogroup", extra_groups=[])
    try:
        def forged() -> bool:
            try:
                return os.readlink(f"/proc/{proc.pid}/exe").endswith("sleep")
            except OSError:
                return False
        _wait_for(forged, "nobody's namespace to be marked")
        subprocess.run(["ip", "netns", "attach", "rootless", str(proc.pid)], check=True)
        alias = subprocess.run(["ip", "netns", "exec", "rootless", "ip", "-o", "link", "show", "lo"],
                               capture_output=True, text=True, check=True).stdout
        assert "alias vethlab:victim" in alias
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def test_a_user_namespaces_forged_marker_does_not_make_clean_kill_or_delete(rootless_netns: int) -> None:
    """Anyone can make a namespace in a user namespace of their own and set its lo
    alias to `vethlab:victim`; once it is under /run/netns, `clean --all` must not take
    it for a lab's: not delete its file, not signal the process in it."""
    before = sorted(os.listdir("/run/netns"))
    vethlab("clean", "--all")
    assert sorted(os.listdir("/run/netns")) == before
    assert _alive(rootless_netns)


def test_a_user_namespaces_forged_marker_does_not_make_down_kill_or_delete(rootless_netns: int) -> None:
    """`down victim`, with no state, finds the lab by its markers only: same rule."""
    before = sorted(os.listdir("/run/netns"))
    vethlab("down", "--lab", "victim")
    assert sorted(os.listdir("/run/netns")) == before
    assert _alive(rootless_netns)


# -- races between two vethlab processes --------------------------------------------------
def test_clean_never_removes_a_lab_whose_up_finished_while_clean_looked(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`clean` (without --all) removes half-built labs nobody works on.  It read the
    state of a lab whose `up` was still running (incomplete), and that `up` finished
    before clean took the lock: the lab is complete now, and must be left alone."""
    from vethlab.ops import clean as clean_mod
    from vethlab.state import store

    flag = tmp_path / "flag"
    path = tmp_path / "lab.yaml"
    path.write_text(f"""\
name: web
nodes:
  srv: {{run: ["sleep 4105"], ready: ["test -e {flag}"]}}
""")
    up = subprocess.Popen([sys.executable, "-m", "vethlab", "up", str(path)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
    try:
        def half_built() -> bool:
            state = store.load("web") if "web" in store.labs() else None
            return state is not None and not state.complete and bool(state.services)
        _wait_for(half_built, "up to record its state before the service is ready", tries=400)
        real_load = store.load

        def load_then_up_finishes(name: str):  # type: ignore[no-untyped-def]
            state = real_load(name)
            if name == "web":
                flag.touch()
                out, err = up.communicate(timeout=60)
                assert up.returncode == 0, err
            return state
        monkeypatch.setattr(clean_mod.store, "load", load_then_up_finishes)
        report = clean_mod.clean(all_labs=False)
    finally:
        flag.touch()
        up.wait(timeout=60)
    monkeypatch.undo()
    assert report["labs"] == []
    state = store.load("web")
    assert state is not None and state.complete
    assert "web" in os.listdir("/run/netns") or state.nodes["srv"] in os.listdir("/run/netns")
    assert subprocess.run(["pgrep", "-f", "sleep 4105"], capture_output=True).returncode == 0
    vethlab("down", str(path), check=True)


# -- the state root -----------------------------------------------------------------------
@pytest.mark.parametrize("owner, mode", [("nobody", 0o755), ("root:nogroup", 0o775)],
                         ids=["owned-by-nobody", "group-writable"])
def test_a_state_root_whose_parent_another_user_controls_is_refused(tmp_path, owner: str, mode: int) -> None:  # type: ignore[no-untyped-def]
    """`nobody` owns (or, by group, may write) the directory that holds root's state
    root: they could rename the state away (its labs then look gone; measured before
    the fix: `vethlab ls` said "no labs") or put an older one back.  Refused before
    anything is built, naming the parent."""
    parent = tmp_path / "shared"
    parent.mkdir()
    subprocess.run(["chown", owner, str(parent)], check=True)
    parent.chmod(mode)
    path = tmp_path / "lab.yaml"
    path.write_text("name: x\nnodes: {a: {}}\n")
    r = vethlab("up", str(path), env={"VETHLAB_STATE_DIR": str(parent / "state")})
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"{parent}, a parent of the state directory {parent}/state, " in r.stderr
    assert os.listdir(parent) == [] and os.listdir("/run/netns") == []


def test_clean_never_takes_host_forwarding_from_a_lab_that_came_up_meanwhile(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`clean` releases host forwarding held by labs of which nothing is left.  A lab
    that came up after clean listed the living labs, and before it read the holders,
    is living: its ip_forward stays 1."""
    from vethlab.ops import clean as clean_mod
    from vethlab.reconcile import forwarding

    path = tmp_path / "nat.yaml"
    path.write_text("name: z\nnodes: {a: {}, b: {}}\nnetworks:\n  lan:\n    nat: true\n    members: {a: {}, b: {}}\n")
    real_read = forwarding._read
    ups: list[subprocess.Popen[str]] = []

    def a_lab_comes_up_then_read(kernel):  # type: ignore[no-untyped-def]
        if not ups:  # clean's first look at the holders, after it listed the labs it found
            ups.append(subprocess.Popen([sys.executable, "-m", "vethlab", "up", str(path)], text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE))
            ups[0].wait(timeout=60)
        return real_read(kernel)
    monkeypatch.setattr(forwarding, "_read", a_lab_comes_up_then_read)
    clean_mod.clean(all_labs=False)
    monkeypatch.undo()
    out, err = ups[0].communicate(timeout=60)
    assert ups[0].returncode == 0, err
    with open("/proc/sys/net/ipv4/ip_forward") as fh:
        assert fh.read().strip() == "1"
    vethlab("down", str(path), check=True)
    with open("/proc/sys/net/ipv4/ip_forward") as fh:
        assert fh.read().strip() == "0"


# -- host settings shared by two labs ---------------------------------------------------
def test_two_labs_setting_one_host_sysctl_cannot_lose_the_hosts_value(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Lab x sets the host's rp_filter (admin's value 2) to 0; lab y sets it too.  Before:
    y recorded x's 0 as the host's value, `down x` put 2 back under the running y, and
    after both were down the host kept 0.  The second lab is a conflict, and the host's
    value comes back whole."""
    key = "/proc/sys/net/ipv4/conf/all/rp_filter"

    def value() -> str:
        with open(key) as fh:
            return fh.read().strip()
    with open(key, "w") as fh:
        fh.write("2")
    files = {}
    for lab in ("x", "y"):
        files[lab] = tmp_path / f"{lab}.yaml"
        files[lab].write_text(f'name: {lab}\nnodes:\n  host: {{sysctls: {{net.ipv4.conf.all.rp_filter: "0"}}}}\n'
                              f"  a{lab}: {{}}\n")
    vethlab("up", str(files["x"]), check=True)
    r = vethlab("up", str(files["y"]))
    assert r.returncode == 1
    assert "sysctl net.ipv4.conf.all.rp_filter of the host namespace is already taken: lab x has it" in r.stderr
    assert value() == "0"
    vethlab("down", "--lab", "y", check=True)
    assert value() == "0"  # still x's
    vethlab("down", "--lab", "x", check=True)
    assert value() == "2"


def test_a_second_labs_host_route_to_the_same_destination_is_a_conflict(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Lab x routes 10.99.0.0/24 from the host through its node; lab y asks for the
    same destination through its own.  Before: y replaced x's route (both carry
    vethlab's protocol, so it was not "foreign"), and `down y` left x without one."""
    def routes() -> str:
        return subprocess.run(["ip", "route", "show", "10.99.0.0/24"], capture_output=True, text=True,
                              check=True).stdout
    files = {}
    for lab, net in (("x", 9), ("y", 8)):
        files[lab] = tmp_path / f"{lab}.yaml"
        files[lab].write_text(f'name: {lab}\nnodes:\n  host: {{routes: ["10.99.0.0/24 via 10.{net}.0.2"]}}\n'
                              f"  a{lab}: {{}}\nlinks:\n  - endpoints: [host:h{lab}, a{lab}:e0]\n"
                              f"    addresses: [10.{net}.0.1/24, 10.{net}.0.2/24]\n")
    vethlab("up", str(files["x"]), check=True)
    before = routes()
    assert "via 10.9.0.2 dev hx" in before
    r = vethlab("up", str(files["y"]))
    assert r.returncode == 1
    assert "route 10.99.0.0/24 of the host namespace is already taken: lab x has it" in r.stderr
    vethlab("down", "--lab", "y", check=True)
    assert routes() == before
    vethlab("down", "--lab", "x", check=True)
    assert routes() == ""
