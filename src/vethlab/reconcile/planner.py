"""Plan: the difference between the desired state and what the kernel holds, as a
list of actions, each with the reason a user reads in `vethlab plan`.

The plan is a value (containerlab's apply, pyinfra's operations): `plan` prints
it, `up` executes exactly it.  Conflicts with objects vethlab does not own are
found here, before anything is touched.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from ..desired import Desired, DesiredInterface, IfKey
from ..errors import ConflictError
from ..kernel.api import LinkInfo, Netns, Route
from ..ownership import ROUTE_PROTO, lab_of
from ..topology.schema import RouteSpec
from .observe import Observed

# Execution order; deletions that free a name run early, the rest last so a failed
# creation is rolled back before anything the user had was removed.
PHASES = ["delete-early", "node", "veth", "interface", "sysctl", "address", "route", "hosts", "exec", "delete-late"]


@dataclass(frozen=True)
class Action:
    verb: str  # create | delete | modify | run
    kind: str  # node | veth | interface | address | route | sysctl | hosts | exec
    target: str
    reason: str
    phase: str
    node: str
    netns: Netns
    params: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("phase")
        return out


@dataclass
class Plan:
    lab: str
    actions: list[Action] = field(default_factory=list)
    exec_digests: dict[str, str] = field(default_factory=dict)

    def add(self, action: Action) -> None:
        self.actions.append(action)

    def ordered(self) -> list[Action]:
        return sorted(self.actions, key=lambda a: PHASES.index(a.phase))

    def __bool__(self) -> bool:
        return bool(self.actions)

    def to_json(self) -> dict[str, Any]:
        return {"lab": self.lab, "changes": len(self.actions), "actions": [a.to_json() for a in self.ordered()]}


def route_of(spec: RouteSpec) -> Route:
    return Route(dst=spec.dst, via=spec.via, dev=spec.dev, metric=spec.metric, src=spec.src)


def route_matches(want: Route, have: Route) -> bool:
    """Does kernel route `have` satisfy `want`?  Unspecified fields of `want` are
    whatever the kernel chose (dev from the gateway, default metric)."""
    default_metric = 1024 if ":" in want.dst else 0
    return (want.dst == have.dst and want.via == have.via
            and (want.dev is None or want.dev == have.dev)
            and (want.metric if want.metric is not None else default_metric) == (have.metric or 0)
            and (want.src is None or want.src == have.src))


def route_text(r: Route) -> str:
    dst = "default" if r.dst in ("0.0.0.0/0", "::/0") else r.dst
    words = [dst] + [f"{k} {v}" for k, v in (("via", r.via), ("dev", r.dev), ("metric", r.metric)) if v is not None]
    return " ".join(words)


def exec_digest(commands: tuple[tuple[str, ...], ...]) -> str:
    return hashlib.sha256(json.dumps(commands).encode()).hexdigest()[:16] if commands else ""


def make_plan(desired: Desired, observed: Observed, marker: str, previous_exec: dict[str, str] | None = None,
              host_routes: list[Route] | None = None) -> Plan:
    """Compute the actions that take the kernel from `observed` to `desired`.
    Raises ConflictError, naming the object, if a foreign object is in the way."""
    plan = Plan(desired.lab)
    _check_conflicts(desired, observed, marker)
    created = _plan_nodes(plan, desired, observed, marker)
    _plan_veths(plan, desired, observed, marker)
    _plan_stale_interfaces(plan, desired, observed, marker)
    _plan_routes(plan, desired, observed, host_routes or [])
    _plan_sysctls(plan, desired, observed, created)
    _plan_hosts(plan, desired, observed, created)
    _plan_exec(plan, desired, created, previous_exec or {})
    return plan


def _plan_nodes(plan: Plan, desired: Desired, observed: Observed, marker: str) -> set[str]:
    """Namespaces to create and to delete; returns the nodes created."""
    created = set()
    for name, node in desired.nodes.items():
        seen = observed.nodes.get(name)
        if node.netns is not None and seen is not None and seen.exists and not seen.alive and seen.known:
            plan.add(Action("delete", "node", name, f"/run/netns/{node.netns} is a dead file left by an interrupted "
                            "run of this lab", "delete-early", name, node.netns))
            seen = None
        if node.netns is not None and (seen is None or not seen.exists):
            created.add(name)
            plan.add(Action("create", "node", name, f"namespace {node.netns} does not exist", "node", name, node.netns))
    for name, seen in observed.nodes.items():
        if name not in desired.nodes and seen.netns is not None and seen.exists and seen.owner == marker:
            plan.add(Action("delete", "node", name, f"node {name} is no longer in the file", "delete-late", name,
                            seen.netns))
    return created


def _plan_veths(plan: Plan, desired: Desired, observed: Observed, marker: str) -> None:
    """Veth pairs: keep an intact pair (and change it in place), else (re)build it."""
    for veth in desired.veths:
        a, b = desired.interfaces[veth.a], desired.interfaces[veth.b]
        have_a, have_b = _link(observed, veth.a), _link(observed, veth.b)
        intact = (have_a is not None and have_b is not None and have_a.kind == "veth" and have_b.kind == "veth"
                  and have_a.peer_index == have_b.index and have_b.peer_index == have_a.index)
        if intact:
            assert have_a is not None and have_b is not None
            _plan_interface(plan, desired, a, have_a, marker)
            _plan_interface(plan, desired, b, have_b, marker)
            continue
        rebuilt = False
        for key, have in ((veth.a, have_a), (veth.b, have_b)):
            if have is not None:
                rebuilt = True
                other = veth.b if key == veth.a else veth.a
                plan.add(Action("delete", "interface", _ep(key), f"it is not the veth peer of {_ep(other)} the file "
                                "asks for", "delete-early", key[0], desired.netns(key[0]), {"ifname": key[1]}))
        plan.add(Action("create", "veth", f"{_ep(veth.a)} <-> {_ep(veth.b)}",
                        "link is rebuilt with the right peer" if rebuilt else "link is new", "veth", veth.a[0],
                        desired.netns(veth.a[0]), {"a_netns": desired.netns(veth.a[0]), "a_ifname": veth.a[1],
                                                   "b_netns": desired.netns(veth.b[0]), "b_ifname": veth.b[1],
                                                   "mtu": a.mtu}))
        for end in (a, b):
            plan.add(Action("modify", "interface", _ep((end.node, end.ifname)),
                            f"set {'up' if end.up else 'down'}, mark as this lab's", "interface", end.node,
                            desired.netns(end.node), {"ifname": end.ifname, "up": end.up, "alias": marker}))
            for cidr in end.addresses:
                plan.add(_address_action("create", desired, end, cidr, "the link is new"))


def _plan_stale_interfaces(plan: Plan, desired: Desired, observed: Observed, marker: str) -> None:
    """Interfaces marked as this lab's that the file no longer has (one action per pair)."""
    handled: set[tuple[str, int]] = set()
    for name, seen in observed.nodes.items():
        if seen.owner != marker or not seen.exists or (name not in desired.nodes and seen.netns is not None):
            continue
        for ifname, link in seen.links.items():
            if ifname == "lo" or link.alias != marker or (name, ifname) in desired.interfaces:
                continue
            if (name, link.index) in handled:
                continue
            handled.add((name, link.index))
            handled.update(_peers_of(observed, link))
            plan.add(Action("delete", "interface", f"{name}:{ifname}", "link is no longer in the file",
                            "delete-late", name, seen.netns, {"ifname": ifname}))


def _plan_routes(plan: Plan, desired: Desired, observed: Observed, host_routes: list[Route]) -> None:
    for name, node in desired.nodes.items():
        seen = observed.nodes.get(name)
        mine = [r for r in (seen.routes if seen else []) if r.proto == ROUTE_PROTO]
        if node.netns is None:  # in the host, only the routes this lab recorded are its own
            mine = [r for r in mine if any(route_matches(h, r) for h in host_routes)]
        wanted = [route_of(spec) for spec in node.routes]
        for want in wanted:
            if not any(route_matches(want, have) for have in mine):
                plan.add(Action("create", "route", f"{name}: {route_text(want)}",
                                "route is in the file but not in the kernel", "route", name, node.netns,
                                {"route": asdict(want)}))
        for have in mine:
            if not any(route_matches(want, have) for want in wanted):
                plan.add(Action("delete", "route", f"{name}: {route_text(have)}", "route is no longer in the file",
                                "delete-early", name, node.netns, {"route": asdict(have)}))


def _plan_sysctls(plan: Plan, desired: Desired, observed: Observed, created: set[str]) -> None:
    for name, node in desired.nodes.items():
        seen = observed.nodes.get(name)
        for key, value in node.sysctls:
            current = seen.sysctls.get(key) if seen else None
            if name in created or current is None or current.split() != value.split():
                plan.add(Action("modify", "sysctl", f"{name}: {key}", f"{current or 'unset'} -> {value}", "sysctl",
                                name, node.netns, {"key": key, "value": value, "previous": current}))


def _plan_hosts(plan: Plan, desired: Desired, observed: Observed, created: set[str]) -> None:
    """/etc/netns/NODE/hosts: every node resolves every other by name."""
    entries = desired.hosts_entries()
    for name, node in desired.nodes.items():
        seen = observed.nodes.get(name)
        if node.netns is not None and (name in created or seen is None or seen.hosts != entries):
            plan.add(Action("modify", "hosts", f"/etc/netns/{node.netns}/hosts", "name resolution of the lab's nodes",
                            "hosts", name, node.netns, {"entries": [list(e) for e in entries]}))


def _plan_exec(plan: Plan, desired: Desired, created: set[str], previous: dict[str, str]) -> None:
    """exec: once per node when created, again when its commands changed."""
    for name, node in desired.nodes.items():
        digest = exec_digest(node.exec)
        plan.exec_digests[name] = digest
        if node.exec and (name in created or previous.get(name) != digest):
            for argv in node.exec:
                plan.add(Action("run", "exec", f"{name}: {' '.join(argv)}",
                                "node is new" if name in created else "exec commands changed", "exec",
                                name, node.netns, {"argv": list(argv)}))


def _plan_interface(plan: Plan, desired: Desired, want: DesiredInterface, have: LinkInfo, marker: str) -> None:
    target = _ep((want.node, want.ifname))
    ns = desired.netns(want.node)
    if want.mtu is not None and have.mtu != want.mtu:
        plan.add(Action("modify", "interface", target, f"mtu {have.mtu} -> {want.mtu}", "interface", want.node, ns,
                        {"ifname": want.ifname, "mtu": want.mtu}))
    if have.admin_up != want.up:
        plan.add(Action("modify", "interface", target, f"admin state {'up' if have.admin_up else 'down'} -> "
                        f"{'up' if want.up else 'down'}", "interface", want.node, ns, {"ifname": want.ifname, "up": want.up}))
    if have.alias != marker:
        plan.add(Action("modify", "interface", target, "mark as this lab's", "interface", want.node, ns,
                        {"ifname": want.ifname, "alias": marker}))
    wanted = {str(ipaddress.ip_interface(a)) for a in want.addresses}
    present = set(have.addresses)
    for cidr in want.addresses:
        if str(ipaddress.ip_interface(cidr)) not in present:
            plan.add(_address_action("create", desired, want, cidr, f"address {cidr} added to {target}"))
    for cidr in sorted(present - wanted):
        plan.add(_address_action("delete", desired, want, cidr, f"address {cidr} removed from {target}"))


def _address_action(verb: str, desired: Desired, want: DesiredInterface, cidr: str, reason: str) -> Action:
    return Action(verb, "address", f"{cidr} on {want.node}:{want.ifname}", reason,
                  "address" if verb == "create" else "delete-early", want.node, desired.netns(want.node),
                  {"ifname": want.ifname, "cidr": cidr})


def _ep(key: IfKey) -> str:
    return f"{key[0]}:{key[1]}"


def _link(observed: Observed, key: IfKey) -> LinkInfo | None:
    node = observed.nodes.get(key[0])
    return node.links.get(key[1]) if node else None


def _peers_of(observed: Observed, link: LinkInfo) -> set[tuple[str, int]]:
    """(node, ifindex) of the interfaces that are this veth's peer."""
    return {(name, other.index) for name, node in observed.nodes.items() for other in node.links.values()
            if other.peer_index == link.index and link.peer_index == other.index}


def _check_conflicts(desired: Desired, observed: Observed, marker: str) -> None:
    problems = []
    for name, node in desired.nodes.items():
        seen = observed.nodes.get(name)
        if node.netns is None or seen is None or not seen.exists:
            continue
        if not seen.alive:
            if not seen.known:  # a dead file of our own making is removed by the plan instead
                problems.append(f"/run/netns/{node.netns} is a stale file with no namespace behind it (left from "
                                "before a reboot?); `ip netns del` it, or `vethlab clean` if it was vethlab's")
        elif seen.owner != marker:
            other = lab_of(seen.owner)
            problems.append(f"namespace {node.netns} (node {name}) already exists and belongs to lab {other}" if other
                            else f"namespace {node.netns} (node {name}) already exists and is not vethlab's")
    for key in desired.interfaces:
        seen = observed.nodes.get(key[0])
        # A lab's own namespace and everything in it are the lab's (down removes them
        # all); only in a namespace vethlab does not own can a name be taken.
        if seen is None or seen.owner != marker or seen.netns is not None:
            continue
        have = seen.links.get(key[1])
        if have is not None and have.alias != marker:
            other = lab_of(have.alias)
            where = "the host namespace" if seen.netns is None else f"namespace {seen.netns}"
            problems.append(f"interface {key[1]} already exists in {where} and belongs to lab {other}" if other
                            else f"interface {key[1]} already exists in {where} and is not vethlab's")
    for name, node in desired.nodes.items():
        seen = observed.nodes.get(name)
        if node.netns is not None or seen is None:
            continue
        for spec in node.routes:
            wanted = route_of(spec)
            for existing in seen.routes:
                if existing.proto != ROUTE_PROTO and existing.dst == wanted.dst and (existing.metric or 0) == (
                        wanted.metric if wanted.metric is not None else (1024 if ":" in wanted.dst else 0)):
                    problems.append(f"route {route_text(wanted)} in the host namespace would replace the existing "
                                    f"route {route_text(existing)}, which is not vethlab's")
    if problems:
        raise ConflictError("\n".join(problems) + "\nnothing was changed")
