"""When is an IPv6 address in use?  Kernel.unready_addresses against the real kernel,
and `up` returning with every lab IPv6 address in use (reconcile/verify.py).

Evidence behind it (kernel 6.18): an address added NODAD is acknowledged and
listed without the tentative flag at once, but its local route and its
solicited-node group come from addrconf's work item; right after the
acknowledgement the local route was missing in 47 of 200 tries on an idle
machine, for up to 0.5 s under CPU and RTNL load.  A tentative address (DAD)
has no local route until DAD ends, and never when DAD fails."""

from __future__ import annotations

import ipaddress
import json
import socket
import struct
import subprocess
import time

from helpers import vethlab
from vethlab.kernel import nl
from vethlab.kernel.rtnl import NetlinkKernel
from vethlab.lab import Lab
from vethlab.topology import lab_from_text


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def pair() -> None:
    sh("ip", "netns", "add", "a")
    sh("ip", "netns", "add", "b")
    sh("ip", "link", "add", "e0", "netns", "a", "type", "veth", "peer", "name", "e0", "netns", "b")


def settled(kernel: NetlinkKernel, ns: str, addresses: list[str], expected: list[str]) -> list[str]:
    """What is unready once it is `expected`, or the kernel's work items had 15 s."""
    deadline = time.monotonic() + 15
    while (left := kernel.unready_addresses(ns, addresses)) != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def test_nodad_address_is_ready_even_without_carrier_tentative_is_not() -> None:
    pair()  # b's end is up, a's is down: b has no carrier
    sh("ip", "-n", "b", "link", "set", "e0", "up")
    sh("ip", "-n", "b", "addr", "add", "fd00:1::2/64", "dev", "e0", "nodad")
    sh("ip", "-n", "b", "addr", "add", "fd00:1::3/64", "dev", "e0")  # with DAD: tentative until carrier
    sh("ip", "-n", "b", "addr", "add", "10.1.0.2/24", "dev", "e0")
    kernel = NetlinkKernel()
    wanted = ["fd00:1::2/64", "fd00:1::3/64", "10.1.0.2/24"]
    assert settled(kernel, "b", wanted, ["fd00:1::3/64"]) == ["fd00:1::3/64"]  # IPv4 is never waited for


def test_failed_dad_stays_unready() -> None:
    pair()
    for ns in ("a", "b"):
        sh("ip", "-n", ns, "addr", "add", "fd00:1::9/64", "dev", "e0")  # the same address, with DAD, both ends
    sh("ip", "-n", "a", "link", "set", "e0", "up")
    sh("ip", "-n", "b", "link", "set", "e0", "up")
    kernel = NetlinkKernel()
    deadline = time.monotonic() + 6  # DAD: up to 1 s delay, one probe, 1 s wait
    while not (failed := dad_failed()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert failed  # both ends saw the other's probe
    assert {ns: kernel.unready_addresses(ns, ["fd00:1::9/64"]) for ns in failed} == \
        {ns: ["fd00:1::9/64"] for ns in failed}


def dad_failed() -> list[str]:
    """The namespaces where fd00:1::9 is flagged dadfailed."""
    out = []
    for ns in ("a", "b"):
        text = subprocess.run(["ip", "-n", ns, "-6", "addr", "show", "dev", "e0"], capture_output=True,
                              text=True, check=True).stdout
        if any("fd00:1::9/64" in line and "dadfailed" in line for line in text.splitlines()):
            out.append(ns)
    return out

DUAL = """\
name: six
nodes: {a: {}, b: {}, c: {}}
links:
  - endpoints: [a:e0, b:e0]
    addresses: [[fd00:1::1/64, 10.1.0.1/30], [fd00:1::2/64, 10.1.0.2/30]]
networks:
  lan:
    subnet: 10.0.0.0/24
    subnet6: fd00:30::/64
    members: {a: {}, b: {}, c: {}}
"""


def local_ipv6(ns: str) -> set[str]:
    sock = NetlinkKernel()._sock(ns)
    out = set()
    for msg in sock.dump(nl.RTM_GETROUTE, struct.pack("=BBBBBBBBI", socket.AF_INET6, 0, 0, 0, 0, 0, 0, 0, 0)):
        route = nl.parse_route(msg)
        if route.type == nl.RTN_LOCAL and route.dst_len == 128 and not ipaddress.ip_address(route.dst).is_link_local:
            out.add(str(ipaddress.ip_address(route.dst)))
    return out


def test_up_returns_with_every_ipv6_address_in_use() -> None:
    """Read at once after `up` returned, in the same process: each node has a local
    route for each of its lab IPv6 addresses, and for nothing else (loopback's ::1 aside)."""
    Lab(lab_from_text(DUAL), kernel=NetlinkKernel()).up(wait=5.0)
    seen = {ns: local_ipv6(ns) - {"::1"} for ns in ("a", "b", "c")}
    assert seen == {"a": {"fd00:1::1", "fd00:30::2"}, "b": {"fd00:1::2", "fd00:30::3"},
                    "c": {"fd00:30::4"}}  # the network's first address is its gateway's


def global_addresses(ns: str) -> dict[str, list[str]]:
    out = json.loads(subprocess.run(["ip", "-n", ns, "-j", "addr"], capture_output=True, text=True, check=True).stdout)
    return {i["ifname"]: sorted(f"{a['local']}/{a['prefixlen']}" for a in i["addr_info"] if a["scope"] == "global")
            for i in out}


def test_link_down_and_up_keeps_ipv6_addresses_and_they_answer_at_once(write) -> None:
    """The kernel drops an interface's IPv6 addresses when it goes down (keep_addr_on_down
    is 0 by default): a `link down` + `link up` used to leave the end without them."""
    path = write(DUAL)
    vethlab("up", path, check=True)
    before = {ns: global_addresses(ns) for ns in ("a", "b")}
    vethlab("link", "down", "a:e0", check=True)
    vethlab("link", "up", "a:e0", check=True)
    assert {ns: global_addresses(ns) for ns in ("a", "b")} == before
    r = vethlab("exec", "a", "--", "ping", "-c", "1", "-W", "2", "fd00:1::2")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "no changes" in vethlab("plan", path, check=True).stdout
