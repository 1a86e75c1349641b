"""Routes, sysctls, exec, the host node, in-place changes, rollback, API."""

from __future__ import annotations

import os
import subprocess

import pytest

from helpers import SEED, ip_json, vethlab

ROUTED = """\
name: routed
nodes:
  r:
    sysctls: {net.ipv4.ip_forward: 1}
  a:
    routes: ["default via 10.0.1.1"]
    exec: ["ip addr add 10.99.0.1/32 dev lo"]
  b:
    routes: ["10.0.1.0/24 via 10.0.2.1 dev e0 metric 5"]
links:
  - endpoints: [a:e0, r:ra]
    addresses: [10.0.1.2/24, 10.0.1.1/24]
  - endpoints: [b:e0, r:rb]
    addresses: [10.0.2.2/24, 10.0.2.1/24]
"""


def test_routes_sysctls_and_exec(write) -> None:
    vethlab("up", write(ROUTED), check=True)
    assert vethlab("exec", "r", "--", "sysctl", "-n", "net.ipv4.ip_forward").stdout.strip() == "1"
    routes = ip_json("-n", "a", "route")
    default = next(r for r in routes if r["dst"] == "default")
    assert default["gateway"] == "10.0.1.1" and default["protocol"] in ("118", 118, "0x76")
    assert any(a["local"] == "10.99.0.1" for link in ip_json("-n", "a", "addr") for a in link["addr_info"])
    # routed across r: a -> b
    r = vethlab("exec", "a", "--", "ping", "-c", "1", "-W", "1", "10.0.2.2")
    assert r.returncode == 0, r.stdout
    # removing a route from the file removes it in place
    path = write(ROUTED.replace('    routes: ["default via 10.0.1.1"]\n', ""), "edited.yaml")
    plan = vethlab("plan", path, check=True).stdout
    assert "- route a: default via 10.0.1.1 dev e0: route is no longer in the file" in plan
    vethlab("up", path, check=True)
    assert not [r for r in ip_json("-n", "a", "route") if r["dst"] == "default"]


def test_mtu_address_and_state_change_in_place(write, seed_file: str) -> None:
    vethlab("up", seed_file, check=True)
    index = ip_json("-n", "ns2", "link", "show", "vp2")[0]["ifindex"]
    edited = write(SEED.replace("192.168.1.2/24]", "[192.168.1.2/24, 192.168.1.3/24]]\n    mtu: 9000"), "e.yaml")
    vethlab("up", edited, check=True)
    vp2 = ip_json("-n", "ns2", "addr", "show", "vp2")[0]
    assert vp2["ifindex"] == index and vp2["mtu"] == 9000
    assert {a["local"] for a in vp2["addr_info"] if a["family"] == "inet"} == {"192.168.1.2", "192.168.1.3"}
    down = write(SEED + "    state: down\n", "d.yaml")
    vethlab("up", down, check=True)
    assert "UP" not in ip_json("-n", "ns1", "link", "show", "vp1")[0]["flags"]
    assert ip_json("-n", "ns2", "link", "show", "vp2")[0]["ifindex"] == index


def test_node_and_link_removed_from_file(write) -> None:
    three = SEED.replace("  ns2: {}\n", "  ns2: {}\n  ns3: {}\n") + "  - endpoints: [ns1:vp3, ns3:vp4]\n"
    vethlab("up", write(three, "three.yaml"), check=True)
    assert sorted(os.listdir("/run/netns")) == ["ns1", "ns2", "ns3"]
    vethlab("up", write(SEED), check=True)
    assert sorted(os.listdir("/run/netns")) == ["ns1", "ns2"]
    assert [link["ifname"] for link in ip_json("-n", "ns1", "link")] == ["lo", "vp1"]
    assert not os.path.exists("/etc/netns/ns3")


def test_host_node_link_and_route_removed_at_down(write) -> None:
    path = write("""\
        name: h
        nodes:
          host:
            routes: ["10.77.0.0/16 via 10.0.9.2"]
          c: {}
        links:
          - endpoints: [host:vh-c, c:eth0]
            addresses: [10.0.9.1/24, 10.0.9.2/24]
        """)
    subprocess.run(["ip", "route", "add", "10.66.0.0/16", "dev", "lo"], check=True)  # the admin's own
    vethlab("up", path, check=True)
    link = ip_json("link", "show", "vh-c")[0]
    assert link["ifalias"] == "vethlab:h"
    assert any(r["dst"] == "10.77.0.0/16" for r in ip_json("route"))
    assert subprocess.run(["ping", "-c", "1", "-W", "1", "10.0.9.2"], capture_output=True).returncode == 0
    vethlab("down", "--lab", "h", check=True)
    assert [link["ifname"] for link in ip_json("link")] == ["lo"]
    dsts = {r["dst"] for r in ip_json("route")}
    assert "10.77.0.0/16" not in dsts and "10.66.0.0/16" in dsts


def test_exec_failure_rolls_back(write) -> None:
    path = write(SEED.replace("  ns2: {}\n", "  ns2:\n    exec: [\"sh -c 'echo broken; exit 3'\"]\n"))
    r = vethlab("up", path)
    assert r.returncode == 1
    assert "exec in node ns2: `sh -c echo broken; exit 3` exited with status 3" in r.stderr and "broken" in r.stderr
    assert "everything this run created was removed again" in r.stderr
    assert os.listdir("/run/netns") == [] and os.listdir("/etc/netns") == []
    r = vethlab("up", path, "--keep-on-error")
    assert r.returncode == 1 and sorted(os.listdir("/run/netns")) == ["ns1", "ns2"]
    vethlab("down", path, check=True)
    assert os.listdir("/run/netns") == []


def test_python_api_context_manager(seed_file: str) -> None:
    from vethlab import Lab

    with Lab.load(seed_file) as lab:
        r = lab.node("ns1").exec(["ping", "-c", "1", "-W", "1", "192.168.1.2"], capture_output=True)
        assert r.returncode == 0
        assert sorted(os.listdir("/run/netns")) == ["ns1", "ns2"]
    assert os.listdir("/run/netns") == []


def test_python_api_from_dict() -> None:
    from vethlab import Lab, UsageError

    lab = Lab.from_dict({"name": "api", "nodes": {"a": {}, "b": {}},
                         "links": [{"endpoints": ["a:e0", "b:e0"], "addresses": ["10.5.0.1/24", "10.5.0.2/24"]}]})
    plan = lab.up()
    assert plan and not lab.plan()
    assert lab.node("b").exec(["ping", "-c", "1", "-W", "1", "10.5.0.1"]).returncode == 0
    with pytest.raises(UsageError):
        lab.node("zz")
    lab.down()
    assert os.listdir("/run/netns") == []


def test_vethlab_lab_fixture(vethlab_lab) -> None:
    lab = vethlab_lab(SEED)
    assert lab.node("ns2").exec(["ping", "-c", "1", "-W", "1", "192.168.1.1"]).returncode == 0


def test_clean_after_state_loss_keeps_foreign_objects(seed_file: str) -> None:
    import shutil

    subprocess.run(["ip", "netns", "add", "foreign"], check=True)
    subprocess.run(["ip", "link", "add", "br-foreign", "type", "bridge"], check=True)
    subprocess.run(["nft", "add", "table", "inet", "foreign"], check=True)
    vethlab("up", seed_file, check=True)
    shutil.rmtree(os.path.join(os.environ["VETHLAB_STATE_DIR"], "seed"))  # the state is lost
    r = vethlab("clean", check=True)
    assert "removed leftovers of lab seed" in r.stdout
    assert os.listdir("/run/netns") == ["foreign"]
    assert {link["ifname"] for link in ip_json("link")} == {"lo", "br-foreign"}
    assert "table inet foreign" in subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout


def test_stale_files_after_reboot(seed_file: str) -> None:
    vethlab("up", seed_file, check=True)
    # a reboot on a disk-backed /run: the mount is gone, an empty file remains
    subprocess.run(["umount", "/run/netns/ns1"], check=True)
    assert vethlab("exec", "ns1", "--", "true").returncode != 0
    r = vethlab("plan", seed_file, check=True)
    assert "dead file left by an interrupted run" in r.stdout
    vethlab("up", seed_file, check=True)  # the lab's own dead file: rebuilt
    assert vethlab("pingall").returncode == 0
    subprocess.run(["umount", "/run/netns/ns2"], check=True)
    vethlab("clean", "--all", check=True)
    assert os.listdir("/run/netns") == []


def test_unknown_stale_file_is_refused(seed_file: str) -> None:
    open("/run/netns/ns1", "w").close()  # dead, and nobody's we know of
    r = vethlab("up", seed_file)
    assert r.returncode == 1 and "/run/netns/ns1 is a stale file" in r.stderr
    vethlab("clean", "--all", check=True)
    assert os.listdir("/run/netns") == ["ns1"], "clean must not remove what it cannot prove is vethlab's"


def test_two_ups_of_one_lab_serialize(seed_file: str) -> None:
    procs = [subprocess.Popen(["python3" if False else os.sys.executable, "-m", "vethlab", "up", seed_file],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    results = [p.communicate(timeout=60) + (p.returncode,) for p in procs]
    assert all(rc == 0 for _, _, rc in results), results
    assert sum("lab seed is up" in out for out, _, _ in results) == 1
    assert vethlab("pingall").returncode == 0
