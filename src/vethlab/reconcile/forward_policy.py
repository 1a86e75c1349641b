"""Foreign forward chains that will drop a lab's traffic — found, named, explained.

nftables runs every base chain registered at a hook, and a packet dropped by any of
them is gone: an accept ends only the chain that says it.  So an accept in vethlab's
own table cannot undo Docker's `ip filter FORWARD` with policy drop; the lab's
networks would be dead while `up` exits 0.  Which traffic meets such a chain:

* bridged traffic between members of one bridge, in the `ip`/`ip6`/`inet` families,
  when `net.bridge.bridge-nf-call-iptables` (`-ip6tables`) is 1 — it is 1 in every
  namespace on this project's machines (NOTES.md) — and always in the `bridge` family;
* routed traffic (NAT out, published ports, between networks) whenever the host
  forwards.

A chain "drops" when its policy is drop or its last rule drops or rejects unconditionally,
unless a rule in it, or in a chain it jumps to, accepts traffic coming in by the
lab's bridge (`iifname "BR" accept`, iptables' `-i BR -j ACCEPT`, with only counters
or comments beside).  Anything subtler (sets of names, marks) is not interpreted:
the warning then errs on the side of speaking.  The analysis is pure; `check` reads
the kernel.
"""

from __future__ import annotations

import fnmatch
from typing import TYPE_CHECKING, Any, Protocol

from ..deferred import dataclass
from ..errors import ConflictError
from ..kernel.api import Firewall, Kernel, Sysctls
from ..ownership import table_owner

if TYPE_CHECKING:
    from ..model.desired import Desired

# expressions a rule may carry beside its interface matches and still accept everything they let in
_HARMLESS = {"counter", "log", "comment", "limit"}
_IFACE_KEYS = {"iifname": "in", "oifname": "out", "ibrname": "in", "obrname": "out"}


@dataclass(frozen=True)
class Blocker:
    family: str
    table: str
    chain: str
    reason: str  # "policy drop" | "a final drop rule" | "a final reject rule"
    bridges: tuple[str, ...]
    sysctl: str | None  # why bridged traffic meets it, or None (routed traffic / bridge family)
    user_chain: str | None = None  # DOCKER-USER, where Docker wants such rules

    def commands(self) -> list[str]:
        """Commands that let the lab's traffic through this chain (in by the bridge,
        and replies or published-port traffic out to it)."""
        out = []
        iptables = {"ip": "iptables", "ip6": "ip6tables"}.get(self.family)
        for br in self.bridges:
            if iptables and self.table == "filter" and self.chain == "FORWARD":
                # iptables-nft's table: its rules are iptables' to write ("do not touch" otherwise)
                where = self.user_chain or self.chain
                out.append(f"{iptables} -I {where} -i {br} -j ACCEPT")
                out.append(f"{iptables} -I {where} -o {br} -m conntrack --ctstate RELATED,ESTABLISHED,DNAT "
                           "-j ACCEPT")
            elif self.family == "bridge":
                out.append(f'nft insert rule bridge {self.table} {self.chain} meta ibrname "{br}" accept')
            else:
                head = f"nft insert rule {self.family} {self.table} {self.chain}"
                out.append(f'{head} iifname "{br}" accept')
                out.append(f'{head} oifname "{br}" ct state established,related accept')
                out.append(f'{head} oifname "{br}" ct status dnat accept')
        return out

    def message(self) -> str:
        why = (f"bridged traffic passes the IP hooks: {self.sysctl} = 1" if self.sysctl
               else "the lab's traffic is bridged or routed through it")
        return (f"table {self.family} {self.table}, chain {self.chain} (hook forward, {self.reason}) is not "
                f"vethlab's and will drop the lab's traffic on bridge {', '.join(self.bridges)} ({why}); an accept "
                "in vethlab's own table cannot override another table's drop. Let it through with:\n"
                + "\n".join("  " + c for c in self.commands()))


def _iface_match(expr: dict[str, Any]) -> tuple[str, str] | None:
    """("in"|"out", pattern) for `meta iifname == "X"` and the like, else None."""
    match = expr.get("match")
    if not isinstance(match, dict) or match.get("op", "==") != "==":
        return None
    left, right = match.get("left"), match.get("right")
    key = left.get("meta", {}).get("key") if isinstance(left, dict) else None
    if key in _IFACE_KEYS and isinstance(right, str):
        return _IFACE_KEYS[key], right
    return None


def _accepts(rule: list[dict[str, Any]], bridge: str) -> bool:
    """Does this rule accept every packet that comes in by `bridge` and leaves by it?"""
    if not rule or "accept" not in rule[-1]:
        return False
    for expr in rule[:-1]:
        if any(k in _HARMLESS for k in expr):
            continue
        iface = _iface_match(expr)
        # nft writes a wildcard as "br*"; iptables' "br+" reaches nft JSON as "br*" too
        if iface is None or not fnmatch.fnmatchcase(bridge, iface[1]):
            return False
    return True


def _drops_at_end(rules: list[list[dict[str, Any]]]) -> bool:
    """The last rule drops or rejects whatever reaches it (firewalld's filter_FORWARD
    ends with `reject with icmpx admin-prohibited`, its policy accept)."""
    return (bool(rules) and bool(rules[-1]) and ("drop" in rules[-1][-1] or "reject" in rules[-1][-1])
            and all(any(k in _HARMLESS for k in e) for e in rules[-1][:-1]))


def blockers(items: list[dict[str, Any]], bridges: list[str], bridge_nf: dict[str, bool],
             routed: bool) -> list[Blocker]:
    """The base chains at the forward hook, in tables that are not vethlab's, that will
    drop traffic of `bridges`.  `items`: `nft -j list ruleset`'s; `bridge_nf`: family
    ("ip", "ip6") -> bridge-nf-call-*tables is 1; `routed`: the host forwards the lab's
    traffic."""
    chains: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    rules: dict[tuple[str, str, str], list[list[dict[str, Any]]]] = {}
    for item in items:
        if "chain" in item:
            c = item["chain"]
            chains.setdefault((c.get("family", ""), c.get("table", "")), {})[c.get("name", "")] = c
        elif "rule" in item:
            r = item["rule"]
            rules.setdefault((r.get("family", ""), r.get("table", ""), r.get("chain", "")), []).append(
                [e for e in r.get("expr", []) if isinstance(e, dict)])
    found = []
    for (family, table), named in sorted(chains.items()):
        if table_owner(table, list(named)):
            continue  # vethlab's own tables accept their lab's traffic by construction
        for name, chain in sorted(named.items()):
            if chain.get("hook") != "forward" or family not in ("ip", "ip6", "inet", "bridge"):
                continue
            sysctl = None
            if family != "bridge":
                meets = [f for f in (("ip", "ip6") if family == "inet" else (family,)) if bridge_nf.get(f)]
                if not meets and not routed:
                    continue
                if meets:
                    sysctl = "net.bridge.bridge-nf-call-" + ("iptables" if meets[0] == "ip" else "ip6tables")
            own = rules.get((family, table, name), [])
            if chain.get("policy") == "drop":
                reason = "policy drop"
            elif _drops_at_end(own):
                reason = "a final drop rule" if "drop" in own[-1][-1] else "a final reject rule"
            else:
                continue
            reachable = _reachable(family, table, name, rules)
            blocked = tuple(br for br in bridges if not any(_accepts(rule, br) for rule in reachable))
            if blocked:
                user = "DOCKER-USER" if "DOCKER-USER" in named else None
                found.append(Blocker(family, table, name, reason, blocked, sysctl, user))
    return found


def _reachable(family: str, table: str, start: str,
               rules: dict[tuple[str, str, str], list[list[dict[str, Any]]]]) -> list[list[dict[str, Any]]]:
    """The rules of `start` and of every chain it jumps or goes to, transitively."""
    seen, todo, out = {start}, [start], []
    while todo:
        for rule in rules.get((family, table, todo.pop()), []):
            out.append(rule)
            for expr in rule:
                for verb in ("jump", "goto"):
                    target = expr.get(verb, {}).get("target") if isinstance(expr.get(verb), dict) else None
                    if isinstance(target, str) and target not in seen:
                        seen.add(target)
                        todo.append(target)
    return out


class HostRules(Firewall, Sysctls, Protocol):
    """What `check` reads: the ruleset and the bridge-nf sysctls."""


def check(kernel: HostRules, bridges: list[str], routed: bool) -> list[Blocker]:
    """Read the host namespace's ruleset and bridge-nf settings; see `blockers`."""
    if not bridges:
        return []
    try:
        items = kernel.firewall_ruleset(None)
    except ConflictError:  # no nft: nothing to read, and no table of anyone's to warn about
        return []
    bridge_nf = {family: kernel.read_sysctl(None, f"net.bridge.bridge-nf-call-{name}") == "1"
                 for family, name in (("ip", "iptables"), ("ip6", "ip6tables"))}
    return blockers(items, bridges, bridge_nf, routed)


def forward_warnings(kernel: Kernel, desired: Desired) -> list[str]:
    """Foreign forward chains of the host namespace that will drop this lab's traffic
    (Docker's FORWARD with policy drop): `up` still succeeds, and says so."""
    from ..topology import HOST

    bridges = [iface.ifname for (node, _), iface in desired.interfaces.items()
               if node == HOST and iface.kind == "bridge"]
    return [b.message() for b in check(kernel, bridges, routed=bool(desired.forwarding.get(HOST)))]
