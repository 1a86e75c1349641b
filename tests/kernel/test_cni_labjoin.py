"""Join-a-lab mode: `{"type": "vethlab", "lab": LAB, "network": NET}` puts a container
on a running lab's network — the lab's IPAM, its hosts files, its status — and DEL
leaves the lab exactly as it was."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

import pytest

from cni_driver import JOINABLE_LAB, Cni, in_ns, install, netns
from helpers import ip_json, vethlab
from vethlab.state.lock import LabLock

LAB = JOINABLE_LAB
CONF = {"cniVersion": "1.0.0", "name": "labnet", "type": "vethlab", "lab": "pl", "network": "lan"}


@pytest.fixture
def cni(tmp_path) -> Cni:
    lab = tmp_path / "lab.yaml"
    lab.write_text(LAB)
    vethlab("up", str(lab), check=True)
    return Cni(install(str(tmp_path / "bin")))


def lab_view() -> dict[str, Any]:
    """The lab as its users see it: status (no counters), every hosts file, the
    host's links, the lab's state directory."""
    status = json.loads(vethlab("status", "--lab", "pl", "--json", check=True).stdout)
    for iface in status["interfaces"]:
        iface.pop("stats")
    hosts = {node: open(f"/etc/netns/{node}/hosts").read() for node in ("a", "b")}
    state = os.path.join(os.environ.get("VETHLAB_STATE_DIR", "/run/vethlab"), "pl")
    return {"status": status, "hosts": hosts, "state": sorted(os.listdir(state)),
            "links": sorted((link["ifname"], link.get("master")) for link in ip_json("link", "show")),
            "nft": subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True, check=True).stdout,
            "localnet": open("/proc/sys/net/ipv4/conf/vb.pl.lan/route_localnet").read()}


def test_join_gets_the_lab_s_address_names_and_status(cni: Cni) -> None:
    before = lab_view()
    path = netns("ctr1")
    out = cni.add(CONF, "abc123", path, args="IgnoreUnknown=1;K8S_POD_NAME=web1")
    bridge, port, inner = out["interfaces"]
    assert bridge["name"] == "vb.pl.lan" and port["name"].startswith("vc")
    assert inner == {"name": "eth0", "mac": inner["mac"], "sandbox": path}
    assert out["ips"] == [{"interface": 2, "address": "172.31.5.4/24", "gateway": "172.31.5.1"}]
    assert out["routes"] == [{"dst": "0.0.0.0/0", "gw": "172.31.5.1"}]
    # the lab's nodes know it by name, and it reaches them
    for node in ("a", "b"):
        assert "172.31.5.4\tweb1\n" in open(f"/etc/netns/{node}/hosts").read()
    assert in_ns("a", "ping", "-c1", "-W2", "web1").returncode == 0
    assert in_ns("ctr1", "ping", "-c1", "-W2", "172.31.5.2").returncode == 0
    status = json.loads(vethlab("status", "--lab", "pl", "--json", check=True).stdout)
    assert status["nodes"][-1] == {"name": "web1", "netns": path, "exists": True, "container": "abc123"}
    (iface,) = [i for i in status["interfaces"] if i["node"] == "web1"]
    assert (iface["name"], iface["peer"], iface["addresses"]) == ("eth0", f"host:{port['name']}", ["172.31.5.4/24"])
    # a second container: the next address, and a name of its own when the pod name is a node's
    out2 = cni.add(CONF, "def456", netns("ctr2"), args="IgnoreUnknown=1;K8S_POD_NAME=a")
    assert out2["ips"][0]["address"] == "172.31.5.5/24"
    assert "172.31.5.5\tc-def456\n" in open("/etc/netns/b/hosts").read()
    assert cni.check(CONF, "abc123", path, out).status == 0
    cni.delete(CONF, "def456", "/run/netns/ctr2", prev=out2)
    cni.delete(CONF, "abc123", path, prev=out)
    assert lab_view() == before
    cni.delete(CONF, "abc123", path, prev=out)  # idempotent
    assert lab_view() == before


def test_rerun_up_keeps_joined_containers_and_down_then_del_is_clean(cni: Cni, tmp_path) -> None:
    path = netns("ctr1")
    out = cni.add(CONF, "abc123", path)
    vethlab("up", str(tmp_path / "lab.yaml"), check=True)  # a re-run must not take the container for debris
    assert in_ns("ctr1", "ping", "-c1", "-W2", "172.31.5.2").returncode == 0
    vethlab("down", "--lab", "pl", check=True)
    cni.delete(CONF, "abc123", path, prev=out)  # the runtime's DEL after the lab went
    assert [link["ifname"] for link in ip_json("link", "show")] == ["lo"]
    assert [link["ifname"] for link in ip_json("-n", "ctr1", "link", "show")] == ["lo"]


GROWN = LAB.replace("  b: {}\n", "  b: {}\n  c: {}\n").replace("members: {a: {}, b: {}}", "members: {a: {}, b: {}, c: {}}")


def plan(path: str, *extra: str) -> dict[str, Any]:
    return json.loads(vethlab("plan", path, "--json", *extra, check=True).stdout)


def test_rerun_up_keeps_joined_names_in_every_hosts_file(cni: Cni, tmp_path) -> None:
    """The lab's hosts driver lists joined containers after the lab's nodes: a re-run
    `up` that rewrites the files (a node added) keeps them, and `plan` is quiet
    after an ADD (the digest ADD wrote is the one the driver computes)."""
    lab = tmp_path / "lab.yaml"
    cni.add(CONF, "abc123", netns("ctr1"), args="IgnoreUnknown=1;K8S_POD_NAME=web1")
    cni.add(CONF, "def456", netns("ctr2"), args="IgnoreUnknown=1;K8S_POD_NAME=db1")
    for extra in ((), ("--refresh",)):
        assert plan(str(lab), *extra)["actions"] == []
    lab.write_text(GROWN)
    vethlab("up", str(lab), check=True)
    files = {node: open(f"/etc/netns/{node}/hosts").read() for node in ("a", "b", "c")}
    tail = "172.31.5.2\ta\n172.31.5.3\tb\n172.31.5.6\tc\n172.31.5.5\tdb1\n172.31.5.4\tweb1\n"
    assert all(text.endswith(tail) for text in files.values()), files
    assert in_ns("c", "ping", "-c1", "-W2", "web1").returncode == 0
    assert plan(str(lab), "--refresh")["actions"] == []
    cni.delete(CONF, "abc123", "/run/netns/ctr1")
    assert open("/etc/netns/c/hosts").read().endswith("172.31.5.6\tc\n172.31.5.5\tdb1\n")
    assert plan(str(lab))["actions"] == [] and plan(str(lab), "--refresh")["actions"] == []


def test_a_member_added_later_never_gets_a_joined_container_s_address(cni: Cni, tmp_path) -> None:
    """The lab's IPAM holds joined containers' addresses: the new member gets the
    next free one, the existing members keep theirs (`plan` changes only c)."""
    lab = tmp_path / "lab.yaml"
    out = cni.add(CONF, "abc123", netns("ctr1"))
    assert out["ips"][0]["address"] == "172.31.5.4/24"
    lab.write_text(GROWN)
    changes = plan(str(lab))
    assert {a["node"] for a in changes["actions"] if a["kind"] != "hosts"} == {"c", "host"}  # c's veth, both ends
    assert ["172.31.5.5", "c"] in changes["hosts"] and ["172.31.5.4", "c-abc123"] in changes["hosts"]
    vethlab("up", str(lab), check=True)
    assert [(a["ifname"], [i["local"] for i in a["addr_info"] if i["family"] == "inet"])
            for a in ip_json("-n", "c", "addr", "show") if a["ifname"] != "lo"] == [("eth0", ["172.31.5.5"])]
    for node in ("a", "b"):
        assert [i["local"] for a in ip_json("-n", node, "addr", "show") for i in a["addr_info"]
                if i["family"] == "inet" and a["ifname"] != "lo"] == [f"172.31.5.{2 if node == 'a' else 3}"]
    assert in_ns("c", "ping", "-c1", "-W2", "c-abc123").returncode == 0
    static = GROWN.replace("c: {}}", "c: {ip: 172.31.5.4}}")
    lab.write_text(static)
    refused = vethlab("up", str(lab))
    assert refused.returncode == 1 and "held by container c-abc123 (joined through vethlab-cni)" in refused.stderr


def test_down_removes_joined_containers_and_a_later_del_succeeds(cni: Cni, tmp_path) -> None:
    """`down` takes the lab's whole footprint: the joined containers' host ends
    (and so their interfaces), their published ports, their records; the
    runtime's DEL afterwards finds nothing and succeeds."""
    def host() -> dict[str, Any]:
        return {"links": sorted(link["ifname"] for link in ip_json("link", "show")),
                "nft": subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True, check=True).stdout,
                "state": sorted(os.listdir(root)), "published": published()}

    def published() -> dict[str, Any]:  # what the plugin's table is made from (.cni: the plugin's, not a lab's)
        try:
            with open(os.path.join(root, ".cni", ".firewall.json")) as fh:
                data = json.load(fh)
        except FileNotFoundError:
            return {}
        return {"networks": data["networks"], "publish": data["publish"]}

    root = os.environ.get("VETHLAB_STATE_DIR", "/run/vethlab")

    vethlab("down", "--lab", "pl", check=True)
    empty = {**host(), "state": [".cni"], "published": {"networks": {}, "publish": {}}}
    vethlab("up", str(tmp_path / "lab.yaml"), check=True)
    conf = {**CONF, "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80}]}}
    outs = {cid: cni.add(conf if cid == "abc123" else CONF, cid, netns(cid)) for cid in ("abc123", "def456")}
    vethlab("down", "--lab", "pl", check=True)
    assert host() == empty
    for cid in outs:
        assert [link["ifname"] for link in ip_json("-n", cid, "link", "show")] == ["lo"]
    for cid, out in outs.items():
        cni.delete(conf, cid, f"/run/netns/{cid}", prev=out)
        cni.delete(conf, cid, f"/run/netns/{cid}", prev=out)
    assert host() == empty


def test_del_when_the_namespace_is_gone_and_gc(cni: Cni) -> None:
    before = lab_view()
    out = cni.add(CONF, "gone", netns("ctr1"))
    subprocess.run(["ip", "netns", "del", "ctr1"], check=True)
    cni.delete(CONF, "gone", "", prev=out)
    assert lab_view() == before
    cni.add({**CONF, "cniVersion": "1.1.0"}, "x", netns("x"))
    cni.add({**CONF, "cniVersion": "1.1.0"}, "y", netns("y"))
    assert cni.gc({**CONF, "cniVersion": "1.1.0"}, [("x", "eth0")]).status == 0
    nodes = [n["name"] for n in json.loads(vethlab("status", "--lab", "pl", "--json", check=True).stdout)["nodes"]]
    assert nodes == ["a", "b", "host", "c-x"]
    assert cni.status({**CONF, "cniVersion": "1.1.0"}).status == 0


def test_gc_keeps_going_past_a_damaged_attachment(cni: Cni) -> None:
    """GC (1.1.0) of a lab's network: one stale attachment's entry is damaged; the
    other stale one is still detached, the damaged one's host end (a function of
    its key) goes too, and the entry is said at the end (code 100) and kept."""
    conf = {**CONF, "cniVersion": "1.1.0"}
    for cid in ("x", "y", "z"):
        cni.add(conf, cid, netns(cid))
    records = os.path.join(os.environ.get("VETHLAB_STATE_DIR", "/run/vethlab"), "pl", "cni.json")
    with open(records) as fh:
        data = json.load(fh)
    data["attachments"]["z/eth0"] = "garbage"
    with open(records, "w") as fh:
        json.dump(data, fh)
    answer = cni.gc(conf, [("x", "eth0")])
    assert answer.status == 1 and answer.json["code"] == 100 and "attachment z/eth0" in answer.json["details"], answer
    nodes = [n["name"] for n in json.loads(vethlab("status", "--lab", "pl", "--json", check=True).stdout)["nodes"]]
    assert nodes == ["a", "b", "host", "c-x"]
    assert [link["ifname"] for link in ip_json("-n", "y", "link", "show")] == ["lo"]
    assert [link["ifname"] for link in ip_json("-n", "z", "link", "show")] == ["lo"]
    assert "c-y" not in open("/etc/netns/a/hosts").read()
    assert in_ns("x", "ping", "-c1", "-W2", "172.31.5.2").returncode == 0
    refused = cni.call("ADD", conf, "w", netns("w"))  # an address cannot be chosen beside an unreadable entry
    assert refused.status == 1 and refused.json["code"] == 103 and "z/eth0" in refused.json["details"]


@pytest.mark.parametrize("change,code", [({"lab": "nolab"}, 104), ({"network": "nonet"}, 104)])
def test_unknown_lab_or_network(cni: Cni, change: dict[str, str], code: int) -> None:
    answer = cni.call("ADD", {**CONF, **change}, "c1", netns("c1"))
    assert answer.status == 1 and answer.json["code"] == code
    assert [link["ifname"] for link in ip_json("-n", "c1", "link", "show")] == ["lo"]


def test_the_lab_s_lock_bounds_the_wait(cni: Cni) -> None:
    lock = LabLock("pl", say=False)
    lock.acquire()
    try:
        answer = cni.call("ADD", CONF, "c1", netns("c1"), env={"VETHLAB_CNI_LOCK_WAIT": "0.2"})
    finally:
        lock.release()
    assert answer.status == 1 and answer.json["code"] == 11


def test_a_joined_container_publishes_ports_and_del_takes_them_back(cni: Cni) -> None:
    before = lab_view()
    conf = {**CONF, "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80}]}}
    path = netns("ctr1")
    out = cni.add(conf, "abc123", path)
    code = ("import socket\ns=socket.socket(); s.bind(('0.0.0.0', 80)); s.listen(4); print('ready', flush=True)\n"
            "while True:\n c, _ = s.accept(); c.sendall(b'hello'); c.close()\n")
    server = subprocess.Popen(["ip", "netns", "exec", "ctr1", "python3", "-c", code], stdout=subprocess.PIPE)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == b"ready"
        for client in (["python3"], ["ip", "netns", "exec", "a", "python3"]):  # the host; a lab node (hairpin)
            where = "127.0.0.1" if len(client) == 1 else "172.31.5.1"
            fetch = subprocess.run([*client, "-c", f"import socket; print(socket.create_connection(({where!r}, 8080),"
                                    " timeout=3).recv(9).decode())"], capture_output=True, text=True, timeout=20)
            assert fetch.stdout.strip() == "hello", fetch.stderr
    finally:
        server.kill()
        server.wait()
    cni.delete(conf, "abc123", path, prev=out)
    assert lab_view() == before


def test_joining_refuses_a_foreign_bridge_and_a_port_the_host_serves(cni: Cni) -> None:
    """(review) A bridge of the lab's bridge's name that the lab did not make (here:
    the lab's bridge removed, a foreign one put in its place) gets no container port;
    a host port a host process listens on is not published over it."""
    import socket

    with socket.socket() as listener:
        listener.bind(("0.0.0.0", 8080))
        listener.listen()
        conf = {**CONF, "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80}]}}
        before = lab_view()
        answer = cni.call("ADD", conf, "abc123", netns("ctr1"))
        assert answer.status == 1 and answer.json["code"] == 101 and "8080/tcp" in answer.json["details"], answer
        assert lab_view() == before
    subprocess.run(["ip", "link", "del", "vb.pl.lan"], check=True)
    subprocess.run(["ip", "link", "add", "vb.pl.lan", "type", "bridge"], check=True)
    answer = cni.call("ADD", CONF, "abc124", netns("ctr2"))
    assert answer.status == 1 and answer.json["code"] == 101 and "not lab pl's" in answer.json["details"], answer
    assert [link["ifname"] for link in ip_json("link", "show", "master", "vb.pl.lan")] == []
