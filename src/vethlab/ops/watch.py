"""`vethlab watch`: link and address changes as they happen, from netlink events.

One NETLINK_ROUTE socket per node, opened inside the node's namespace and bound to
the link and address multicast groups; poll() over all of them (not select(): its
FD_SETSIZE of 1024 descriptors is less than a 1000-node lab plus the caller's own).  The lab's
interfaces are read once first, so each event is printed as old -> new state, and
notifications that change nothing the user sees (statistics, alias) are skipped.
"""

from __future__ import annotations

import ipaddress
import json
import select
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..kernel import netns as nsmod
from ..kernel import nl
from ..ownership import marker
from .inspect import lab_state

RTMGRP_LINK, RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR = 0x1, 0x10, 0x100


@dataclass(frozen=True)
class LinkView:
    admin: bool
    carrier: bool
    operstate: str

    @property
    def state(self) -> str:
        return "up" if self.operstate == "UP" or (self.admin and self.carrier and self.operstate == "UNKNOWN") \
            else "down"


def _listener() -> int:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
    sock.bind((0, RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR))
    return sock.detach()


def watch(lab: str, emit: Callable[[dict[str, Any]], None], duration: float | None = None,
          count: int | None = None, stop: Callable[[], bool] | None = None,
          ready: Callable[[], None] | None = None) -> int:
    """Stream events until `duration` seconds pass, `count` events were emitted or
    `stop()` says so (checked at least twice a second; or forever).  Returns the
    number of events.  `ready()` is called once the state before the first event is
    read: a change made before that may be folded into that state, not reported."""
    state = lab_state(lab)
    mark = marker(lab)
    nodes = {name: ns for name, ns in state.nodes.items() if ns is None or nsmod.is_mounted(ns)}
    listeners: dict[int, tuple[str, socket.socket]] = {}
    for name, ns in nodes.items():
        fd = _listener() if ns is None else nsmod.call_inside(ns, _listener)
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0, fileno=fd)
        listeners[sock.fileno()] = (name, sock)
    last: dict[tuple[str, str], LinkView] = {}
    names: dict[tuple[str, int], str] = {}
    for name, ns in nodes.items():  # the state before the first event
        dumper = nl.NlSocket(None if ns is None else nsmod.call_inside(ns, _raw))
        try:
            for msg in dumper.dump(nl.RTM_GETLINK, nl.ifinfo() + nl.attr_u32(nl.IFLA_EXT_MASK,
                                                                                   nl.RTEXT_FILTER_SKIP_STATS)):
                link = nl.parse_link(msg)
                names[(name, link.index)] = link.ifname
                last[(name, link.ifname)] = LinkView(bool(link.flags & nl.IFF_UP), link.carrier, link.operstate)
        finally:
            dumper.close()
    if ready is not None:
        ready()
    poller = select.poll()
    for fd in listeners:
        poller.register(fd, select.POLLIN)
    deadline = time.monotonic() + duration if duration is not None else None
    emitted = 0
    try:
        while (count is None or emitted < count) and not (stop and stop()):
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            if timeout == 0.0:
                break
            if stop is not None:
                timeout = 0.5 if timeout is None else min(timeout, 0.5)
            readable = poller.poll(None if timeout is None else timeout * 1000)
            for fd, _mask in readable:
                node, sock = listeners[fd]
                data = memoryview(sock.recv(1 << 20))
                for event in _events(lab, node, data, last, names, mark, nodes[node] is None):
                    emit(event)
                    emitted += 1
    finally:
        for _, sock in listeners.values():
            sock.close()
    return emitted


def _raw() -> int:
    return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0).detach()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _events(lab: str, node: str, data: memoryview, last: dict[tuple[str, str], LinkView],
            names: dict[tuple[str, int], str], mark: str, host: bool) -> list[dict[str, Any]]:
    out = []
    offset = 0
    while offset + 16 <= len(data):
        length, kind = struct.unpack_from("=IH", data, offset)
        if length < 16:
            break
        msg = data[offset:offset + length]
        offset += (length + 3) & ~3
        try:
            out.extend(_event(lab, node, kind, msg, last, names, mark, host))
        except nl.DecodeError:
            continue  # a message we cannot read is not one of the lab's changes: skip it, keep watching
    return out


def _event(lab: str, node: str, kind: int, msg: memoryview, last: dict[tuple[str, str], LinkView],
           names: dict[tuple[str, int], str], mark: str, host: bool) -> list[dict[str, Any]]:
    """The user-visible change one netlink message makes, if any."""
    if kind in (nl.RTM_NEWLINK, nl.RTM_DELLINK):
        link = nl.parse_link(msg)
        if host and link.alias != mark:
            return []  # in the host, only the lab's own interfaces
        names[(node, link.index)] = link.ifname
        key = (node, link.ifname)
        now = LinkView(bool(link.flags & nl.IFF_UP), link.carrier, link.operstate)
        if kind == nl.RTM_DELLINK:
            now = LinkView(False, False, "DELETED")
        before = last.get(key)
        if before == now:
            return []
        last[key] = now
        return [{"time": _now(), "lab": lab, "node": node, "ifname": link.ifname, "event": "link",
                 "state": now.state, "carrier": now.carrier, "admin": "up" if now.admin else "down",
                 "operstate": now.operstate, "old_state": before.state if before else None,
                 "deleted": kind == nl.RTM_DELLINK}]
    if kind in (nl.RTM_NEWADDR, nl.RTM_DELADDR):
        index, _family, raw, prefixlen = nl.parse_addr(msg)
        ifname = names.get((node, index), f"if{index}")
        if host and (node, ifname) not in last:
            return []
        if len(raw) not in (4, 16) or ipaddress.ip_address(raw).is_link_local:  # other families: not ours
            return []
        seen = last.get((node, ifname))
        return [{"time": _now(), "lab": lab, "node": node, "ifname": ifname, "event": "address",
                 "action": "add" if kind == nl.RTM_NEWADDR else "delete",
                 "address": f"{ipaddress.ip_address(raw)}/{prefixlen}",
                 "state": seen.state if seen else "unknown", "carrier": seen.carrier if seen else False}]
    return []


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
