"""A minimal rtnetlink codec: the few messages vethlab sends and reads, batched.

Why not pyroute2 here (measured on this machine, see bench/): importing it costs
0.15-0.3 s of a whole `vethlab up` process, and decoding one link message
through its generic NLA machinery ~0.1 ms plus an asyncio round trip per
request.  A 200-node lab must come up within 1.5x of a hand-packed floor
(~0.3 s), which leaves no room for either.  So the hot path - links, addresses,
routes, in many namespaces - is encoded here with `struct`, every request to a
namespace is queued and sent in one `send()` whose acknowledgements are read
together, and dumps decode only the attributes vethlab reads.  Everything else
(traffic control) still goes through pyroute2, imported only when used.

Layouts follow <linux/netlink.h>, <linux/rtnetlink.h>, <linux/if_link.h>.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

# message types
NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
# flags
F_REQUEST, F_MULTI, F_ACK, F_DUMP = 0x1, 0x2, 0x4, 0x300
F_REPLACE, F_EXCL, F_CREATE = 0x100, 0x200, 0x400
F_ACK_TLVS = 0x200  # in an NLMSG_ERROR header: extended ack attributes follow
# socket options
SOL_NETLINK, NETLINK_CAP_ACK, NETLINK_EXT_ACK, NETLINK_GET_STRICT_CHK = 270, 10, 11, 12
# link attributes
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINK, IFLA_MASTER = 1, 3, 4, 5, 10
IFLA_OPERSTATE, IFLA_LINKINFO, IFLA_IFALIAS, IFLA_STATS64 = 16, 18, 20, 23
IFLA_NET_NS_FD, IFLA_EXT_MASK, IFLA_CARRIER = 28, 29, 33
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
VETH_INFO_PEER = 1
RTEXT_FILTER_SKIP_STATS = 1 << 3
IFF_UP = 0x1
OPERSTATES = ["UNKNOWN", "NOTPRESENT", "DOWN", "LOWERLAYERDOWN", "TESTING", "DORMANT", "UP"]
# address attributes
IFA_ADDRESS, IFA_LOCAL, IFA_FLAGS = 1, 2, 8
IFA_F_NODAD, IFA_F_PERMANENT = 0x02, 0x80
# route attributes
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_PREFSRC, RTA_TABLE = 1, 4, 5, 6, 7, 15
RT_TABLE_MAIN, RTN_UNICAST, RT_SCOPE_UNIVERSE, RT_SCOPE_LINK = 254, 1, 0, 253

_HDR = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_IFI = struct.Struct("=BxHiII")  # ifinfomsg: family, type, index, flags, change
_IFA = struct.Struct("=BBBBI")  # ifaddrmsg: family, prefixlen, flags, scope, index
_RTM = struct.Struct("=BBBBBBBBI")  # rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags
_ATTR = struct.Struct("=HH")
CHUNK = 60_000  # bytes per send(): well under the socket buffer, many messages each


class NetlinkError(OSError):
    """One failed request: errno, what it was (in words), the kernel's own message."""

    def __init__(self, code: int, what: str, detail: str = "") -> None:
        super().__init__(code, os.strerror(code))
        self.code = code
        self.what = what
        self.detail = detail


# -- encoding ----------------------------------------------------------------------------
def attr(kind: int, payload: bytes) -> bytes:
    size = 4 + len(payload)
    return _ATTR.pack(size, kind) + payload + b"\0" * (-size % 4)


def attr_str(kind: int, text: str) -> bytes:
    return attr(kind, text.encode() + b"\0")


def attr_u32(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack("=I", value))


def ifinfo(index: int = 0, flags: int = 0, change: int = 0, family: int = 0) -> bytes:
    return _IFI.pack(family, 0, index, flags, change)


def veth_body(name: str, peer: str, index: int = 0, peer_index: int = 0, ns_fd: int | None = None,
              peer_ns_fd: int | None = None, mtu: int | None = None) -> bytes:
    """RTM_NEWLINK body of `ip link add NAME [netns A] type veth peer PEER [netns B]`."""
    peer_msg = ifinfo(peer_index) + attr_str(IFLA_IFNAME, peer)
    if peer_ns_fd is not None:
        peer_msg += attr_u32(IFLA_NET_NS_FD, peer_ns_fd)
    if mtu:
        peer_msg += attr_u32(IFLA_MTU, mtu)
    body = ifinfo(index) + attr_str(IFLA_IFNAME, name)
    if ns_fd is not None:
        body += attr_u32(IFLA_NET_NS_FD, ns_fd)
    if mtu:
        body += attr_u32(IFLA_MTU, mtu)
    info = attr_str(IFLA_INFO_KIND, "veth") + attr(IFLA_INFO_DATA, attr(VETH_INFO_PEER, peer_msg))
    return body + attr(IFLA_LINKINFO, info)


def setlink_body(index: int, up: bool | None = None, mtu: int | None = None, alias: str | None = None,
                 ns_fd: int | None = None, master: int | None = None, name: str | None = None) -> bytes:
    """RTM_NEWLINK changing an existing link, by index (or by `name` with index 0)."""
    flags = IFF_UP if up else 0
    change = IFF_UP if up is not None else 0
    body = ifinfo(index, flags, change)
    if name is not None:
        body += attr_str(IFLA_IFNAME, name)
    if ns_fd is not None:
        body += attr_u32(IFLA_NET_NS_FD, ns_fd)
    if master is not None:
        body += attr_u32(IFLA_MASTER, master)
    if mtu is not None:
        body += attr_u32(IFLA_MTU, mtu)
    if alias is not None:
        body += attr_str(IFLA_IFALIAS, alias)
    return body


def bridge_body(name: str, mtu: int | None = None) -> bytes:
    body = ifinfo() + attr_str(IFLA_IFNAME, name)
    if mtu:
        body += attr_u32(IFLA_MTU, mtu)
    return body + attr(IFLA_LINKINFO, attr_str(IFLA_INFO_KIND, "bridge"))


MACVLAN_MODE_BRIDGE = 4


def macvlan_body(name: str, parent_index: int, ns_fd: int | None, mtu: int | None = None) -> bytes:
    """`ip link add link PARENT name NAME netns NS type macvlan mode bridge`."""
    body = ifinfo() + attr_str(IFLA_IFNAME, name) + attr_u32(IFLA_LINK, parent_index)
    if ns_fd is not None:
        body += attr_u32(IFLA_NET_NS_FD, ns_fd)
    if mtu:
        body += attr_u32(IFLA_MTU, mtu)
    data = attr_u32(1, MACVLAN_MODE_BRIDGE)  # IFLA_MACVLAN_MODE
    return body + attr(IFLA_LINKINFO, attr_str(IFLA_INFO_KIND, "macvlan") + attr(IFLA_INFO_DATA, data))


def addr_body(index: int, ip: bytes, prefixlen: int, nodad: bool = False) -> bytes:
    family = socket.AF_INET6 if len(ip) == 16 else socket.AF_INET
    flags = IFA_F_PERMANENT | (IFA_F_NODAD if nodad and family == socket.AF_INET6 else 0)
    return _IFA.pack(family, prefixlen, flags & 0xFF, 0, index) + attr(IFA_LOCAL, ip) + attr(IFA_ADDRESS, ip) + \
        attr_u32(IFA_FLAGS, flags)


def route_body(dst: bytes, dst_len: int, gateway: bytes | None, oif: int | None, priority: int | None,
               prefsrc: bytes | None, proto: int, table: int = RT_TABLE_MAIN) -> bytes:
    family = socket.AF_INET6 if len(dst) == 16 else socket.AF_INET
    scope = RT_SCOPE_UNIVERSE if gateway else RT_SCOPE_LINK
    body = _RTM.pack(family, dst_len, 0, 0, table if table < 256 else 252, proto, scope, RTN_UNICAST, 0)
    if dst_len:
        body += attr(RTA_DST, dst)
    if gateway:
        body += attr(RTA_GATEWAY, gateway)
    if oif:
        body += attr_u32(RTA_OIF, oif)
    if priority is not None:
        body += attr_u32(RTA_PRIORITY, priority)
    if prefsrc:
        body += attr(RTA_PREFSRC, prefsrc)
    return body + attr_u32(RTA_TABLE, table)


# -- decoding ------------------------------------------------------------------------------
def attrs(buf: bytes | memoryview, offset: int, end: int) -> dict[int, memoryview]:
    out: dict[int, memoryview] = {}
    view = memoryview(buf)
    while offset + 4 <= end:
        size, kind = _ATTR.unpack_from(view, offset)
        if size < 4:
            break
        out[kind & 0x3FFF] = view[offset + 4: offset + size]  # strip NLA_F_NESTED / NET_BYTEORDER
        offset += (size + 3) & ~3
    return out


def text(value: memoryview | None) -> str | None:
    return bytes(value).split(b"\0", 1)[0].decode(errors="replace") if value is not None else None


def u32(value: memoryview | None) -> int | None:
    return struct.unpack("=I", value[:4])[0] if value is not None and len(value) >= 4 else None


def u8(value: memoryview | None) -> int | None:
    return value[0] if value is not None and len(value) >= 1 else None


@dataclass
class Link:
    index: int
    flags: int
    ifname: str
    kind: str | None
    alias: str | None
    mtu: int
    operstate: str
    carrier: bool
    link: int | None
    master: int | None
    stats: dict[str, int]


_STATS = ["rx_packets", "tx_packets", "rx_bytes", "tx_bytes", "rx_errors", "tx_errors", "rx_dropped", "tx_dropped"]


def parse_link(msg: memoryview) -> Link:
    _family, _type, index, flags, _change = _IFI.unpack_from(msg, 16)
    a = attrs(msg, 16 + _IFI.size, len(msg))
    kind = None
    if IFLA_LINKINFO in a:
        info = a[IFLA_LINKINFO]
        kind = text(attrs(info, 0, len(info)).get(IFLA_INFO_KIND))
    operstate = u8(a.get(IFLA_OPERSTATE))
    stats: dict[str, int] = {}
    raw = a.get(IFLA_STATS64)
    if raw is not None and len(raw) >= 64:
        stats = dict(zip(_STATS, struct.unpack_from("=8Q", raw, 0), strict=True))
    return Link(index=index, flags=flags, ifname=text(a.get(IFLA_IFNAME)) or "", kind=kind,
                alias=text(a.get(IFLA_IFALIAS)) or None, mtu=u32(a.get(IFLA_MTU)) or 0,
                operstate=OPERSTATES[operstate] if operstate is not None and operstate < len(OPERSTATES) else "UNKNOWN",
                carrier=bool(u8(a.get(IFLA_CARRIER))), link=u32(a.get(IFLA_LINK)), master=u32(a.get(IFLA_MASTER)),
                stats=stats)


def parse_addr(msg: memoryview) -> tuple[int, int, bytes, int]:
    """(ifindex, family, address bytes, prefixlen)."""
    family, prefixlen, _flags, _scope, index = _IFA.unpack_from(msg, 16)
    a = attrs(msg, 16 + _IFA.size, len(msg))
    raw = a.get(IFA_LOCAL) or a.get(IFA_ADDRESS)
    return index, family, bytes(raw) if raw is not None else b"", prefixlen


@dataclass
class RouteMsg:
    family: int
    dst: bytes
    dst_len: int
    table: int
    proto: int
    type: int
    gateway: bytes | None
    oif: int | None
    priority: int | None
    prefsrc: bytes | None


def parse_route(msg: memoryview) -> RouteMsg:
    family, dst_len, _src_len, _tos, table, proto, _scope, rtype, _flags = _RTM.unpack_from(msg, 16)
    a = attrs(msg, 16 + _RTM.size, len(msg))
    size = 16 if family == socket.AF_INET6 else 4
    dst = bytes(a[RTA_DST]) if RTA_DST in a else b"\0" * size
    return RouteMsg(family, dst, dst_len, u32(a.get(RTA_TABLE)) or table, proto, rtype,
                    bytes(a[RTA_GATEWAY]) if RTA_GATEWAY in a else None, u32(a.get(RTA_OIF)),
                    u32(a.get(RTA_PRIORITY)), bytes(a[RTA_PREFSRC]) if RTA_PREFSRC in a else None)


# -- the socket ----------------------------------------------------------------------------
@dataclass
class _Pending:
    seq: int
    what: str
    tolerate: tuple[int, ...]


class NlSocket:
    """A NETLINK_ROUTE socket in one namespace.  `queue()` collects requests;
    `flush()` sends them in few `send()` calls and returns every failure."""

    def __init__(self, fd: int | None = None) -> None:
        if fd is None:
            self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
        else:
            self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0, fileno=fd)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
        for option in (NETLINK_CAP_ACK, NETLINK_EXT_ACK):
            try:
                self.sock.setsockopt(SOL_NETLINK, option, 1)
            except OSError:
                pass
        self.sock.bind((0, 0))
        self.seq = 0
        self.out: list[bytes] = []
        self.pending: list[_Pending] = []

    def close(self) -> None:
        self.sock.close()

    def _message(self, kind: int, flags: int, body: bytes) -> tuple[int, bytes]:
        self.seq += 1
        return self.seq, _HDR.pack(16 + len(body), kind, flags | F_REQUEST, self.seq, 0) + body

    def queue(self, kind: int, flags: int, body: bytes, what: str, tolerate: tuple[int, ...] = ()) -> None:
        seq, data = self._message(kind, flags | F_ACK, body)
        self.out.append(data)
        self.pending.append(_Pending(seq, what, tolerate))

    def queue_together(self, requests: list[tuple[int, int, bytes, str]]) -> None:
        """Requests that must reach the kernel in one send(): the kernel handles a
        send() whole before the sender can be killed, so e.g. "create X" and "mark X"
        cannot be separated by a SIGKILL."""
        parts = []
        for kind, flags, body, what in requests:
            seq, data = self._message(kind, flags | F_ACK, body)
            parts.append(data)
            self.pending.append(_Pending(seq, what, ()))
        self.out.append(b"".join(parts))

    def flush(self) -> list[NetlinkError]:
        """Send everything queued; wait for every acknowledgement; return the failures
        (the kernel goes on with the next request after one fails)."""
        errors: list[NetlinkError] = []
        out, pending = self.out, {p.seq: p for p in self.pending}
        self.out, self.pending = [], []
        start = 0
        while start < len(out):
            end, size = start, 0
            while end < len(out) and (size == 0 or size + len(out[end]) <= CHUNK):
                size += len(out[end])
                end += 1
            chunk = b"".join(out[start:end])
            self.sock.send(chunk)
            waiting = _count_messages(chunk)
            while waiting:
                for kind, flags, seq, msg in self._receive():
                    if kind != NLMSG_ERROR or seq not in pending:
                        continue
                    waiting -= 1
                    code = -struct.unpack_from("=i", msg, 16)[0]
                    item = pending.pop(seq)
                    if code and code not in item.tolerate:
                        errors.append(NetlinkError(code, item.what, _ext_message(msg, flags)))
            start = end
        return errors

    def request(self, kind: int, flags: int, body: bytes, what: str, tolerate: tuple[int, ...] = ()) -> None:
        """One request, now; raises NetlinkError if it fails."""
        self.queue(kind, flags, body, what, tolerate)
        errors = self.flush()
        if errors:
            raise errors[0]

    def dump(self, kind: int, body: bytes) -> list[memoryview]:
        """Every message of a dump request (pending requests are flushed first)."""
        if self.out:
            errors = self.flush()
            if errors:
                raise errors[0]
        seq, data = self._message(kind, F_DUMP, body)
        self.sock.send(data)
        out: list[memoryview] = []
        while True:
            for mkind, _flags, mseq, msg in self._receive():
                if mseq != seq:
                    continue
                if mkind == NLMSG_DONE:
                    return out
                if mkind == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", msg, 16)[0]
                    if code:
                        raise NetlinkError(code, "dump")
                    continue
                out.append(msg)

    def get(self, kind: int, body: bytes, what: str) -> memoryview:
        """A single-answer request (RTM_GETLINK by index or name)."""
        seq, data = self._message(kind, 0, body)
        self.sock.send(data)
        while True:
            for mkind, _flags, mseq, msg in self._receive():
                if mseq != seq:
                    continue
                if mkind == NLMSG_ERROR:
                    raise NetlinkError(-struct.unpack_from("=i", msg, 16)[0], what)
                return msg

    def _receive(self) -> Iterator[tuple[int, int, int, memoryview]]:
        data = memoryview(self.sock.recv(1 << 20))
        offset = 0
        while offset + 16 <= len(data):
            length, kind, flags, seq, _pid = _HDR.unpack_from(data, offset)
            if length < 16:
                break
            yield kind, flags, seq, data[offset: offset + length]
            offset += (length + 3) & ~3


def _count_messages(buf: bytes) -> int:
    count, offset = 0, 0
    while offset + 16 <= len(buf):
        length = _HDR.unpack_from(buf, offset)[0]
        count += 1
        offset += (length + 3) & ~3
    return count


def _ext_message(msg: memoryview, flags: int) -> str:
    """The kernel's extended-ack text ("Attribute failed policy validation")."""
    if not flags & F_ACK_TLVS:
        return ""
    # nlmsgerr = error (4) + the request's header (16, payload capped by NETLINK_CAP_ACK)
    tlvs = attrs(msg, 16 + 4 + 16, len(msg))
    return text(tlvs.get(1)) or ""
