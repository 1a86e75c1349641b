"""Address management for networks: pure, deterministic, and stable over re-runs.

Subnets not given in the file come from a pool (172.30.0.0/16, cut into /24s, or into the
larger block a network's members need: 300 members get a /23),
skipping any that overlaps a subnet in use: this lab's other networks, other
labs' claims (bridge subnets and host link ends, from their states) and addresses
already present in the host node's namespace.  `up` reads what is in use, chooses
and records its choice under one host-wide lock (state/hostwide.py), so labs
brought up in parallel never get the same subnet.  There is no IPv6 pool: a
`subnet6` is always given, and checked against the same claims.  Members get
their static `ip` or the next free address after the gateway, in file order.
Every choice is kept in the lab's state, and an earlier choice that is still
valid wins, so a re-run `up` keeps every address even when members are added or
removed around it.  Addresses held by containers a runtime joined to the lab
(`held`: the CNI plugin's join-a-lab mode) are skipped for new members, and a
static `ip` that is one of them is a conflict.
"""

from __future__ import annotations

import ipaddress
from dataclasses import field
from typing import Any

from ..deferred import dataclass
from ..errors import ConflictError
from ..topology.schema import LabSpec, NetworkSpec

POOL = ipaddress.ip_network("172.30.0.0/16")
POOL_PREFIX = 24

Net = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass
class Allocation:
    """What IPAM decided, per network: subnets, gateways, member addresses."""

    subnet: dict[str, str] = field(default_factory=dict)
    subnet6: dict[str, str] = field(default_factory=dict)
    gateway: dict[str, str] = field(default_factory=dict)  # "ip/prefix" on the bridge
    gateway6: dict[str, str] = field(default_factory=dict)
    address: dict[str, dict[str, str]] = field(default_factory=dict)  # network -> node -> "ip/prefix"
    address6: dict[str, dict[str, str]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"subnet": self.subnet, "subnet6": self.subnet6, "address": self.address, "address6": self.address6}

    @classmethod
    def previous(cls, data: dict[str, Any] | None) -> Allocation:
        data = data or {}
        return cls(subnet=dict(data.get("subnet", {})), subnet6=dict(data.get("subnet6", {})),
                   address={k: dict(v) for k, v in data.get("address", {}).items()},
                   address6={k: dict(v) for k, v in data.get("address6", {}).items()})


def allocate(spec: LabSpec, previous: Allocation | None = None,
             taken: dict[str, list[tuple[str, str]]] | None = None,
             held: dict[str, dict[str, str]] | None = None) -> Allocation:
    """Decide subnets and addresses.  `taken`: per host node, (network, who) pairs
    already in use there (other labs, the host's own interfaces).  `held`: per
    network, IPv4 address -> who holds it outside the file (joined containers).  Raises
    ConflictError (exit 1, before anything is built) when a subnet given in the file
    overlaps one in use, or the pool is exhausted."""
    previous = previous or Allocation()
    taken = taken or {}
    out = Allocation()
    in_use: dict[str, list[tuple[Net, str]]] = {
        node: [(ipaddress.ip_network(n, strict=False), who) for n, who in pairs] for node, pairs in taken.items()}
    for net in spec.networks:  # explicit subnets first: they are fixed
        if net.uplinks or net.driver == "macvlan":
            continue  # members join a real LAN: its subnet is shared by design, the host may be on it too
        for value, key in ((net.subnet, "subnet"), (net.subnet6, "subnet6")):
            if value:
                subnet = ipaddress.ip_network(value)
                for other, who in in_use.get(net.host, []):
                    if other.version == subnet.version and subnet.overlaps(other):
                        raise ConflictError(f"network {net.name}: {key} {subnet} overlaps {other} of {who}; "
                                            "nothing was changed")
    for net in spec.networks:
        if net.subnet:
            out.subnet[net.name] = net.subnet
        elif net.driver == "bridge":
            out.subnet[net.name] = str(_pick_subnet(net, previous, in_use.get(net.host, []), spec))
        if net.subnet6:
            out.subnet6[net.name] = net.subnet6
        for subnets in (out.subnet, out.subnet6):
            if net.name in subnets:
                in_use.setdefault(net.host, []).append((ipaddress.ip_network(subnets[net.name]),
                                                        f"network {net.name}"))
        _members(net, out, previous, 4, (held or {}).get(net.name, {}))
        _members(net, out, previous, 6, {})
    return out


def needed_prefix(net: NetworkSpec) -> int:
    """The longest prefix (at most /24) whose subnet holds the network's members, its
    gateway, and the network and broadcast addresses: Docker fits a 300-container
    network, so must we (a /23 then, not a /24 that runs out at the 253rd member)."""
    wanted = len(net.members) + (1 if net.gateway else 0) + 2
    prefix = POOL_PREFIX
    while prefix > 0 and 2 ** (32 - prefix) < wanted:
        prefix -= 1
    return prefix


def _pick_subnet(net: NetworkSpec, previous: Allocation, in_use: list[tuple[Net, str]], spec: LabSpec) -> Net:
    fixed = [ipaddress.ip_network(n.subnet) for n in spec.networks if n.subnet and n.host == net.host]
    prefix = needed_prefix(net)

    def free(candidate: Net) -> bool:
        return not any(candidate.overlaps(other) for other, _ in in_use) and \
            not any(candidate.overlaps(other) for other in fixed)

    kept = previous.subnet.get(net.name)
    if kept and ipaddress.ip_network(kept).prefixlen <= prefix and free(ipaddress.ip_network(kept)):
        return ipaddress.ip_network(kept)
    if prefix < POOL.prefixlen:
        raise ConflictError(f"network {net.name}: {len(net.members)} members need a /{prefix}, more than the pool "
                            f"{POOL} holds; give the network a subnet of its own (e.g. `subnet: 10.64.0.0/{prefix}`)")
    for candidate in POOL.subnets(new_prefix=prefix):
        if free(candidate):
            return candidate
    raise ConflictError(f"network {net.name}: no free /{prefix} left in the pool {POOL}; give it a subnet "
                        "(`subnet:` in the file)")


def _members(net: NetworkSpec, out: Allocation, previous: Allocation, version: int, held: dict[str, str]) -> None:
    subnets = out.subnet if version == 4 else out.subnet6
    if net.name not in subnets:
        return
    subnet = ipaddress.ip_network(subnets[net.name])
    prefix = subnet.prefixlen
    gateway = subnet.network_address + 1 if net.gateway else None
    if gateway is not None and net.driver == "bridge":
        (out.gateway if version == 4 else out.gateway6)[net.name] = f"{gateway}/{prefix}"
    used: set[Any] = {gateway} if gateway is not None else set()
    static = {m.node: ipaddress.ip_address(text) for m in net.members
              if (text := (m.ip if version == 4 else m.ip6))}
    others = {ipaddress.ip_address(ip): who for ip, who in held.items()}
    for node, ip in static.items():
        if ip in others:
            raise ConflictError(f"network {net.name}: member {node}'s ip {ip} is held by {others[ip]}; choose "
                                "another, or detach the container first (its runtime's DEL); nothing was changed")
    used |= set(static.values()) | set(others)
    before = (previous.address if version == 4 else previous.address6).get(net.name, {})
    chosen: dict[str, str] = {}
    # keep earlier dynamic choices that are still valid, before handing out new ones
    for member in net.members:
        if member.node in static:
            chosen[member.node] = f"{static[member.node]}/{prefix}"
            continue
        old = before.get(member.node)
        if old:
            ip = ipaddress.ip_interface(old).ip
            if ip in subnet and ip not in used and ip != subnet.network_address and \
                    (version == 6 or ip != subnet.broadcast_address):
                chosen[member.node] = f"{ip}/{prefix}"
                used.add(ip)
    candidates = subnet.hosts()
    for member in net.members:
        if member.node in chosen:
            continue
        for ip in candidates:
            if ip not in used:
                used.add(ip)
                chosen[member.node] = f"{ip}/{prefix}"
                break
        else:
            raise ConflictError(f"network {net.name}: subnet {subnet} has no free address left for {member.node} "
                                f"({len(net.members)} members); give the network a larger subnet (`subnet:` with a "
                                "shorter prefix, e.g. /16)")
    (out.address if version == 4 else out.address6)[net.name] = {m.node: chosen[m.node] for m in net.members}
