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
