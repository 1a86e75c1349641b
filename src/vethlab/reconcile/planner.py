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
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import ConflictError
from ..kernel.api import LinkInfo, Netns, Route, route_matches, route_text
from ..model.desired import Desired, DesiredInterface, IfKey
from ..ownership import LEGACY_NODE_DIR, ROUTE_PROTO, lab_of, table_marker, table_owner
from ..topology.schema import HOST, RouteSpec
from .observe import Observed

# Execution order; deletions that free a name run early, the rest last so a failed
# creation is rolled back before anything the user had was removed.
PHASES = ["delete-early", "node", "view", "bridge", "veth", "interface", "shaping", "uplink", "sysctl", "address", "route",
          "firewall", "hosts", "exec", "service", "delete-late"]


@dataclass
class Memory:
    """What the lab's state remembers from earlier runs, for planning."""

    exec_digests: dict[str, str] = field(default_factory=dict)
    host_routes: list[Route] = field(default_factory=list)
    firewall_nodes: dict[str, Netns] = field(default_factory=dict)
    uplinks: dict[str, dict[str, Any]] = field(default_factory=dict)  # "node:ifname" -> {"up": bool, "bridge": ...}
    forwarding: set[str] = field(default_factory=set)  # host forwarding keys this lab holds and that are on
    shaped: dict[str, dict[str, Any]] = field(default_factory=dict)  # "node:ifname" -> shaping applied


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
    hosts: list[tuple[str, str]] = field(default_factory=list)  # (address, node) lines of every node's hosts file
    fingerprints: dict[str, str] = field(default_factory=dict)  # what the state records once this plan is applied
    warnings: list[str] = field(default_factory=list)  # what the host will do to the lab that vethlab may not change

    def add(self, action: Action) -> None:
        self.actions.append(action)

    def ordered(self) -> list[Action]:
        return sorted(self.actions, key=lambda a: PHASES.index(a.phase))

    def __bool__(self) -> bool:
        return bool(self.actions)

    def to_json(self) -> dict[str, Any]:
        return {"lab": self.lab, "changes": len(self.actions), "actions": [a.to_json() for a in self.ordered()],
                "hosts": [list(e) for e in self.hosts]}


def route_of(spec: RouteSpec) -> Route:
    return Route(dst=spec.dst, via=spec.via, dev=spec.dev, metric=spec.metric, src=spec.src)


def exec_digest(commands: tuple[tuple[str, ...], ...]) -> str:
    return hashlib.sha256(json.dumps(commands).encode()).hexdigest()[:16] if commands else ""


def make_plan(desired: Desired, observed: Observed, marker: str, previous_exec: dict[str, str] | None = None,
              host_routes: list[Route] | None = None, memory: Memory | None = None) -> Plan:
    """Compute the actions that take the kernel from `observed` to `desired`.
    Raises ConflictError, naming the object, if a foreign object is in the way."""
    plan = Plan(desired.lab)
    memory = memory or Memory()
    previous_exec = previous_exec if previous_exec is not None else memory.exec_digests
    host_routes = host_routes if host_routes is not None else memory.host_routes
    _check_conflicts(desired, observed, marker)
    created = _plan_nodes(plan, desired, observed, marker)
    _plan_bridges(plan, desired, observed, marker)
    _plan_veths(plan, desired, observed, marker)
    _plan_macvlans(plan, desired, observed, marker)
    _plan_stale_interfaces(plan, desired, observed, marker)
    _plan_uplinks(plan, desired, observed, memory)
    _plan_firewalls(plan, desired, observed, memory)
    _plan_forwarding(plan, desired, observed, memory)
    _plan_services(plan, desired, observed, created)
    _plan_shaping(plan, desired, observed, memory)
    _plan_routes(plan, desired, observed, host_routes or [])  # after interfaces: it looks at address deletions
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
            _plan_interface(plan, desired, a, have_a, marker, observed)
            _plan_interface(plan, desired, b, have_b, marker, observed)
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
            _plan_new_interface(plan, desired, end, marker, "the link is new")


def _plan_new_interface(plan: Plan, desired: Desired, end: DesiredInterface, marker: str, why: str) -> None:
    params: dict[str, Any] = {"ifname": end.ifname, "up": end.up, "alias": marker}
    reason = f"set {'up' if end.up else 'down'}, mark as this lab's"
    if end.master:
        params["master"] = end.master
        reason += f", port of bridge {end.master}"
    plan.add(Action("modify", "interface", _ep((end.node, end.ifname)), reason, "interface", end.node,
                    desired.netns(end.node), params))
    for cidr in end.addresses:
        plan.add(_address_action("create", desired, end, cidr, why))


def _plan_bridges(plan: Plan, desired: Desired, observed: Observed, marker: str) -> None:
    _plan_made_interfaces(plan, desired, observed, marker, "bridge", lambda want: (
        "network bridge is new", "bridge", {"ifname": want.ifname, "mtu": want.mtu}))


def _plan_macvlans(plan: Plan, desired: Desired, observed: Observed, marker: str) -> None:
    _plan_made_interfaces(plan, desired, observed, marker, "macvlan", lambda want: (
        f"member on {want.parent}'s LAN is new", "veth",
        {"ifname": want.ifname, "parent": want.parent, "mtu": want.mtu,
         "parent_netns": desired.netns(want.parent_node or HOST)}))


def _plan_made_interfaces(plan: Plan, desired: Desired, observed: Observed, marker: str, kind: str,
                          creation: Callable[[DesiredInterface], tuple[str, str, dict[str, Any]]]) -> None:
    """Interfaces of one kind that vethlab makes whole (bridges, macvlans): changed in
    place when there, else (re)made; something else of that name is replaced."""
    for key, want in desired.interfaces.items():
        if want.kind != kind:
            continue
        have = _link(observed, key)
        if have is not None and have.kind == kind:
            _plan_interface(plan, desired, want, have, marker, observed)
            continue
        if have is not None:
            plan.add(Action("delete", "interface", _ep(key), f"it is not the {kind} the file asks for",
                            "delete-early", key[0], desired.netns(key[0]), {"ifname": key[1]}))
        reason, phase, params = creation(want)
        plan.add(Action("create", kind, _ep(key), reason, phase, want.node, desired.netns(want.node), params))
        _plan_new_interface(plan, desired, want, marker, f"the {kind} is new")


def _plan_uplinks(plan: Plan, desired: Desired, observed: Observed, memory: Memory) -> None:
    """Existing interfaces of the host node enslaved to a network's bridge (and
    released, as they were, when the file drops them)."""
    wanted = set()
    for up in desired.uplinks:
        wanted.add(f"{up.node}:{up.ifname}")
        node = observed.nodes.get(up.node)
        have = node.links.get(up.ifname) if node else None
        bridge = node.links.get(up.bridge) if node else None
        if have is not None and bridge is not None and have.master == bridge.index and have.admin_up:
            continue
        plan.add(Action("modify", "uplink", f"{up.node}:{up.ifname}", f"enslaved to bridge {up.bridge} (network "
                        f"{up.network}); released as it was at down", "uplink", up.node, desired.netns(up.node),
                        {"ifname": up.ifname, "bridge": up.bridge,
                         "was_up": have.admin_up if have is not None else False}))
    for key, original in memory.uplinks.items():
        if key not in wanted:
            node_name, ifname = key.split(":", 1)
            plan.add(Action("modify", "uplink", key, "no longer an uplink in the file: released as it was",
                            "delete-early", node_name, original.get("netns"),
                            {"ifname": ifname, "release": True, "was_up": original.get("up", False)}))


def _plan_firewalls(plan: Plan, desired: Desired, observed: Observed, memory: Memory) -> None:
    from ..model.firewall import DIGEST_CHAIN_PREFIX, batch, digest, rules

    needed = {node: nets for node, nets in desired.firewalls.items() if any(rules(nets).values())}
    for node, networks in needed.items():
        chains = observed.firewalls.get(node)
        want = DIGEST_CHAIN_PREFIX + digest(networks)
        if chains is not None and want in chains:
            continue
        reason = "firewall table is missing" if chains is None else "firewall rules differ from the file"
        plan.add(Action("modify", "firewall", f"{node}: table inet vethlab_{desired.lab.replace('-', '_')}", reason,
                        "firewall", node, desired.netns(node),
                        {"replace": chains is not None, "batch": batch(desired.lab, networks, chains is not None)}))
    for node, ns in memory.firewall_nodes.items():
        have = observed.firewalls.get(node)
        if node not in needed and have is not None and table_owner(f"vethlab_{desired.lab.replace('-', '_')}",
                                                                   have) == desired.lab:
            plan.add(Action("delete", "firewall", f"{node}: table inet vethlab_{desired.lab.replace('-', '_')}",
                            "no network of the lab is left in this node", "delete-late", node, ns, {}))


def _plan_forwarding(plan: Plan, desired: Desired, observed: Observed, memory: Memory) -> None:
    """IP forwarding where a network routes: a sysctl in a lab node; in the host,
    shared by all labs and restored when the last lab needing it goes down."""
    for node, keys in desired.forwarding.items():
        seen = observed.nodes.get(node)
        for key in keys:
            if node == HOST and key not in memory.forwarding:
                plan.add(Action("modify", "forwarding", f"host: {key}", "a network routes through the host",
                                "sysctl", node, None, {"key": key}))
            elif node != HOST and (seen is None or seen.sysctls.get(key) != "1"):
                plan.add(Action("modify", "sysctl", f"{node}: {key}", "a network routes through this node",
                                "sysctl", node, desired.netns(node), {"key": key, "value": "1", "previous": None}))


def _plan_services(plan: Plan, desired: Desired, observed: Observed, created: set[str]) -> None:
    """run: start what is missing or died; stop what the file no longer has.
    A service is known by its label (node, command, occurrence): one found running,
    recorded or not, is not started a second time."""
    from .services import labels

    running: dict[tuple[str, str], list[Any]] = {}
    for seen in observed.services:
        running.setdefault((seen.node, seen.label), []).append(seen)
    for name, node in desired.nodes.items():
        for index, (argv, label) in enumerate(zip(node.run, labels(desired.lab, name, node.run), strict=True)):
            alive = [s for s in running.pop((name, label), []) if s.alive and name not in created]
            if alive:
                continue
            plan.add(Action("run", "service", f"{name}: {' '.join(argv)}",
                            "node is new" if name in created else "service is not running", "service", name,
                            node.netns, {"argv": list(argv), "index": index, "label": label,
                                         "oneshot": index in node.oneshot, "ready": [list(c) for c in node.ready]}))
    for items in running.values():
        for seen in items:
            if not seen.alive and not seen.pid:
                continue  # recorded before a start that never happened: nothing to stop
            plan.add(Action("delete", "service", f"{seen.node}: {' '.join(seen.argv)} (pid {seen.pid})",
                            "no longer in the file" if seen.alive else "exited; forgotten", "delete-early",
                            seen.node, seen.netns, {"pid": seen.pid, "started": seen.started, "label": seen.label}))


def _plan_shaping(plan: Plan, desired: Desired, observed: Observed, memory: Memory) -> None:
    """Shaping is changed in place: only the qdisc, never the link."""
    for (node, ifname), iface in desired.interfaces.items():
        key = f"{node}:{ifname}"
        if iface.shaping:
            want = iface.shaping.to_json()
            if memory.shaped.get(key) == want and observed.shaping.get(key) == iface.shaping.qdisc:
                continue
            plan.add(Action("modify", "shaping", key, f"{iface.shaping.qdisc}: {iface.shaping.describe()}", "shaping",
                            node, desired.netns(node), {"ifname": ifname, "shaping": want}))
        elif key in memory.shaped and observed.shaping.get(key):
            plan.add(Action("delete", "shaping", key, "shaping is no longer in the file", "shaping", node,
                            desired.netns(node), {"ifname": ifname, "shaping": None}))


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
            peers = _peers_of(observed, link)
            handled.update(peers)
            # peers: a node deleted in the same phase takes this end along (the executor waits for it)
            plan.add(Action("delete", "interface", f"{name}:{ifname}", "link is no longer in the file",
                            "delete-late", name, seen.netns, {"ifname": ifname,
                                                               "peers": sorted({node for node, _ in peers})}))


def _plan_routes(plan: Plan, desired: Desired, observed: Observed, host_routes: list[Route]) -> None:
    lost_addresses = {a.node for a in plan.actions if a.kind == "address" and a.verb == "delete"}
    for name, node in desired.nodes.items():
        seen = observed.nodes.get(name)
        mine = [r for r in (seen.routes if seen else []) if r.proto == ROUTE_PROTO]
        if node.netns is None:  # in the host, only the routes this lab recorded are its own
            mine = [r for r in mine if any(route_matches(h, r) for h in host_routes)]
        wanted = [route_of(spec) for spec in node.routes]
        # removing an address makes the kernel drop routes through it: those are re-added
        readd = name in lost_addresses
        for want in wanted:
            if readd or not any(route_matches(want, have) for have in mine):
                plan.add(Action("create", "route", f"{name}: {route_text(want)}",
                                "route is in the file but not in the kernel", "route", name, node.netns,
                                {"route": want._asdict()}))
        for have in mine:
            if not any(route_matches(want, have) for want in wanted):
                plan.add(Action("delete", "route", f"{name}: {route_text(have)}", "route is no longer in the file",
                                "delete-early", name, node.netns, {"route": have._asdict()}))


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
    from ..kernel.nodefiles import digest

    plan.hosts = desired.hosts_entries()  # once per plan: every node's file has the same lines
    want = digest(plan.hosts)
    for name, node in desired.nodes.items():
        seen = observed.nodes.get(name)
        if node.netns is not None and (name in created or seen is None or seen.hosts != want):
            plan.add(Action("modify", "hosts", f"/etc/netns/{node.netns}/hosts", "name resolution of the lab's nodes",
                            "hosts", name, node.netns, {}))


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


def _plan_interface(plan: Plan, desired: Desired, want: DesiredInterface, have: LinkInfo, marker: str,
                    observed: Observed | None = None) -> None:
    target = _ep((want.node, want.ifname))
    ns = desired.netns(want.node)
    if want.master and observed is not None:
        node = observed.nodes.get(want.node)
        bridge = node.links.get(want.master) if node else None
        if bridge is None or have.master != bridge.index:
            plan.add(Action("modify", "interface", target, f"port of bridge {want.master}", "interface", want.node,
                            ns, {"ifname": want.ifname, "master": want.master}))
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
    problems += _uplink_problems(desired, observed)
    problems += _host_object_problems(desired, observed, marker)
    for key, want in desired.interfaces.items():
        if want.kind == "macvlan" and want.parent_node is not None:
            parent_node = observed.nodes.get(want.parent_node)
            if parent_node is not None and parent_node.exists and want.parent not in parent_node.links:
                problems.append(f"macvlan parent {want.parent} of {_ep(key)} does not exist in node {want.parent_node}")
    if problems:
        raise ConflictError("\n".join(problems) + "\nnothing was changed")


def _host_object_problems(desired: Desired, observed: Observed, marker: str) -> list[str]:
    """/etc/netns/NODE directories and firewall tables named like the lab's that vethlab
    did not make (SPEC §4): conflicts, never taken over."""
    problems = []
    for name, node in desired.nodes.items():
        seen = observed.nodes.get(name)
        if node.netns is None or seen is None or seen.files in (None, marker, LEGACY_NODE_DIR):
            continue
        other = lab_of(seen.files)
        problems.append(f"/etc/netns/{node.netns} (node {name}) already exists and "
                        + (f"belongs to lab {other}" if other else "is not vethlab's (no .vethlab marker in it)"))
    table = f"vethlab_{desired.lab.replace('-', '_')}"
    for name, chains in observed.firewalls.items():
        # in a lab's own namespace everything is the lab's; elsewhere the name proves nothing
        if chains is not None and name == HOST and name in desired.firewalls and \
                table_owner(table, chains) != desired.lab:
            problems.append(f"firewall table inet {table} already exists in the host namespace and is not "
                            f"vethlab's (it lacks the chain {table_marker(desired.lab)} vethlab marks its tables "
                            "with)")
    return problems


def _uplink_problems(desired: Desired, observed: Observed) -> list[str]:
    problems = []
    for up in desired.uplinks:
        node = observed.nodes.get(up.node)
        if node is None or not node.exists:
            continue
        have = node.links.get(up.ifname)
        where = "the host namespace" if node.netns is None else f"node {up.node}"
        if have is None:
            problems.append(f"uplink {up.ifname} of network {up.network} does not exist in {where}")
            continue
        bridge = node.links.get(up.bridge)
        if have.master is not None and (bridge is None or have.master != bridge.index):
            problems.append(f"uplink {up.ifname} is already a port of another bridge")
        if have.addresses:
            problems.append(f"uplink {up.ifname} carries addresses ({', '.join(have.addresses)}); enslaving it would "
                            "cut them off — move them to the bridge yourself, or pick an interface without addresses")
        if any(r.dev == up.ifname and r.dst in ("0.0.0.0/0", "::/0") for r in node.routes):
            problems.append(f"uplink {up.ifname} carries the default route of {where}")
    return problems
