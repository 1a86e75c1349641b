"""Imperfect networks on purpose, at runtime: shaping, flaps, isolation, chaos.

All of these change a running lab without rebuilding anything, and none changes
the file: the next `vethlab up` brings the lab back to what the file says.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from ..drivers.shaping import require_qdiscs
from ..errors import KernelError, UsageError
from ..kernel import open_kernel
from ..kernel.api import Kernel
from ..state import store
from ..topology.shaping import Shaping
from .inspect import lab_state, peers

Emit = Callable[[str], None]


def link_ends(state: store.LabState) -> list[tuple[str, str]]:
    """Every link end of the lab (veth ends in lab nodes), sorted: the chaos pool."""
    ends = {(n, i) for link in state.links for n, i in ((link[0], link[1]), (link[2], link[3]))}
    return sorted((n, i) for n, i in ends if state.nodes.get(n) is not None)


def set_link_state(name: str, node: str, ifname: str, up: bool, timeout: float = 5.0,
                   kernel: Kernel | None = None) -> None:
    """Set one end down or up, and return once its peer shows it (no carrier,
    operationally down / carrier, operationally up)."""
    from ..reconcile.journal import wait_until

    state = lab_state(name)
    peer = peers(state).get((node, ifname))
    if peer is None:
        raise UsageError(f"{node}:{ifname} is not a link end of lab {name}")
    if state.fingerprints.pop(node, None) is not None:  # differs from the file now: re-read at the next up
        store.save(state)
    kernel = kernel or open_kernel()
    ns = state.nodes.get(node)
    try:
        if not up:
            # the kernel drops an interface's IPv6 addresses when it goes down (keep_addr_on_down
            # is 0 by default): keep them, so that the end comes back up as the file says
            kernel.write_sysctl(ns, f"net.ipv6.conf.{ifname.replace('.', '/')}.keep_addr_on_down", "1")
            kernel.flush()
        kernel.set_link(ns, ifname, up=up)
        if peer[0] not in state.nodes:
            return  # the far end is on another machine: nothing here to wait for (see docs/machines.md)
        peer_ns = state.nodes.get(peer[0])

        carrier = False

        def shows() -> bool:
            nonlocal carrier
            for link in kernel.links(peer_ns):
                if link.ifname == peer[1]:
                    peer_up = link.admin_up
                    carrier = up and peer_up
                    return link.carrier == carrier and (link.operstate == "UP") == carrier
            return False

        if not wait_until(shows, timeout):
            raise KernelError(f"{peer[0]}:{peer[1]} did not show {node}:{ifname} going {'up' if up else 'down'} "
                              f"within {timeout:g} s")
        if up and carrier:
            # kept IPv6 addresses get their local routes back from addrconf's work item, after
            # the carrier: return once they are in use, as `up` does (reconcile/verify.py)
            mine = [a for link in kernel.links(ns) if link.ifname == ifname for a in link.addresses]
            if not wait_until(lambda: not kernel.unready_addresses(ns, mine), timeout):
                raise KernelError(f"the IPv6 addresses of {node}:{ifname} were not in use again within {timeout:g} s")
    finally:
        kernel.close()


def set_shaping(lab: str, node: str, ifname: str, shaping: Shaping | None, kernel: Kernel | None = None) -> None:
    """Shape traffic leaving NODE:IFNAME (None: remove the shaping)."""
    state = lab_state(lab)
    if (node, ifname) not in peers(state):
        raise UsageError(f"{node}:{ifname} is not a link end of lab {lab}")
    kernel = kernel or open_kernel()
    try:
        if shaping:
            require_qdiscs(kernel, {shaping.qdisc})
        kernel.set_shaping(state.nodes.get(node), ifname, shaping.to_json() if shaping else None)
    finally:
        kernel.close()
    key = f"{node}:{ifname}"
    if shaping:
        state.shaped[key] = shaping.to_json()
    else:
        state.shaped.pop(key, None)
    state.fingerprints.pop(node, None)  # the kernel now differs from the file here: the next up re-reads it
    store.save(state)


def flap(lab: str, node: str, ifname: str, down: float, up: float, count: int, emit: Emit) -> None:
    """Take a link end down and up `count` times; each change returns once the peer shows it."""
    for i in range(count):
        set_link_state(lab, node, ifname, up=False)
        emit(f"{i + 1}/{count} {node}:{ifname} down")
        time.sleep(down)
        set_link_state(lab, node, ifname, up=True)
        emit(f"{i + 1}/{count} {node}:{ifname} up")
        if i + 1 < count:
            time.sleep(up)


def isolate(lab: str, node: str, up: bool, emit: Emit) -> None:
    """All of a node's link ends down (isolate) or up (restore)."""
    state = lab_state(lab)
    if node not in state.nodes:
        raise UsageError(f"lab {lab} has no node {node}")
    ends = [(n, i) for n, i in link_ends(state) if n == node]
    if not ends:
        raise UsageError(f"node {node} has no links")
    for n, i in ends:
        set_link_state(lab, n, i, up=up)
        emit(f"{n}:{i} {'up' if up else 'down'}")


def chaos(lab: str, duration: float, seed: int, emit: Emit, sleep: Callable[[float], None] = time.sleep) -> list[str]:
    """Random flaps for `duration` seconds; the same seed makes the same schedule.
    Every link is back up at the end.  Returns the schedule as printed."""
    state = lab_state(lab)
    ends = link_ends(state)
    if not ends:
        raise UsageError(f"lab {lab} has no links to flap")
    rng = random.Random(seed)
    schedule: list[str] = []
    clock = 0.0
    try:
        while True:
            node, ifname = rng.choice(ends)
            outage = round(rng.uniform(0.2, 1.0), 2)
            gap = round(rng.uniform(0.1, 0.5), 2)
            if clock + outage > duration:
                break
            line = f"t=+{clock:.2f}s {node}:{ifname} down for {outage:.2f}s"
            schedule.append(line)
            emit(line)
            set_link_state(lab, node, ifname, up=False)
            sleep(outage)
            set_link_state(lab, node, ifname, up=True)
            clock += outage + gap
            sleep(gap)
    finally:
        for node, ifname in ends:  # whatever happened, every link ends up
            set_link_state(lab, node, ifname, up=True)
    emit(f"chaos over after {clock:.2f}s: {len(schedule)} flaps, every link up")
    return schedule
