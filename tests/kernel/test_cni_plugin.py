"""vethlab-cni driven as runtimes drive it (tests/cni_driver.py), on the real kernel,
each test in its own sandbox: results field by field against the spec and against
the reference bridge plugin for the same config, the kernel state each command
leaves, DEL from saved state, GC, STATUS, concurrency, error codes."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import threading
from typing import Any

import pytest

from cni_driver import Cni, bridge_conf, in_ns, install, netns
from helpers import ip_json, vethlab

REFERENCE = os.path.exists("/usr/lib/cni/bridge")
needs_reference = pytest.mark.skipif(not REFERENCE, reason="reference CNI plugins missing: apt-get install "
                                     "containernetworking-plugins")
pytestmark = needs_reference  # the delegated IPAM is the reference host-local


@pytest.fixture
def cni(tmp_path) -> Cni:
    return Cni(install(str(tmp_path / "bin")))


@pytest.fixture
def data(tmp_path) -> str:
    return str(tmp_path / "ipam")


def snapshot(*dirs: str) -> dict[str, Any]:
    """What the host namespace and the plugin's files look like (no counters, no handles)."""
    links = sorted((link["ifname"], link.get("link_type"), link.get("master"), link.get("ifalias"), link["mtu"],
                    tuple(sorted(set(link["flags"]) - {"NO-CARRIER", "LOWER_UP"})),  # carrier: operational
                    (link.get("linkinfo") or {}).get("info_kind"))
                   for link in ip_json("-d", "link", "show"))
    addresses = sorted((a["ifname"], i["local"], i["prefixlen"]) for a in ip_json("addr", "show")
                       for i in a["addr_info"] if i.get("scope") != "link")
    rules = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True, check=True).stdout
    files = {}
    for top in dirs:
        for base, _dirs, names in os.walk(top):
            for name in names:
                if name.endswith(".lock") or name == "lock" or name.startswith("last_reserved_ip"):
                    continue  # locks, and host-local's round-robin cursor: not resources
                with open(os.path.join(base, name), "rb") as fh:
                    files[os.path.relpath(os.path.join(base, name), top)] = fh.read()
    return {"links": links, "addresses": addresses, "nft": rules, "files": files}


def state_dir() -> str:
    return os.path.join(os.environ.get("VETHLAB_STATE_DIR", "/run/vethlab"), ".cni")


# -- results, field by field -------------------------------------------------------------
@pytest.mark.parametrize("version", ["0.4.0", "1.0.0", "1.1.0"])
def test_add_result_is_the_spec_s_and_the_kernel_agrees(cni: Cni, data: str, version: str) -> None:
    conf = bridge_conf("net1", "vlbr0", "10.88.0.0/24", data, version)
    path = netns("c1")
    out = cni.add(conf, "c1", path)
    assert out["cniVersion"] == version
    assert set(out) == {"cniVersion", "interfaces", "ips", "routes", "dns"}
    bridge, host_end, inner = out["interfaces"]
    assert bridge["name"] == "vlbr0" and "sandbox" not in bridge
    assert host_end["name"].startswith("vc") and "sandbox" not in host_end
    assert inner == {"name": "eth0", "mac": inner["mac"], "sandbox": path}
    (ip,) = out["ips"]
    expected = {"interface": 2, "address": "10.88.0.2/24", "gateway": "10.88.0.1"}
    if version == "0.4.0":
        expected["version"] = "4"  # 0.4.0 results carry it; 1.x dropped it
    assert ip == expected
    assert out["routes"] == [{"dst": "0.0.0.0/0"}] and out["dns"] == {}
    # the kernel: what the result says, and the route the config asks for
    (eth0,) = [link for link in ip_json("-n", "c1", "addr", "show") if link["ifname"] == "eth0"]
    assert eth0["address"] == inner["mac"] and "UP" in eth0["flags"]
    assert [(a["local"], a["prefixlen"]) for a in eth0["addr_info"] if a["family"] == "inet"] == [("10.88.0.2", 24)]
    assert [(r["dst"], r.get("gateway")) for r in ip_json("-n", "c1", "route", "show", "default")] == \
        [("default", "10.88.0.1")]
    (port,) = ip_json("link", "show", host_end["name"])
    assert port["master"] == "vlbr0" and port["address"] == host_end["mac"]
    (br,) = ip_json("addr", "show", "vlbr0")
    assert br["address"] == bridge["mac"]
    assert [(a["local"], a["prefixlen"]) for a in br["addr_info"] if a["family"] == "inet"] == [("10.88.0.1", 24)]


@pytest.mark.parametrize("version", ["0.4.0", "1.0.0"])
@pytest.mark.parametrize("dual_stack", [False, True], ids=["ipv4", "dual-stack-default-gw"])
def test_result_has_the_reference_plugin_s_shape(cni: Cni, data: str, version: str, dual_stack: bool) -> None:
    """Same config to /usr/lib/cni/bridge and to vethlab: the same fields, the same
    values where they do not depend on the kernel's choices (names, MACs)."""
    confs = [bridge_conf("n1", "vlbr0", "10.88.0.0/24", data, version),
             bridge_conf("n2", "refbr0", "10.89.0.0/24", data, version, kind="bridge")]
    if dual_stack:
        for conf, six in zip(confs, ("fd00:88::/64", "fd00:89::/64"), strict=True):
            conf["isDefaultGateway"] = True
            conf["ipam"]["ranges"].append([{"subnet": six}])
            conf["ipam"]["routes"] = []
    ours = cni.add(confs[0], "c1", netns("c1"))
    theirs = cni.add(confs[1], "c2", netns("c2"))

    def shape(result: dict[str, Any], subnet_from: str, subnet_to: str) -> Any:
        text = json.dumps(result).replace(subnet_from, subnet_to)
        out = json.loads(text)
        out["interfaces"] = [sorted(i) for i in out["interfaces"]]
        return out

    assert shape(shape(ours, "10.88.0.", "X."), "fd00:88:", "Y") == shape(shape(theirs, "10.89.0.", "X."), "fd00:89:",
                                                                           "Y")


def test_ips_interface_index_points_at_the_container_interface(cni: Cni, data: str) -> None:
    out = cni.add(bridge_conf("net1", "vlbr0", "10.88.0.0/24", data), "c1", netns("c1"), ifname="net0")
    assert out["interfaces"][out["ips"][0]["interface"]] == {"name": "net0", "mac": out["interfaces"][2]["mac"],
                                                            "sandbox": "/run/netns/c1"}


def test_mtu_hairpin_and_promisc_are_applied(cni: Cni, data: str) -> None:
    conf = bridge_conf("net1", "vlbr0", "10.88.0.0/24", data, mtu=1400, hairpinMode=True, promiscMode=True)
    out = cni.add(conf, "c1", netns("c1"))
    (port,) = ip_json("-d", "link", "show", out["interfaces"][1]["name"])
    assert port["mtu"] == 1400 and port["linkinfo"]["info_slave_data"]["hairpin"] is True
    (inner,) = ip_json("-n", "c1", "link", "show", "eth0")
    assert inner["mtu"] == 1400
    (bridge,) = ip_json("link", "show", "vlbr0")
    assert bridge["mtu"] == 1400 and "PROMISC" in bridge["flags"]


def test_version_reports_every_supported_version(cni: Cni) -> None:
    for sent in ("0.4.0", "1.0.0", "1.1.0"):
        answer = cni.version({"cniVersion": sent}, plugin="vethlab", netns="dummy")  # as Podman calls it
        assert answer.status == 0 and answer.stderr == ""
        assert answer.json == {"cniVersion": sent, "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0",
                                                                         "1.1.0"]}


def test_add_and_del_import_only_what_they_need(cni: Cni, data: str) -> None:
    """What a runtime's ADD and DEL load, measured on the real thing (python -X
    importtime on the installed launcher): none of the heavy modules."""
    conf = bridge_conf("net1", "vlbr0", "10.88.0.0/24", data)
    cni.add(conf, "first", netns("first"))  # the first ADD of an ipMasq network also writes the NAT table
    launcher = cni.plugin("vethlab")
    python = open(launcher).readline()[2:].split()[0]
    heavy = {"yaml", "argparse", "aiohttp", "pyroute2", "rich", "typing", "dataclasses", "subprocess", "asyncio",
             "ctypes", "threading", "re", "json", "ipaddress", "socket", "collections", "enum", "hashlib", "site"}
    path = netns("c1")
    for command in ("ADD", "DEL"):
        env = {**os.environ, "CNI_COMMAND": command, "CNI_CONTAINERID": "c1", "CNI_NETNS": path,
               "CNI_IFNAME": "eth0", "CNI_PATH": ":".join(cni.path)}
        done = subprocess.run([python, "-IS", "-X", "importtime", launcher], input=json.dumps(conf).encode(),
                              env=env, capture_output=True, check=False)
        assert done.returncode == 0, done.stdout
        loaded = {line.split("|")[-1].strip() for line in done.stderr.decode().splitlines()
                  if line.startswith("import time:")}
        assert "vethlab.cni.commands" in loaded and loaded & heavy == set(), command


# -- connectivity -----------------------------------------------------------------------------
def test_containers_reach_their_gateway_and_each_other(cni: Cni, data: str) -> None:
    conf = bridge_conf("net1", "vlbr0", "10.88.0.0/24", data)
    a = cni.add(conf, "a", netns("a"))
    b = cni.add(conf, "b", netns("b"))
    b_ip = b["ips"][0]["address"].split("/")[0]
    assert in_ns("a", "ping", "-c1", "-W2", a["ips"][0]["gateway"]).returncode == 0
    assert in_ns("a", "ping", "-c1", "-W2", b_ip).returncode == 0


def test_dual_stack(cni: Cni, data: str) -> None:
    conf = bridge_conf("net1", "vlbr0", "10.88.0.0/24", data, isDefaultGateway=True)
    conf["ipam"]["ranges"].append([{"subnet": "fd00:88::/64"}])
    conf["ipam"]["routes"] = []
    a = cni.add(conf, "a", netns("a"))
    b = cni.add(conf, "b", netns("b"))
    assert [ip["address"] for ip in a["ips"]] == ["10.88.0.2/24", "fd00:88::2/64"]
    assert a["routes"] == [{"dst": "0.0.0.0/0", "gw": "10.88.0.1"}, {"dst": "::/0", "gw": "fd00:88::1"}]
    assert in_ns("a", "ping", "-6", "-c1", "-W2", "fd00:88::1").returncode == 0
    assert in_ns("a", "ping", "-6", "-c1", "-W2", b["ips"][1]["address"].split("/")[0]).returncode == 0
    assert [(r["dst"], r.get("gateway")) for r in ip_json("-6", "-n", "a", "route", "show", "default")] == \
        [("default", "fd00:88::1")]


def _serve(ns: str, port: int) -> subprocess.Popen[bytes]:
    """A TCP server in namespace `ns` that answers "hello" and closes; ready on return."""
    code = ("import socket,sys\ns=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
            f"s.bind(('0.0.0.0', {port})); s.listen(8); print('ready', flush=True)\n"
            "while True:\n c, _ = s.accept(); c.sendall(b'hello'); c.close()\n")
    proc = subprocess.Popen(["ip", "netns", "exec", ns, "python3", "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
    return proc


def _fetch(ns: str | None, address: str, port: int) -> str:
    code = (f"import socket\ns=socket.create_connection(({address!r}, {port}), timeout=3)\n"
            "print(s.recv(100).decode())")
    argv = ["python3", "-c", code]
    done = subprocess.run(argv if ns is None else ["ip", "netns", "exec", ns, *argv], capture_output=True,
                          text=True, timeout=20, check=False)
    return done.stdout.strip()


def test_published_port_from_outside_from_the_host_and_hairpin(cni: Cni, data: str) -> None:
    # an "outside" client: a namespace routed to the host over a veth of its own
    subprocess.run(["ip", "netns", "add", "out"], check=True)
    for argv in (["ip", "link", "add", "uplink", "type", "veth", "peer", "name", "eth0", "netns", "out"],
                 ["ip", "addr", "add", "192.0.2.1/24", "dev", "uplink"], ["ip", "link", "set", "uplink", "up"],
                 ["ip", "-n", "out", "addr", "add", "192.0.2.2/24", "dev", "eth0"],
                 ["ip", "-n", "out", "link", "set", "eth0", "up"]):
        subprocess.run(argv, check=True)
    conf = {**bridge_conf("net1", "vlbr0", "10.88.0.0/24", data), "capabilities": {"portMappings": True},
            "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}}
    cni.add(conf, "web", netns("web"))
    cni.add(bridge_conf("net1", "vlbr0", "10.88.0.0/24", data), "other", netns("other"))
    server = _serve("web", 80)
    try:
        assert _fetch("out", "192.0.2.1", 8080) == "hello"  # from outside
        assert _fetch(None, "127.0.0.1", 8080) == "hello"  # from the host, loopback
        assert _fetch(None, "192.0.2.1", 8080) == "hello"  # from the host, its own address
        assert _fetch("other", "192.0.2.1", 8080) == "hello"  # hairpin: a container of the same bridge
    finally:
        server.kill()
        server.wait()


def test_several_ipmasq_networks_each_keep_their_nat(cni: Cni, data: str) -> None:
    cni.add(bridge_conf("net1", "vlbr1", "10.88.1.0/24", data), "a", netns("a"))
    cni.add(bridge_conf("net2", "vlbr2", "10.88.2.0/24", data), "b", netns("b"))
    rules = subprocess.run(["nft", "list", "table", "inet", "vethlab-cni"], capture_output=True, text=True,
                           check=True).stdout
    assert 'ip saddr 10.88.1.0/24 oifname != "vlbr1" masquerade' in rules
    assert 'ip saddr 10.88.2.0/24 oifname != "vlbr2" masquerade' in rules


# -- DEL ------------------------------------------------------------------------------------------
def test_del_restores_everything_and_is_idempotent(cni: Cni, data: str) -> None:
    conf = {**bridge_conf("net1", "vlbr0", "10.88.0.0/24", data),
            "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80}]}}
    path = netns("c1")
    cni.delete(conf, "c1", path, prev=cni.add(conf, "c1", path))  # the bridge and NAT stay, as the reference's do
    before = snapshot(data, state_dir())
    out = cni.add(conf, "c1", path)
    assert snapshot(data, state_dir()) != before
    cni.delete(conf, "c1", path, prev=out)
    assert snapshot(data, state_dir()) == before
    cni.delete(conf, "c1", path, prev=out)  # again: nothing to do, still success
    cni.delete(conf, "never-added", path)
    assert snapshot(data, state_dir()) == before


def test_del_cleans_up_from_saved_state_when_the_namespace_is_gone(cni: Cni, data: str) -> None:
    conf = {**bridge_conf("net1", "vlbr0", "10.88.0.0/24", data),
            "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80}]}}
    path = netns("warm")
    cni.delete(conf, "warm", path, prev=cni.add(conf, "warm", path))
    before = snapshot(data, state_dir())
    out = cni.add(conf, "c1", netns("c1"))
    subprocess.run(["ip", "netns", "del", "c1"], check=True)
    # the runtime's DEL: no namespace, and a config without the port mappings or the ipam section
    bare = {k: v for k, v in conf.items() if k not in ("runtimeConfig", "ipam")}
    cni.delete(bare, "c1", "", prev=out)
    assert snapshot(data, state_dir()) == before  # no lease, no DNAT rule, no record left


def test_del_after_a_failed_add_succeeds(cni: Cni, data: str) -> None:
    """Podman calls DEL after a failed ADD: here ADD fails (the interface exists)."""
    conf = bridge_conf("net1", "vlbr0", "10.88.0.0/24", data)
    path = netns("c1")
    cni.delete(conf, "c1", path, prev=cni.add(conf, "c1", path))
    before = snapshot(data, state_dir())
    subprocess.run(["ip", "-n", "c1", "link", "add", "eth0", "type", "veth", "peer", "name", "x0"], check=True)
    answer = cni.call("ADD", conf, "c1", path)
    assert answer.status == 1 and answer.json["code"] == 101 and "already exists" in answer.json["details"]
    assert snapshot(data, state_dir()) == before  # the failed ADD rolled back its lease and veth
    cni.delete(conf, "c1", path)
    assert snapshot(data, state_dir()) == before


def test_vethlab_clean_leaves_the_plugin_s_networks_alone(cni: Cni, data: str) -> None:
    """`vethlab clean --all` removes labs by their markers; a runtime's containers and
    the plugin's table carry other markers and stay."""
    conf = {**bridge_conf("net1", "vlbr0", "10.88.0.0/24", data),
            "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80}]}}
    cni.add(conf, "c1", netns("c1"))
    before = snapshot(data, state_dir())
    vethlab("clean", "--all", check=True)
    assert snapshot(data, state_dir()) == before


# -- CHECK, GC, STATUS ---------------------------------------------------------------------------------
def test_check(cni: Cni, data: str) -> None:
    conf = bridge_conf("net1", "vlbr0", "10.88.0.0/24", data)
    path = netns("c1")
    out = cni.add(conf, "c1", path)
    assert cni.check(conf, "c1", path, out).status == 0
    missing = cni.call("CHECK", conf, "c1", path)
    assert missing.status == 1 and missing.json["code"] == 7 and "prevResult" in missing.json["details"]
    old = cni.check({**conf, "cniVersion": "0.3.1"}, "c1", path, out)
    assert old.status == 1 and old.json["code"] == 1
    subprocess.run(["ip", "-n", "c1", "addr", "flush", "dev", "eth0"], check=True)
    broken = cni.check(conf, "c1", path, out)
    assert broken.status == 1 and broken.json["code"] == 105 and "10.88.0.2/24" in broken.json["details"]
    unknown = cni.check(conf, "c9", path, out)
    assert unknown.status == 1 and unknown.json["code"] == 3


@pytest.mark.parametrize("own_ipam", [False, True], ids=["delegated", "own"])
def test_gc_removes_what_is_not_valid(cni: Cni, data: str, own_ipam: bool) -> None:
    if own_ipam:
        cni.env["VETHLAB_CNI_IPAM"] = "own"
    conf = {**bridge_conf("net1", "vlbr0", "10.88.0.0/24", data, "1.1.0"),
            "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80}]}}
    path = netns("keep")
    kept = cni.add({**conf, "runtimeConfig": {}}, "keep", path)
    before = snapshot(data, state_dir())
    for name in ("gone1", "gone2"):
        cni.add(conf, name, netns(name))
    assert cni.gc(conf, [("keep", "eth0")]).status == 0
    assert snapshot(data, state_dir()) == before
    assert cni.check(conf, "keep", path, kept).status == 0
    assert cni.gc({**conf, "cniVersion": "1.0.0"}, []).json["code"] == 1  # GC is 1.1.0's


def test_gc_keeps_going_past_a_damaged_record(cni: Cni, data: str) -> None:
    """One attachment's record is damaged: GC says so (an error at the end) after
    collecting everything else -- the other stale attachment whole, and of the
    damaged one all that its name tells (host end, published port, lease).  A valid
    attachment whose record is damaged keeps its interface."""
    conf = bridge_conf("net1", "vlbr0", "10.88.0.0/24", data, "1.1.0")
    records = os.path.join(state_dir(), "net1")
    keep = netns("keep")
    cni.add(conf, "keep", keep)
    with open(os.path.join(records, "keep:eth0.json"), "wb") as fh:
        fh.write(b"{damaged")
    before = snapshot(data, state_dir())
    for name, port in (("gone1", 8080), ("gone2", 8081)):
        cni.add({**conf, "runtimeConfig": {"portMappings": [{"hostPort": port, "containerPort": 80}]}}, name,
                netns(name))
    with open(os.path.join(records, "gone1:eth0.json"), "wb") as fh:
        fh.write(b"{damaged")
    answer = cni.gc(conf, [("keep", "eth0")])
    assert answer.status == 1 and answer.json["code"] == 100, answer
    assert "gone1:eth0.json is damaged" in answer.json["details"] and "keep" not in answer.json["details"]
    assert snapshot(data, state_dir()) == {**before, "files": {**before["files"], "net1/gone1:eth0.json": b"{damaged"}}
    assert in_ns("keep", "ping", "-c1", "-W2", "10.88.0.1").returncode == 0


FAKE_IPAM = """#!{python} -I
import json, os, sys
with open(os.environ["FAKE_IPAM_LOG"], "a") as fh:
    fh.write(os.environ["CNI_COMMAND"] + "\\n")
if os.environ["CNI_COMMAND"] == "VERSION":
    print(json.dumps({{"cniVersion": "1.1.0", "supportedVersions": ["0.4.0", "1.0.0", "1.1.0"]}}))
elif os.environ["CNI_COMMAND"] == "STATUS" and os.environ.get("FAKE_IPAM_STATUS"):
    print(json.dumps({{"cniVersion": "1.1.0", "code": int(os.environ["FAKE_IPAM_STATUS"]), "msg": "pool exhausted"}}))
    sys.exit(1)
"""


def test_status_and_gc_are_forwarded_to_an_ipam_plugin_that_speaks_1_1_0(cni: Cni, data: str, tmp_path) -> None:
    """As the reference bridge plugin does: STATUS and GC go on to the delegated IPAM
    plugin when it supports 1.1.0 (an IPAM plugin of the test's: the reference
    host-local here stops at 1.0.0 and is not asked, test_status); its 50 or 51 is
    ours, any other failure is 50."""
    log = tmp_path / "ipam.log"
    plugin = os.path.join(cni.path[0], "fake-ipam")
    with open(plugin, "w") as fh:
        fh.write(FAKE_IPAM.format(python=sys.executable))
    os.chmod(plugin, 0o755)
    conf = {**bridge_conf("net1", "vlbr0", "10.88.0.0/24", data, "1.1.0"), "ipam": {"type": "fake-ipam"}}
    env = {"FAKE_IPAM_LOG": str(log)}
    assert cni.status(conf, env=env).status == 0
    assert log.read_text().split() == ["VERSION", "STATUS"]
    for theirs, ours in ((50, 50), (51, 51), (7, 50)):
        answer = cni.status(conf, env={**env, "FAKE_IPAM_STATUS": str(theirs)})
        assert answer.status == 1 and answer.json["code"] == ours and "pool exhausted" in answer.json["details"]
    log.write_text("")
    assert cni.gc(conf, [], env=env).status == 0
    assert log.read_text().split() == ["VERSION", "GC"]  # GC too: no DEL per lease for a delegate that has GC


def test_status(cni: Cni, data: str) -> None:
    conf = bridge_conf("net1", "vlbr0", "10.88.0.0/24", data, "1.1.0")
    assert cni.status(conf).status == 0
    no_ipam = cni.status({**conf, "ipam": {**conf["ipam"], "type": "no-such-ipam"}})
    assert no_ipam.status == 1 and no_ipam.json["code"] == 50
    cni.add(conf, "c1", netns("c1"))
    subprocess.run(["ip", "link", "set", "vlbr0", "down"], check=True)
    down = cni.status(conf)
    assert down.status == 1 and down.json["code"] == 51
    assert cni.status({**conf, "cniVersion": "1.0.0"}).json["code"] == 1


# -- concurrency -------------------------------------------------------------------------------------------
def test_concurrent_adds_never_share_an_address(cni: Cni, data: str) -> None:
    conf = bridge_conf("net1", "vlbr0", "10.88.0.0/24", data)
    names = [f"c{i}" for i in range(16)]
    paths = {name: netns(name) for name in names}
    results: dict[str, Any] = {}

    def one(name: str) -> None:
        results[name] = cni.call("ADD", conf, name, paths[name])

    threads = [threading.Thread(target=one, args=(name,)) for name in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.status == 0 for r in results.values()), [r for r in results.values() if r.status]
    addresses = [r.json["ips"][0]["address"] for r in results.values()]
    assert len(set(addresses)) == len(names)
    for name in names:  # and each container really holds its own
        (eth0,) = [link for link in ip_json("-n", name, "addr", "show") if link["ifname"] == "eth0"]
        assert [f"{a['local']}/{a['prefixlen']}" for a in eth0["addr_info"] if a["family"] == "inet"] == \
            [results[name].json["ips"][0]["address"]]


def test_concurrent_adds_and_dels_never_interleave(cni: Cni, data: str) -> None:
    """Half the containers leave while as many arrive: the network ends with exactly
    the newcomers, each on its own address, lease and bridge port."""
    conf = bridge_conf("net1", "vlbr0", "10.88.0.0/24", data)
    old = [f"old{i}" for i in range(8)]
    new = [f"new{i}" for i in range(8)]
    paths = {name: netns(name) for name in old + new}
    for name in old:
        cni.add(conf, name, paths[name])
    answers: dict[str, Any] = {}

    def one(command: str, name: str) -> None:
        answers[name] = cni.call(command, conf, name, paths[name])

    threads = [threading.Thread(target=one, args=("DEL", name)) for name in old] + \
        [threading.Thread(target=one, args=("ADD", name)) for name in new]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(a.status == 0 for a in answers.values()), [a for a in answers.values() if a.status]
    addresses = {name: answers[name].json["ips"][0]["address"].split("/")[0] for name in new}
    assert len(set(addresses.values())) == len(new)
    leases = {n: open(os.path.join(data, "net1", n), newline="").read() for n in os.listdir(os.path.join(data, "net1"))
              if n[0].isdigit()}
    assert leases == {ip: f"{name}\r\neth0" for name, ip in addresses.items()}
    ports = [link["ifname"] for link in ip_json("link", "show", "master", "vlbr0")]
    assert sorted(ports) == sorted(answers[name].json["interfaces"][1]["name"] for name in new)
    assert sorted(os.listdir(os.path.join(state_dir(), "net1"))) == sorted(f"{name}:eth0.json" for name in new)


def test_lock_timeout_is_try_again_later(cni: Cni, data: str) -> None:
    conf = bridge_conf("net1", "vlbr0", "10.88.0.0/24", data)
    os.makedirs(state_dir(), mode=0o700, exist_ok=True)
    fd = os.open(os.path.join(state_dir(), "net1.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        answer = cni.call("ADD", conf, "c1", netns("c1"), env={"VETHLAB_CNI_LOCK_WAIT": "0.2"})
    finally:
        os.close(fd)
    assert answer.status == 1 and answer.json["code"] == 11 and answer.json["msg"] == "try again later"
    assert [link["ifname"] for link in ip_json("-n", "c1", "link", "show")] == ["lo"]
    assert cni.add(conf, "c1", "/run/netns/c1")["ips"][0]["address"] == "10.88.0.2/24"  # nothing was taken


# -- errors: CNI error objects, never a traceback ------------------------------------------------------
@pytest.mark.parametrize("case,code", [
    ("version", 1), ("unsupported", 2), ("environment", 4), ("not-a-netns", 4), ("decoding", 6), ("config", 7),
    ("foreign", 101),
])
def test_errors_are_cni_error_objects(cni: Cni, data: str, case: str, code: int) -> None:
    conf: Any = bridge_conf("net1", "vlbr0", "10.88.0.0/24", data)
    path = netns("c1")
    env: dict[str, str] = {}
    cid = "c1"
    if case == "version":
        conf["cniVersion"] = "9.9.9"
    elif case == "unsupported":
        conf["vlan"] = 100
    elif case == "environment":
        cid = ""
    elif case == "not-a-netns":
        path = "/etc/hostname"
    elif case == "decoding":
        conf = b"{not json"
    elif case == "config":
        conf["mtu"] = "big"
    elif case == "foreign":
        subprocess.run(["ip", "link", "add", "vlbr0", "type", "bridge"], check=True)
    answer = cni.call("ADD", conf, cid, path, env=env, plugin="vethlab")
    assert answer.status == 1, answer
    assert set(answer.json) == {"cniVersion", "code", "msg", "details"} and answer.json["code"] == code
    assert "Traceback" not in answer.stdout + answer.stderr
    assert [link["ifname"] for link in ip_json("-n", "c1", "link", "show")] == ["lo"]
    assert [link["ifname"] for link in ip_json("link", "show")] == ["lo"] + (["vlbr0"] if case == "foreign" else [])


# -- IPAM ------------------------------------------------------------------------------------------
def test_own_ipam_when_host_local_is_missing_shares_the_store_with_it(tmp_path, data: str) -> None:
    only_us = str(tmp_path / "only-us")
    os.makedirs(only_us)
    subprocess.run([os.path.join(os.path.dirname(os.sys.executable), "vethlab-cni"), "install", only_us], check=True)
    ours, full = Cni(only_us), Cni(install(str(tmp_path / "bin2")))
    conf = bridge_conf("net1", "vlbr0", "10.88.0.0/24", data)
    a = ours.add(conf, "a", netns("a"))  # no host-local in CNI_PATH: our allocator
    b = full.add(conf, "b", netns("b"))  # the reference host-local, same store
    c = ours.add(conf, "c", netns("c"))
    assert [x["ips"][0]["address"] for x in (a, b, c)] == ["10.88.0.2/24", "10.88.0.3/24", "10.88.0.4/24"]
    with open(os.path.join(data, "net1", "10.88.0.2"), "rb") as fh:
        assert fh.read() == b"a\r\neth0"  # host-local's lease format
    full.delete(conf, "a", "/run/netns/a")  # host-local releases a lease our allocator took
    assert not os.path.exists(os.path.join(data, "net1", "10.88.0.2"))


def test_chained_plugins_get_our_result_as_prev_result(cni: Cni, data: str) -> None:
    """A conflist with the reference `tuning` plugin after vethlab: prevResult flows
    through it unchanged, and the sysctl it sets lands on our interface."""
    ours = {k: v for k, v in bridge_conf("net1", "vlbr0", "10.88.0.0/24", data).items()
            if k not in ("cniVersion", "name")}
    conflist = {"cniVersion": "1.0.0", "name": "net1", "plugins": [
        ours, {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.rp_filter": "2"}}]}
    out = cni.add_list(conflist, "c1", netns("c1"))
    assert out["ips"] == [{"interface": 2, "address": "10.88.0.2/24", "gateway": "10.88.0.1"}]
    assert in_ns("c1", "cat", "/proc/sys/net/ipv4/conf/eth0/rp_filter").stdout.strip() == "2"
    assert cni.check({"cniVersion": "1.0.0", "name": "net1", **ours}, "c1", "/run/netns/c1", out).status == 0


# -- network names that look like the plugin's own state files (review) ------------------------------
def test_network_names_cannot_land_on_the_plugin_s_own_files(cni: Cni, data: str) -> None:
    """A network `firewall` once shared its lock with the firewall's (every ADD waited
    on itself, then code 11); a network `firewall.json` made a directory where the
    firewall's record goes (every other network's NAT then failed); `a.lock` squats
    network `a`'s lock."""
    env = {"VETHLAB_CNI_LOCK_WAIT": "1"}
    for i, name in enumerate(["firewall", "firewall.json", "net1"]):
        conf = bridge_conf(name, f"vlbr{i}", f"10.88.{i}.0/24", data)
        answer = cni.call("ADD", conf, f"c{i}", netns(f"c{i}"), env=env)
        assert answer.status == 0, (name, answer)
        assert answer.json["ips"][0]["address"] == f"10.88.{i}.2/24"
    answer = cni.call("ADD", bridge_conf("net1.lock", "vlbr9", "10.88.9.0/24", data), "c9", netns("c9"), env=env)
    assert answer.status == 1 and answer.json["code"] == 7 and "'.lock'" in answer.json["details"], answer


def test_a_port_a_host_process_listens_on_is_not_taken_over(cni: Cni, data: str) -> None:
    """portMappings on a port the host already serves would DNAT its traffic (from
    outside and from 127.0.0.1) into the container: refused, code 101, nothing built."""
    import socket

    with socket.socket() as listener:
        listener.bind(("0.0.0.0", 8080))
        listener.listen()
        conf = bridge_conf("net1", "vlbr0", "10.88.0.0/24", data, capabilities={"portMappings": True},
                           runtimeConfig={"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]})
        before = snapshot(data, state_dir())
        answer = cni.call("ADD", conf, "c1", netns("c1"))
        assert answer.status == 1 and answer.json["code"] == 101 and "8080/tcp" in answer.json["details"], answer
        assert snapshot(data, state_dir()) == before
        udp = {**conf, "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "udp"}]}}
        assert cni.add(udp, "c1", "/run/netns/c1")["ips"][0]["address"] == "10.88.0.2/24"  # another protocol: fine


def test_attachments_whose_id_and_ifname_join_alike_are_kept_apart(cni: Cni, data: str) -> None:
    """Container "a.b" on eth0 and container "a" on "b.eth0" once shared one record
    file (CID.IFNAME.json): the second ADD overwrote the first's record and DEL of
    the first then removed the second's host end."""
    conf = bridge_conf("net1", "vlbr0", "10.88.0.0/24", data)
    first = cni.add(conf, "a.b", netns("c1"), ifname="eth0")
    second = cni.add(conf, "a", netns("c2"), ifname="b.eth0")
    cni.delete(conf, "a.b", "/run/netns/c1", ifname="eth0")
    ports = [link["ifname"] for link in ip_json("link", "show", "master", "vlbr0")]
    assert ports == [second["interfaces"][1]["name"]] != [first["interfaces"][1]["name"]]
    assert cni.check(conf, "a", "/run/netns/c2", second, ifname="b.eth0").status == 0


@pytest.mark.parametrize("path", ["/proc/self/ns/net", "/proc/self/ns/mnt"])
def test_cni_netns_must_be_a_container_s_network_namespace(cni: Cni, data: str, path: str) -> None:
    """(review) CNI_NETNS naming the plugin's own namespace made the "container" end,
    its address and its routes in the host namespace; a mount namespace file ended
    in a kernel error (100).  Both are code 4, with nothing built."""
    conf = bridge_conf("net1", "vlbr0", "10.88.0.0/24", data)
    before = snapshot(data)
    answer = cni.call("ADD", conf, "c1", path, ifname="ctr0")
    assert answer.status == 1 and answer.json["code"] == 4, answer
    assert snapshot(data) == before


def test_a_subnet_overlapping_the_host_s_addresses_is_refused(cni: Cni, data: str) -> None:
    """(review) A network on the host's own LAN subnet (here: a veth standing for the
    uplink) gave its bridge the LAN's addresses: a second connected route that changed
    how the host reaches its LAN.  Code 101, and the host's routes stay as they were."""
    subprocess.run(["ip", "link", "add", "uplink0", "type", "veth", "peer", "uplink1"], check=True)
    subprocess.run(["ip", "addr", "add", "192.168.77.5/24", "dev", "uplink0"], check=True)
    subprocess.run(["ip", "link", "set", "uplink0", "up"], check=True)
    routes = ip_json("route", "show")
    for subnet in ("192.168.77.0/24", "192.168.0.0/16", "127.0.0.0/24"):
        answer = cni.call("ADD", bridge_conf("net1", "vlbr0", subnet, data), "c1", netns("c1"))
        assert answer.status == 1 and answer.json["code"] == 101 and "overlaps" in answer.json["details"], answer
        assert ip_json("route", "show") == routes
        subprocess.run(["ip", "netns", "del", "c1"], check=True)
    assert cni.add(bridge_conf("net1", "vlbr0", "192.168.78.0/24", data), "c1", netns("c1"))["ips"]
