"""Objects on the host that are not the lab's (SPEC §4): an administrator's
/etc/netns/NODE and a foreign table named like the lab's are conflicts, never taken
over; a killed run's temporary files are found and removed; host forwarding that
vethlab turned on is turned off again after the state is lost; a foreign forward
chain that drops the lab's traffic is named, with the way to let it through.

Every check compares whole contents (file bytes, nft JSON, sysctl values)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess

import pytest

from helpers import SEED, ip_json, vethlab

NAT = """\
name: x
nodes: {a: {}, b: {}}
networks:
  lan:
    nat: true
    members: {a: {}, b: {}}
"""


def tree(root: str) -> dict[str, bytes | None]:
    """Every entry under `root`: path -> its bytes (None for a directory)."""
    out: dict[str, bytes | None] = {}
    for parent, dirs, files in os.walk(root):
        for name in dirs:
            out[os.path.join(parent, name)] = None
        for name in files:
            with open(os.path.join(parent, name), "rb") as fh:
                out[os.path.join(parent, name)] = fh.read()
    return out


def nft(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nft", *args], capture_output=True, text=True, check=False)


def ruleset() -> str:
    return nft("-j", "list", "ruleset").stdout


def sysctl(key: str, value: str | None = None) -> str:
    path = "/proc/sys/" + key.replace(".", "/")
    if value is not None:
        with open(path, "w") as fh:
            fh.write(value)
    with open(path) as fh:
        return fh.read().strip()


def nothing_built() -> None:
    assert os.listdir("/run/netns") == []
    assert [link["ifname"] for link in ip_json("link")] == ["lo"]


# -- /etc/netns/NODE ----------------------------------------------------------------
@pytest.mark.parametrize("files", [{"resolv.conf": b"nameserver 10.0.0.53\n", "custom.conf": b"admin's\n"}, {}],
                         ids=["with-files", "empty"])
def test_admins_etc_netns_dir_is_a_conflict_and_is_never_touched(write, files: dict[str, bytes]) -> None:
    os.makedirs("/etc/netns/ns1")
    for name, content in files.items():
        with open(f"/etc/netns/ns1/{name}", "wb") as fh:
            fh.write(content)
    before = tree("/etc/netns")
    path = write(SEED)
    r = vethlab("up", path)
    assert r.returncode == 1, r.stderr
    assert "/etc/netns/ns1 (node ns1) already exists and is not vethlab's" in r.stderr
    assert "nothing was changed" in r.stderr
    assert tree("/etc/netns") == before
    nothing_built()
    p = vethlab("plan", path)
    assert p.returncode == 1 and "/etc/netns/ns1 (node ns1) already exists and is not vethlab's" in p.stderr
    for command in (["down", path], ["clean"], ["clean", "--all"]):
        vethlab(*command, check=True)
        assert tree("/etc/netns") == before, command


def test_admins_symlink_in_etc_netns_is_a_conflict(write, tmp_path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "resolv.conf").write_bytes(b"nameserver 10.0.0.53\n")
    os.symlink(tmp_path / "elsewhere", "/etc/netns/ns1")
    path = write(SEED)
    r = vethlab("up", path)
    assert r.returncode == 1 and "/etc/netns/ns1 (node ns1) already exists and is not vethlab's" in r.stderr
    for command in (["down", path], ["clean", "--all"]):
        vethlab(*command, check=True)
    assert os.readlink("/etc/netns/ns1") == str(tmp_path / "elsewhere")
    assert tree(str(tmp_path / "elsewhere")) == {str(tmp_path / "elsewhere" / "resolv.conf"): b"nameserver 10.0.0.53\n"}
    nothing_built()


def test_admins_files_added_to_the_labs_dir_stay_after_down(write) -> None:
    path = write(SEED)
    vethlab("up", path, check=True)
    with open("/etc/netns/ns1/custom.conf", "wb") as fh:
        fh.write(b"admin's\n")
    vethlab("down", path, check=True)
    assert tree("/etc/netns") == {"/etc/netns/ns1": None, "/etc/netns/ns1/custom.conf": b"admin's\n"}
    # without vethlab's files and marker the directory is the admin's now: a conflict
    r = vethlab("up", path)
    assert r.returncode == 1 and "/etc/netns/ns1 (node ns1) already exists" in r.stderr


def test_a_dir_made_again_by_someone_else_is_not_the_labs(write) -> None:
    """The marker names the directory's inode: a directory of the same name made
    after the lab's went (its marker left behind by a kill) is not the lab's."""
    path = write(SEED)
    vethlab("up", path, check=True)
    marker = open("/etc/netns/.vethlab-owner.ns1").read()
    vethlab("down", path, check=True)
    os.makedirs("/etc/netns/ns1")
    with open("/etc/netns/.vethlab-owner.ns1", "w") as fh:
        fh.write(marker)  # as a kill between removing the directory and its marker leaves it
    with open("/etc/netns/ns1/resolv.conf", "wb") as fh:
        fh.write(b"nameserver 10.0.0.53\n")
    r = vethlab("up", path)
    assert r.returncode == 1 and "/etc/netns/ns1 (node ns1) already exists" in r.stderr
    assert open("/etc/netns/ns1/resolv.conf", "rb").read() == b"nameserver 10.0.0.53\n"
    vethlab("clean", "--all", check=True)
    assert tree("/etc/netns") == {"/etc/netns/ns1": None, "/etc/netns/ns1/resolv.conf": b"nameserver 10.0.0.53\n"}


def plant_leftovers(lab: str) -> list[str]:
    """What a run of `lab` killed while writing /etc/netns leaves there."""
    planted = [f"/etc/netns/.vethlab-tmp.{lab}.k3y8w2", f"/etc/netns/.vethlab-tmp.{lab}.d9f1a0",
               "/etc/netns/.vethlab-owner.gone1"]
    with open(planted[0], "w") as fh:
        fh.write("127.0.0.1 localhost\n")
    os.makedirs(planted[1])
    with open(planted[1] + "/hosts", "w") as fh:
        fh.write("127.0.0.1 localhost\n")
    with open(planted[2], "w") as fh:
        fh.write(f"vethlab:{lab} 1:1\n")  # a marker whose directory is gone
    return planted


@pytest.mark.parametrize("command", [["up"], ["down"], ["clean"], ["clean", "--all"]])
def test_temporary_files_of_a_killed_run_are_removed(write, command: list[str]) -> None:
    path = write(SEED)
    other = "/etc/netns/.vethlab-tmp.other.abc123"  # another (dead) lab's: clean's business, not seed's
    with open(other, "w") as fh:
        fh.write("x")
    plant_leftovers("seed")
    vethlab(*command, *([path] if command[0] != "clean" else []), check=True)
    left = sorted(e for e in os.listdir("/etc/netns") if e.startswith("."))
    if command == ["up"]:  # its own temporary files; a stale marker is read (and removed) by down and clean
        assert left == [".vethlab-owner.gone1", ".vethlab-owner.ns1", ".vethlab-owner.ns2",
                        ".vethlab-tmp.other.abc123"]
    elif command[0] == "clean":
        assert left == []
    else:
        assert left == [".vethlab-tmp.other.abc123"]


@pytest.mark.parametrize("command", [["down"], ["up", "--refresh"]])
def test_a_down_killed_between_a_directory_and_its_marker_leaves_nothing(write, command: list[str]) -> None:
    """The moment of a killed `down` after /etc/netns/ns1 is removed and before its
    marker is: the namespace is still alive, so the next run finds ns1 by it — and
    must take the marker along (CI caught a round of test_crash leaving one)."""
    path = write(SEED)
    vethlab("up", path, check=True)
    before = tree("/etc/netns")
    for name in ("hosts", "resolv.conf"):
        os.unlink(f"/etc/netns/ns1/{name}")
    os.rmdir("/etc/netns/ns1")
    vethlab(*command, path, check=True)
    if command[0] == "up":  # the node's directory is made again, with a marker for the new one
        assert tree("/etc/netns").keys() == before.keys()
        vethlab("down", path, check=True)
    assert tree("/etc/netns") == {}
    nothing_built()


@pytest.mark.parametrize("left", ["directory", "marker"])
@pytest.mark.parametrize("command", [["down"], ["clean", "--all"]])
def test_a_down_killed_after_a_namespace_and_before_its_files_leaves_nothing(write, left: str,
                                                                          command: list[str]) -> None:
    """The moment of a killed `down` after ns1's namespace is deleted and before its
    /etc/netns files are (netns.delete_many removes them in a thread beside the
    umounts, in either order): its directory whole, or only its marker.  The next run
    finds them without a live namespace to lead to them and leaves nothing."""
    path = write(SEED)
    vethlab("up", path, check=True)
    subprocess.run(["ip", "netns", "del", "ns1"], check=True)  # umount + unlink, as netns.delete does
    if left == "marker":
        for name in ("hosts", "resolv.conf"):
            os.unlink(f"/etc/netns/ns1/{name}")
        os.rmdir("/etc/netns/ns1")
    assert os.path.exists("/etc/netns/.vethlab-owner.ns1")
    vethlab(*command, *([path] if command[0] != "clean" else []), check=True)
    assert tree("/etc/netns") == {}
    nothing_built()


def test_sigkill_while_writing_node_files_leaves_nothing_clean_misses(write, tmp_path) -> None:
    """A real kill: SIGKILL `up` the moment its first temporary file shows in /etc/netns.
    A large /etc/hosts (bind-mounted in this test's private mount namespace; every
    node's hosts file starts with it) holds the writer there long enough to be caught."""
    import signal
    import sys

    big = tmp_path / "hosts"
    big.write_text("127.0.0.1\tlocalhost\n" + "10.9.9.9\tfiller.example\n" * 1_500_000)
    subprocess.run(["mount", "--bind", str(big), "/etc/hosts"], check=True)
    try:
        path = write("name: big\nnodes: {" + ", ".join(f"n{i}: {{}}" for i in range(20)) + "}\n")
        proc = subprocess.Popen([sys.executable, "-m", "vethlab", "up", path], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        while proc.poll() is None and not [e for e in os.listdir("/etc/netns") if e.startswith(".vethlab")]:
            pass
        proc.send_signal(signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL, "up finished before it was caught writing"
        assert [e for e in os.listdir("/etc/netns") if e.startswith(".vethlab")], "nothing left to clean"
        vethlab("clean", "--all", check=True)
        assert tree("/etc/netns") == {}
        nothing_built()
    finally:
        subprocess.run(["umount", "/etc/hosts"], check=True)


# -- the lab's firewall table ---------------------------------------------------------
def test_foreign_table_named_like_the_labs_is_a_conflict_and_is_never_deleted(write) -> None:
    nft("add", "table", "inet", "vethlab_x")
    nft("add", "chain", "inet", "vethlab_x", "input", "{ type filter hook input priority 0; policy accept; }")
    nft("add", "rule", "inet", "vethlab_x", "input", "tcp", "dport", "22", "accept")
    before = nft("-j", "list", "table", "inet", "vethlab_x").stdout
    assert '"dport"' in before
    path = write(NAT)
    r = vethlab("up", path)
    assert r.returncode == 1, r.stderr
    assert "firewall table inet vethlab_x already exists in the host namespace and is not vethlab's" in r.stderr
    nothing_built()
    assert os.listdir("/etc/netns") == []
    for command in (["down", path], ["down", "--lab", "x"], ["clean"], ["clean", "--all"]):
        vethlab(*command, check=True)
        assert nft("-j", "list", "table", "inet", "vethlab_x").stdout == before, command


def test_labs_own_table_carries_its_marker_and_goes_with_it(write) -> None:
    path = write(NAT)
    vethlab("up", path, check=True)
    chains = json.loads(nft("-j", "list", "chains", "inet").stdout)["nftables"]
    assert "owner-vethlab-x" in [c["chain"]["name"] for c in chains if "chain" in c and
                                 c["chain"]["table"] == "vethlab_x"]
    # the ruleset saved as admins do reads back (no ':' or '=' in our names)
    saved = nft("list", "ruleset").stdout
    nft("flush", "ruleset")
    assert subprocess.run(["nft", "-f", "-"], input=saved, text=True, capture_output=True).returncode == 0
    shutil.rmtree(os.path.join(os.environ["VETHLAB_STATE_DIR"], "x"))
    vethlab("clean", "--all", check=True)
    assert nft("list", "ruleset").stdout == ""


def test_an_older_vethlabs_table_is_still_the_labs(write) -> None:
    """Made before the marker chain: recognised by its exact shape (our chains and one
    ruleset digest), so neither refused by `up` nor stranded by `clean`."""
    nft("add", "table", "inet", "vethlab_x")
    nft("add", "chain", "inet", "vethlab_x", "v-0123456789abcdef")
    nft("add", "chain", "inet", "vethlab_x", "postrouting", "{ type nat hook postrouting priority 100; }")
    nft("add", "rule", "inet", "vethlab_x", "postrouting", "ip", "saddr", "172.30.0.0/24", "masquerade")
    path = write(NAT)
    vethlab("up", path, check=True)
    vethlab("down", path, check=True)
    assert nft("list", "ruleset").stdout == ""
    nft("add", "table", "inet", "vethlab_x")
    nft("add", "chain", "inet", "vethlab_x", "v-0123456789abcdef")
    vethlab("clean", check=True)
    assert nft("list", "ruleset").stdout == ""


# -- host forwarding ------------------------------------------------------------------
KEYS = ("net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding")
NAT6 = NAT.replace("    nat: true\n", "    nat: true\n    subnet6: fd00:30::/64\n")


def test_forwarding_is_restored_by_clean_after_the_state_is_lost(write) -> None:
    for key in KEYS:
        sysctl(key, "0")
    vethlab("up", write(NAT6), check=True)
    assert [sysctl(k) for k in KEYS] == ["1", "1"]
    shutil.rmtree(os.environ["VETHLAB_STATE_DIR"])  # the state, the ledger with it
    os.makedirs(os.environ["VETHLAB_STATE_DIR"], mode=0o700)
    vethlab("clean", "--all", check=True)
    assert [sysctl(k) for k in KEYS] == ["0", "0"]
    assert nft("list", "ruleset").stdout == ""
    nothing_built()


def test_a_lab_made_after_the_state_was_lost_does_not_take_vethlabs_1_for_the_hosts(write) -> None:
    sysctl("net.ipv4.ip_forward", "0")
    vethlab("up", write(NAT), check=True)
    shutil.rmtree(os.environ["VETHLAB_STATE_DIR"])
    os.makedirs(os.environ["VETHLAB_STATE_DIR"], mode=0o700)
    second = write(NAT.replace("name: x", "name: y").replace("{a: {}, b: {}}", "{c: {}, d: {}}"), "y.yaml")
    vethlab("up", second, check=True)
    vethlab("down", second, check=True)
    assert sysctl("net.ipv4.ip_forward") == "1", "lab x, whose state was lost, still routes"
    vethlab("clean", check=True)  # x: found by its markers, removed; the last holder gone
    assert sysctl("net.ipv4.ip_forward") == "0"
    assert nft("list", "ruleset").stdout == ""


def test_forwarding_the_host_had_on_stays_on(write) -> None:
    sysctl("net.ipv4.ip_forward", "1")
    path = write(NAT)
    vethlab("up", path, check=True)
    shutil.rmtree(os.environ["VETHLAB_STATE_DIR"])
    os.makedirs(os.environ["VETHLAB_STATE_DIR"], mode=0o700)
    vethlab("clean", "--all", check=True)
    assert sysctl("net.ipv4.ip_forward") == "1"


# -- foreign forward policy -------------------------------------------------------------
def test_docker_like_forward_drop_is_named_at_up_and_explains_pingall(write) -> None:
    sysctl("net.bridge.bridge-nf-call-iptables", "1")
    nft("add", "table", "ip", "filter")
    nft("add", "chain", "ip", "filter", "FORWARD", "{ type filter hook forward priority 0; policy drop; }")
    nft("add", "chain", "ip", "filter", "DOCKER-USER")
    nft("add", "rule", "ip", "filter", "FORWARD", "jump", "DOCKER-USER")
    path = write(NAT)
    r = vethlab("up", path)
    assert r.returncode == 0, r.stderr
    assert "table ip filter, chain FORWARD (hook forward, policy drop) is not vethlab's" in r.stderr
    assert "net.bridge.bridge-nf-call-iptables = 1" in r.stderr
    assert "iptables -I DOCKER-USER -i vb.x.lan -j ACCEPT" in r.stderr
    p = vethlab("pingall")
    assert p.returncode == 1
    assert "probable cause: table ip filter, chain FORWARD (hook forward, policy drop)" in p.stdout
    assert "iptables -I DOCKER-USER -i vb.x.lan -j ACCEPT" in p.stdout
    # what iptables-nft makes of that command lets the lab's traffic through
    nft("insert", "rule", "ip", "filter", "DOCKER-USER", "iifname", "vb.x.lan", "counter", "accept")
    assert "warning" not in vethlab("up", path, check=True).stderr
    p = vethlab("pingall")
    assert p.returncode == 0 and "probable cause" not in p.stdout


def test_the_suggested_nft_commands_let_the_traffic_through(write) -> None:
    sysctl("net.bridge.bridge-nf-call-iptables", "1")
    nft("add", "table", "inet", "fw")
    nft("add", "chain", "inet", "fw", "forward_filter", "{ type filter hook forward priority 0; policy accept; }")
    nft("add", "rule", "inet", "fw", "forward_filter", "counter", "drop")  # a final drop instead of a policy
    path = write(NAT)
    r = vethlab("up", path, check=True)
    assert "table inet fw, chain forward_filter (hook forward, a final drop rule) is not vethlab's" in r.stderr
    assert vethlab("pingall").returncode == 1
    commands = [line.strip() for line in r.stderr.splitlines() if line.strip().startswith("nft insert")]
    assert commands
    for command in commands:
        assert subprocess.run(shlex.split(command), capture_output=True).returncode == 0, command
    assert "warning" not in vethlab("up", path, check=True).stderr
    assert vethlab("pingall").returncode == 0


def test_no_warning_without_a_foreign_drop(write) -> None:
    sysctl("net.bridge.bridge-nf-call-iptables", "1")
    nft("add", "table", "ip", "filter")
    nft("add", "chain", "ip", "filter", "FORWARD", "{ type filter hook forward priority 0; policy accept; }")
    r = vethlab("up", write(NAT), check=True)
    assert "warning" not in r.stderr
