"""One lab across two and three simulated machines (SPEC §7): each machine runs
`vethlab up FILE` (recognising itself by its underlay address, or told with
--machine) and builds only its part; links across machines are VXLAN devices,
a spanning network is one bridge per machine joined by VXLAN."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from vethlab.kernel import machines

CHAIN = """\
name: chain
machines:
  m1: {address: 10.200.0.1}
  m2: {address: 10.200.0.2}
  m3: {address: 10.200.0.3}
nodes:
  a: {machine: m1, routes: ["10.0.2.0/24 via 10.0.1.2", "fd00:2::/64 via fd00:1::2"]}
  b: {machine: m2, sysctls: {net.ipv4.ip_forward: 1, net.ipv6.conf.all.forwarding: 1}}
  c: {machine: m3, routes: ["10.0.1.0/24 via 10.0.2.1", "fd00:1::/64 via fd00:2::1"]}
  d: {machine: m1}
links:
  - endpoints: [a:e0, b:e0]
    addresses: [[10.0.1.1/24, "fd00:1::1/64"], [10.0.1.2/24, "fd00:1::2/64"]]
  - endpoints: [b:e1, c:e0]
    addresses: [[10.0.2.1/24, "fd00:2::1/64"], [10.0.2.2/24, "fd00:2::2/64"]]
  - endpoints: [a:e9, d:e9]
    addresses: [10.0.9.1/24, 10.0.9.2/24]
"""

SPAN = """\
name: span
machines:
  m1: {address: 10.200.0.1}
  m2: {address: 10.200.0.2}
  m3: {address: 10.200.0.3}
nodes:
  a: {machine: m1}
  b: {machine: m2}
  c: {machine: m3}
networks:
  lan:
    subnet: 172.31.0.0/24
    subnet6: fd00:31::/64
    machine: m2
    members: {a: {}, b: {}, c: {}}
"""

Run = Callable[..., subprocess.CompletedProcess[str]]


class Cluster:
    def __init__(self, made: list[machines.Machine], tmp: Path) -> None:
        self.by_name = {m.name: m for m in made}
        self.tmp = tmp
        # as `vethlab sandbox --machines` exports it: how a machine reaches the others
        self.env = {**os.environ, machines.ENV: machines.export(made)}

    def file(self, text: str, name: str = "lab.yaml") -> str:
        path = self.tmp / name
        path.write_text(textwrap.dedent(text))
        return str(path)

    def run(self, machine: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(machines.on_command(self.by_name[machine], list(argv)), capture_output=True, text=True,
                           timeout=120, env=self.env)
        if check and r.returncode != 0:
            raise AssertionError(f"{machine}: {' '.join(argv)} exited {r.returncode}:\n{r.stdout}\n{r.stderr}")
        return r

    def vethlab(self, machine: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(machine, sys.executable, "-m", "vethlab", *args, check=check)

    def up_everywhere(self, path: str) -> None:
        for name in self.by_name:
            self.vethlab(name, "up", path)

    def snapshot(self, machine: str) -> dict[str, Any]:
        """Everything of a machine a lab can touch: its links (with addresses) and
        every namespace's links and routes, whole."""
        out: dict[str, Any] = {}
        spaces = [None] + json.loads(self.run(machine, "ip", "-j", "netns", "list").stdout or "[]")
        for space in spaces:
            ns = [] if space is None else ["-n", space["name"]]
            key = "host" if space is None else space["name"]
            links = json.loads(self.run(machine, "ip", *ns, "-j", "-d", "addr", "show").stdout)
            for link in links:  # counters and timers move by themselves
                for volatile in ("stats64", "addr_info_dynamic"):
                    link.pop(volatile, None)
                # lifetimes count down; a new link-local address is tentative until DAD ends
                link["addr_info"] = [{k: v for k, v in a.items()
                                      if k not in ("valid_life_time", "preferred_life_time", "tentative")}
                                     for a in link.get("addr_info", [])]
            out[key] = {"links": links,
                        "routes": json.loads(self.run(machine, "ip", *ns, "-j", "route", "show").stdout)}
        return out


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    made = machines.start(["m1", "m2", "m3"])
    yield Cluster(made, tmp_path)
    machines.stop(made)


def ping(c: Cluster, machine: str, node: str, target: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return c.vethlab(machine, "exec", node, "--", "ping", "-c1", "-W2", *extra, target, check=False)


def test_a_chain_across_three_machines_pings_end_to_end(cluster: Cluster) -> None:
    path = cluster.file(CHAIN)
    cluster.up_everywhere(path)
    for target in ("c", "10.0.2.2", "fd00:2::2"):  # by name, IPv4, IPv6: two VXLAN hops and a router
        r = ping(cluster, "m1", "a", target)
        assert r.returncode == 0, r.stdout + r.stderr
    r = ping(cluster, "m3", "c", "fd00:1::1", "-6")
    assert r.returncode == 0, r.stdout + r.stderr
    status = json.loads(cluster.vethlab("m1", "status", "--json").stdout)
    assert {(i["node"], i["name"]): i["peer"] for i in status["interfaces"]} == {
        ("a", "e0"): "m2/b:e0", ("a", "e9"): "d:e9", ("d", "e9"): "a:e9"}
    assert [n["name"] for n in status["nodes"]] == ["a", "d"]
    middle = json.loads(cluster.vethlab("m2", "status", "--json", "--machine", "m2").stdout)
    assert sorted(i["peer"] for i in middle["interfaces"]) == ["m1/a:e0", "m3/c:e0"]
    for name in ("m1", "m2", "m3"):
        assert cluster.vethlab(name, "plan", path).stdout.strip().endswith("no changes")


def test_pingall_covers_the_pairs_whose_source_is_here(cluster: Cluster) -> None:
    path = cluster.file(CHAIN)
    cluster.up_everywhere(path)
    result = json.loads(cluster.vethlab("m2", "pingall", "--json").stdout)
    assert result["ok"] is True
    assert sorted((p["src"], p["dst"], p["address"]) for p in result["pairs"]) == [
        ("b", "a", "10.0.1.1"), ("b", "a", "fd00:1::1"), ("b", "c", "10.0.2.2"), ("b", "c", "fd00:2::2")]


def test_the_machine_is_named_or_recognised_and_a_wrong_one_is_exit_2(cluster: Cluster) -> None:
    path = cluster.file(CHAIN)
    r = cluster.vethlab("m1", "plan", path, "--machine", "m9", check=False)
    assert r.returncode == 2 and "lab chain has no machine m9 (machines: m1, m2, m3)" in r.stderr
    r = subprocess.run([sys.executable, "-m", "vethlab", "plan", path], capture_output=True, text=True)
    assert r.returncode == 2 and "say which machine this is with --machine NAME" in r.stderr
    assert cluster.vethlab("m1", "plan", path, "--machine", "m1").stdout.startswith("lab chain on machine m1: ")


def test_mtu_sized_df_ping_passes_and_one_byte_more_fails(cluster: Cluster) -> None:
    path = cluster.file(CHAIN)
    cluster.up_everywhere(path)
    ok = ping(cluster, "m1", "a", "10.0.1.2", "-M", "do", "-s", "1422")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    big = ping(cluster, "m1", "a", "10.0.1.2", "-M", "do", "-s", "1423")
    assert big.returncode != 0 and "message too long" in (big.stdout + big.stderr).lower()


def test_down_of_one_machine_leaves_the_others_intact(cluster: Cluster) -> None:
    path = cluster.file(CHAIN)
    cluster.up_everywhere(path)
    before = {m: cluster.snapshot(m) for m in ("m1", "m3")}
    macs = cluster.snapshot("m2")["b"]["links"]
    cluster.vethlab("m2", "down", path, "--machine", "m2")
    assert cluster.run("m2", "ip", "netns", "list").stdout == ""
    assert {m: cluster.snapshot(m) for m in ("m1", "m3")} == before
    r = ping(cluster, "m1", "a", "10.0.9.2")  # m1's own link still works
    assert r.returncode == 0, r.stdout + r.stderr
    cluster.vethlab("m2", "up", path)  # and the lab is whole again, at once:
    assert ping(cluster, "m1", "a", "c").returncode == 0
    # the rebuilt ends have the MACs the peers' neighbour caches hold (a reboot is the same)
    assert {i["ifname"]: i["address"] for i in cluster.snapshot("m2")["b"]["links"]} == {
        i["ifname"]: i["address"] for i in macs}


def test_reconcile_of_one_machines_part_leaves_the_others_untouched(cluster: Cluster) -> None:
    path = cluster.file(CHAIN)
    cluster.up_everywhere(path)
    before = {m: cluster.snapshot(m) for m in ("m2", "m3")}
    cluster.file(CHAIN.replace("[10.0.9.1/24, 10.0.9.2/24]", "[10.0.9.1/24, 10.0.9.22/24]"))
    plan = cluster.vethlab("m1", "plan", path).stdout
    assert "10.0.9.22/24 on d:e9" in plan and "e0" not in plan
    cluster.vethlab("m1", "up", path)
    assert {m: cluster.snapshot(m) for m in ("m2", "m3")} == before
    assert ping(cluster, "m1", "a", "10.0.9.22").returncode == 0
    assert ping(cluster, "m1", "a", "c").returncode == 0


def test_a_changed_vni_replaces_the_device(cluster: Cluster) -> None:
    path = cluster.file(CHAIN)
    cluster.up_everywhere(path)
    cluster.file(CHAIN.replace("  - endpoints: [a:e0, b:e0]\n", "  - endpoints: [a:e0, b:e0]\n    vni: 4242\n"))
    plan = cluster.vethlab("m1", "plan", path).stdout
    assert "- interface a:e0: its VNI, addresses or port differ from the file" in plan
    assert "+ vxlan a:e0: across machines: VNI 4242 to 10.200.0.2" in plan
    for name in ("m1", "m2"):
        cluster.vethlab(name, "up", path)
    assert ping(cluster, "m1", "a", "c").returncode == 0
    detail = json.loads(cluster.run("m1", "ip", "-n", "a", "-j", "-d", "link", "show", "e0").stdout)[0]
    assert detail["linkinfo"]["info_data"]["id"] == 4242


def test_a_spanning_network_resolves_names_and_pings_across(cluster: Cluster) -> None:
    path = cluster.file(SPAN)
    cluster.up_everywhere(path)
    for machine, node, target, extra in (("m1", "a", "c", ()), ("m3", "c", "b", ()), ("m2", "b", "fd00:31::2", ("-6",)),
                                         ("m1", "a", "172.31.0.1", ())):
        r = ping(cluster, machine, node, target, *extra)
        assert r.returncode == 0, (machine, target, r.stdout + r.stderr)
    # one gateway, on the machine the file names; every machine's bridge floods to the two others
    gateways = {m: [a["local"] for i in json.loads(cluster.run(m, "ip", "-j", "addr", "show", "vb.span.lan").stdout)
                    for a in i["addr_info"] if a.get("scope") == "global"] for m in ("m1", "m2", "m3")}
    assert gateways == {"m1": [], "m2": ["172.31.0.1", "fd00:31::1"], "m3": []}
    port = json.loads(cluster.run("m1", "ip", "-j", "link", "show", "master", "vb.span.lan", "type", "vxlan").stdout)
    # each machine's port has a MAC of its own: with one MAC everywhere, a bridge that took it
    # (a bridge takes its lowest port's) sent from the address the other machines' bridges
    # hold as their own port's, and they dropped its frames (a -> the gateway failed, mostly)
    macs = [json.loads(cluster.run(m, "ip", "-j", "link", "show", port[0]["ifname"]).stdout)[0]["address"]
            for m in ("m1", "m2", "m3")]
    assert len(set(macs)) == 3, macs
    fdb = json.loads(cluster.run("m1", "bridge", "-j", "fdb", "show", "dev", port[0]["ifname"]).stdout)
    assert sorted(e["dst"] for e in fdb if e["mac"] == "00:00:00:00:00:00") == ["10.200.0.2", "10.200.0.3"]
    hosts = cluster.vethlab("m3", "exec", "c", "--", "cat", "/etc/hosts").stdout
    assert hosts.splitlines()[-3:] == ["172.31.0.2\ta", "172.31.0.3\tb", "172.31.0.4\tc"]
    for name in ("m1", "m2", "m3"):
        assert cluster.vethlab(name, "plan", path).stdout.strip().endswith("no changes")


CRASH = """\
import os, sys
from vethlab import Lab
from vethlab.kernel.rtnl import NetlinkKernel

original = NetlinkKernel.create_vxlan

def create_then_die(self, *args, **kwargs):
    original(self, *args, **kwargs)
    self.flush()
    os._exit(9)  # killed right after the tunnel exists, before it is marked, addressed or recorded

NetlinkKernel.create_vxlan = create_then_die
lab = Lab.load(sys.argv[1])
lab.machine = "m1"
lab.up()
"""


def test_a_crash_of_up_on_one_machine_is_recovered_by_the_next_up_there(cluster: Cluster) -> None:
    path = cluster.file(CHAIN)
    for name in ("m2", "m3"):
        cluster.vethlab(name, "up", path)
    crashed = cluster.run("m1", sys.executable, "-c", CRASH, path, check=False)
    assert crashed.returncode == 9, crashed.stderr
    assert cluster.run("m1", "ip", "-n", "a", "-br", "link", "show", "e0").stdout.startswith("e0")
    before = {m: cluster.snapshot(m) for m in ("m2", "m3")}
    cluster.vethlab("m1", "up", path)
    assert ping(cluster, "m1", "a", "c").returncode == 0
    assert cluster.vethlab("m1", "plan", path).stdout.strip().endswith("no changes")
    assert {m: cluster.snapshot(m) for m in ("m2", "m3")} == before
    cluster.vethlab("m1", "down", path)
    assert cluster.run("m1", "ip", "netns", "list").stdout == ""
    assert [link["ifname"] for link in json.loads(cluster.run("m1", "ip", "-j", "link").stdout)] == ["lo", "eth0"]


#: CHAIN with its a:e0 - b:e0 link (m1 - m2) carrying carrier across
CARRIER_CHAIN = CHAIN.replace("    addresses: [[10.0.1.1/24", "    carrier: true\n    addresses: [[10.0.1.1/24")


def far_end(cluster: Cluster) -> tuple[str, list[str]]:
    """The operational state and flags of b:e0 on m2, the far end of a:e0."""
    link = json.loads(cluster.run("m2", "ip", "-n", "b", "-j", "link", "show", "e0").stdout)[0]
    return link["operstate"], link["flags"]


def test_link_down_all_takes_the_carrier_of_the_far_end(cluster: Cluster) -> None:
    path = cluster.file(CARRIER_CHAIN)
    cluster.up_everywhere(path)
    assert ping(cluster, "m1", "a", "c").returncode == 0

    assert far_end(cluster) == ("UP", ["BROADCAST", "MULTICAST", "UP", "LOWER_UP"])
    down = cluster.vethlab("m1", "link", "down", "a:e0", "--all").stdout
    assert down.startswith("a:e0 is down; m2/b:e0 shows NO-CARRIER (")
    assert far_end(cluster) == ("DOWN", ["NO-CARRIER", "BROADCAST", "MULTICAST", "UP"])
    cluster.vethlab("m1", "link", "up", "a:e0", "--all")
    assert far_end(cluster) == ("UP", ["BROADCAST", "MULTICAST", "UP", "LOWER_UP"])
    assert ping(cluster, "m1", "a", "c").returncode == 0
    # a link without `carrier: true` is refused before its end changes
    refused = cluster.vethlab("m3", "link", "down", "c:e0", "--all", check=False)
    assert refused.returncode == 2 and "without `carrier: true`" in refused.stderr
    assert "UP" in json.loads(cluster.run("m3", "ip", "-n", "c", "-j", "link", "show", "e0").stdout)[0]["flags"]
    for name in ("m1", "m2", "m3"):
        assert cluster.vethlab(name, "plan", path).stdout.strip().endswith("no changes")


def test_node_isolate_and_chaos_all_take_the_carrier_of_the_far_ends(cluster: Cluster) -> None:
    path = cluster.file(CARRIER_CHAIN)
    cluster.up_everywhere(path)
    assert ping(cluster, "m1", "a", "c").returncode == 0

    up = ("UP", ["BROADCAST", "MULTICAST", "UP", "LOWER_UP"])
    isolated = cluster.vethlab("m1", "node", "isolate", "a", "--all").stdout.splitlines()
    assert isolated == ["a:e0 down; m2/b:e0 shows NO-CARRIER", "a:e9 down"]
    assert far_end(cluster) == ("DOWN", ["NO-CARRIER", "BROADCAST", "MULTICAST", "UP"])
    restored = cluster.vethlab("m1", "node", "restore", "a", "--all").stdout.splitlines()
    assert restored == ["a:e0 up; m2/b:e0 shows carrier", "a:e9 up"]
    assert far_end(cluster) == up
    assert ping(cluster, "m1", "a", "c").returncode == 0
    # chaos --all flaps the far side with each flap of a:e0, and leaves every side up
    cluster.vethlab("m1", "chaos", "--duration", "1s", "--seed", "3", "--all")
    assert far_end(cluster) == up
    assert ping(cluster, "m1", "a", "c").returncode == 0
    # b:e1 crosses to m3 without `carrier: true`: refused before any end of b changes
    def states() -> dict[str, Any]:  # every link's flags on m2, in b and in the machine (bridge timers move)
        snap = cluster.snapshot("m2")
        return {ns: {link["ifname"]: (link["flags"], link["operstate"]) for link in snap[ns]["links"]}
                for ns in ("b", "host")}

    before = states()
    refused = cluster.vethlab("m2", "node", "isolate", "b", "--all", check=False)
    assert refused.returncode == 2 and "b:e1 is a link across machines without `carrier: true`" in refused.stderr
    assert states() == before
    for name in ("m1", "m2", "m3"):
        assert cluster.vethlab(name, "plan", path).stdout.strip().endswith("no changes")


def test_another_machine_s_name_on_this_machine_is_exit_2_and_touches_nothing(cluster: Cluster) -> None:
    """(review) `down --machine m2` run on m1 removed m1's whole part (the state here
    is m1's), and `up --machine m2` on m1 would replace it by m2's: refused, as is a
    host holding two machines' underlay addresses with no --machine."""
    path = cluster.file(CHAIN)
    cluster.up_everywhere(path)
    before = cluster.snapshot("m1")
    for command in ("down", "up", "plan"):
        r = cluster.vethlab("m1", command, path, "--machine", "m2", check=False)
        assert r.returncode == 2 and "it is m1 (run with --machine m1, or on m2 itself)" in r.stderr, r.stderr
    # (review) `status --machine m2` on m1 showed m1's nodes as if they were m2's
    r = cluster.vethlab("m1", "status", "--machine", "m2", check=False)
    assert r.returncode == 2 and "it is m1 (run with --machine m1, or on m2 itself)" in r.stderr, r.stderr
    assert r.stdout == ""
    assert cluster.snapshot("m1") == before
    cluster.run("m1", "ip", "addr", "add", "10.200.0.2/32", "dev", "lo")
    r = cluster.vethlab("m1", "plan", path, check=False)
    assert r.returncode == 2 and "addresses of machines m1, m2" in r.stderr, r.stderr
    assert cluster.vethlab("m1", "plan", path, "--machine", "m1").stdout.strip().endswith("no changes")


def test_a_vni_another_lab_holds_here_is_a_conflict_before_anything_is_built(cluster: Cluster) -> None:
    """(review) a second lab with the same VNI and port on one machine failed half-way
    through `up` with the kernel's "VNI already exists" and rolled back: now a conflict
    found by `plan` and `up` before the kernel is touched."""
    two = """\
        name: {lab}
        machines:
          m1: {{address: 10.200.0.1}}
          m2: {{address: 10.200.0.2}}
        nodes:
          {x}: {{machine: m1}}
          {y}: {{machine: m2}}
        links:
          - endpoints: [{x}:e0, {y}:e0]
            addresses: [10.0.1.1/24, 10.0.1.2/24]
            vni: 4242
        """
    first = cluster.file(two.format(lab="one", x="p", y="q"), "one.yaml")
    second = cluster.file(two.format(lab="two", x="r", y="s"), "two.yaml")
    cluster.vethlab("m1", "up", first)
    before = cluster.snapshot("m1")
    for command in ("plan", "up"):
        r = cluster.vethlab("m1", command, second, check=False)
        assert r.returncode == 1, r.stdout + r.stderr
        assert "r:e0: VNI 4242 (UDP port 4789) is already used on this machine by interface e0 in namespace" in \
            r.stderr and "of lab one: give the link another 'vni:'" in r.stderr, r.stderr
        assert "nothing was changed" in r.stderr, r.stderr
    assert cluster.snapshot("m1") == before
    assert cluster.vethlab("m1", "plan", first).stdout.strip().endswith("no changes")
