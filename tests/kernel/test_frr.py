"""Real routing daemons in nodes with their own files: examples/frr-ring.yaml (OSPF,
6 routers) and examples/bgp-pair.yaml (eBGP between two ASes), with Debian's FRR.

Each router has its own /etc/frr/frr.conf and /run/frr: `vtysh` in a node talks to
that node's daemons (with a shared /run/frr it would talk to whichever started
last).  Skipped only where FRR is not installed (./run setup installs it)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from helpers import vethlab

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
RING = [f"r{i}" for i in range(1, 7)]
#: how long routing may take to settle here (OSPF hello 1 s / dead 4 s: ~8 s measured)
SETTLE = 90.0

pytestmark = pytest.mark.skipif(not os.path.exists("/usr/lib/frr/zebra"), reason="FRR is not installed "
                                "(apt-get install frr; ./run setup does)")


def routes(node: str) -> dict[str, Any]:
    """The node's routing table as its own zebra knows it."""
    result = vethlab("exec", node, "--", "vtysh", "-c", "show ip route json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def selected(table: dict[str, Any], prefix: str) -> dict[str, Any] | None:
    return next((r for r in table.get(prefix, []) if r.get("selected")), None)


def wait_for(what: str, check: Any, timeout: float = SETTLE) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        time.sleep(0.5)


def ping(src: str, source: str, dst: str) -> bool:
    return vethlab("exec", src, "--", "ping", "-c1", "-W1", "-I", source, dst).returncode == 0


def frr_processes() -> list[str]:
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if b"/usr/lib/frr/" in Path(f"/proc/{pid}/cmdline").read_bytes():
                out.append(pid)
        except OSError:
            continue
    return out


def machine() -> dict[str, Any]:
    state = os.environ.get("VETHLAB_STATE_DIR", "/run/vethlab")
    return {"netns": sorted(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else [],
            "state": sorted(os.listdir(state)), "frr": frr_processes(),
            "mounts": sorted(line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines())}


def test_ospf_ring_converges_and_reroutes_around_a_failed_link() -> None:
    path = str(EXAMPLES / "frr-ring.yaml")
    vethlab("up", path, check=True, timeout=300)
    before_down = None
    try:
        loopbacks = {node: f"10.255.0.{i}/32" for i, node in enumerate(RING, 1)}

        def converged() -> bool:
            return all(selected(routes(node), prefix) is not None and selected(routes(node), prefix)["protocol"]
                       in ("ospf", "connected") for node in RING for prefix in loopbacks.values())

        wait_for("every router has every loopback", converged)
        for node in RING:  # each vtysh talks to its own node's daemons, which read its own frr.conf
            conf = vethlab("exec", node, "--", "vtysh", "-c", "show running-config").stdout
            assert f"hostname {node}\n" in conf and f"ospf router-id 10.255.0.{node[1:]}" in conf
            assert vethlab("exec", node, "--", "hostname").stdout == f"{node}\n"
        assert ping("r1", "10.255.0.1", "10.255.0.4")

        # r1:eth0 is the r1 - r2 link: r1 must reach r2 the other way round, through r6
        assert selected(routes("r1"), "10.255.0.2/32")["nexthops"][0]["interfaceName"] == "eth0"
        vethlab("link", "down", "r1:eth0", check=True)
        wait_for("r1 reroutes to r2 through eth1", lambda: (route := selected(routes("r1"), "10.255.0.2/32"))
                 is not None and [h["interfaceName"] for h in route["nexthops"]] == ["eth1"])
        wait_for("r2 reroutes to r1 through eth0", lambda: (route := selected(routes("r2"), "10.255.0.1/32"))
                 is not None and [h["interfaceName"] for h in route["nexthops"]] == ["eth0"])
        assert ping("r1", "10.255.0.1", "10.255.0.2")
        assert ping("r2", "10.255.0.2", "10.255.0.1")
        before_down = machine()
    finally:
        vethlab("down", path, check=True, timeout=300)
    assert before_down is not None and len(before_down["frr"]) == 12  # zebra and ospfd in six nodes
    after = machine()
    assert after["frr"] == [] and after["state"] == [] and after["netns"] == []
    assert not any("/run/vethlab" in m or "/run/frr" in m or "/etc/frr" in m for m in after["mounts"])


def test_bgp_pair_exchanges_prefixes_between_two_ases() -> None:
    path = str(EXAMPLES / "bgp-pair.yaml")
    vethlab("up", path, check=True, timeout=300)
    try:
        for node, prefix, peer in (("r1", "10.255.2.2/32", "10.0.12.1"), ("r2", "10.255.1.1/32", "10.0.12.0")):
            route = wait_for(f"{node} learns {prefix} by BGP", lambda n=node, p=prefix: selected(routes(n), p))
            assert route["protocol"] == "bgp" and route["nexthops"][0]["ip"] == peer
        summary = json.loads(vethlab("exec", "r1", "--", "vtysh", "-c", "show bgp summary json").stdout)
        peer = summary["ipv4Unicast"]["peers"]["10.0.12.1"]
        assert (summary["ipv4Unicast"]["as"], peer["remoteAs"], peer["state"], peer["pfxRcd"]) == \
            (65001, 65002, "Established", 1)
        assert ping("r1", "10.255.1.1", "10.255.2.2")
    finally:
        vethlab("down", path, check=True, timeout=300)
    assert frr_processes() == []
