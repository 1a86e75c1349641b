"""Validation of `networks:` (Docker-style bridges and macvlan) and `publish` specs."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from .checker import Checker, address_parts
from .loader import Path
from .naming import ifname_problem
from .schema import HOST, LinkSpec, MemberSpec, NetworkSpec, PublishSpec

NETWORK_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,30}$")
NETWORK_KEYS = {"host", "driver", "bridge", "parent", "subnet", "subnet6", "gateway", "nat", "internal", "isolated",
                "uplinks", "mtu", "members", "machine", "vni"}
MEMBER_KEYS = {"ip", "ip6", "ifname", "publish"}
# ports: ASCII digits, at most 10 (int() of a 5000-digit port was an internal error)
PUBLISH = re.compile(r"(?:(?P<ip>[0-9.]+):)?(?P<host>[0-9]{1,10}):(?P<port>[0-9]{1,10})(?:/(?P<proto>[a-z]+))?")


class PublishSyntaxError(ValueError):
    pass


def parse_publish(text: str) -> PublishSpec:
    m = PUBLISH.fullmatch(text.strip())
    if not m:
        raise PublishSyntaxError(f"{text!r} is not [HOSTIP:]HOSTPORT:PORT[/tcp|udp]")
    host_port, port = int(m.group("host")), int(m.group("port"))
    for value in (host_port, port):
        if not 1 <= value <= 65535:
            raise PublishSyntaxError(f"port {value} is out of range (1-65535) in {text!r}")
    proto = m.group("proto") or "tcp"
    if proto not in ("tcp", "udp"):
        raise PublishSyntaxError(f"protocol {proto!r} is not tcp or udp in {text!r}")
    host_ip = m.group("ip")
    if host_ip is not None:
        try:
            ipaddress.IPv4Address(host_ip)
        except ValueError:
            raise PublishSyntaxError(f"{host_ip!r} is not an IPv4 address in {text!r}") from None
    return PublishSpec(host_port, port, proto, host_ip)


def _bool(c: Checker, spec: dict[str, Any], key: str, path: Path, default: bool) -> bool:
    value = spec.get(key, default)
    if not isinstance(value, bool):
        c.err(path + (key,), f"must be true or false, not {value!r}")
        return default
    return value


def parse_networks(c: Checker, raw: Any, nodes: dict[str, Any], links: list[LinkSpec]) -> list[NetworkSpec]:
    if raw is None:
        return []
    if not isinstance(raw, dict):
        c.err(("networks",), "must be a mapping of network name: settings")
        return []
    out = []
    ifnames: dict[str, set[str]] = {}
    for link in links:
        for end in link.endpoints:
            ifnames.setdefault(end.node, set()).add(end.ifname)
    counters: dict[str, int] = {}
    for name, spec in raw.items():
        network = _network(c, name, spec, ("networks", name), nodes, ifnames, counters)
        if network is not None:
            out.append(network)
    _check_subnets(c, out, links)
    _check_publish_clashes(c, out)
    return out


def _network(c: Checker, name: str, raw: Any, path: Path, nodes: dict[str, Any], ifnames: dict[str, set[str]],
             counters: dict[str, int]) -> NetworkSpec | None:
    ok = True
    if not NETWORK_NAME.match(name):
        c.err(path, f"network name {name!r} must match [a-z][a-z0-9_-]{{0,30}}")
        ok = False
    spec = c.section(raw, path, "network settings", NETWORK_KEYS)
    if spec is None:
        return None
    host = spec.get("host", HOST)
    if host != HOST and host not in nodes:
        c.err(path + ("host",), f"node '{host}' is not defined under 'nodes'")
        ok = False
    driver = spec.get("driver", "bridge")
    if driver not in ("bridge", "macvlan"):
        c.err(path + ("driver",), f"driver must be 'bridge' or 'macvlan', not {driver!r}")
        return None
    parent = spec.get("parent")
    bridge = spec.get("bridge")
    uplinks = spec.get("uplinks") or []
    if driver == "macvlan":
        if not parent:
            c.err(path, "a macvlan network needs 'parent: IFNAME' (the interface whose LAN members join)")
            ok = False
        for key in ("bridge", "uplinks", "nat", "internal"):
            if key in spec:
                c.err(path + (key,), f"'{key}' does not apply to a macvlan network")
                ok = False
    elif parent is not None:
        c.err(path + ("parent",), "'parent' applies to driver macvlan; a bridge network takes 'uplinks'")
        ok = False
    for key, value in (("bridge", bridge), ("parent", parent)):
        if value is not None:
            problem = ifname_problem(value) if isinstance(value, str) else "must be an interface name"
            if problem:
                c.err(path + (key,), problem)
                ok = False
    if not isinstance(uplinks, list) or not all(isinstance(u, str) for u in uplinks):
        c.err(path + ("uplinks",), "must be a list of interface names")
        uplinks = []
    for i, uplink in enumerate(uplinks):
        problem = ifname_problem(uplink)
        if problem:
            c.err(path + ("uplinks", i), problem)
            ok = False

    subnet = _subnet(c, spec.get("subnet"), path + ("subnet",), 4)
    subnet6 = _subnet(c, spec.get("subnet6"), path + ("subnet6",), 6)
    internal = _bool(c, spec, "internal", path, False)
    gateway_default = not (uplinks or driver == "macvlan" or internal)
    gateway = _bool(c, spec, "gateway", path, gateway_default)
    nat = _bool(c, spec, "nat", path, False)
    isolated = _bool(c, spec, "isolated", path, True)
    if internal and nat:
        c.err(path + ("nat",), "an internal network has no NAT (no way out); drop one of them")
        ok = False
    if internal and spec.get("gateway") is True:
        c.err(path + ("gateway",), "an internal network has no gateway; drop one of them")
        ok = False
    if nat and not gateway:
        c.err(path + ("nat",), "nat needs gateway: true (members route out through the bridge's address)")
        ok = False
    mtu = spec.get("mtu")
    if mtu is not None and (isinstance(mtu, bool) or not isinstance(mtu, int) or not 68 <= mtu <= 65535):
        c.err(path + ("mtu",), f"mtu must be a whole number from 68 to 65535, not {mtu!r}")
        ok = False

    members = []
    raw_members = c.mapping(spec.get("members"), path + ("members",), "node: settings", allow_none=True) or {}
    for node, mraw in raw_members.items():
        member = _member(c, node, mraw, path + ("members", node), nodes, host, subnet, subnet6, gateway, nat,
                         ifnames, counters)
        if member is not None:
            members.append(member)
    if not ok:
        return None
    return NetworkSpec(name=name, host=host, driver=driver, bridge=bridge, parent=parent,
                       subnet=str(subnet) if subnet else None, subnet6=str(subnet6) if subnet6 else None,
                       gateway=gateway, nat=nat, internal=internal, isolated=isolated, uplinks=tuple(uplinks),
                       mtu=mtu, members=tuple(members), line=c.doc.line(path))


def _subnet(c: Checker, value: Any, path: Path, version: int) -> Any:
    if value is None:
        return None
    try:
        net = ipaddress.ip_network(str(value), strict=False)
    except ValueError as exc:
        c.err(path, f"{value!r} is not a network: {exc}")
        return None
    if net.version != version:
        c.err(path, f"{value} is not an IPv{version} network" + (" (use subnet6 for IPv6)" if version == 4 else ""))
        return None
    if str(net) != str(value) and "/" in str(value):
        c.err(path, f"{value} has host bits set; did you mean {net}?")
        return None
    if net.num_addresses < 4:
        c.err(path, f"{net} is too small for a network with members")
        return None
    return net


def _member(c: Checker, node: str, raw: Any, path: Path, nodes: dict[str, Any], host: str, subnet: Any,
            subnet6: Any, gateway: bool, nat: bool, ifnames: dict[str, set[str]],
            counters: dict[str, int]) -> MemberSpec | None:
    ok = True
    if node not in nodes or node == HOST:
        c.err(path, f"node '{node}' is not defined under 'nodes'" if node != HOST
              else "the host node holds networks; it cannot be a member")
        ok = False
    elif node == host:
        c.err(path, f"node '{node}' holds this network's bridge; it cannot also be a member")
        ok = False
    spec = c.section(raw, path, "member settings", MEMBER_KEYS)
    if spec is None:
        return None
    ip = _member_ip(c, spec.get("ip"), path + ("ip",), subnet, 4, gateway)
    ip6 = _member_ip(c, spec.get("ip6"), path + ("ip6",), subnet6, 6, gateway)
    if spec.get("ip6") is not None and subnet6 is None:
        c.err(path + ("ip6",), "the network has no subnet6")
        ok = False
    ifname = spec.get("ifname")
    used = ifnames.setdefault(node, set())
    if ifname is None:
        index = counters.get(node, 0)
        while f"eth{index}" in used:
            index += 1
        counters[node] = index + 1
        ifname = f"eth{index}"
    else:
        problem = ifname_problem(ifname) if isinstance(ifname, str) else "must be an interface name"
        if problem:
            c.err(path + ("ifname",), problem)
            ok = False
        elif ifname in used:
            c.err(path + ("ifname",), f"node {node} already has an interface {ifname}")
            ok = False
    used.add(ifname)
    publish = []
    raw_publish = spec.get("publish") or []
    if not isinstance(raw_publish, list):
        c.err(path + ("publish",), "must be a list such as [\"8080:80/tcp\"]")
        raw_publish = []
    for i, text in enumerate(raw_publish):
        try:
            publish.append(parse_publish(str(text)))
        except PublishSyntaxError as exc:
            c.err(path + ("publish", i), str(exc))
            ok = False
    if publish and not (nat or gateway):
        c.err(path + ("publish",), "publishing a port needs a network with nat or gateway")
        ok = False
    if not ok:
        return None
    return MemberSpec(node=node, ip=ip, ip6=ip6, ifname=ifname, publish=tuple(publish))


#: a dotted quad of ASCII digits (\d alone also matches other scripts' digits), each octet
#: 0-255 without a leading zero: what str(ip_address(text)) gives back unchanged
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_DOTTED = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}")


def _member_ip(c: Checker, value: Any, path: Path, subnet: Any, version: int, gateway: bool) -> str | None:
    if value is None:
        return None
    text = str(value).split("/")[0]
    if version == 4 and subnet is not None and subnet.version == 4 and (m := _DOTTED.fullmatch(text)):
        # the common case without address objects (~10 us each, a 1000-member network
        # is half of its file's validation): strictly inside the subnet, not its
        # gateway; `text` is then exactly str(ip_address(text))
        a, b, c_, d = map(int, m.groups())
        number, first, last = (a << 24) | (b << 16) | (c_ << 8) | d, int(subnet.network_address), \
            int(subnet.broadcast_address)
        if first < number < last and not (gateway and number == first + 1):
            return text
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        c.err(path, f"{value!r} is not an IPv{version} address")
        return None
    if ip.version != version:
        c.err(path, f"{value} is not an IPv{version} address")
        return None
    if subnet is not None:
        if ip not in subnet:
            c.err(path, f"{ip} is outside the network's subnet {subnet}")
            return None
        if ip == subnet.network_address or (version == 4 and ip == subnet.broadcast_address):
            c.err(path, f"{ip} is the {'network' if ip == subnet.network_address else 'broadcast'} address of {subnet}")
            return None
        if gateway and ip == subnet.network_address + 1:
            c.err(path, f"{ip} is the network's gateway address")
            return None
    return str(ip)


def _check_subnets(c: Checker, networks: list[NetworkSpec], links: list[LinkSpec]) -> None:
    """Subnets of networks in one host node must not overlap each other, nor the
    subnets of that node's link addresses.  Each network subnet is reported against
    the first thing (in file order: link addresses, then networks) it overlaps.
    One sort and two sweeps, not every network against everything before it: that
    was networks x link addresses (300 networks and 5000 links: 1.4 s, measured)."""
    entries: list[tuple[str, int, int, int, str, tuple[str, str] | None]] = []  # host, version, start, plen, what, (net, key)
    for link in links:
        for end in link.endpoints:
            for text in link.addresses_of(end):
                version, value, plen = address_parts(text)
                width = 32 if version == 4 else 128
                entries.append((end.node, version, value >> (width - plen) << (width - plen), plen, f"link {end}",
                                None))
    for net in networks:
        for value_text, key in ((net.subnet, "subnet"), (net.subnet6, "subnet6")):
            if value_text:
                subnet = ipaddress.ip_network(value_text)
                entries.append((net.host, subnet.version, int(subnet.network_address), subnet.prefixlen,
                                f"network {net.name}", (net.name, key)))
    for index, witness in _first_overlaps(entries).items():
        host, version, start, plen, _, where = entries[index]
        assert where is not None
        o_host, o_version, o_start, o_plen, o_what, _ = entries[witness]
        net_type = ipaddress.IPv4Network if version == 4 else ipaddress.IPv6Network
        mine, other = net_type((start, plen)), net_type((o_start, o_plen))
        c.err(("networks", where[0], where[1]), f"{mine} overlaps {other} of {o_what} in node {host}")

    used: dict[Any, str] = {}
    for net in networks:
        for member in net.members:
            for ip in (member.ip, member.ip6):
                if ip and ip in used:
                    c.err(("networks", net.name, "members", member.node), f"address {ip} is already given to {used[ip]}")
                elif ip:
                    used[ip] = f"{member.node} in network {net.name}"


def _first_overlaps(entries: list[tuple[str, int, int, int, str, tuple[str, str] | None]]) -> dict[int, int]:
    """For each network entry (last field set) that overlaps an earlier entry of the same
    host and IP version: the index of the earliest such entry.  CIDR blocks are nested
    or disjoint, so sorted by (start, prefix length) they form a forest in which two
    blocks overlap exactly when one is an ancestor of the other; the earliest ancestor
    comes down the stack, the earliest descendant comes up in a reverse sweep."""
    order = sorted(range(len(entries)), key=lambda i: (entries[i][0], entries[i][1], entries[i][2], entries[i][3], i))
    parent: dict[int, int] = {}
    above: dict[int, int] = {}  # earliest ancestor
    stack: list[int] = []
    for i in order:
        host, version, start, plen, _, _ = entries[i]
        while stack:
            top = entries[stack[-1]]
            width = 32 if top[1] == 4 else 128
            if top[0] == host and top[1] == version and start <= top[2] + (1 << (width - top[3])) - 1:
                break
            stack.pop()
        if stack:
            p = stack[-1]
            parent[i] = p
            above[i] = min(p, above.get(p, p))
        stack.append(i)
    below: dict[int, int] = {}  # earliest descendant
    for i in reversed(order):
        if i in parent:
            p = parent[i]
            best = min(i, below.get(i, i))
            below[p] = min(best, below.get(p, best))
    out = {}
    for i, entry in enumerate(entries):
        if entry[5] is None:
            continue
        best = min(above.get(i, i), below.get(i, i))
        if best < i:
            out[i] = best
    return out


def _check_publish_clashes(c: Checker, networks: list[NetworkSpec]) -> None:
    seen: dict[tuple[str, int, str], str] = {}
    for net in networks:
        for member in net.members:
            for i, pub in enumerate(member.publish):
                key = (net.host, pub.host_port, pub.protocol)
                if key in seen:
                    c.err(("networks", net.name, "members", member.node, "publish", i),
                          f"host port {pub.host_port}/{pub.protocol} is already published by {seen[key]}")
                else:
                    seen[key] = f"{member.node} in network {net.name}"
