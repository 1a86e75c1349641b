"""What NetlinkKernel reads of a namespace (links, their addresses, routes), against
iproute2's view of the same kernel (`ip -j`): an independent decoder.  The fast
paths - only the addressed interfaces looked up by index, route dumps that skip
the local table by header, formats cached per distinct address - must give what
a plain read gives, on a host shaped like a big lab's: many unaddressed bridge
ports, a few addressed interfaces, a route per port in the main table."""

from __future__ import annotations

import subprocess

import pytest

from helpers import ip_json
from vethlab.kernel import rtnl

PORTS = 40


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def host() -> None:
    """A bridge with PORTS veth ports (their only addresses link-local), addressed
    interfaces of both families, one with an alias, routes of several kinds."""
    ip("link", "add", "br0", "type", "bridge")
    ip("link", "set", "br0", "up")
    ip("addr", "add", "10.0.0.1/16", "dev", "br0")
    ip("addr", "add", "fd00:1::1/64", "dev", "br0", "nodad")
    for i in range(PORTS):
        ip("link", "add", f"p{i}", "type", "veth", "peer", f"q{i}")
        ip("link", "set", f"p{i}", "master", "br0", "up")
        ip("link", "set", f"q{i}", "up")
    ip("link", "add", "d0", "type", "veth", "peer", "d1")  # (no dummy module on every kernel)
    ip("link", "set", "d1", "up")
    ip("link", "set", "d0", "up", "alias", "someone's")
    ip("addr", "add", "192.0.2.5/24", "dev", "d0")
    ip("addr", "add", "198.51.100.7/32", "dev", "d0")
    ip("addr", "add", "2001:db8::7/64", "dev", "d0", "nodad")
    ip("addr", "add", "fec0::5/64", "dev", "d0", "nodad")  # fe00::/9, not link-local
    ip("addr", "add", "10.9.9.9/8", "dev", "q3")  # a port's peer with an address
    ip("route", "add", "203.0.113.0/24", "via", "192.0.2.1", "metric", "7")
    ip("route", "add", "172.16.0.0/12", "dev", "br0", "proto", "static", "src", "10.0.0.1")
    ip("-6", "route", "add", "2001:db8:5::/48", "via", "fd00:1::9", "dev", "br0")
    ip("route", "add", "10.1.0.0/16", "dev", "d0", "table", "1000")  # not main: not listed


def iproute2_addresses() -> dict[str, list[str]]:
    """ifname -> "ip/prefix" of every address but link-local IPv6, as `ip -j addr` has it."""
    out: dict[str, list[str]] = {}
    for link in ip_json("addr"):
        for a in link.get("addr_info", []):
            if a["family"] == "inet6" and a["local"].lower().startswith("fe80:"):
                continue
            out.setdefault(link["ifname"], []).append(f"{a['local']}/{a['prefixlen']}")
    return out


def test_links_and_their_addresses_are_iproute2s(host):
    kernel = rtnl.NetlinkKernel()
    links = kernel.links(None)
    want = {link["ifname"]: (link["ifindex"], link.get("ifalias"), link.get("mtu"), link.get("master"))
            for link in ip_json("link")}
    index = {link.index: link.ifname for link in links}
    assert {link.ifname: (link.index, link.alias, link.mtu, index.get(link.master)) for link in links} == want
    addresses = iproute2_addresses()
    assert {link.ifname: sorted(link.addresses) for link in links} == \
        {name: sorted(addresses.get(name, [])) for name in want}


@pytest.mark.parametrize("lookups", [rtnl._LOOKUPS, 0])  # each addressed link by index / one dump of all
def test_only_addressed_links_are_the_addressed_ones(host, monkeypatch, lookups):
    monkeypatch.setattr(rtnl, "_LOOKUPS", lookups)
    kernel = rtnl.NetlinkKernel()
    full = {link.ifname: link for link in kernel.links(None)}
    got = kernel.links(None, only_addressed=True)
    addresses = iproute2_addresses()
    assert {link.ifname: sorted(link.addresses) for link in got} == \
        {name: sorted(cidrs) for name, cidrs in addresses.items()}
    assert {"br0", "d0", "q3", "lo"} <= {link.ifname for link in got}
    assert all(link == full[link.ifname] for link in got)  # the same record a plain read gives
    assert next(link.alias for link in got if link.ifname == "d0") == "someone's"


def test_named_links_are_a_plain_reads_records_of_those_names(host):
    """links(names=...): each looked up by name, its addresses by a strict dump filtered
    by ifindex and family; a name that does not exist is left out."""
    kernel = rtnl.NetlinkKernel()
    full = {link.ifname: link for link in kernel.links(None)}
    names = {"br0", "d0", "q3", "p7", "lo", "absent0"}
    got = kernel.links(None, names=names)
    assert sorted(link.ifname for link in got) == sorted(names - {"absent0"})
    assert all(link == full[link.ifname] for link in got)  # addresses (both families, in order) included
    assert {link.ifname: link.addresses for link in got}["d0"] == full["d0"].addresses != []
    assert all(not link.addresses for link in kernel.links(None, addresses=False, names=names))
    # the socket is back to lenient checking: a plain read still gives everything
    assert {link.ifname: link for link in kernel.links(None)} == full


def test_routes_are_iproute2s_main_table(host):
    kernel = rtnl.NetlinkKernel()
    kernel.links(None)
    got = {(r.dst, r.via, r.dev, r.metric, r.src, r.proto) for r in kernel.routes(None)}
    protos = {"kernel": 2, "boot": 3, "static": 4}
    want = set()
    for family in ("-4", "-6"):
        for r in ip_json(family, "route", "show", "table", "main"):
            if r.get("type", "unicast") != "unicast":
                continue
            dst = r["dst"]
            if dst == "default":
                dst = "0.0.0.0/0" if family == "-4" else "::/0"
            elif "/" not in dst:
                dst += "/32" if family == "-4" else "/128"
            proto = r.get("protocol", "boot")
            metric = r.get("metric")
            want.add((dst, r.get("gateway"), r.get("dev"), metric if metric is not None else None,
                      r.get("prefsrc"), protos.get(proto, proto)))
    assert got == want
    assert ("203.0.113.0/24", "192.0.2.1", "d0", 7, None, 3) in got
    assert sum(1 for r in got if r[0] == "fe80::/64") == PORTS * 2 + 3  # the ports and their peers, br0, d0, d1


def test_counters_are_read_when_asked_for_and_only_then():
    ip("link", "set", "lo", "up")
    subprocess.run(["ping", "-c", "3", "-i", "0.2", "-q", "127.0.0.1"], check=True, capture_output=True)
    kernel = rtnl.NetlinkKernel()
    lo = next(link for link in kernel.links(None, stats=True) if link.ifname == "lo")
    theirs = ip_json("-s", "link", "show", "lo")[0]["stats64"]
    assert lo.stats == {f"{way}_{what}": theirs[way][what] for way in ("rx", "tx")
                        for what in ("packets", "bytes", "errors", "dropped")}
    assert lo.stats["rx_packets"] >= 6
    assert next(link for link in kernel.links(None) if link.ifname == "lo").stats == {}
