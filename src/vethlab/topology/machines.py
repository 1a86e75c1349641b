"""Validation of a lab across machines (SPEC §7): `machines:`, each node's
`machine:`, and `vni:` on links and networks.

Everything here is a check on the file alone, so every machine that reads the
file refuses or accepts it identically.  The rules:

* `machines:` maps a name ([a-z][a-z0-9-]{0,11}) to `{address, dev?, mtu?}`;
  addresses are distinct and all of one IP version (an IPv4 machine cannot reach
  an IPv6-only one);
* once `machines:` is there, every node but `host` names its `machine:`, which
  must be declared; without `machines:`, `machine:` is an error;
* a link may not end in `host` (it is a different namespace on every machine);
* `carrier: true` only on a link across machines (each end is then a veth
  stitched to the tunnel by a bridge in the machine, whose port can be taken
  down so the node sees NO-CARRIER);
* `vni:` (1..16777215) only on a link whose ends sit on two machines, or on a
  network with members on several; no two VNIs of the file are equal;
* the underlay MTU (default 1500) must leave room for VXLAN's overhead (50 bytes
  over IPv4, 70 over IPv6) and a link's `mtu:` must fit in what is left;
* a network across machines needs an explicit `subnet` (an automatic one would
  be chosen by each machine against its own host: different answers), must be a
  bridge in `host`, and its `machine:` (the gateway) must be declared.
"""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING, Any

from .checker import kind_of
from .naming import ifname_problem
from .schema import HOST, LinkSpec, MachineSpec, NetworkSpec, NodeSpec

if TYPE_CHECKING:
    from .checker import Checker

MACHINE_KEYS = {"address", "dev", "mtu"}
MACHINE_NAME = re.compile(r"[a-z][a-z0-9-]{0,11}")
VNI_MAX = (1 << 24) - 1
DEFAULT_UNDERLAY_MTU = 1500
OVERHEAD = {4: 50, 6: 70}  #: VXLAN's encapsulation: outer IP + UDP + VXLAN + inner Ethernet headers


def parse_machines(c: Checker, raw: Any) -> tuple[MachineSpec, ...]:
    if raw is None:
        return ()
    table = c.mapping(raw, ("machines",), "machine name: {address, dev, mtu}")
    if table is None:
        return ()
    out: list[MachineSpec] = []
    seen: dict[str, str] = {}
    versions: dict[int, str] = {}
    for name, value in table.items():
        path = ("machines", name)
        good = True
        if not isinstance(name, str) or not MACHINE_NAME.fullmatch(name):
            c.err(path, f"machine name {name!r} must match [a-z][a-z0-9-]{{0,11}}")
            good = False
        spec = c.section(value, path, "address, dev, mtu", MACHINE_KEYS)
        if spec is None:
            continue
        address = spec.get("address")
        ip = None
        if address is None:
            c.err(path, "'address' is required: the machine's underlay address, e.g. 10.200.0.1")
            good = False
        else:
            try:
                ip = ipaddress.ip_address(address) if isinstance(address, str) else None
            except ValueError:
                ip = None
            if ip is None:
                c.err(path + ("address",), f"{address!r} is not an IP address (no prefix length)")
                good = False
            elif isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
                # the kernel's VXLAN takes it as IPv6 (70-byte overhead, an IPv6 socket) while the
                # other machines, written as IPv4, speak IPv4: the tunnel would never meet
                c.err(path + ("address",), f"{address} is an IPv4-mapped IPv6 address: write the IPv4 address "
                      f"{ip.ipv4_mapped} itself")
                good = False
            elif ip.is_multicast or ip.is_unspecified or ip.is_loopback:
                c.err(path + ("address",), f"{ip} cannot be a machine's underlay address")
                good = False
            elif str(ip) in seen:
                c.err(path + ("address",), f"{ip} is already the address of machine {seen[str(ip)]}")
                good = False
            else:
                seen[str(ip)] = str(name)
                if versions and ip.version not in versions:
                    other = next(iter(versions.values()))
                    c.err(path + ("address",), f"{ip} is IPv{ip.version} but machine {other}'s address is not: "
                          "the machines of a lab speak one IP version on the underlay")
                    good = False
                versions.setdefault(ip.version, str(name))
        dev = spec.get("dev")
        if dev is not None:
            problem = ifname_problem(dev) if isinstance(dev, str) else "dev must be an interface name"
            if problem:
                c.err(path + ("dev",), problem)
                good = False
        mtu = spec.get("mtu")
        if mtu is not None:
            overhead = OVERHEAD[ip.version if ip is not None else 4]
            if isinstance(mtu, bool) or not isinstance(mtu, int) or not 68 <= mtu <= 65535:
                c.err(path + ("mtu",), f"mtu must be a whole number from 68 to 65535, not {mtu!r}")
                good = False
            elif mtu - overhead < 68:
                c.err(path + ("mtu",), f"underlay mtu {mtu} is too small for VXLAN's {overhead}-byte overhead "
                      f"(links across machines would get {mtu - overhead}, below the minimum 68)")
                good = False
        if good and ip is not None:
            out.append(MachineSpec(str(name), str(ip), dev, mtu, c.doc.line(path)))
    if not table:
        c.err(("machines",), "declares no machine")
    return tuple(out)


def _vni(c: Checker, value: Any, path: tuple[Any, ...]) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= VNI_MAX:
        c.err(path, f"vni must be a whole number from 1 to {VNI_MAX}, not {value!r}")
        return None
    return value


def underlay_mtu(machine: MachineSpec) -> int:
    return machine.mtu or DEFAULT_UNDERLAY_MTU


def overhead(machines: tuple[MachineSpec, ...]) -> int:
    return OVERHEAD[6 if machines and ":" in machines[0].address else 4]


def apply_machines(c: Checker, top: dict[str, Any], raw_nodes: dict[str, Any], nodes: dict[str, NodeSpec],
                   raw_links: list[Any], links: list[tuple[int, LinkSpec]], networks: list[NetworkSpec],
                   raw_networks: Any) -> tuple[tuple[MachineSpec, ...], dict[str, NodeSpec], list[LinkSpec],
                                               list[NetworkSpec]]:
    """Check everything about machines; return the machines and the nodes, links
    and networks with their `machine:` / `vni:` filled in."""
    declared = "machines" in top
    machines = parse_machines(c, top.get("machines"))
    by_name = {m.name: m for m in machines}
    raw_machines = top.get("machines")
    raw_table: dict[str, Any] = raw_machines if isinstance(raw_machines, dict) else {}
    names = ", ".join(str(n) for n in raw_table) or "none"
    placed: dict[str, str] = {}
    for name, raw in raw_nodes.items():
        where = raw.get("machine") if isinstance(raw, dict) else None
        path: tuple[Any, ...] = ("nodes", name)
        if where is None:
            if declared and name != HOST:
                c.err(path, f"node {name} needs 'machine:' (the lab declares machines: {names})")
            continue
        if not declared:
            c.err(path + ("machine",), "'machine:' needs a 'machines:' section that declares the machines")
        elif name == HOST:
            c.err(path + ("machine",), "host is the namespace vethlab runs in on every machine: it takes no machine")
        elif not isinstance(where, str) or where not in raw_table:
            c.err(path + ("machine",), f"unknown machine {where!r} (machines: {names})")
        else:
            placed[name] = where
    out_nodes = {n: (spec._replace(machine=placed[n]) if n in placed else spec) for n, spec in nodes.items()}

    vnis: dict[int, str] = {}

    def claim(vni: int | None, path: tuple[Any, ...], what: str) -> None:
        if vni is None:
            return
        if vni in vnis:
            c.err(path, f"VNI {vni} is already used by {vnis[vni]}")
        else:
            vnis[vni] = what

    gap = overhead(machines)
    out_links: list[LinkSpec] = []
    for index, link in links:
        raw = raw_links[index] if isinstance(raw_links[index], dict) else {}
        if not declared and "vni" not in raw and "carrier" not in raw and link.vni is None and not link.carrier:
            out_links.append(link)  # a lab on one machine (most): nothing below applies, the link as it is
            continue
        path = ("links", index)
        vni = _vni(c, raw.get("vni"), path + ("vni",))
        ends = [placed.get(end.node) for end in link.endpoints]
        if declared and HOST in (link.a.node, link.b.node):
            c.err(path + ("endpoints",), "a link to host is ambiguous in a lab across machines (host is a "
                  "different namespace on each); give the node a link to a node instead")
        across = ends[0] is not None and ends[1] is not None and ends[0] != ends[1]
        if vni is not None and not across and declared:
            c.err(path + ("vni",), "vni is for a link whose ends sit on two machines; this one is a veth pair")
        elif vni is not None and not declared:
            c.err(path + ("vni",), "vni needs 'machines:' (a link across machines)")
        claim(vni, path + ("vni",), f"links[{index}]")
        if across:
            room = min(underlay_mtu(by_name[m]) for m in ends if m in by_name) - gap if by_name else 0
            if link.mtu is not None and by_name and link.mtu > room:
                c.err(path + ("mtu",), f"mtu {link.mtu} does not fit the underlay: machines {ends[0]} and {ends[1]} "
                      f"leave {room} bytes after VXLAN's {gap}-byte overhead (raise their 'mtu:' or lower this)")
            elif by_name and any(":" in a for a in link.addresses_a + link.addresses_b) and \
                    min(link.mtu or room, room) < 1280:
                c.err(path + ("mtu",), f"the link across machines gets mtu {min(link.mtu or room, room)}, below 1280, "
                      "the minimum for its IPv6 addresses")
        carrier = raw.get("carrier", False)
        if not isinstance(carrier, bool):
            c.err(path + ("carrier",), f"must be true or false, not {kind_of(carrier)}")
            carrier = False
        elif carrier and not across:
            c.err(path + ("carrier",), "carrier is for a link across machines (a veth pair carries it already)")
            carrier = False
        out_links.append(link._replace(vni=vni, carrier=carrier))

    raw_nets = raw_networks if isinstance(raw_networks, dict) else {}
    out_nets: list[NetworkSpec] = []
    for net in networks:
        raw = raw_nets.get(net.name) if isinstance(raw_nets.get(net.name), dict) else {}
        assert isinstance(raw, dict)
        path = ("networks", net.name)
        vni = _vni(c, raw.get("vni"), path + ("vni",))
        gateway = raw.get("machine")
        where = sorted({placed[m.node] for m in net.members if m.node in placed}, key=list(raw_table).index)
        spans = len(where) > 1
        if gateway is not None and (not declared or not isinstance(gateway, str) or gateway not in raw_table):
            c.err(path + ("machine",), f"unknown machine {gateway!r} (machines: {names})" if declared else
                  "'machine:' needs a 'machines:' section that declares the machines")
            gateway = None
        if declared and net.host != HOST and net.host in placed and any(
                placed.get(m.node) != placed[net.host] for m in net.members if m.node in placed):
            c.err(path + ("host",), f"the bridge's node {net.host} is on machine {placed[net.host]}, members are "
                  "elsewhere: a network across machines lives in host on each machine")
        if spans:
            if net.driver != "bridge":
                c.err(path + ("driver",), f"a {net.driver} network cannot span machines ({', '.join(where)})")
            if net.subnet is None and raw.get("subnet") is None:
                c.err(path, f"a network across machines ({', '.join(where)}) needs an explicit 'subnet': an automatic "
                      "one would be chosen by each machine against its own host, and they could differ")
        elif vni is not None:
            c.err(path + ("vni",), "vni is for a network with members on several machines")
        claim(vni, path + ("vni",), f"network {net.name}")
        out_nets.append(net._replace(vni=vni, machine=gateway if gateway is not None else (where[0] if where else None)))
    return machines, out_nodes, out_links, out_nets
