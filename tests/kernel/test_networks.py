"""Docker-style networks on the real kernel: NAT out through a fake internet,
published ports from outside / the host / hairpin, isolation, internal networks,
names, IPAM stability, services, and nothing left after down."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from helpers import ip_json, vethlab

WHOAMI = os.path.join(os.path.dirname(__file__), "..", "data", "whoami.py")
PY = sys.executable

DOCKER = f"""\
name: dock
nodes:
  internet:
    run: ["{PY} {WHOAMI} 9000"]
  web:
    run: ["{PY} {WHOAMI} 80"]
  db: {{}}
  other: {{}}
  secret: {{}}
  secret2: {{}}
links:
  - endpoints: [host:uplink0, internet:eth0]
    addresses: [203.0.113.1/24, 203.0.113.2/24]
networks:
  lan:
    nat: true
    members:
      web: {{publish: ["8080:80/tcp"]}}
      db: {{}}
  other:
    nat: true
    members: {{other: {{}}}}
  vault:
    internal: true
    members: {{secret: {{}}, secret2: {{}}}}
"""


def ask(node: str | None, ip: str, port: int) -> str | None:
    """Connect from `node` (None: the host) to ip:port; the address the server saw."""
    code = (f"import socket\ntry:\n s=socket.create_connection(('{ip}',{port}),2)\n print(s.recv(100).decode())\n"
            "except OSError as e:\n print('ERR', e)")
    argv = [PY, "-c", code]
    if node:
        argv = ["ip", "netns", "exec", node, *argv]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=20).stdout.strip()
    return None if out.startswith("ERR") or not out else out


def ping(node: str, ip: str) -> bool:
    return subprocess.run(["ip", "netns", "exec", node, "ping", "-c1", "-W1", ip], capture_output=True).returncode == 0


def address_of(node: str, ifname: str = "eth0") -> str:
    info = ip_json("-n", node, "addr", "show", ifname)[0]
    return next(a["local"] for a in info["addr_info"] if a["family"] == "inet")


def wait_for_service(node: str, ip: str, port: int) -> None:
    for _ in range(100):
        if ask(node, ip, port) is not None:
            return
    raise AssertionError(f"service {ip}:{port} never answered")


@pytest.fixture
def docker_lab(write):
    path = write(DOCKER)
    vethlab("up", path, check=True)
    wait_for_service("internet", "127.0.0.1", 9000)
    wait_for_service("web", "127.0.0.1", 80)
    yield path
    vethlab("down", path, check=True)


def test_nat_out_to_the_internet_is_masqueraded(docker_lab: str) -> None:
    assert ask("db", "203.0.113.2", 9000) == "203.0.113.1"
    routes = ip_json("-n", "db", "route")
    assert next(r for r in routes if r["dst"] == "default")["gateway"] == "172.30.0.1"


def test_published_port_from_outside_keeps_client_address(docker_lab: str) -> None:
    assert ask("internet", "203.0.113.1", 8080) == "203.0.113.2"


def test_published_port_from_the_host_itself(docker_lab: str) -> None:
    assert ask(None, "203.0.113.1", 8080) is not None
    assert ask(None, "127.0.0.1", 8080) is not None


def test_hairpin_from_another_member(docker_lab: str) -> None:
    assert ask("db", "203.0.113.1", 8080) == "172.30.0.1"


def test_networks_are_isolated(docker_lab: str) -> None:
    web = address_of("web")
    other = address_of("other")
    assert not ping("other", web) and not ping("db", other)
    assert ping("db", web), "members of one network reach each other"


def test_internal_network_has_no_way_out(docker_lab: str) -> None:
    assert ping("secret", address_of("secret2"))
    assert not [r for r in ip_json("-n", "secret", "route") if r["dst"] == "default"]
    assert not ping("secret", "203.0.113.2") and not ping("secret", address_of("web"))
    assert not ip_json("addr", "show", "vb.dock.vault")[0].get("addr_info", [{"family": "inet6"}])[0]["family"] == "inet"


def test_names_resolve_to_network_addresses(docker_lab: str) -> None:
    r = vethlab("exec", "db", "--", "getent", "hosts", "web", timeout=8)
    assert r.returncode == 0 and r.stdout.split()[0] == address_of("web")
    assert ping("db", "web")


def test_status_and_rerun_are_stable(docker_lab: str, write) -> None:
    before = {n: address_of(n) for n in ("web", "db", "other", "secret")}
    assert "no changes" in vethlab("up", docker_lab, check=True).stdout
    # a new member before db: IPAM keeps every existing address
    grown = DOCKER.replace("      db: {}\n", "      newbie: {}\n      db: {}\n").replace("  db: {}\n", "  db: {}\n  newbie: {}\n", 1)
    vethlab("up", write(grown, "grown.yaml"), check=True)
    assert {n: address_of(n) for n in before} == before
    assert address_of("newbie") not in before.values()
    vethlab("up", docker_lab, check=True)


def test_subnets_avoid_other_labs_and_host_addresses(write) -> None:
    subprocess.run(["ip", "link", "add", "taken0", "type", "veth", "peer", "taken1"], check=True)
    subprocess.run(["ip", "addr", "add", "172.30.0.5/24", "dev", "taken0"], check=True)
    one = write("name: one\nnodes: {a: {}}\nnetworks: {n: {members: {a: {}}}}\n", "one.yaml")
    two = write("name: two\nnodes: {b: {}}\nprefix: true\nnetworks: {n: {members: {b: {}}}}\n", "two.yaml")
    vethlab("up", one, check=True)
    vethlab("up", two, check=True)
    assert address_of("a").startswith("172.30.1.") and address_of("two-b").startswith("172.30.2.")
    clash = write("name: three\nnodes: {c: {}}\nnetworks: {n: {subnet: 172.30.0.0/16, members: {c: {}}}}\n", "3.yaml")
    r = vethlab("up", clash)
    assert r.returncode == 1 and "overlaps" in r.stderr and "nothing was changed" in r.stderr
    for path in (one, two):
        vethlab("down", path, check=True)


def test_down_leaves_nothing(write) -> None:
    path = write(DOCKER)
    vethlab("up", path, check=True)
    wait_for_service("web", "127.0.0.1", 80)
    forward = open("/proc/sys/net/ipv4/ip_forward").read().strip()
    assert forward == "1"
    vethlab("down", path, check=True)
    assert subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout.strip() == ""
    assert [link["ifname"] for link in ip_json("link")] == ["lo"]
    assert os.listdir("/etc/netns") == [] and os.listdir("/run/netns") == []
    assert os.listdir(os.environ["VETHLAB_STATE_DIR"]) == []
    assert open("/proc/sys/net/ipv4/ip_forward").read().strip() == "0"
    leftovers = [p for p in os.listdir("/proc") if p.isdigit() and "whoami" in _cmdline(p)]
    assert leftovers == []


def _cmdline(pid: str) -> str:
    try:
        return open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
    except OSError:
        return ""


def test_plan_json_shows_the_firewall(write) -> None:
    doc = json.loads(vethlab("plan", write(DOCKER), "--json", check=True).stdout)
    fw = [a for a in doc["actions"] if a["kind"] == "firewall"]
    assert len(fw) == 1 and fw[0]["target"] == "host: table inet vethlab_dock"


# -- bridging to a (stand-in) physical LAN ------------------------------------------------------
@pytest.fixture
def fake_lan() -> None:
    """A namespace `lan` standing in for the physical LAN, reached through lan0 (for an
    uplink) and lan1 (for a macvlan parent): veths standing in for real NICs."""
    run = lambda *a: subprocess.run(list(a), check=True)  # noqa: E731
    run("ip", "netns", "add", "lan")
    # distinct ifindexes on the two ends: carrier is then immediate, as on a real NIC
    run("ip", "link", "add", "lan0", "index", "40", "type", "veth", "peer", "eth0", "index", "41", "netns", "lan")
    run("ip", "link", "add", "lan1", "index", "42", "type", "veth", "peer", "eth1", "index", "43", "netns", "lan")
    run("ip", "-n", "lan", "addr", "add", "10.99.0.1/24", "dev", "eth0")
    run("ip", "-n", "lan", "addr", "add", "10.98.0.1/24", "dev", "eth1")
    for dev in ("eth0", "eth1", "lo"):
        run("ip", "-n", "lan", "link", "set", dev, "up")
    run("ip", "link", "set", "lan1", "up")


PHYS = """\
name: phys
nodes: {a: {}, b: {}}
networks:
  bridged: {uplinks: [lan0], subnet: 10.99.0.0/24, members: {a: {ip: 10.99.0.10}}}
  mac: {driver: macvlan, parent: lan1, subnet: 10.98.0.0/24, members: {b: {ip: 10.98.0.20}}}
"""


def test_uplink_and_macvlan_reach_the_lan(fake_lan: None, write) -> None:
    before = ip_json("link", "show", "lan0")[0]
    mode = ip_json("-d", "link", "show", "lan0")[0]["inet6_addr_gen_mode"]
    path = write(PHYS)
    vethlab("up", path, check=True)
    assert ping("a", "10.99.0.1") and ping("b", "10.98.0.1")
    assert ip_json("link", "show", "lan0")[0]["master"] == "vb.phys.bridged"
    # the lab's own ports get no IPv6 link-local address (kernel/rtnl.py); the host's uplink keeps its mode
    assert ip_json("-d", "link", "show", "lan0")[0]["inet6_addr_gen_mode"] == mode == "eui64"
    assert not [r for r in ip_json("-n", "a", "route") if r["dst"] == "default"], "uplinks: no gateway by default"
    vethlab("down", path, check=True)
    after = ip_json("link", "show", "lan0")[0]
    assert "master" not in after and after["flags"] == before["flags"]
    assert os.listdir("/run/netns") == ["lan"]


def test_uplink_with_addresses_is_refused(fake_lan: None, write) -> None:
    subprocess.run(["ip", "addr", "add", "10.99.0.2/24", "dev", "lan0"], check=True)
    r = vethlab("up", write(PHYS))
    assert r.returncode == 1 and "uplink lan0 carries addresses (10.99.0.2/24)" in r.stderr
    assert sorted(os.listdir("/run/netns")) == ["lan"]


def test_status_shows_services_running_then_exited(write) -> None:
    # a service that dies during `up` fails it (test_services.py); this one dies after
    path = write("name: svc\nnodes:\n  a:\n    run: [\"sleep 300\", \"sh -c 'sleep 2; exit 3'\"]\n")
    vethlab("up", path, check=True)
    import time

    time.sleep(2.5)
    services = json.loads(vethlab("status", "--json", check=True).stdout)["services"]
    assert [(s["command"], s["state"]) for s in services] == [("sleep 300", "running"),
                                                               ("sh -c sleep 2; exit 3", "exited")]
    assert "exited" in vethlab("status", check=True).stdout
    # a re-run `up` restarts the service that died, and only that one
    r = vethlab("up", path, check=True)
    assert "1 service" in r.stdout
    vethlab("down", path, check=True)
    assert not [p for p in os.listdir("/proc") if p.isdigit() and "sleep300" in _cmdline(p).replace("\0", "")]
