"""Link and address notifications from rtnetlink: the kernel side of `vethlab watch`.

One NETLINK_ROUTE socket per node, opened inside the node's namespace and bound to
the link and address multicast groups; poll() over all of them (not select(): its
FD_SETSIZE of 1024 descriptors is less than a 1000-node lab plus the caller's own).
The nodes' interfaces are dumped once after subscribing, so a caller can show each
event as old -> new state.  Messages that cannot be decoded are skipped: they are
not one of the lab's changes, and watching goes on.

`LinkRemovals` is the lean cousin for `down`'s wait until interfaces have gone with
their namespaces: one socket on the link group, and only the message type and the
ifindex read from each message (decoding whole links cost ~70 us each, and a
1000-member star sends ~3000 link messages while it goes).
"""

from __future__ import annotations

# the C module, as kernel/nl.py: `socket` re-wraps every constant as an IntEnum at import (~1 ms
# of every command's start-up); the socket objects and functions used here are the same
import _socket as socket
import errno
import ipaddress
import select
import struct

from . import netns as nsmod
from . import nl
from .api import AddressEvent, Event, LinkEvent, LinkState, Netns

RTMGRP_LINK, RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR = 0x1, 0x10, 0x100
REMOVALS_RCVBUF = 32 << 20


def _listener() -> int:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
    sock.bind((0, RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR))
    return sock.detach()


def _link_listener() -> int:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
    if nl.RCVBUF_LIMIT is not None:  # the knob: behave as on a stock kernel (see nl._env_rcvbuf)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, nl.RCVBUF_LIMIT)
    else:
        try:  # room for every event of a 1000-member teardown (the buffer is a limit, not an allocation)
            sock.setsockopt(socket.SOL_SOCKET, nl.SO_RCVBUFFORCE, REMOVALS_RCVBUF)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, REMOVALS_RCVBUF)
    sock.bind((0, RTMGRP_LINK))
    return sock.detach()


def _raw() -> int:
    return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0).detach()


def _state(link: nl.Link) -> LinkState:
    return LinkState(link.index, link.ifname, link.alias, bool(link.flags & nl.IFF_UP), link.carrier, link.operstate)


class NetlinkEvents:
    """`EventStream` over rtnetlink multicast groups, one socket per node."""

    def __init__(self, nodes: dict[str, Netns]) -> None:
        self.nodes = nodes
        self._listeners: dict[int, tuple[str, socket.socket]] = {}
        self._poller = select.poll()
        try:
            for name, ns in nodes.items():
                fd = _listener() if ns is None else nsmod.call_inside(ns, _listener)
                sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0, fileno=fd)
                self._listeners[sock.fileno()] = (name, sock)
                self._poller.register(sock.fileno(), select.POLLIN)
        except BaseException:
            self.close()
            raise

    def initial(self) -> list[tuple[str, LinkState]]:
        """Every interface of every node, read after subscribing."""
        out = []
        for name, ns in self.nodes.items():
            dumper = nl.NlSocket(None if ns is None else nsmod.call_inside(ns, _raw))
            try:
                for msg in dumper.dump(nl.RTM_GETLINK, nl.ifinfo() + nl.attr_u32(nl.IFLA_EXT_MASK,
                                                                                nl.RTEXT_FILTER_SKIP_STATS)):
                    out.append((name, _state(nl.parse_link(msg))))
            finally:
                dumper.close()
        return out

    def next(self, timeout: float | None) -> list[Event]:
        """The events that arrive within `timeout` seconds (None: wait for some)."""
        out: list[Event] = []
        for fd, _mask in self._poller.poll(None if timeout is None else timeout * 1000):
            node, sock = self._listeners[fd]
            out += parse(node, memoryview(sock.recv(1 << 20)))
        return out

    def close(self) -> None:
        for _, sock in self._listeners.values():
            sock.close()
        self._listeners.clear()


def parse(node: str, data: memoryview) -> list[Event]:
    """The link and address events in one datagram of netlink messages."""
    out: list[Event] = []
    offset = 0
    while offset + 16 <= len(data):
        length, kind = struct.unpack_from("=IH", data, offset)
        if length < 16:
            break
        msg = data[offset:offset + length]
        offset += (length + 3) & ~3
        try:
            event = _event(node, kind, msg)
        except nl.DecodeError:
            continue
        if event is not None:
            out.append(event)
    return out


def _event(node: str, kind: int, msg: memoryview) -> Event | None:
    if kind in (nl.RTM_NEWLINK, nl.RTM_DELLINK):
        if len(msg) > 16 and msg[16] != socket.AF_UNSPEC:  # a bridge's news about a port (AF_BRIDGE), which
            return None  # it sends as RTM_DELLINK when the port leaves it: the interface itself is still there
        return LinkEvent(node, _state(nl.parse_link(msg)), kind == nl.RTM_DELLINK)
    if kind in (nl.RTM_NEWADDR, nl.RTM_DELADDR):
        index, _family, raw, prefixlen = nl.parse_addr(msg)
        if len(raw) not in (4, 16):  # other families: not an IP address
            return None
        return AddressEvent(node, index, f"{ipaddress.ip_address(raw)}/{prefixlen}", kind == nl.RTM_NEWADDR)
    return None


class LinkRemovals:
    """`Removals` over rtnetlink: subscribed to the link group of one namespace when
    made; `present()` dumps the indexes there, `gone()` reads RTM_DELLINK events.

    Of each message only its type and ifindex are read (the ifinfomsg header), so
    the wait costs about what the kernel's messages take to arrive.  A full receive
    buffer (ENOBUFS: events were dropped) makes `gone()` return None; the caller
    reads `present()` again, which stays correct however many events were lost."""

    def __init__(self, ns: Netns) -> None:
        self.ns = ns
        fd = _link_listener() if ns is None else nsmod.call_inside(ns, _link_listener)
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0, fileno=fd)
        self._poller = select.poll()
        self._poller.register(self._sock.fileno(), select.POLLIN)

    def present(self) -> set[int]:
        dumper = nl.NlSocket(None if self.ns is None else nsmod.call_inside(self.ns, _raw))
        try:  # NlSocket.dump redoes a dump the kernel marks interrupted: none is missed
            msgs = dumper.dump(nl.RTM_GETLINK, nl.ifinfo() + nl.attr_u32(nl.IFLA_EXT_MASK, nl.RTEXT_FILTER_SKIP_STATS),
                               f"list interfaces in {self.ns or 'the host namespace'}")
        finally:
            dumper.close()
        return {struct.unpack_from("=i", msg, 20)[0] for msg in msgs if len(msg) >= 24}

    def gone(self, timeout: float) -> set[int] | None:
        out: set[int] = set()
        if not self._poller.poll(max(0.0, timeout) * 1000):
            return out
        while True:  # everything queued now, without waiting again
            try:
                data = self._sock.recv(1 << 20, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return out
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    return None
                raise
            out |= deleted_indexes(data)

    def close(self) -> None:
        self._sock.close()


def deleted_indexes(data: bytes) -> set[int]:
    """The ifindex of every interface an RTM_DELLINK message in one datagram says is
    gone.  Only those of family AF_UNSPEC: a bridge also sends RTM_DELLINK, of family
    AF_BRIDGE, for each port that leaves it (deleting the bridge detaches them all),
    and those ports are still there."""
    out = set()
    offset = 0
    while offset + 24 <= len(data):
        length, kind = struct.unpack_from("=IH", data, offset)
        if length < 16:
            break
        if kind == nl.RTM_DELLINK and length >= 24 and data[offset + 16] == socket.AF_UNSPEC:
            out.add(struct.unpack_from("=i", data, offset + 20)[0])
        offset += (length + 3) & ~3
    return out
