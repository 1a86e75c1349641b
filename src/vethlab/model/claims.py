"""What a lab claims in the host namespace, and the conflicts with what others hold — pure.

The host namespace is shared by every lab and by the host itself.  A lab claims
there: the subnets of its bridge networks (ipam.py chooses and checks those), the
addresses of its link ends in `host`, the host ports its members publish, and
names: its namespaces' names, and the names of its bridges, link ends and uplinks
in the host namespace (the planner refuses a name the kernel already has; this
catches the lab that is still building it).
Each claim is recorded in the lab's state under the host-wide allocation lock
(state/hostwide.py), so a lab coming up in parallel sees it before anything is
built, and checked here against:

* other labs' recorded claims (`who` = "lab NAME");
* the host's own interfaces and addresses, read from the kernel;
* for ports: sockets of the host namespace waiting on that port.  A published
  port is DNAT in prerouting and output, so a host process listening there would
  silently stop getting its traffic.  Docker (with its default userland proxy)
  refuses a port already bound; vethlab does the same: a conflict, exit 1.

Networks and link ends in any other node live in that node's own namespace, which
no other lab shares: they claim nothing here.  Neither do macvlan networks (members
sit on a real LAN, with its subnet).  A bridge with uplinks records its subnet, so
other labs' automatic subnets avoid it, but is not checked against the host's own
addresses: it joins a real LAN the host may be on too (ipam.py).
"""

from __future__ import annotations

import ipaddress
from dataclasses import field
from typing import NamedTuple

from ..deferred import dataclass
from ..errors import ConflictError
from ..topology import HOST, LabSpec
from .ipam import Allocation

Interface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
NOTHING_CHANGED = "nothing was changed"


class Port(NamedTuple):
    """A host port: [IP:]PORT/PROTO; ip None: every address of the host."""

    port: int
    protocol: str
    ip: str | None = None

    def __str__(self) -> str:
        return f"{self.ip + ':' if self.ip else ''}{self.port}/{self.protocol}"

    @classmethod
    def parse(cls, text: str) -> Port:
        rest, _, protocol = text.rpartition("/")
        ip, _, port = rest.rpartition(":")
        return cls(int(port), protocol, ip or None)

    def overlaps(self, other: Port) -> bool:
        """Same port and protocol on a common address (None and 0.0.0.0/:: are all)."""
        if (self.port, self.protocol) != (other.port, other.protocol):
            return False
        wild = (None, "0.0.0.0", "::")
        return self.ip in wild or other.ip in wild or self.ip == other.ip


@dataclass
class HostClaims:
    """What one lab holds in the host namespace (as kept in its state)."""

    subnets: set[str] = field(default_factory=set)  # bridge networks' subnets
    addresses: set[str] = field(default_factory=set)  # "ip/prefix" of link ends in host
    ports: set[str] = field(default_factory=set)  # str(Port)
    names: set[str] = field(default_factory=set)  # "netns:NAME", "if:IFNAME" (in the host namespace)

    def __bool__(self) -> bool:
        return bool(self.subnets or self.addresses or self.ports or self.names)


@dataclass
class HostUse:
    """What others hold in the host namespace: (value, who) pairs."""

    subnets: list[tuple[str, str]] = field(default_factory=list)  # other labs' bridge subnets
    addresses: list[tuple[str, str]] = field(default_factory=list)  # "ip/prefix": interfaces, other labs' ends
    ports: list[tuple[str, str]] = field(default_factory=list)  # str(Port) of other labs
    listeners: list[tuple[str, str]] = field(default_factory=list)  # str(Port) of the host's sockets
    names: list[tuple[str, str]] = field(default_factory=list)  # other labs' names ("netns:…", "if:…")

    def taken_subnets(self) -> list[tuple[str, str]]:
        """What ipam.allocate must avoid in the host node: every subnet above, and the
        subnet of every address (loopback and link-local excepted: every host has them)."""
        out = list(self.subnets)
        for cidr, who in self.addresses:
            iface = ipaddress.ip_interface(cidr)
            if not (iface.is_loopback or iface.is_link_local):
                out.append((str(iface.network), who))
        return out


def wants_host(spec: LabSpec) -> bool:
    """Does the lab use the host namespace (bridges, link ends, published ports)?
    A lab that does not has no subnet, address or port to clash with there."""
    return any(net.host == HOST for net in spec.networks) or \
        any(end.node == HOST for link in spec.links for end in link.endpoints)


def names(spec: LabSpec) -> dict[str, str]:
    """Host-wide names the lab creates or takes: claim key -> what it is, for messages.
    Namespace names are host-wide even with `prefix: true` (lab a's node b is a-b, a
    name lab x may give a node of its own).  Member port ends (`vl` + a hash of the
    lab's name) are left out: unique per lab by construction, and one per member."""
    from .desired import bridge_name  # desired imports ipam, as this module does: no cycle

    out: dict[str, str] = {}
    for node in spec.nodes:
        netns = spec.netns_of(node)
        if netns:
            out[f"netns:{netns}"] = f"namespace {netns} (node {node})"
    for link in spec.links:
        for end in link.endpoints:
            if end.node == HOST:
                out[f"if:{end.ifname}"] = f"interface {end.ifname} of the host namespace (link end {end})"
    for net in spec.networks:
        if net.host != HOST:
            continue
        if net.driver == "bridge":
            bridge = bridge_name(spec.name, net)
            out[f"if:{bridge}"] = f"bridge {bridge} of network {net.name}"
        for uplink in net.uplinks:
            out[f"if:{uplink}"] = f"uplink {uplink} of network {net.name}"
    # a host sysctl has one value and one original: two labs setting it would each
    # record the other's value as the host's, and the first `down` would undo the
    # second lab's setting while it runs (measured: rp_filter 2 set to 0 by x and y
    # ended at 0 after both were down, and at 2 under y while y was up)
    host = spec.nodes.get(HOST)
    for key, _value in host.sysctls if host else ():
        out[f"sysctl:{key}"] = f"sysctl {key} of the host namespace"
    # a host route is one per destination and metric: a second lab's replaced the
    # first's (both carry vethlab's protocol), and its `down` then left the first
    # lab without it (measured)
    for route in host.routes if host else ():
        dst = _route_dst(route.dst)
        out[f"route:{dst}:{route.metric or 0}"] = f"route {dst} of the host namespace"
    return out


def _route_dst(dst: str) -> str:
    """A route's destination as the kernel keys it ("default" and 0.0.0.0/0 alike)."""
    if dst == "default":
        return "0.0.0.0/0"
    try:
        return str(ipaddress.ip_network(dst, strict=False))
    except ValueError:
        return dst


def of(spec: LabSpec, allocation: Allocation) -> HostClaims:
    """The lab's claims in the host namespace, given IPAM's choices."""
    claims = HostClaims()
    for net in spec.networks:
        if net.host != HOST or net.driver != "bridge":
            continue
        for subnets in (allocation.subnet, allocation.subnet6):
            if net.name in subnets:
                claims.subnets.add(subnets[net.name])
        for member in net.members:
            claims.ports |= {str(Port(pub.host_port, pub.protocol, pub.host_ip)) for pub in member.publish}
    for link in spec.links:
        for end in link.endpoints:
            if end.node == HOST:
                claims.addresses |= {str(ipaddress.ip_interface(a)) for a in link.addresses_of(end)}
    claims.names = set(names(spec))
    return claims


def check(spec: LabSpec, use: HostUse) -> None:
    """Raise ConflictError (exit 1, before anything is built) for the first published
    port, host link address or host-wide name that clashes with what `use` holds."""
    _check_names(spec, use)
    _check_ports(spec, use)
    _check_addresses(spec, use)


def _check_names(spec: LabSpec, use: HostUse) -> None:
    mine = names(spec)
    for key, who in use.names:
        if key in mine:
            raise ConflictError(f"{mine[key]} is already taken: {who} has it (up, or being built); "
                                f"{NOTHING_CHANGED}")


def _check_ports(spec: LabSpec, use: HostUse) -> None:
    theirs = [(Port.parse(text), who) for text, who in use.ports]
    sockets = [(Port.parse(text), who) for text, who in use.listeners]
    for net in spec.networks:
        if net.host != HOST or net.driver != "bridge":
            continue
        for member in net.members:
            for pub in member.publish:
                mine = Port(pub.host_port, pub.protocol, pub.host_ip)
                where = f"network {net.name}: member {member.node} publishes host port {mine}"
                for other, who in theirs:
                    if mine.overlaps(other):
                        raise ConflictError(f"{where}, which {who} already publishes ({other}); {NOTHING_CHANGED}")
                for other, who in sockets:
                    if mine.overlaps(other):
                        raise ConflictError(
                            f"{where}, but {who} listens on {other} (see `ss -lntup 'sport = :{mine.port}'`): "
                            f"its traffic would go to the lab instead; {NOTHING_CHANGED}")


def _check_addresses(spec: LabSpec, use: HostUse) -> None:
    held = [(ipaddress.ip_interface(cidr), who) for cidr, who in use.addresses]
    nets = [(ipaddress.ip_network(cidr), who) for cidr, who in use.subnets]
    for link in spec.links:
        for end in link.endpoints:
            if end.node != HOST:
                continue
            for text in link.addresses_of(end):
                mine = ipaddress.ip_interface(text)
                if mine.is_link_local:
                    continue  # fe80::/64 is on every link by design
                where = f"link end {end}: address {mine}"
                for other, who in held:
                    if other.ip == mine.ip:
                        raise ConflictError(f"{where} is already taken: {who} has it; {NOTHING_CHANGED}")
                for other, who in held:
                    if _overlap(mine, other.network):
                        raise ConflictError(f"{where} overlaps {other.network} of {who} ({other}): the host "
                                            f"would have two routes for it; {NOTHING_CHANGED}")
                for net, who in nets:
                    if _overlap(mine, net):
                        raise ConflictError(f"{where} overlaps {net} of {who}; {NOTHING_CHANGED}")


def _overlap(mine: Interface, other: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    return mine.version == other.version and not other.is_loopback and not other.is_link_local \
        and mine.network.overlaps(other)
