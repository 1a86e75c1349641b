"""Verify after apply by re-reading the kernel (nmstate's apply → re-read → verify):
`up` returns when the network works, not when the syscalls returned."""

from __future__ import annotations

from collections.abc import Sequence

from ..drivers import registry
from ..errors import KernelError
from ..kernel.api import Kernel
from ..model.desired import Desired, restricted
from ..model.routes import route_of
from ..ownership import marker
from ..topology import HOST
from .actions import Action
from .journal import wait_until
from .observe import observe
from .planner import make_plan
from .progress import report as report_progress

VERIFY_TIMEOUT = 10.0
LOOK_UP = 32  # host links still waiting: up to this many are looked up by name, not the host dumped
NUDGE_ABOVE = 100  # links still waiting at the first look: beyond the linkwatch's one batch, hurry it at once
#                   (Kernel.settle); any still waiting at the second look are hurried too


def verify(kernel: Kernel, desired: Desired, touched: set[str], created: set[str] | None = None,
           actions: Sequence[Action] | None = None) -> None:
    """Wait until every link meant to be up is operationally up (so the first packet
    is not lost to a link still coming up) and every IPv6 address is in use, then
    re-read and re-plan the nodes where an action's effect is not proven by its
    acknowledgement: everything planned must be there.  Untouched nodes were just
    observed to match the file.  Raises KernelError naming what differs.

    `actions`: the plan carried out.  What this run made whole (its new namespaces,
    interfaces, their settings and addresses) was acknowledged request by request
    (Action.verified): a node holding nothing else is not re-read, and a new lab is
    verified by waiting alone.  Without `actions` every touched node is re-planned."""
    created = created or set()
    mark = marker(desired.lab)
    # veths: a bridge without ports, or a macvlan on a parent without carrier, is rightly not UP
    up_wanted = {key for key, iface in desired.interfaces.items()
                 if iface.up and iface.peer and (key[0] in touched or iface.peer[0] in touched)}
    _await_links(kernel, desired, up_wanted, created, mark)
    _await_addresses(kernel, desired, touched)
    checked = touched if actions is None else {a.node for a in actions if a.RE_READ and a.verified(created)}
    if not checked:
        return
    # read the checked nodes' neighbours too: a veth pair is judged from both ends
    neighbours = {iface.peer[0] for key, iface in desired.interfaces.items() if key[0] in checked and iface.peer}
    # the host only as the neighbour of checked members: just their ports and its bridges
    part = frozenset({HOST} if HOST in neighbours - checked else ())
    scope = restricted(desired, checked | neighbours, part)  # plan over what is read, not all N nodes
    # Nodes made by this run: their address and route requests were acknowledged
    # one by one (Action.ACKED), so they are not read again.
    observed = observe(kernel, scope, {}, mark, read_hosts=False, only=checked | neighbours,
                       skip_addresses=created, skip_routes=created, host_part=bool(part))
    registry.observe_kinds(kernel, scope, observed)
    host = desired.nodes.get(HOST)
    remaining = make_plan(scope, observed, mark, None, [route_of(r) for r in host.routes] if host else [])
    left = [a for a in remaining.actions if a.node in touched and a.verified(created)]
    if left:
        raise KernelError("after applying, the kernel still differs from the file:\n" +
                          "\n".join(f"  {a.verb} {a.kind} {a.target}: {a.reason}" for a in left))


def _await_links(kernel: Kernel, desired: Desired, links: set[tuple[str, str]], created: set[str],
                 mark: str) -> None:
    """Return once every one of `links` is operationally up.  Each pass reads the
    operational states (Kernel.oper_states: names and states only) of the nodes that
    still wait: a 1000-node build does not re-dump 1000 namespaces while the
    kernel's linkwatch works through its queue."""
    waiting = set(links)
    total = len(links)
    # a node whose waited links are all veths has only those read (the kernel skips lo)
    kinds: dict[str, str | None] = {}
    for node, ifname in links:
        kind = desired.interfaces[(node, ifname)].kind
        kinds[node] = kind if kinds.get(node, kind) == kind else None
    report_progress("waiting for links to come up", 0, total, "up", force=True)
    nudged: str | None = None
    last = ""
    passes = 0

    def settled() -> bool:
        nonlocal waiting, last, nudged, passes
        if nudged:
            kernel.settle(nudged, mark)
        states: dict[str, dict[str, str]] = {}
        by_node: dict[str, list[str]] = {}
        for node, ifname in waiting:
            by_node.setdefault(node, []).append(ifname)
        for node, names in by_node.items():
            ns = desired.netns(node)
            if ns is None and len(names) <= LOOK_UP:  # the host holds the ports of every member
                states[node] = {link.ifname: link.operstate
                                for link in kernel.links(None, addresses=False, names=names)}
            else:
                states[node] = kernel.oper_states(ns, kinds.get(node))
        waiting = {(node, ifname) for node, ifname in waiting if states[node].get(ifname) != "UP"}
        report_progress("waiting for links to come up", total - len(waiting), total, "up")
        if waiting:
            node, ifname = next(iter(waiting))
            last = f"{node}:{ifname} is {states[node].get(ifname, 'missing')}"
        passes += 1
        if not nudged and (passes == 1 and len(waiting) > NUDGE_ABOVE or passes == 2 and waiting):
            # a namespace this run made: the scratch pair of Kernel.settle dies with it.
            # Any link still waiting at the second look (~10 ms on) may have been left
            # for linkwatch's paced run: the ends past an urgent run's budget (200
            # devices) wait for it, up to a second -- seen here as a 1.1 s `up` of the
            # 200-member star, 1 run in 5.  One flap of the scratch pair hurries them.
            nudged = next((ns for n in sorted(created) if (ns := desired.netns(n))), None)
        return not waiting

    try:
        if not wait_until(settled, VERIFY_TIMEOUT):
            raise KernelError(f"lab {desired.lab} did not settle within {VERIFY_TIMEOUT:g} s: {last}")
    finally:
        if nudged:
            kernel.settle(nudged, mark, done=True)


def _await_addresses(kernel: Kernel, desired: Desired, touched: set[str]) -> None:
    """Return once every IPv6 address of the touched nodes is in use (Kernel.unready_addresses):
    the kernel acknowledges an address added without DAD before its addrconf work item
    has made it answer neighbour solicitations, and under load that item runs late
    enough that the first ping after `up` is lost.  One route dump per namespace that
    still waits; nothing at all for a lab without IPv6."""
    waiting: dict[str, list[str]] = {}  # node -> its IPv6 addresses not in use yet
    for (node, _ifname), iface in desired.interfaces.items():
        if node in touched and iface.up:
            waiting.setdefault(node, []).extend(a for a in iface.addresses if ":" in a)
    waiting = {node: addresses for node, addresses in waiting.items() if addresses}
    if not waiting:
        return

    def ready() -> bool:
        for node in list(waiting):
            waiting[node] = kernel.unready_addresses(desired.netns(node), waiting[node])
            if not waiting[node]:
                del waiting[node]
        return not waiting

    if not wait_until(ready, VERIFY_TIMEOUT):
        node, addresses = next(iter(waiting.items()))
        raise KernelError(f"lab {desired.lab} did not settle within {VERIFY_TIMEOUT:g} s: IPv6 address "
                          f"{addresses[0]} of {node} is not in use (no local route: duplicate address "
                          f"detection still running or failed?)")
