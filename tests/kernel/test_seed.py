"""The seed scenario against the real kernel, through the CLI as users run it."""

from __future__ import annotations

import json
import os

from helpers import SEED, ip_json, vethlab


def ifindex(ns: str, ifname: str) -> int:
    return next(link["ifindex"] for link in ip_json("-n", ns, "link") if link["ifname"] == ifname)


def test_up_then_ping_right_away(seed_file: str) -> None:
    r = vethlab("up", seed_file, check=True)
    assert "lab seed is up" in r.stdout
    ping = vethlab("exec", "ns1", "--", "ping", "-c", "1", "-W", "1", "192.168.1.2")
    assert ping.returncode == 0, ping.stdout + ping.stderr
    # what the seed note shows: each namespace has its end, up, with its address
    (vp1,) = [link for link in ip_json("-n", "ns1", "addr") if link["ifname"] == "vp1"]
    assert vp1["operstate"] == "UP" and vp1["mtu"] == 1500
    assert {a["local"] for a in vp1["addr_info"] if a["family"] == "inet"} == {"192.168.1.1"}
    assert ip_json("-n", "ns1", "link", "show", "vp1")[0]["ifalias"] == "vethlab:seed"


def test_second_up_changes_nothing_and_keeps_ifindex(seed_file: str) -> None:
    vethlab("up", seed_file, check=True)
    before = (ifindex("ns1", "vp1"), ifindex("ns2", "vp2"))
    r = vethlab("up", seed_file, check=True)
    assert "no changes" in r.stdout
    assert (ifindex("ns1", "vp1"), ifindex("ns2", "vp2")) == before
    assert "no changes" in vethlab("plan", seed_file, check=True).stdout


def test_down_leaves_nothing(seed_file: str) -> None:
    vethlab("up", seed_file, check=True)
    # each node's directory, and beside it the marker that proves it is the lab's
    assert sorted(os.listdir("/etc/netns")) == [".vethlab-owner.ns1", ".vethlab-owner.ns2", "ns1", "ns2"]
    assert sorted(os.listdir("/etc/netns/ns1")) == ["hosts", "resolv.conf"]
    vethlab("down", seed_file, check=True)
    assert os.listdir("/run/netns") == []
    assert os.listdir("/etc/netns") == []
    assert [e for e in os.listdir(os.environ["VETHLAB_STATE_DIR"])] == []
    assert [link["ifname"] for link in ip_json("link")] == ["lo"]
    assert "nothing to remove" in vethlab("down", "--lab", "seed", check=True).stdout


def test_foreign_namespace_is_refused_and_untouched(seed_file: str) -> None:
    import subprocess

    subprocess.run(["ip", "netns", "add", "ns2"], check=True)
    r = vethlab("up", seed_file)
    assert r.returncode == 1
    assert "namespace ns2 (node ns2) already exists and is not vethlab's" in r.stderr
    assert "Traceback" not in r.stderr
    assert os.listdir("/run/netns") == ["ns2"], "nothing else may be built"
    assert [link["ifname"] for link in ip_json("-n", "ns2", "link")] == ["lo"]
    assert not ip_json("-n", "ns2", "link")[0].get("ifalias")
    vethlab("down", "--lab", "seed", check=True)
    assert os.listdir("/run/netns") == ["ns2"], "down must not remove a foreign namespace"


def test_foreign_interface_in_host_is_refused(write) -> None:
    import subprocess

    subprocess.run(["ip", "link", "add", "vl-a", "type", "veth", "peer", "vl-b"], check=True)
    path = write("name: t\nnodes: {a: {}}\nlinks: [{endpoints: [a:eth0, host:vl-a]}]\n")
    r = vethlab("up", path)
    assert r.returncode == 1 and "interface vl-a already exists in the host namespace and is not vethlab's" in r.stderr
    assert os.listdir("/run/netns") == []
    assert {link["ifname"] for link in ip_json("link")} == {"lo", "vl-a", "vl-b"}


def test_ipv6_pings_right_after_up(write) -> None:
    path = write("""\
        name: six
        nodes: {a: {}, b: {}}
        links:
          - endpoints: [a:e0, b:e0]
            addresses: [[fd00:1::1/64, 10.1.0.1/30], [fd00:1::2/64, 10.1.0.2/30]]
        """)
    vethlab("up", path, check=True)
    r = vethlab("exec", "a", "--", "ping", "-c", "1", "-W", "2", "fd00:1::2")
    assert r.returncode == 0, r.stdout + r.stderr
    addrs = [a for link in ip_json("-n", "b", "addr") for a in link["addr_info"] if a["local"] == "fd00:1::2"]
    assert addrs and not addrs[0].get("tentative")


def test_status_json(seed_file: str) -> None:
    vethlab("up", seed_file, check=True)
    report = json.loads(vethlab("status", "--json", check=True).stdout)
    by_name = {i["name"]: i for i in report["interfaces"]}
    assert by_name["vp1"] | {"stats": None} == {
        "name": "vp1", "node": "ns1", "peer": "ns2:vp2", "addresses": ["192.168.1.1/24"], "mtu": 1500,
        "admin_state": "up", "operstate": "UP", "carrier": True, "stats": None, "shaping": None}
    assert [n["name"] for n in report["nodes"]] == ["ns1", "ns2"]


def test_exec_keeps_output_and_status(seed_file: str) -> None:
    vethlab("up", seed_file, check=True)
    r = vethlab("exec", "ns1", "--", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert (r.returncode, r.stdout, r.stderr) == (7, "out\n", "err\n")
    r = vethlab("exec", "--lab", "seed", "ns2", "--", "ip", "-br", "link", "show", "vp2")
    assert r.returncode == 0 and r.stdout.startswith("vp2@")


def test_link_down_peer_loses_carrier_then_back(seed_file: str) -> None:
    vethlab("up", seed_file, check=True)
    vethlab("link", "down", "ns1:vp1", check=True)
    report = json.loads(vethlab("status", "--json", check=True).stdout)
    vp2 = next(i for i in report["interfaces"] if i["name"] == "vp2")
    assert vp2["carrier"] is False and vp2["operstate"] != "UP" and vp2["admin_state"] == "up"
    assert vethlab("pingall").returncode == 1
    vethlab("link", "--lab", "seed", "up", "ns1:vp1", check=True)
    vp2 = next(i for i in json.loads(vethlab("status", "--json").stdout)["interfaces"] if i["name"] == "vp2")
    assert vp2["carrier"] is True and vp2["operstate"] == "UP"
    assert vethlab("pingall").returncode == 0


def test_pingall_json_and_ping_by_name(seed_file: str) -> None:
    vethlab("up", seed_file, check=True)
    report = json.loads(vethlab("pingall", "--json", check=True).stdout)
    assert report["ok"] is True
    assert sorted((p["src"], p["dst"], p["address"]) for p in report["pairs"]) == [
        ("ns1", "ns2", "192.168.1.2"), ("ns2", "ns1", "192.168.1.1")]
    r = vethlab("ping", "ns1", "ns2", "-c", "1")
    assert r.returncode == 0 and "192.168.1.2" in r.stdout


def test_names_resolve_inside_nodes(seed_file: str) -> None:
    vethlab("up", seed_file, check=True)
    r = vethlab("exec", "ns1", "--", "getent", "hosts", "ns2", timeout=8)
    assert r.returncode == 0 and r.stdout.split()[0] == "192.168.1.2"
    assert vethlab("exec", "ns2", "--", "ping", "-c", "1", "-W", "1", "ns1").returncode == 0


def test_graph_formats(seed_file: str, tmp_path) -> None:
    vethlab("up", seed_file, check=True)
    for suffix in ("dot", "mmd", "svg", "png"):
        out = tmp_path / f"g.{suffix}"
        vethlab("graph", seed_file, "-o", str(out), check=True)
        assert out.stat().st_size > 50
    assert "ns1" in (tmp_path / "g.dot").read_text() and "graph LR" in (tmp_path / "g.mmd").read_text()
    assert (tmp_path / "g.png").read_bytes()[:4] == b"\x89PNG"
    vethlab("graph", "--lab", "seed", "-o", str(tmp_path / "s.dot"), check=True)
    assert vethlab("graph", seed_file, "-o", str(tmp_path / "g.txt")).returncode == 2


def test_ls_json(seed_file: str) -> None:
    assert json.loads(vethlab("ls", "--json", check=True).stdout) == {"labs": []}
    vethlab("up", seed_file, check=True)
    labs = json.loads(vethlab("ls", "--json", check=True).stdout)["labs"]
    assert [(lab["name"], lab["nodes"], lab["links"], lab["complete"]) for lab in labs] == [("seed", 2, 1, True)]


def test_prefix_names_namespaces(write) -> None:
    path = write(SEED.replace("name: seed", "name: pfx\nprefix: true"))
    vethlab("up", path, check=True)
    assert sorted(os.listdir("/run/netns")) == ["pfx-ns1", "pfx-ns2"]
    assert vethlab("exec", "ns1", "--", "ping", "-c", "1", "-W", "1", "ns2").returncode == 0


def test_plan_json_lists_actions_and_touches_nothing(seed_file: str) -> None:
    doc = json.loads(vethlab("plan", seed_file, "--json", check=True).stdout)
    assert doc["lab"] == "seed" and doc["changes"] == len(doc["actions"]) == 9
    assert doc["actions"][0] == {"verb": "create", "kind": "node", "target": "ns1",
                                 "reason": "namespace ns1 does not exist", "node": "ns1", "netns": "ns1", "params": {}}
    assert os.listdir("/run/netns") == [] and os.listdir(os.environ["VETHLAB_STATE_DIR"]) == []


def test_shell_runs_inside_the_node(seed_file: str) -> None:
    vethlab("up", seed_file, check=True)
    r = vethlab("shell", "ns1", input="ip -br link show vp1; echo node=$VETHLAB_NODE; exit 3\n", env={"SHELL": "/bin/bash"})
    assert r.returncode == 3
    assert "vp1@" in r.stdout and "node=ns1" in r.stdout


def test_ipv6_through_a_lab_router_right_after_up(write) -> None:
    """A router forwards IPv6 at once: its neighbour solicitation for a forwarded
    packet needs a non-tentative link-local address, which DAD would hold back for
    1-2 s after the link came up (6 of 6 first pings lost with DAD, measured).  Lab
    nodes' interfaces skip DAD: no link-local address of the lab is tentative."""
    path = write("""\
        name: router6
        nodes:
          a: {routes: ["fd00:2::/64 via fd00:1::2"]}
          r: {sysctls: {net.ipv6.conf.all.forwarding: 1}}
          c: {routes: ["fd00:1::/64 via fd00:2::1"]}
        links:
          - endpoints: [a:e0, r:e0]
            addresses: [fd00:1::1/64, fd00:1::2/64]
          - endpoints: [r:e1, c:e0]
            addresses: [fd00:2::1/64, fd00:2::2/64]
        """)
    vethlab("up", path, check=True)
    tentative = [(node, link["ifname"], a["local"]) for node in ("a", "r", "c")
                 for link in ip_json("-n", node, "addr") for a in link["addr_info"] if a.get("tentative")]
    assert tentative == []
    r = vethlab("exec", "a", "--", "ping", "-c", "1", "-W", "2", "fd00:2::2")
    assert r.returncode == 0, r.stdout + r.stderr
