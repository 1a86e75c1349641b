"""`vethlab watch`: link and address changes as they happen, from kernel events.

The kernel layer subscribes to each node's link and address notifications
(`Events.link_events`) and reads the lab's interfaces once after subscribing, so
each event is printed as old -> new state; this module turns its events into what
the user sees, and skips notifications that change nothing they see (statistics,
alias) and, in the host namespace, everything that is not the lab's.
"""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ..deferred import dataclass
from ..kernel import open_kernel
from ..kernel.api import AddressEvent, Event, Kernel, LinkState
from ..ownership import marker
from .inspect import lab_state


@dataclass(frozen=True)
class LinkView:
    admin: bool
    carrier: bool
    operstate: str

    @property
    def state(self) -> str:
        return "up" if self.operstate == "UP" or (self.admin and self.carrier and self.operstate == "UNKNOWN") \
            else "down"


def _view(link: LinkState) -> LinkView:
    return LinkView(link.admin_up, link.carrier, link.operstate)


def watch(lab: str, emit: Callable[[dict[str, Any]], None], duration: float | None = None,
          count: int | None = None, stop: Callable[[], bool] | None = None,
          ready: Callable[[], None] | None = None, kernel: Kernel | None = None) -> int:
    """Stream events until `duration` seconds pass, `count` events were emitted or
    `stop()` says so (checked at least twice a second; or forever).  Returns the
    number of events.  `ready()` is called once the state before the first event is
    read: a change made before that may be folded into that state, not reported."""
    state = lab_state(lab)
    own = kernel is None
    kernel = kernel or open_kernel()
    try:
        nodes = {name: ns for name, ns in state.nodes.items() if ns is None or kernel.namespace_alive(ns)}
        stream = kernel.link_events(nodes)
        try:
            watcher = _Watcher(lab, marker(lab), {name for name, ns in nodes.items() if ns is None})
            for node, link in stream.initial():  # the state before the first event
                watcher.names[(node, link.index)] = link.ifname
                watcher.last[(node, link.ifname)] = _view(link)
            if ready is not None:
                ready()
            return _pump(stream.next, watcher, emit, duration, count, stop)
        finally:
            stream.close()
    finally:
        if own:
            kernel.close()


def _pump(receive: Callable[[float | None], list[Event]], watcher: _Watcher, emit: Callable[[dict[str, Any]], None],
          duration: float | None, count: int | None, stop: Callable[[], bool] | None) -> int:
    deadline = time.monotonic() + duration if duration is not None else None
    emitted = 0
    while (count is None or emitted < count) and not (stop and stop()):
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        if timeout == 0.0:
            break
        if stop is not None:
            timeout = 0.5 if timeout is None else min(timeout, 0.5)
        for raw in receive(timeout):
            for event in watcher.seen(raw):
                emit(event)
                emitted += 1
    return emitted


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class _Watcher:
    """What the user has been shown: each interface's last state, each index's name."""

    def __init__(self, lab: str, mark: str, host_nodes: set[str]) -> None:
        self.lab, self.mark, self.host_nodes = lab, mark, host_nodes
        self.last: dict[tuple[str, str], LinkView] = {}
        self.names: dict[tuple[str, int], str] = {}

    def seen(self, raw: Event) -> list[dict[str, Any]]:
        """The user-visible change one kernel event makes, if any."""
        node, host = raw.node, raw.node in self.host_nodes
        if isinstance(raw, AddressEvent):
            ifname = self.names.get((node, raw.index), f"if{raw.index}")
            if host and (node, ifname) not in self.last:
                return []
            if ipaddress.ip_interface(raw.address).is_link_local:
                return []
            seen = self.last.get((node, ifname))
            return [{"time": _now(), "lab": self.lab, "node": node, "ifname": ifname, "event": "address",
                     "action": "add" if raw.added else "delete", "address": raw.address,
                     "state": seen.state if seen else "unknown", "carrier": seen.carrier if seen else False}]
        link = raw.link
        if host and link.alias != self.mark:
            return []  # in the host, only the lab's own interfaces
        self.names[(node, link.index)] = link.ifname
        key = (node, link.ifname)
        now = LinkView(False, False, "DELETED") if raw.deleted else _view(link)
        before = self.last.get(key)
        if before == now:
            return []
        self.last[key] = now
        return [{"time": _now(), "lab": self.lab, "node": node, "ifname": link.ifname, "event": "link",
                 "state": now.state, "carrier": now.carrier, "admin": "up" if now.admin else "down",
                 "operstate": now.operstate, "old_state": before.state if before else None,
                 "deleted": raw.deleted}]


def human(event: dict[str, Any]) -> str:
    clock = event["time"][11:23]
    where = f"{event['node']}:{event['ifname']}"
    if event["event"] == "address":
        return f"{clock} {where} address {'+' if event['action'] == 'add' else '-'}{event['address']}"
    if event.get("deleted"):
        return f"{clock} {where} deleted"
    detail = "" if event["carrier"] or event["admin"] == "down" else " (no carrier)"
    return f"{clock} {where} {event['old_state'] or '?'} -> {event['state']}{detail} [admin {event['admin']}]"


def as_json_line(event: dict[str, Any]) -> str:
    return json.dumps(event, sort_keys=False)
