"""Verify after apply by re-reading the kernel (nmstate's apply → re-read → verify):
`up` returns when the network works, not when the syscalls returned."""

from __future__ import annotations

from ..drivers import registry
from ..errors import KernelError
from ..kernel.api import Kernel
from ..model.desired import Desired, restricted
from ..model.routes import route_of
from ..ownership import marker
from ..topology import HOST
from .journal import wait_until
from .observe import observe
from .planner import make_plan
from .progress import report as report_progress

VERIFY_TIMEOUT = 10.0
NUDGE_ABOVE = 100  # links still waiting: beyond the linkwatch's one batch, hurry it (Kernel.settle)


def verify(kernel: Kernel, desired: Desired, touched: set[str], created: set[str] | None = None) -> None:
    """Re-read the nodes the plan touched: everything planned is there, every link
    meant to be up is operationally up (so the first packet is not lost to a link
    still coming up).  Untouched nodes were just observed to match the file.
    Raises KernelError naming what differs."""
    created = created or set()
    mark = marker(desired.lab)
    # read the touched nodes' neighbours too: a veth pair is judged from both ends
    neighbours = {iface.peer[0] for key, iface in desired.interfaces.items() if key[0] in touched and iface.peer}
    # veths: a bridge without ports, or a macvlan on a parent without carrier, is rightly not UP
    up_wanted = {key for key, iface in desired.interfaces.items()
                 if iface.up and iface.peer and (key[0] in touched or iface.peer[0] in touched)}
    scope = restricted(desired, touched | neighbours)  # plan over what is read, not all N nodes
    # Nodes made by this run: their address and route requests were acknowledged
    # one by one; what is left to wait for there is the links' state.
    observed = observe(kernel, scope, {}, mark, read_hosts=False, only=touched | neighbours,
                       skip_addresses=created, skip_routes=created)
    registry.observe_kinds(kernel, scope, observed)

    def pending() -> set[tuple[str, str]]:
        return {(node, ifname) for node, ifname in up_wanted
                if (link := observed.nodes[node].links.get(ifname)) is None or link.operstate != "UP"}

    waiting = pending()
    report_progress("waiting for links to come up", len(up_wanted) - len(waiting), len(up_wanted), "up", force=True)
    refreshed: set[str] = set()
    # a namespace this run made: the scratch pair of Kernel.settle dies with it
    nudged = next((ns for n in sorted(created) if (ns := desired.netns(n))), None) \
        if len(waiting) > NUDGE_ABOVE else None
    last = ""

    def settled() -> bool:
        # re-read only the nodes still waiting: a 1000-node build does not re-dump
        # 1000 namespaces while the kernel's linkwatch works through its queue
        nonlocal waiting, last
        if not waiting:
            return True
        if nudged:
            kernel.settle(nudged, mark)
        for node in {node for node, _ in waiting}:
            seen = observed.nodes[node]
            seen.links = {link.ifname: link for link in kernel.links(seen.netns, addresses=False)}
            refreshed.add(node)
        waiting = pending()
        report_progress("waiting for links to come up", len(up_wanted) - len(waiting), len(up_wanted), "up")
        if waiting:
            node, ifname = next(iter(waiting))
            link = observed.nodes[node].links.get(ifname)
            last = f"{node}:{ifname} is {link.operstate if link else 'missing'}"
        return not waiting

    try:
        if not wait_until(settled, VERIFY_TIMEOUT):
            raise KernelError(f"lab {desired.lab} did not settle within {VERIFY_TIMEOUT:g} s: {last}")
    finally:
        if nudged:
            kernel.settle(nudged, mark, done=True)
    _await_addresses(kernel, desired, touched)
    for node in refreshed - created:  # polled without addresses: read them once, now
        seen = observed.nodes[node]
        seen.links = {link.ifname: link for link in kernel.links(seen.netns)}
    host = desired.nodes.get(HOST)
    remaining = make_plan(scope, observed, mark, None, [route_of(r) for r in host.routes] if host else [])
    left = [a for a in remaining.actions if a.node in touched and a.verified(created)]
    if left:
        raise KernelError("after applying, the kernel still differs from the file:\n" +
                          "\n".join(f"  {a.verb} {a.kind} {a.target}: {a.reason}" for a in left))


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
