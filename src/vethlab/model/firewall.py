"""The nftables ruleset of one lab in one namespace, as nft's JSON — pure.

One table per lab (`inet vethlab_LAB`), never touching anyone else's (iptables-nft's
`ip nat`/`ip filter` included).  What it does, per network of the namespace:

* nat: masquerade the subnet leaving by any interface other than its bridge;
* publish: DNAT `fib daddr type local` (and HOSTIP when given) in prerouting and
  in output (the host itself), masquerade DNAT-ed traffic from the subnet back into
  it (hairpin) and from 127.0.0.0/8 (published on the loopback);
* internal: nothing in or out of the bridge except between its own members;
* isolated: no traffic between this network's bridge and the lab's others.

The forward chain's policy is accept: bridged traffic passes the IP hooks here
(bridge-nf-call-iptables), and a drop policy would cut members of one bridge off
from each other.  The table carries a chain named after the ruleset's digest, so
a re-run `up` sees at a glance whether the kernel has this very ruleset, and the
empty chain `table_marker(LAB)`: the proof that vethlab made it.  A table of the
same name without it is someone else's: a conflict for `up`, never deleted.

An accept here cannot undo another table's drop: nftables runs every base chain
registered at a hook, and a packet dropped by any of them is gone (an accept only
ends the chain that says it).  Docker's `ip filter FORWARD` with policy drop
therefore drops the lab's bridged traffic whatever this table says; `forward_policy`
detects that and says which rule would let it through.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from ..digests import sha256
from ..ownership import lab_of_table, table_marker, table_name, table_owner
from .desired import NatNetwork

__all__ = ["lab_of_table", "table_name", "table_marker", "table_owner", "rules", "batch", "digest"]

DIGEST_CHAIN_PREFIX = "v-"


def _match(left: Any, right: Any, op: str = "==") -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


def _prefix(cidr: str) -> dict[str, Any]:
    net = ipaddress.ip_network(cidr)
    return {"prefix": {"addr": str(net.network_address), "len": net.prefixlen}}


def _saddr(cidr: str) -> dict[str, Any]:
    proto = "ip6" if ":" in cidr else "ip"
    return _match({"payload": {"protocol": proto, "field": "saddr"}}, _prefix(cidr))


def _oif(name: str, op: str = "==") -> dict[str, Any]:
    return _match({"meta": {"key": "oifname"}}, name, op)


def _iif(name: str, op: str = "==") -> dict[str, Any]:
    return _match({"meta": {"key": "iifname"}}, name, op)


DNAT_STATUS = _match({"ct": {"key": "status"}}, "dnat", "in")
MASQ: dict[str, Any] = {"masquerade": None}
DROP: dict[str, Any] = {"drop": None}


def rules(networks: list[NatNetwork]) -> dict[str, list[list[dict[str, Any]]]]:
    """chain name -> list of rules (each a list of nft JSON expressions)."""
    chains: dict[str, list[list[dict[str, Any]]]] = {"postrouting": [], "prerouting": [], "output": [], "forward": []}
    for net in networks:
        for subnet in (net.subnet, net.subnet6):
            if subnet and net.nat:
                chains["postrouting"].append([_saddr(subnet), _oif(net.bridge, "!="), MASQ])
        if net.publish:
            if net.subnet:
                chains["postrouting"].append([_oif(net.bridge), DNAT_STATUS, _saddr(net.subnet), MASQ])
                chains["postrouting"].append([_oif(net.bridge), DNAT_STATUS, _saddr("127.0.0.0/8"), MASQ])
            if net.subnet6:
                chains["postrouting"].append([_oif(net.bridge), DNAT_STATUS, _saddr(net.subnet6), MASQ])
        for pub, ip4, ip6 in net.publish:
            for family, member in (("ip", ip4), ("ip6", ip6)):
                if not member or (family == "ip6" and pub.host_ip):
                    continue
                rule: list[dict[str, Any]] = []
                if pub.host_ip:
                    rule.append(_match({"payload": {"protocol": "ip", "field": "daddr"}}, pub.host_ip))
                else:
                    rule.append(_match({"meta": {"key": "nfproto"}}, "ipv4" if family == "ip" else "ipv6"))
                    rule.append(_match({"fib": {"result": "type", "flags": ["daddr"]}}, "local"))
                rule.append(_match({"meta": {"key": "l4proto"}}, pub.protocol))
                rule.append(_match({"payload": {"protocol": "th", "field": "dport"}}, pub.host_port))
                rule.append({"dnat": {"family": family, "addr": member, "port": pub.port}})
                chains["output"].append(rule)
                if pub.host_ip != "127.0.0.1":
                    chains["prerouting"].append(rule)
        if net.internal:
            chains["forward"].append([_iif(net.bridge), _oif(net.bridge, "!="), DROP])
            chains["forward"].append([_oif(net.bridge), _iif(net.bridge, "!="), DROP])
    for net in networks:
        for other in networks:
            if other is not net and (net.isolated or other.isolated):
                chains["forward"].append([_iif(net.bridge), _oif(other.bridge), DROP])
    return chains


HOOKS = {"postrouting": ("nat", "postrouting", 100), "prerouting": ("nat", "prerouting", -100),
         "output": ("nat", "output", -100), "forward": ("filter", "forward", 0)}


def digest(networks: list[NatNetwork]) -> str:
    return sha256(json.dumps(rules(networks), sort_keys=True).encode()).hexdigest()[:16]


def batch(lab: str, networks: list[NatNetwork], replace: bool) -> dict[str, Any]:
    """One atomic nft JSON batch that (re)creates the lab's table with its rules."""
    return table_batch(table_name(lab), replace, [table_marker(lab), DIGEST_CHAIN_PREFIX + digest(networks)],
                       rules(networks))


def table_batch(table: str, replace: bool, marks: list[str],
                chains: dict[str, list[list[dict[str, Any]]]]) -> dict[str, Any]:
    """One atomic nft JSON batch that (re)creates inet table `table`: its marking
    chains (no hook, no rules: they name the owner or a digest), then each hooked
    chain (HOOKS) with its rules.  replace: the table there is deleted and re-added
    in the same transaction (no window without rules); else `create`, which fails
    if a table of that name appeared since the plan (`add` would merge into it)."""
    ref = {"family": "inet", "name": table}
    cmds: list[dict[str, Any]] = [{"add": {"table": ref}}, {"delete": {"table": ref}}, {"add": {"table": ref}}] \
        if replace else [{"create": {"table": ref}}]
    cmds += [{"add": {"chain": {"family": "inet", "table": table, "name": mark}}} for mark in marks]
    for chain, chain_rules in chains.items():
        kind, hook, prio = HOOKS[chain]
        cmds.append({"add": {"chain": {"family": "inet", "table": table, "name": chain, "type": kind, "hook": hook,
                                       "prio": prio, "policy": "accept"}}})
        for expr in chain_rules:
            cmds.append({"add": {"rule": {"family": "inet", "table": table, "chain": chain, "expr": expr}}})
    return {"nftables": cmds}
