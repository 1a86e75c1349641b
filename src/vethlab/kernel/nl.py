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

The kernel's limits, and what NlSocket does about them (issue 9): every ack is its
own skb charged ~832 bytes against the receive buffer, and acks that do not fit are
dropped (ENOBUFS, then silence while the socket stays "congested").  So the buffer
is sized to what the kernel grants, the requests in one send() are bounded by it,
acks lost anyway are recovered by re-sending, interrupted dumps are redone, and no
receive waits longer than TIMEOUT - each bounded, each ending in a KernelError that
names the request.  VETHLAB_NETLINK_RCVBUF=212992 (see _env_rcvbuf) makes a process
behave as on a stock kernel; the tests use it.
"""

from __future__ import annotations

# the C module: `socket` re-wraps every constant as an IntEnum at import (~2 ms that each
# run of the CNI plugin would pay); the socket objects are the same
import _socket as socket
import errno
import os
import select
import struct
import time

from ..errors import KernelError

TYPE_CHECKING = False  # collections.abc imports collections: start-up cost of the CNI plugin (cni/main.py)
if TYPE_CHECKING:
    from _thread import _local
    from collections.abc import Callable

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
SO_RCVBUFFORCE = 33
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
RT_TABLE_COMPAT = 252  # in rtmsg.rtm_table: the table's number (>= 256) is in RTA_TABLE
RTN_LOCAL = 2

_HDR = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_IFI = struct.Struct("=BxHiII")  # ifinfomsg: family, type, index, flags, change
_IFA = struct.Struct("=BBBBI")  # ifaddrmsg: family, prefixlen, flags, scope, index
_RTM = struct.Struct("=BBBBBBBBI")  # rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags
_ATTR = struct.Struct("=HH")
CHUNK = 60_000  # bytes per send(): well under the socket buffer, many messages each


class DecodeError(ValueError):
    """Bytes that are not the netlink message they claim to be (the only error the
    decoders raise, whatever they are fed)."""


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


def bridge_body(name: str, mtu: int | None = None, index: int = 0) -> bytes:
    body = ifinfo(index) + attr_str(IFLA_IFNAME, name)
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
# Every decoder raises DecodeError and nothing else on bytes that are not a well-formed
# message of its kind (tests/unit/test_nl_codec.py fuzzes them); each loop advances
# by at least 4 bytes, so none can spin.
def attrs(buf: bytes | memoryview, offset: int, end: int) -> dict[int, memoryview]:
    """The attributes in buf[offset:end], by number (nested/byte-order bits dropped)."""
    out: dict[int, memoryview] = {}
    view = memoryview(buf)
    end = min(end, len(view))
    unpack = _ATTR.unpack_from  # the hottest loop of a dump: ~20 attributes per link
    while offset + 4 <= end:
        size, kind = unpack(view, offset)
        if size < 4 or offset + size > end:
            raise DecodeError(f"attribute {kind & 0x3FFF} of length {size} at offset {offset} overruns its "
                              f"{end}-byte container")
        out[kind & 0x3FFF] = view[offset + 4: offset + size]  # strip NLA_F_NESTED / NET_BYTEORDER
        offset += (size + 3) & ~3
    return out


def picked(buf: bytes | memoryview, offset: int, end: int, wanted: frozenset[int]) -> dict[int, memoryview]:
    """attrs(), keeping only the attribute numbers in `wanted`: every length is still
    checked (a malformed message is the same DecodeError), but the ~40 attributes of
    a link vethlab never reads (IFLA_AF_SPEC, queue counts, ...) cost one unpack each,
    not a slice and a dict entry."""
    out: dict[int, memoryview] = {}
    view = memoryview(buf)
    end = min(end, len(view))
    unpack = _ATTR.unpack_from
    while offset + 4 <= end:
        size, kind = unpack(view, offset)
        if size < 4 or offset + size > end:
            raise DecodeError(f"attribute {kind & 0x3FFF} of length {size} at offset {offset} overruns its "
                              f"{end}-byte container")
        if kind & 0x3FFF in wanted:
            out[kind & 0x3FFF] = view[offset + 4: offset + size]
        offset += (size + 3) & ~3
    return out


def text(value: memoryview | None) -> str | None:
    return bytes(value).split(b"\0", 1)[0].decode(errors="replace") if value is not None else None


def u32(value: memoryview | None) -> int | None:
    return int(struct.unpack("=I", value[:4])[0]) if value is not None and len(value) >= 4 else None


def u8(value: memoryview | None) -> int | None:
    return value[0] if value is not None and len(value) >= 1 else None


def _fixed(msg: memoryview, layout: struct.Struct, what: str) -> tuple[int, ...]:
    """The fixed header after nlmsghdr."""
    if len(msg) < 16 + layout.size:
        raise DecodeError(f"{what} message of {len(msg)} bytes, shorter than its {16 + layout.size}-byte header")
    return layout.unpack_from(msg, 16)


_IP_SIZE: dict[int, int] = {int(socket.AF_INET): 4, int(socket.AF_INET6): 16}


def _ip(value: memoryview | None, family: int, what: str) -> bytes | None:
    """An address attribute, checked against its family (other families pass as is)."""
    if value is None:
        return None
    size = _IP_SIZE.get(family)
    if size is not None and len(value) != size:
        raise DecodeError(f"{what} of {len(value)} bytes in a family-{family} message")
    return bytes(value)


class _Plain:
    """A record with value equality: what @dataclass gave, without importing
    dataclasses (~5 ms of a CNI plugin's ~15 ms budget; see cni/main.py)."""

    __slots__: tuple[str, ...] = ()

    def __init__(self, *args: object, **kwargs: object) -> None:
        for name, value in zip(self.__slots__, args, strict=False):
            setattr(self, name, value)
        for name, value in kwargs.items():
            setattr(self, name, value)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and all(getattr(self, n) == getattr(other, n) for n in self.__slots__)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__) + ")"


class Link(_Plain):
    __slots__ = ("index", "flags", "ifname", "kind", "alias", "mtu", "operstate", "carrier", "link", "master",
                 "stats")
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

    def __init__(self, index: int, flags: int, ifname: str, kind: str | None, alias: str | None, mtu: int,
                 operstate: str, carrier: bool, link: int | None, master: int | None,
                 stats: dict[str, int]) -> None:
        # spelled out: _Plain's generic loop over the slots was a third of a link's decoding
        self.index, self.flags, self.ifname, self.kind, self.alias = index, flags, ifname, kind, alias
        self.mtu, self.operstate, self.carrier, self.link, self.master = mtu, operstate, carrier, link, master
        self.stats = stats


_STATS = ["rx_packets", "tx_packets", "rx_bytes", "tx_bytes", "rx_errors", "tx_errors", "rx_dropped", "tx_dropped"]
_LINK_READ = frozenset({IFLA_IFNAME, IFLA_MTU, IFLA_LINK, IFLA_MASTER, IFLA_OPERSTATE, IFLA_LINKINFO, IFLA_IFALIAS,
                        IFLA_STATS64, IFLA_CARRIER})
_LINK_READ_NO_STATS = _LINK_READ - {IFLA_STATS64}
_KIND_ONLY = frozenset({IFLA_INFO_KIND})
_U32 = struct.Struct("=I")


def _text(value: memoryview) -> str:
    raw = bytes(value)
    cut = raw.find(0)
    return (raw if cut < 0 else raw[:cut]).decode(errors="replace")


def parse_link(msg: memoryview, stats: bool = True) -> Link:
    """The attributes a LinkInfo holds, and only those decoded (a host with 1000
    veth ends dumps 1000 messages of ~45 attributes, twice per `up` of an edit).
    stats=False: not the counters either (the kernel sends them whatever
    RTEXT_FILTER_SKIP_STATS says; that flag only drops VF and IPv6 statistics)."""
    _family, _type, index, flags, _change = _fixed(msg, _IFI, "link")
    a = picked(msg, 16 + _IFI.size, len(msg), _LINK_READ if stats else _LINK_READ_NO_STATS)
    get = a.get
    kind = None
    info = get(IFLA_LINKINFO)
    if info is not None:
        raw_kind = picked(info, 0, len(info), _KIND_ONLY).get(IFLA_INFO_KIND)
        kind = None if raw_kind is None else _text(raw_kind)
    value = get(IFLA_OPERSTATE)
    operstate = value[0] if value is not None and len(value) >= 1 else None
    counters: dict[str, int] = {}
    value = get(IFLA_STATS64)
    if value is not None and len(value) >= 64:
        counters = dict(zip(_STATS, struct.unpack_from("=8Q", value, 0), strict=True))
    value = get(IFLA_IFNAME)
    ifname = _text(value) if value is not None else ""
    value = get(IFLA_IFALIAS)
    alias = (_text(value) or None) if value is not None else None
    value = get(IFLA_MTU)
    mtu = _U32.unpack_from(value)[0] if value is not None and len(value) >= 4 else 0
    value = get(IFLA_CARRIER)
    carrier = bool(value[0]) if value is not None and len(value) >= 1 else False
    value = get(IFLA_LINK)
    link = _U32.unpack_from(value)[0] if value is not None and len(value) >= 4 else None
    value = get(IFLA_MASTER)
    master = _U32.unpack_from(value)[0] if value is not None and len(value) >= 4 else None
    return Link(index, flags, ifname, kind, alias, mtu,
                OPERSTATES[operstate] if operstate is not None and operstate < len(OPERSTATES) else "UNKNOWN",
                carrier, link, master, counters)


def parse_addr(msg: memoryview) -> tuple[int, int, bytes, int]:
    """(ifindex, family, address bytes, prefixlen).  Families other than IPv4/IPv6
    (an RTM_GETADDR dump of family 0 may hold e.g. MCTP) come back unchecked: callers
    skip them."""
    family, prefixlen, _flags, _scope, index = _fixed(msg, _IFA, "address")
    a = attrs(msg, 16 + _IFA.size, len(msg))
    raw = _ip(a.get(IFA_LOCAL), family, "IFA_LOCAL") or _ip(a.get(IFA_ADDRESS), family, "IFA_ADDRESS")
    if family in _IP_SIZE and prefixlen > 8 * _IP_SIZE[family]:
        raise DecodeError(f"prefix length {prefixlen} in a family-{family} address")
    return index, family, raw or b"", prefixlen


class RouteMsg(_Plain):
    __slots__ = ("family", "dst", "dst_len", "table", "proto", "type", "gateway", "oif", "priority", "prefsrc")
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


def route_kind(msg: memoryview) -> tuple[int, int]:
    """(table, type) from a route's fixed header, no attribute decoded: enough to
    skip the local table's routes of a dump (table RT_TABLE_COMPAT: see RTA_TABLE)."""
    _family, _dst_len, _src_len, _tos, table, _proto, _scope, rtype, _flags = _fixed(msg, _RTM, "route")
    return table, rtype


def parse_route(msg: memoryview) -> RouteMsg:
    family, dst_len, _src_len, _tos, table, proto, _scope, rtype, _flags = _fixed(msg, _RTM, "route")
    size = _IP_SIZE.get(family)
    if size is None:
        raise DecodeError(f"route of family {family}")
    if dst_len > 8 * size:
        raise DecodeError(f"destination length {dst_len} in a family-{family} route")
    a = attrs(msg, 16 + _RTM.size, len(msg))
    dst = _ip(a.get(RTA_DST), family, "RTA_DST") or b"\0" * size
    return RouteMsg(family, dst, dst_len, u32(a.get(RTA_TABLE)) or table, proto, rtype,
                    _ip(a.get(RTA_GATEWAY), family, "RTA_GATEWAY"), u32(a.get(RTA_OIF)),
                    u32(a.get(RTA_PRIORITY)), _ip(a.get(RTA_PREFSRC), family, "RTA_PREFSRC"))


# -- the socket ----------------------------------------------------------------------------
def _env_rcvbuf() -> int | None:
    """VETHLAB_NETLINK_RCVBUF=BYTES: a test and diagnostic knob, read once at import.

    It makes every netlink socket of the process ask for at most BYTES of receive
    buffer and never force past net.core.rmem_max, i.e. behave as on a machine whose
    rmem_max is BYTES.  Stock kernels have 212992; this machine has 4 MiB and a
    sandbox cannot lower it, so the tests run `vethlab` with
    VETHLAB_NETLINK_RCVBUF=212992 to see what a user on a stock kernel gets."""
    raw = os.environ.get("VETHLAB_NETLINK_RCVBUF", "").strip()
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if value > 0 else None


RCVBUF_LIMIT = _env_rcvbuf()
RCVBUF_WANTED = 1 << 21  # the kernel doubles it: 4 MiB of queued answers when granted whole
# Every acknowledgement is its own skb, and what counts against the receive buffer
# is its truesize, not its 36 bytes: measured on this kernel (6.18, x86-64) a granted
# 8192/32768/425984 bytes holds exactly 9/39/512 acks, error acks with an extended-ack
# message included, i.e. 832 bytes each.  2048 leaves room for kernels with bigger
# skb overheads; the bound is on messages in flight, whatever their size.
ACK_COST = 2048
TIMEOUT = 30.0  # s: the kernel answers a send() before it returns; silence this long means it never will
OVERRUN_RETRIES = 4  # re-sends of requests whose acknowledgements a receive-buffer overrun swallowed
# An interrupted dump (NLM_F_DUMP_INTR: the table changed while it was read) is redone,
# pausing a little longer each time, for at most DUMP_PATIENCE s / DUMP_RETRIES tries.
# Measured: while the kernel destroys the devices of 1000 just-deleted namespaces, host
# link and address dumps come back interrupted for ~2 s (five immediate redos were not
# enough); after that, none of ~2000 dumps was.
DUMP_RETRIES = 40
DUMP_PATIENCE = 15.0
F_DUMP_INTR = 0x10
RECV_SIZE = 1 << 20
_buffers: _local | None = None  # per thread: a RECV_SIZE buffer that every receive of that thread reuses (_recv)


def _buffer() -> memoryview:
    """This thread's receive buffer.  `sock.recv(RECV_SIZE)` allocates 1 MiB per call
    (mmap, then mremap and munmap to shrink and free it): ~10 us of a ~12 us
    exchange, measured, and a 1000-node `up` receives ~7000 times.  Per thread:
    a receive releases the GIL, and two threads must not fill one buffer."""
    global _buffers
    if _buffers is None:
        import _thread

        _buffers = _thread._local()
    view: memoryview | None = getattr(_buffers, "view", None)
    if view is None:
        view = memoryview(bytearray(RECV_SIZE))
        _buffers.view = view
    return view


_DELETES = (RTM_DELLINK, RTM_DELADDR, RTM_DELROUTE)
_GONE = (errno.ENODEV, errno.ENOENT, errno.ESRCH, errno.EADDRNOTAVAIL)


class _Overrun(Exception):
    """The kernel dropped answers for want of receive-buffer space (ENOBUFS)."""


class _Request(_Plain):
    __slots__ = ("kind", "flags", "body", "what", "tolerate")
    kind: int
    flags: int
    body: bytes
    what: str
    tolerate: tuple[int, ...]

    def __init__(self, kind: int, flags: int, body: bytes, what: str, tolerate: tuple[int, ...]) -> None:
        # spelled out, as Link's: a 1000-node lab queues ~5000 of them
        self.kind, self.flags, self.body, self.what, self.tolerate = kind, flags, body, what, tolerate


def _size_rcvbuf(sock: socket.socket) -> int:
    """Ask for RCVBUF_WANTED (forced past rmem_max where allowed, unless the knob
    caps it) and return what the kernel granted (SO_RCVBUF reads back the doubled,
    real figure)."""
    if RCVBUF_LIMIT is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, min(RCVBUF_WANTED, RCVBUF_LIMIT))
    else:
        try:  # root in the socket's namespace may exceed rmem_max (stock: 212992)
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF_WANTED)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF_WANTED)
    return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))


class NlSocket:
    """A NETLINK_ROUTE socket in one namespace.  `queue()` collects requests;
    `flush()` sends them in few `send()` calls and returns every failure.

    Robust against the kernel's limits: at most `max_inflight` requests per send()
    (their acks must all fit in the receive buffer the kernel granted, or it drops
    them); acks lost anyway (ENOBUFS) are recovered by re-sending those requests,
    bounded; interrupted dumps are redone, bounded; no receive waits longer than
    `timeout`.  Anything unrecoverable is a KernelError naming the request."""

    def __init__(self, fd: int | None = None, timeout: float = TIMEOUT) -> None:
        if fd is None:
            self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
        else:
            self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0, fileno=fd)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        self.rcvbuf = _size_rcvbuf(self.sock)
        self.max_inflight = max(1, self.rcvbuf // ACK_COST)
        self.timeout = timeout
        for option in (NETLINK_CAP_ACK, NETLINK_EXT_ACK):
            try:
                self.sock.setsockopt(SOL_NETLINK, option, 1)
            except OSError:
                pass
        self.sock.bind((0, 0))
        self.seq = 0
        self.out: list[list[_Request]] = []  # groups: each group goes in one send()
        self._unclean = False  # answers of an abandoned exchange may still be queued
        self.overruns = 0  # ENOBUFS seen: 0 whenever max_inflight is right (the tests check it)

    def close(self) -> None:
        self.sock.close()

    @property
    def pending(self) -> int:
        """Requests queued and not yet sent."""
        return sum(len(group) for group in self.out)

    def _message(self, kind: int, flags: int, body: bytes) -> tuple[int, bytes]:
        self.seq = self.seq % 0xFFFFFFFF + 1
        return self.seq, _HDR.pack(16 + len(body), kind, flags | F_REQUEST, self.seq, 0) + body

    def queue(self, kind: int, flags: int, body: bytes, what: str, tolerate: tuple[int, ...] = ()) -> None:
        self.out.append([_Request(kind, flags | F_ACK, body, what, tolerate)])

    def queue_together(self, requests: list[tuple[int, int, bytes, str]]) -> None:
        """Requests that must reach the kernel in one send(): the kernel handles a
        send() whole before the sender can be killed, so e.g. "create X" and "mark X"
        cannot be separated by a SIGKILL."""
        self.out.append([_Request(kind, flags | F_ACK, body, what, ()) for kind, flags, body, what in requests])

    def flush(self) -> list[NetlinkError]:
        """Send everything queued; wait for every acknowledgement; return the failures
        (the kernel goes on with the next request after one fails).

        Requests whose acks an overrun swallowed were nevertheless carried out (a
        send() is processed whole before it returns); they are re-sent with a smaller
        bound, counting "already gone" for a delete and "already exists" for a
        create as done: the first copy did it.  (The plan refuses foreign objects of
        our names before anything is built, so EEXIST on a re-send is our own copy's
        work unless a foreign object appeared in between AND its ack was lost.)"""
        todo, self.out = self.out, []
        return self._flush(todo, 0)

    def _flush(self, todo: list[list[_Request]], first: int) -> list[NetlinkError]:
        """flush() from attempt `first` (1: a re-send of requests already carried out)."""
        errors: list[NetlinkError] = []
        for attempt in range(first, OVERRUN_RETRIES + 1):
            lost: list[list[_Request]] = []
            start = 0
            while start < len(todo):
                end, size, count = start, 0, 0
                while end < len(todo):
                    group_size = sum(16 + len(r.body) for r in todo[end])
                    if count and (size + group_size > CHUNK or count + len(todo[end]) > self.max_inflight):
                        break
                    size += group_size
                    count += len(todo[end])
                    end += 1
                lost += self._exchange(todo[start:end], errors, retry=attempt > 0)
                start = end
            if not lost:
                return errors
            todo = lost
        for group in todo:
            for request in group:
                errors.append(NetlinkError(errno.ENOBUFS, request.what,
                                           f"the acknowledgement was lost in {_attempts(OVERRUN_RETRIES + 1)}: the "
                                           f"netlink receive buffer ({self.rcvbuf} bytes) overflowed"))
        return errors

    def _exchange(self, groups: list[list[_Request]], errors: list[NetlinkError], retry: bool) -> list[list[_Request]]:
        """One send() of whole groups, then its acks; the groups with an ack lost."""
        if self._unclean:
            self._drain()
        pending: dict[int, tuple[int, _Request]] = {}
        parts = []
        for number, group in enumerate(groups):
            for request in group:
                seq, data = self._message(request.kind, request.flags, request.body)
                pending[seq] = (number, request)
                parts.append(data)
        self._send(b"".join(parts), groups[0][0].what)
        acked = 0
        what = lambda: pending[min(pending)][1].what  # noqa: E731 - named only on failure: the first unanswered
        try:
            while pending:
                for kind, flags, seq, msg in self._receive(what):
                    if kind == NLMSG_ERROR and seq in pending:
                        self._settle(pending.pop(seq)[1], msg, flags, errors, retry)
                        acked += 1
        except _Overrun:
            # the kernel has already answered everything (a send() is handled whole);
            # what is still queued got through, the rest was dropped
            for kind, flags, seq, msg in self._drain():
                if kind == NLMSG_ERROR and seq in pending:
                    self._settle(pending.pop(seq)[1], msg, flags, errors, retry)
                    acked += 1
            # the buffer demonstrably held `acked` answers: stay well under that
            self.max_inflight = max(1, min(self.max_inflight // 2, acked // 2))
        lost_numbers = sorted({number for number, _ in pending.values()})
        return [[r for n, r in pending.values() if n == number] for number in lost_numbers]

    @staticmethod
    def _settle(request: _Request, msg: memoryview, flags: int, errors: list[NetlinkError], retry: bool) -> None:
        if len(msg) < 20:
            errors.append(NetlinkError(errno.EBADMSG, request.what, "truncated acknowledgement"))
            return
        code = -struct.unpack_from("=i", msg, 16)[0]
        if not code or code in request.tolerate:
            return
        if retry and ((request.kind in _DELETES and code in _GONE)
                      or (request.flags & F_EXCL and code == errno.EEXIST)):
            return  # the lost first copy did it
        errors.append(NetlinkError(code, request.what, _ext_message(msg, flags)))

    def request(self, kind: int, flags: int, body: bytes, what: str, tolerate: tuple[int, ...] = ()) -> None:
        """One request, now; raises NetlinkError if it fails."""
        request = _Request(kind, flags | F_ACK, body, what, tolerate)
        if self.out or self._unclean:
            self.out.append([request])
            errors = self.flush()
        else:
            errors = self._one(request)
        if errors:
            raise errors[0]

    def _one(self, request: _Request) -> list[NetlinkError]:
        """One request on an idle socket, without flush()'s bookkeeping (a new lab's
        every namespace starts with one: ~25 us of Python each, measured): the
        kernel has answered before send() returns, so its ack is the next message."""
        seq, data = self._message(request.kind, request.flags, request.body)
        self._send(data, request.what)
        errors: list[NetlinkError] = []
        try:
            while True:
                for kind, flags, got, msg in self._receive(request.what):
                    if kind == NLMSG_ERROR and got == seq:
                        self._settle(request, msg, flags, errors, retry=False)
                        return errors
        except _Overrun:  # carried out, its ack dropped: as flush() does, once more with a re-send's tolerance
            for kind, flags, got, msg in self._drain():
                if kind == NLMSG_ERROR and got == seq:
                    self._settle(request, msg, flags, errors, retry=False)
                    return errors
            return self._flush([[request]], 1)

    def dump(self, kind: int, body: bytes, what: str = "list kernel objects") -> list[memoryview]:
        """Every message of a dump request (pending requests are flushed first).
        A dump the kernel marks interrupted (the table changed while it was being
        read) or that lost messages to an overrun is redone, bounded (DUMP_RETRIES,
        DUMP_PATIENCE)."""
        if self.out:
            errors = self.flush()
            if errors:
                raise errors[0]
        give_up = time.monotonic() + DUMP_PATIENCE
        for attempt in range(DUMP_RETRIES):
            if attempt:
                time.sleep(min(0.2, 0.005 * 2 ** attempt))
            if self._unclean:
                self._drain()
            seq, data = self._message(kind, F_DUMP, body)
            self._send(data, what)
            out: list[memoryview] = []
            intact, done = True, False
            while not done:
                try:
                    batch = self._receive(what)
                except _Overrun:
                    intact = False  # go on: the dump itself still runs to its NLMSG_DONE
                    continue
                for mkind, mflags, mseq, msg in batch:
                    if mseq != seq:
                        continue
                    if mflags & F_DUMP_INTR:
                        intact = False
                    if mkind == NLMSG_DONE:
                        done = True
                        break
                    if mkind == NLMSG_ERROR:
                        code = -struct.unpack_from("=i", msg, 16)[0] if len(msg) >= 20 else errno.EBADMSG
                        if code:
                            raise KernelError(f"cannot {what}: {os.strerror(code).lower()}")
                        continue
                    out.append(msg)
            if intact:
                return out
            if time.monotonic() > give_up:
                break
        raise KernelError(f"cannot {what}: the kernel's answer was interrupted by changes {attempt + 1} times in "
                          f"a row, for {DUMP_PATIENCE - (give_up - time.monotonic()):.1f} s")

    def get(self, kind: int, body: bytes, what: str) -> memoryview:
        """A single-answer request (RTM_GETLINK by index or name); raises
        NetlinkError if the kernel refuses it."""
        for _ in range(OVERRUN_RETRIES + 1):
            if self._unclean:
                self._drain()
            seq, data = self._message(kind, 0, body)
            self._send(data, what)
            try:
                while True:
                    for mkind, _flags, mseq, msg in self._receive(what):
                        if mseq != seq:
                            continue
                        if mkind == NLMSG_ERROR:
                            code = -struct.unpack_from("=i", msg, 16)[0] if len(msg) >= 20 else errno.EBADMSG
                            raise NetlinkError(code, what)
                        return msg
            except _Overrun:
                self._unclean = True  # the answer may be among the dropped: ask again
        raise KernelError(f"cannot {what}: the kernel's answer was lost in {_attempts(OVERRUN_RETRIES + 1)} (netlink "
                          f"receive buffer of {self.rcvbuf} bytes overflowed)")

    def _send(self, data: bytes, what: str) -> None:
        try:
            self.sock.send(data)
        except OSError as exc:
            raise KernelError(f"netlink: cannot send the request to {what}: {os.strerror(exc.errno or 0).lower()}"
                              ) from None

    def _recv(self, what: str | Callable[[], str], wait: bool = True) -> bytes | None:
        """One datagram; None if nothing is queued and `wait` is false.  Raises
        _Overrun on ENOBUFS, KernelError after `timeout` s of silence."""
        deadline = None
        while True:
            try:
                buffer = _buffer()
                return bytes(buffer[:self.sock.recv_into(buffer, RECV_SIZE, socket.MSG_DONTWAIT)])
            except BlockingIOError:
                if not wait:
                    return None
                if deadline is None:  # the usual case never gets here: answers are queued before send() returns
                    deadline = time.monotonic() + self.timeout
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    self._unclean = True
                    self.overruns += 1
                    raise _Overrun from None
                raise KernelError(f"netlink: cannot read the kernel's answer to {_name(what)}: "
                                  f"{os.strerror(exc.errno or 0).lower()}") from None
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.sock], [], [], left)[0]:
                self._unclean = True  # a late answer must not be taken for the next one's
                raise KernelError(f"netlink: no answer from the kernel within {self.timeout:g} s for {_name(what)}")

    def _receive(self, what: str | Callable[[], str]) -> list[tuple[int, int, int, memoryview]]:
        data = self._recv(what)
        assert data is not None
        try:
            return messages(data)
        except DecodeError as exc:
            raise KernelError(f"netlink: undecodable answer from the kernel to {_name(what)}: {exc}") from None

    def _drain(self) -> list[tuple[int, int, int, memoryview]]:
        """Everything queued now, without waiting (an empty queue also ends the
        kernel's "congested" state, in which it drops answers silently)."""
        out: list[tuple[int, int, int, memoryview]] = []
        while True:
            try:
                data = self._recv("drain", wait=False)
            except _Overrun:
                continue
            if data is None:
                break
            try:
                out += messages(data)
            except DecodeError:
                continue
        self._unclean = False
        return out


def _attempts(count: int) -> str:
    return "its only attempt" if count == 1 else f"each of {count} attempts"


def _name(what: str | Callable[[], str]) -> str:
    return what if isinstance(what, str) else what()


def local_ipv6(sock: NlSocket, what: str = "list IPv6 routes") -> set[bytes]:
    """The IPv6 addresses (packed) that have a local route in the socket's namespace:
    one dump.  An address is in use once it has one (see Links.unready_addresses)."""
    out = set()
    for msg in sock.dump(RTM_GETROUTE, struct.pack("=BBBBBBBBI", socket.AF_INET6, 0, 0, 0, 0, 0, 0, 0, 0), what):
        route = parse_route(msg)
        if route.type == RTN_LOCAL and route.dst_len == 128:
            out.add(route.dst)
    return out


def messages(data: bytes | memoryview) -> list[tuple[int, int, int, memoryview]]:
    """Split one datagram into (type, flags, seq, message) - message includes its
    header.  A length that runs past the datagram or under a header is a DecodeError."""
    view = memoryview(data)
    total = len(view)
    unpack = _HDR.unpack_from
    out = []
    offset = 0
    while offset < total:
        if offset + 16 > total:
            raise DecodeError(f"{total - offset} stray bytes after the last message")
        length, kind, flags, seq, _pid = unpack(view, offset)
        if length < 16 or offset + length > total:
            raise DecodeError(f"message length {length} at offset {offset} of a {total}-byte datagram")
        out.append((kind, flags, seq, view[offset: offset + length]))
        offset += (length + 3) & ~3
    return out


def _ext_message(msg: memoryview, flags: int) -> str:
    """The kernel's extended-ack text ("Attribute failed policy validation")."""
    if not flags & F_ACK_TLVS:
        return ""
    # nlmsgerr = error (4) + the request's header (16, payload capped by NETLINK_CAP_ACK)
    tlvs = attrs(msg, 16 + 4 + 16, len(msg))
    return text(tlvs.get(1)) or ""
