"""The real kernel, over rtnetlink (our batched codec in nl.py).

One netlink socket per namespace, opened in a worker thread that has entered the
namespace (a socket keeps the namespace it was opened in), so the main thread
never moves and no helper process is forked.  Mutating verbs *queue* requests;
`flush()` sends each namespace's queue in a few `send()` calls and reads the
acknowledgements together.  Reads flush first, so callers always see their own
writes.  The executor flushes after each phase.
"""

from __future__ import annotations

# the C module, as kernel/nl.py: `socket` re-wraps every constant as an IntEnum at import (~1 ms
# of every command's start-up); the socket objects and functions used here are the same
import _socket as socket
import errno
import functools
import ipaddress
import os
import random
import struct
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import ConflictError, KernelError
from ..ownership import NETNS_TAG_PREFIX, ROUTE_PROTO, birth_tag
from . import netns as nsmod
from . import nftables, nl, nodefiles, nodefs, services
from .api import EventStream, LinkInfo, Listener, Netns, Removals, Route, View, route_text

if TYPE_CHECKING:
    from subprocess import CompletedProcess

    from .procsys import SysctlWriter

T = TypeVar("T")

_PLAIN = {
    errno.EEXIST: "already exists",
    errno.ENODEV: "no such interface",
    errno.ENOENT: "no such object",
    errno.ESRCH: "no such route",
    errno.EPERM: "operation not permitted (run as root, or inside `vethlab sandbox`)",
    errno.EACCES: "permission denied (run as root, or inside `vethlab sandbox`)",
    errno.EINVAL: "the kernel rejected a value as invalid",
    errno.EADDRNOTAVAIL: "address not available on that interface",
    errno.ENETUNREACH: "the gateway is not reachable from that interface",
    errno.EOPNOTSUPP: "not supported by this kernel",
    errno.EBUSY: "the object is busy",
    errno.ERANGE: "value out of range",
    errno.ENOBUFS: "out of kernel buffer space",
}


def plain(exc: BaseException) -> str:
    """A kernel error in words a user reads without decoding RTNETLINK."""
    code = getattr(exc, "code", None) or getattr(exc, "errno", None)
    words = _PLAIN.get(code, os.strerror(code).lower()) if isinstance(code, int) else str(exc)
    detail = getattr(exc, "detail", "")
    return f"{words} ({detail})" if detail else words


def where(ns: Netns) -> str:
    return f"namespace {ns}" if ns else "the host namespace"


def _raise(errors: list[nl.NetlinkError]) -> None:
    if errors:
        first = errors[0]
        more = f" (and {len(errors) - 1} more failures)" if len(errors) > 1 else ""
        raise KernelError(f"cannot {first.what}: {plain(first)}{more}")


def _decode(parse: Callable[[memoryview], T], msg: memoryview, what: str) -> T:
    """A dumped message decoded, or a KernelError naming it (never a decoder's traceback)."""
    try:
        return parse(msg)
    except nl.DecodeError as exc:
        raise KernelError(f"netlink: cannot decode {what}: {exc}") from None


_LOOKUPS = 128  # more addressed interfaces than this: one dump of all costs less than a request each


def _parse_link_only(msg: memoryview) -> nl.Link:
    """A link without its counters: what every read but `status --stats` wants."""
    return nl.parse_link(msg, stats=False)


def _info(link: nl.Link, stats: bool) -> LinkInfo:
    return LinkInfo(index=link.index, ifname=link.ifname, kind=link.kind, alias=link.alias, mtu=link.mtu,
                    admin_up=bool(link.flags & nl.IFF_UP), operstate=link.operstate, carrier=link.carrier,
                    peer_index=link.link if link.kind == "veth" else None, master=link.master,
                    stats=dict(link.stats) if stats else {})


def _ip_text(texts: dict[tuple[bytes, int], str], raw: bytes | None) -> str | None:
    """An address as ipaddress spells it, formatted once per distinct address."""
    if not raw:
        return None
    text = texts.get((raw, -1))
    if text is None:
        text = texts[(raw, -1)] = str(ipaddress.ip_address(raw))
    return text


_ATTR = struct.Struct("=HH")


def _name_and_state(msg: memoryview) -> tuple[str, str]:
    """(ifname, operstate) of an RTM_NEWLINK message: its attributes are walked only
    until both are found (the kernel writes them among the first few)."""
    offset, end = 32, len(msg)  # nlmsghdr + ifinfomsg
    if end < offset:
        raise nl.DecodeError(f"link message of {end} bytes, shorter than its {offset}-byte header")
    name: str | None = None
    state: int | None = None
    unpack = _ATTR.unpack_from
    while offset + 4 <= end and (name is None or state is None):
        size, kind = unpack(msg, offset)
        if size < 4 or offset + size > end:
            raise nl.DecodeError(f"attribute {kind & 0x3FFF} of length {size} at offset {offset} overruns its "
                                 f"{end}-byte message")
        kind &= 0x3FFF
        if kind == nl.IFLA_IFNAME:
            name = bytes(msg[offset + 4:offset + size]).split(b"\0", 1)[0].decode(errors="replace")
        elif kind == nl.IFLA_OPERSTATE and size > 4:
            state = msg[offset + 4]
        offset += (size + 3) & ~3
    return name or "", nl.OPERSTATES[state] if state is not None and state < len(nl.OPERSTATES) else "UNKNOWN"


def _packed(cidr: str) -> tuple[bytes, int]:
    """"ip/prefix" as (address bytes, prefix length): inet_pton, not the ipaddress
    module (a 1000-node lab adds 2000 addresses; the file was validated already)."""
    ip, slash, prefix = cidr.partition("/")
    try:
        packed = socket.inet_pton(socket.AF_INET6 if ":" in ip else socket.AF_INET, ip)
        if slash and not (prefix.isascii() and prefix.isdigit()):
            raise ValueError(cidr)
        prefixlen = int(prefix) if slash else 8 * len(packed)
        if prefixlen > 8 * len(packed):
            raise ValueError(cidr)
    except (OSError, ValueError):
        iface = ipaddress.ip_interface(cidr)  # raises, naming what is wrong
        return iface.ip.packed, iface.network.prefixlen
    return packed, prefixlen


# Routes repeat their strings (1000 members' "default via 10.0.0.1"): parsed once each.
@functools.lru_cache(maxsize=4096)
def _network(dst: str) -> tuple[bytes, int]:
    net = ipaddress.ip_network(dst)
    return net.network_address.packed, net.prefixlen


@functools.lru_cache(maxsize=4096)
def _address(ip: str) -> bytes:
    return ipaddress.ip_address(ip).packed


def _open_raw() -> int:
    return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0).detach()


class NetlinkKernel:
    """`Kernel` over rtnetlink."""

    def __init__(self) -> None:
        self._socks: dict[Netns, nl.NlSocket] = {}
        self._index: dict[Netns, dict[str, int]] = {}
        self._next_index: dict[str, int] = {}
        self._sysctls: list[tuple[Netns, str, str]] = []
        self._ns_fds: dict[str, int] = {}  # kept open: queued veth requests refer to them
        self._dirty = False

    # -- sockets -----------------------------------------------------------------
    def _sock(self, ns: Netns) -> nl.NlSocket:
        sock = self._socks.get(ns)
        if sock is None:
            if ns is None:
                sock = nl.NlSocket()
            else:
                try:
                    sock = nl.NlSocket(nsmod.call_inside(ns, _open_raw))
                except FileNotFoundError:
                    raise KernelError(f"namespace {ns} does not exist") from None
                except OSError as exc:
                    raise KernelError(f"cannot enter namespace {ns}: {plain(exc)}") from None
            self._socks[ns] = sock
        return sock

    def open_namespaces(self, names: Iterable[str]) -> None:
        """Open sockets in many namespaces from one thread (one setns each)."""
        todo = [n for n in names if n not in self._socks]
        if todo:
            for name, fd in nsmod.call_inside_many(todo, lambda _n: _open_raw()).items():
                self._socks[name] = nl.NlSocket(fd)

    def _queue(self, ns: Netns, kind: int, flags: int, body: bytes, what: str, tolerate: tuple[int, ...] = ()) -> None:
        self._sock(ns).queue(kind, flags, body, what, tolerate)
        self._dirty = True

    def _sync(self) -> None:
        """Before any read: everything queued, in every namespace, is applied."""
        if self._dirty or self._sysctls:
            self.flush()

    def flush(self) -> None:
        """Send every queued request; raise KernelError naming the first failure."""
        self._dirty = False
        errors: list[nl.NetlinkError] = []
        host = self._socks.get(None)
        if host is not None:  # veth creation lives here and must precede the rest
            errors += host.flush()
        for ns, sock in list(self._socks.items()):
            if ns is not None and sock.out:
                errors += sock.flush()
        if self._sysctls:
            errors += self._apply_sysctls()
        _raise(errors)

    _settling: dict[str, bool] | None = None  # namespace -> the scratch end's admin state

    def settle(self, ns: str, marker: str, done: bool = False) -> None:
        """Hurry the kernel's linkwatch, which applies carrier changes at most 100
        devices per run and leaves the rest to a run paced at one per second unless
        an urgent event comes (with 2000 new veth ends the last ones would come up a
        second or more late).  Each call flaps a scratch veth pair in `ns` (the
        caller's namespace, marked with `marker`: it dies with it), one such event.
        done: remove the pair."""
        states = self._settling = self._settling or {}
        if done:
            if states.pop(ns, None) is not None:
                self.delete_link(ns, "vlnudge0")
                self.flush()
            return
        if ns not in states:
            self.create_veth(ns, "vlnudge0", ns, "vlnudge1", None, marker)
            self.set_link(ns, "vlnudge1", up=True)
            self.flush()
            states[ns] = False
        states[ns] = not states[ns]
        self.set_link(ns, "vlnudge0", up=states[ns])
        self.flush()

    def _ifindex(self, ns: Netns, ifname: str) -> int:
        cache = self._index.setdefault(ns, {})
        if ifname not in cache:
            sock = self._sock(ns)
            self._sync()
            try:
                msg = sock.get(nl.RTM_GETLINK, nl.ifinfo() + nl.attr_str(nl.IFLA_IFNAME, ifname)
                               + nl.attr_u32(nl.IFLA_EXT_MASK, nl.RTEXT_FILTER_SKIP_STATS), "look up")
            except nl.NetlinkError:
                raise KernelError(f"interface {ifname} not found in {where(ns)}") from None
            cache[ifname] = nl.parse_link(msg).index
        return cache[ifname]

    def _ns_fd(self, ns: str) -> int:
        if ns not in self._ns_fds:
            self._ns_fds[ns] = nsmod.open_ns(ns)
        return self._ns_fds[ns]

    def close(self) -> None:
        for sock in self._socks.values():
            sock.close()
        for fd in self._ns_fds.values():
            os.close(fd)
        self._socks.clear()
        self._ns_fds.clear()
        self._index.clear()

    # -- namespaces ----------------------------------------------------------------------
    def list_namespaces(self) -> list[str]:
        return nsmod.list_names()

    def namespace_exists(self, ns: str) -> bool:
        return nsmod.exists(ns)

    def namespace_alive(self, ns: str) -> bool:
        return nsmod.is_mounted(ns)

    def alive_namespaces(self) -> set[str]:
        return nsmod.mounted_names()

    def namespace_id(self, ns: str) -> int | None:
        """The namespace's nsfs inode: unique while it lives, so a stat tells whether
        /run/netns/NS is still the very namespace vethlab made."""
        try:
            return os.stat(nsmod.ns_path(ns)).st_ino
        except OSError:
            return None

    def namespace_tags(self) -> list[tuple[str, bool]]:
        """(tag, still linked to its namespace file) for every namespace birth tag
        under /run/netns (`.MARKER:NETNS`): debris of a run killed mid-creation.
        Whose it is, is ownership.parse_netns_tag's to say."""
        out = []
        for name in nsmod.list_hidden():
            if name.startswith(NETNS_TAG_PREFIX):
                netns = name[len(NETNS_TAG_PREFIX):].partition(":")[2]
                out.append((name, netns not in ("", ".", "..") and nsmod.same_file(name, netns)))
        return out

    def remove_namespace_tag(self, tag: str) -> None:
        if not tag.startswith(NETNS_TAG_PREFIX):
            return  # never a namespace file itself
        try:
            os.unlink(nsmod.ns_path(tag))
        except FileNotFoundError:
            pass

    def namespace_owner(self, ns: str) -> str | None:
        """The alias on the namespace's lo: vethlab's marker, or None.  None too for a
        namespace another user namespace owns: its root could write any alias."""
        if not nsmod.same_user_namespace(ns):
            return None
        try:
            sock = self._sock(ns)
        except KernelError:
            return None
        self._sync()
        msg = sock.get(nl.RTM_GETLINK, nl.ifinfo(1) + nl.attr_u32(nl.IFLA_EXT_MASK, nl.RTEXT_FILTER_SKIP_STATS),
                       "read lo")
        return nl.parse_link(msg).alias

    def create_namespaces(self, names: Iterable[str], marker: str) -> None:
        """Create namespaces, each marked (lo alias) and with lo up *before* it
        appears under /run/netns, so no unmarked namespace of ours ever exists."""

        from .procsys import SysctlWriter

        sysctls = SysctlWriter()  # not /proc/sys: its cost grows with the number of namespaces

        def inside(name: str) -> nl.NlSocket:
            sock = nl.NlSocket()
            sock.request(nl.RTM_NEWLINK, 0, nl.setlink_body(1, up=True, alias=marker), f"set lo up in {name}")
            _no_dad_for_new_interfaces(sysctls)
            return sock

        try:
            made = nsmod.create_many(names, inside, tag=lambda name: birth_tag(marker, name))
        except FileExistsError as exc:
            raise ConflictError(f"namespace {os.path.basename(str(exc.filename))} already exists and is not this "
                                "lab's") from None
        except OSError as exc:
            raise KernelError(f"cannot create namespace: {plain(exc)}") from None
        finally:
            sysctls.close()
        for name, sock in made.items():
            self._socks[name] = sock
            self._index[name] = {"lo": 1}
            self._next_index[name] = 2

    def _forget(self, ns: str) -> None:
        """Drop what this kernel object holds of a namespace about to go (an open fd or
        socket would keep it alive, a cached index would outlive it)."""
        fd = self._ns_fds.pop(ns, None)
        if fd is not None:
            os.close(fd)
        sock = self._socks.pop(ns, None)
        if sock is not None:
            sock.close()
        self._index.pop(ns, None)
        self._next_index.pop(ns, None)

    def delete_namespace(self, ns: str) -> None:
        self._sync()
        self._forget(ns)
        try:
            nsmod.delete(ns)
        except OSError as exc:
            raise KernelError(f"cannot delete namespace {ns}: {plain(exc)}") from None

    def delete_namespaces(self, names: list[str], owners: dict[str, str]) -> dict[str, Exception]:
        """Delete many namespaces at once (see netns.delete_many), and the /etc/netns
        files of each if owners[ns]'s lab made them (after the umounts: file work beside
        them slowed every umount's grace period); the failures."""
        self._sync()
        for ns in names:
            self._forget(ns)

        def files(ns: str) -> None:
            if ns in owners:
                nodefiles.remove_files(ns, owners[ns])

        failed = nsmod.delete_many(names, files)
        return {ns: KernelError(f"cannot delete namespace {ns}: {plain(exc)}") for ns, exc in failed.items()}

    # -- links ---------------------------------------------------------------------------------
    def links(self, ns: Netns, stats: bool = False, addresses: bool = True,
              only_addressed: bool = False, names: Collection[str] | None = None) -> list[LinkInfo]:
        """Every interface of `ns`, with its addresses unless `addresses` is false.
        only_addressed: just the interfaces that have an address (link-local IPv6
        aside) - what an address-conflict check reads: the addresses are dumped
        first and only their few interfaces looked up, not the host's 1000 veth
        ends of a big lab (each a ~1.5 kB message of ~45 attributes).
        names: just the interfaces of these names that exist, each looked up by name
        (and its addresses by an ifindex-filtered dump): what a re-run that edits one
        member of a 1000-member network reads of the host."""
        sock = self._sock(ns)
        self._sync()
        mask = b"" if stats else nl.attr_u32(nl.IFLA_EXT_MASK, nl.RTEXT_FILTER_SKIP_STATS)
        place = where(ns)
        if names is not None:
            return self._named(ns, sock, names, mask, stats, addresses, place)
        if only_addressed:
            found = self._addresses(sock, place)
            if len(found) <= _LOOKUPS:
                return self._addressed(ns, sock, found, mask, stats, place)
        out: dict[int, LinkInfo] = {}
        cache: dict[str, int] = {}
        what = f"an interface in {place}"
        for msg in sock.dump(nl.RTM_GETLINK, nl.ifinfo() + mask, f"list interfaces in {place}"):
            info = _info(_decode(nl.parse_link if stats else _parse_link_only, msg, what), stats)
            cache[info.ifname] = info.index
            out[info.index] = info
        self._index[ns] = cache
        if only_addressed:
            for index, cidrs in found.items():
                if index in out:
                    out[index].addresses += cidrs
            return [info for info in out.values() if info.addresses]
        if addresses:
            for index, cidrs in self._addresses(sock, place).items():
                if index in out:
                    out[index].addresses += cidrs
        return list(out.values())

    @staticmethod
    def _addresses(sock: nl.NlSocket, place: str, index: int = 0, family: int = 0) -> dict[int, list[str]]:
        """ifindex -> "ip/prefix" of every IPv4/IPv6 address, link-local IPv6 excluded
        (every interface has one: a host of 1000 veth ends dumps 1000).  `index`, `family`:
        only that interface's, of that family, when the caller has made the socket
        strict (the kernel filters); else all the same."""
        out: dict[int, list[str]] = {}
        what = f"an address in {place}"
        for msg in sock.dump(nl.RTM_GETADDR, struct.pack("=BBBBI", family, 0, 0, 0, index),
                             f"list addresses in {place}"):
            index, family, raw, prefixlen = _decode(nl.parse_addr, msg, what)
            if not raw:
                continue
            if family == socket.AF_INET:
                text = socket.inet_ntop(socket.AF_INET, raw)
            elif family == socket.AF_INET6:
                if raw[0] == 0xFE and raw[1] & 0xC0 == 0x80:  # fe80::/10
                    continue
                text = str(ipaddress.IPv6Address(raw))
            else:
                continue
            out.setdefault(index, []).append(f"{text}/{prefixlen}")
        return out

    def _named(self, ns: Netns, sock: nl.NlSocket, names: Collection[str], mask: bytes, stats: bool,
               addresses: bool, place: str) -> list[LinkInfo]:
        """The interfaces of `names` that exist, each looked up by name; their addresses
        by one dump per interface that the kernel filters by ifindex (strict checking,
        NETLINK_GET_STRICT_CHK, on for those dumps only), not a dump of all of them."""
        out = []
        cache = self._index.setdefault(ns, {})
        for name in sorted(set(names)):
            try:
                msg = sock.get(nl.RTM_GETLINK, nl.ifinfo() + nl.attr_str(nl.IFLA_IFNAME, name) + mask,
                               f"look up interface {name} in {place}")
            except nl.NetlinkError as exc:
                if exc.code == errno.ENODEV:
                    continue
                raise KernelError(f"cannot look up interface {name} in {place}: {plain(exc)}") from None
            info = _info(_decode(nl.parse_link if stats else _parse_link_only, msg, f"an interface in {place}"),
                         stats)
            cache[info.ifname] = info.index
            out.append(info)
        if not addresses or not out:
            return out
        try:
            sock.sock.setsockopt(nl.SOL_NETLINK, nl.NETLINK_GET_STRICT_CHK, 1)
        except OSError:  # a kernel before 4.20: one dump of every address instead
            found = self._addresses(sock, place)
            for info in out:
                info.addresses += found.get(info.index, [])
            return out
        try:
            # per family: a strict AF_UNSPEC dump would also ask every other family that
            # lists addresses (MCTP, ...), each free to refuse the filter
            for info in out:
                for family in (socket.AF_INET, socket.AF_INET6):
                    info.addresses += self._addresses(sock, place, info.index, family).get(info.index, [])
        finally:
            sock.sock.setsockopt(nl.SOL_NETLINK, nl.NETLINK_GET_STRICT_CHK, 0)
        return out

    def _addressed(self, ns: Netns, sock: nl.NlSocket, found: dict[int, list[str]], mask: bytes, stats: bool,
                   place: str) -> list[LinkInfo]:
        """The interfaces `found` names, each looked up by index (one gone since the
        address dump is skipped: it holds no address any more)."""
        out = []
        cache = self._index.setdefault(ns, {})
        for index, cidrs in found.items():
            try:
                msg = sock.get(nl.RTM_GETLINK, nl.ifinfo(index) + mask, f"look up interface {index} in {place}")
            except nl.NetlinkError:
                continue
            info = _info(_decode(nl.parse_link if stats else _parse_link_only, msg, f"an interface in {place}"),
                         stats)
            info.addresses += cidrs
            cache[info.ifname] = info.index
            out.append(info)
        return out

    def oper_states(self, ns: Netns, kind: str | None = None) -> dict[str, str]:
        """One dump, of which only each link's name and operational state are decoded
        (parse_link decodes every attribute: ~10x the work, for 1000 namespaces polled
        while their links come up).  `kind`: the kernel filters the dump by link kind
        (rtnl_dump_ifinfo's IFLA_LINKINFO filter), so it does not fill a message for lo
        or the other links of the namespace: the fill is most of a dump's cost."""
        sock = self._sock(ns)
        self._sync()
        body = nl.ifinfo() + nl.attr_u32(nl.IFLA_EXT_MASK, nl.RTEXT_FILTER_SKIP_STATS)
        if kind is not None:
            body += nl.attr(nl.IFLA_LINKINFO, nl.attr_str(nl.IFLA_INFO_KIND, kind))
        out: dict[str, str] = {}
        for msg in sock.dump(nl.RTM_GETLINK, body, f"list interfaces in {where(ns)}"):
            name, state = _decode(_name_and_state, msg, f"an interface in {where(ns)}")
            out[name] = state
        return out

    def _pick_indexes(self, a_ns: Netns, b_ns: Netns) -> tuple[int, int]:
        """Distinct ifindexes for the two ends of a veth in two lab namespaces.

        Left to itself the kernel numbers both ends 2 in two fresh namespaces; a veth
        whose ifindex equals its peer's (iflink) is not an "urgent" linkwatch event,
        so its carrier/operstate change is applied up to a second later, and
        packets sent meanwhile hit the noop qdisc.  Distinct numbers make `up`
        settle in milliseconds instead of ~1 s."""
        if a_ns is None or b_ns is None:
            return 0, 0
        for ns in (a_ns, b_ns):
            if ns not in self._next_index:
                self._next_index[ns] = max((link.index for link in self.links(ns)), default=1) + 1
        a = self._next_index[a_ns]
        self._next_index[a_ns] = a + 1
        b = self._next_index[b_ns]
        if a_ns != b_ns and b == a:
            b += 1
        self._next_index[b_ns] = b + 1
        return a, b

    def create_veth(self, a_ns: Netns, a_if: str, b_ns: Netns, b_if: str, mtu: int | None,
                    marker: str | None = None) -> None:
        """One RTM_NEWLINK puts both ends straight into their namespaces, as
        `ip link add A netns X type veth peer B netns Y` does (queued).

        An end bound for the host namespace is never there unmarked (the kernel
        ignores an alias in the create request): the pair is made inside the other
        end's namespace, which is already the lab's, the end is marked there, and
        only then moved to the host.  A crash at any point leaves nothing in the
        host that `clean` could not find."""
        if marker is not None and (a_ns is None) != (b_ns is None):
            inner = a_ns if a_ns is not None else b_ns
            host_if, inner_if = (a_if, b_if) if a_ns is None else (b_if, a_if)
            assert inner is not None
            host_index, inner_index = self._pick_host_port_indexes(inner)
            self._sock(None).queue_together([
                (nl.RTM_NEWLINK, nl.F_CREATE | nl.F_EXCL,
                 nl.veth_body(host_if, inner_if, host_index, inner_index, None, self._ns_fd(inner), mtu),
                 f"create veth pair host:{host_if} <-> {inner}:{inner_if}"),
                # marked by the index this create chose, never by name: if the create fails
                # because a foreign host_if appeared since the plan, a mark by name (the kernel
                # runs it all the same) would stamp the lab's alias on the foreign interface
                (nl.RTM_NEWLINK, 0, nl.setlink_body(host_index, alias=marker), f"mark {host_if}"),
            ])
            self._dirty = True
            self._index.setdefault(None, {})[host_if] = host_index
            self._index.setdefault(inner, {})[inner_if] = inner_index
            return
        a_index, b_index = self._pick_indexes(a_ns, b_ns)
        body = nl.veth_body(a_if, b_if, a_index, b_index, self._ns_fd(a_ns) if a_ns else None,
                            self._ns_fd(b_ns) if b_ns else None, mtu)
        self._queue(None, nl.RTM_NEWLINK, nl.F_CREATE | nl.F_EXCL, body,
                    f"create veth pair {a_ns or 'host'}:{a_if} <-> {b_ns or 'host'}:{b_if}")
        for ns, ifname, index in ((a_ns, a_if, a_index), (b_ns, b_if, b_index)):
            if index:
                self._index.setdefault(ns, {})[ifname] = index
            else:
                self._index.get(ns, {}).pop(ifname, None)

    def _pick_host_port_indexes(self, inner: str) -> tuple[int, int]:
        """(host end, inner end) ifindexes for a pair with one end in the host.  The
        host end takes a random number far above what the kernel hands out (no clash
        with the host's interfaces or, in practice, another lab's), the inner end the
        node's next small one: never equal (see _pick_indexes)."""
        if inner not in self._next_index:
            self._next_index[inner] = max((link.index for link in self.links(inner)), default=1) + 1
        peer = self._next_index[inner]
        self._next_index[inner] = peer + 1
        return random.randint(1 << 20, (1 << 30) - 1), peer

    def delete_link(self, ns: Netns, ifname: str) -> None:
        try:
            index = self._ifindex(ns, ifname)
        except KernelError:
            return  # already gone
        self._queue(ns, nl.RTM_DELLINK, 0, nl.ifinfo(index), f"delete interface {ifname} in {where(ns)}",
                             (errno.ENODEV,))
        self._index.get(ns, {}).pop(ifname, None)

    def set_link(self, ns: Netns, ifname: str, *, mtu: int | None = None, up: bool | None = None,
                 alias: str | None = None, master: str | None = None) -> None:
        """Change a link; `master` is a bridge's name, "" to release the link from one."""
        if mtu is None and up is None and alias is None and master is None:
            return
        what = ", ".join(w for w, v in (("mtu", mtu), ("state", up), ("alias", alias), ("master", master))
                         if v is not None)
        master_index = None if master is None else (self._ifindex(ns, master) if master else 0)
        if master and alias is not None and ns is None:
            # a port the lab makes (marked as the lab's in this very request), never an
            # uplink (an interface of the host's, enslaved as it is and released at `down`)
            self._queue(None, nl.RTM_NEWLINK, 0, nl.ifinfo(self._ifindex(ns, ifname)) + _NO_LINK_LOCAL,
                        f"stop IPv6 address generation on bridge port {ifname}", (errno.EAFNOSUPPORT,))
        self._queue(ns, nl.RTM_NEWLINK, 0, nl.setlink_body(self._ifindex(ns, ifname), up, mtu, alias,
                                                           master=master_index),
                    f"set {what} of {ifname} in {where(ns)}")

    def create_bridge(self, ns: Netns, name: str, mtu: int | None, marker: str) -> None:
        """A bridge, marked in the same send() as it is made (a kill cannot fall
        between the two; bridges cannot be moved between namespaces)."""
        # made under an ifindex of our choosing and marked by it, not by name: should the
        # create fail (a foreign interface of that name appeared since the plan), the
        # mark then finds no such index instead of stamping the foreign interface
        index = random.randint(1 << 20, (1 << 30) - 1)
        self._sock(ns).queue_together([  # one send(): the in-flight bound never splits the pair
            (nl.RTM_NEWLINK, nl.F_CREATE | nl.F_EXCL, nl.bridge_body(name, mtu, index),
             f"create bridge {name} in {where(ns)}"),
            (nl.RTM_NEWLINK, 0, nl.setlink_body(index, alias=marker), f"mark bridge {name}"),
        ])
        self._dirty = True
        self._index.setdefault(ns, {})[name] = index

    def create_macvlan(self, parent_ns: Netns, parent: str, ns: Netns, ifname: str, mtu: int | None,
                       marker: str) -> None:
        """A macvlan (mode bridge) on `parent`, created straight into `ns`, then marked there."""
        self._queue(parent_ns, nl.RTM_NEWLINK, nl.F_CREATE | nl.F_EXCL,
                    nl.macvlan_body(ifname, self._ifindex(parent_ns, parent), self._ns_fd(ns) if ns else None, mtu),
                    f"create macvlan {ifname} on {parent}")
        self._sync()
        self._index.get(ns, {}).pop(ifname, None)
        self.set_link(ns, ifname, alias=marker)

    # -- addresses --------------------------------------------------------------------------------
    def add_address(self, ns: Netns, ifname: str, cidr: str) -> None:
        packed, prefixlen = _packed(cidr)
        # IPv6: no duplicate-address detection, so the address is usable at once
        self._queue(ns, nl.RTM_NEWADDR, nl.F_CREATE | nl.F_EXCL,
                             nl.addr_body(self._ifindex(ns, ifname), packed, prefixlen, True),
                             f"add address {cidr} on {ifname} in {where(ns)}")

    def delete_address(self, ns: Netns, ifname: str, cidr: str) -> None:
        iface = ipaddress.ip_interface(cidr)
        try:
            index = self._ifindex(ns, ifname)
        except KernelError:
            return
        self._queue(ns, nl.RTM_DELADDR, 0, nl.addr_body(index, iface.ip.packed, iface.network.prefixlen),
                             f"remove address {cidr} from {ifname} in {where(ns)}",
                             (errno.EADDRNOTAVAIL, errno.ENODEV))

    def unready_addresses(self, ns: Netns, addresses: Iterable[str]) -> list[str]:
        """The IPv6 ones of `addresses` that have no local route yet: one dump of the
        namespace's IPv6 routes.  An address added NODAD is acknowledged and listed at
        once, but its local route (and its solicited-node group) come from addrconf's
        work item, which needs the RTNL lock and a CPU: under load a ping sent before
        it ran is lost.  A tentative address (DAD running or failed) has none either."""
        wanted = [a for a in addresses if ":" in a]
        if not wanted:
            return []
        sock = self._sock(ns)
        self._sync()
        try:
            local = nl.local_ipv6(sock, f"list IPv6 routes in {where(ns)}")
        except nl.DecodeError as exc:
            raise KernelError(f"netlink: cannot decode a route in {where(ns)}: {exc}") from None
        return [a for a in wanted if ipaddress.ip_interface(a).ip.packed not in local]

    # -- routes -------------------------------------------------------------------------------------
    def routes(self, ns: Netns) -> list[Route]:
        """The unicast routes of the main table.  A host with 1000 veth ends has 1000
        `fe80::/64` routes there and twice as many in its local table: the local ones
        are skipped by their header, undecoded, and each distinct address is formatted
        once, not once per route."""
        sock = self._sock(ns)
        self._sync()
        names = {index: name for name, index in self._index.get(ns, {}).items()}
        out = []
        place = where(ns)
        what = f"a route in {place}"
        texts: dict[tuple[bytes, int], str] = {}
        for family in (socket.AF_INET, socket.AF_INET6):
            for msg in sock.dump(nl.RTM_GETROUTE, struct.pack("=BBBBBBBBI", family, 0, 0, 0, 0, 0, 0, 0, 0),
                                 f"list routes in {place}"):
                table, kind = _decode(nl.route_kind, msg, what)
                if kind != nl.RTN_UNICAST or table not in (nl.RT_TABLE_MAIN, nl.RT_TABLE_COMPAT):
                    continue  # the header's table is the real one unless it says "look in RTA_TABLE"
                r = _decode(nl.parse_route, msg, what)
                if r.table != nl.RT_TABLE_MAIN or r.type != nl.RTN_UNICAST:
                    continue
                if r.oif and r.oif not in names:
                    names = {index: name for name, index in self._refresh_index(ns).items()}
                dst = texts.get((r.dst, r.dst_len))
                if dst is None:
                    dst = texts[(r.dst, r.dst_len)] = str(
                        ipaddress.ip_network((ipaddress.ip_address(r.dst), r.dst_len), strict=False))
                out.append(Route(dst=dst, via=_ip_text(texts, r.gateway), dev=names.get(r.oif) if r.oif else None,
                                 metric=r.priority, src=_ip_text(texts, r.prefsrc), proto=r.proto))
        return out

    def _refresh_index(self, ns: Netns) -> dict[str, int]:
        self.links(ns, addresses=False)
        return self._index[ns]

    def _route_body(self, ns: Netns, route: Route) -> bytes:
        dst, dst_len = _network(route.dst)
        return nl.route_body(dst, dst_len, _address(route.via) if route.via else None,
                             self._ifindex(ns, route.dev) if route.dev else None, route.metric,
                             _address(route.src) if route.src else None, ROUTE_PROTO)

    def add_route(self, ns: Netns, route: Route) -> None:
        # replace: re-adding a route that survived an address change is not an error (foreign
        # routes of the same destination were refused by the plan before anything ran)
        self._queue(ns, nl.RTM_NEWROUTE, nl.F_CREATE | nl.F_REPLACE, self._route_body(ns, route),
                             f"add route '{route_text(route)}' in {where(ns)}")

    def delete_route(self, ns: Netns, route: Route) -> None:
        if route.dev:
            try:
                self._ifindex(ns, route.dev)
            except KernelError:
                # the kernel removed the route with its interface, deleted earlier in this
                # run (a member moved to another network): was "interface eth0 not found"
                return
        self._queue(ns, nl.RTM_DELROUTE, 0, self._route_body(ns, route),
                             f"remove route '{route_text(route)}' in {where(ns)}", (errno.ESRCH, errno.ENOENT))

    # -- sysctls ---------------------------------------------------------------------------------------
    def read_sysctl(self, ns: Netns, key: str) -> str | None:
        def read() -> str | None:
            try:
                with open("/proc/sys/" + _sysctl_path(key)) as fh:
                    return fh.read().strip()
            except FileNotFoundError:
                return None
        return read() if ns is None else nsmod.call_inside(ns, read)

    def write_sysctl(self, ns: Netns, key: str, value: str) -> None:
        """Queued: applied at flush, all namespaces' sysctls from one thread."""
        self._sysctls.append((ns, key, value))

    def _apply_sysctls(self) -> list[nl.NetlinkError]:
        from .procsys import SysctlWriter, write_proc

        todo, self._sysctls = self._sysctls, []
        errors: list[nl.NetlinkError] = []
        # in many namespaces /proc/sys costs more with each (see procsys); in the host's
        # own it does not, and a procfs instance costs an RCU grace period to close
        # (after `down` deleted a lab's namespaces: ~35 ms, measured)
        sysctls = SysctlWriter()

        def write(key: str, value: str, ns: Netns) -> None:
            try:
                (write_proc if ns is None else sysctls.write)(_sysctl_path(key), value)
            except OSError as exc:
                code = errno.ENOENT if isinstance(exc, FileNotFoundError) else (exc.errno or errno.EIO)
                what = f"set sysctl {key}={value} in {where(ns)}"
                errors.append(nl.NetlinkError(code, what, "no such sysctl" if code == errno.ENOENT else ""))

        by_ns: dict[str, list[tuple[str, str]]] = {}
        for ns, key, value in todo:
            if ns is not None:
                by_ns.setdefault(ns, []).append((key, value))

        def write_all(name: str) -> None:
            for key, value in by_ns[name]:
                write(key, value, name)

        try:
            for _, key, value in [t for t in todo if t[0] is None]:
                write(key, value, None)
            if by_ns:
                nsmod.call_inside_many(list(by_ns), write_all)
        finally:
            sysctls.close()
        return errors

    # -- /etc/netns files and commands in nodes ------------------------------------
    def node_hosts(self, ns: str) -> str | None:
        """The digest of the lab entries in the node's hosts file (None: no file of ours)."""
        return nodefiles.read_digest(ns)

    def write_node_files(self, namespaces: list[str], entries: list[tuple[str, str]], marker: str,
                         digest: str) -> None:
        nodefiles.write_files(namespaces, entries, marker, digest)

    def remove_node_files(self, ns: str, marker: str) -> None:
        nodefiles.remove_files(ns, marker)

    def node_files_owners(self, namespaces: Iterable[str] | None) -> dict[str, str]:
        return nodefiles.owners(namespaces)

    def node_temp_files(self, namespaces: Iterable[str] | None) -> list[tuple[str | None, str]]:
        return nodefiles.temps(namespaces)

    def remove_node_temp_file(self, name: str) -> None:
        nodefiles.remove_temp(name)

    def run_command(self, ns: Netns, argv: list[str], timeout: float) -> tuple[int, str]:
        """Run argv in a node; (exit status, combined output).  127: not found."""
        import subprocess

        from .process import run_in_node

        self.flush()
        try:
            result = run_in_node(ns, argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                 timeout=timeout)
        except FileNotFoundError:
            return 127, f"command not found: {argv[0]}"
        except subprocess.TimeoutExpired:
            return 124, f"did not finish within {timeout:g} s"
        return result.returncode, result.stdout

    def run_in_node(self, ns: Netns, argv: Sequence[str], **kwargs: Any) -> CompletedProcess[Any]:
        from .process import run_in_node  # here: kernel/process.py loads subprocess and shutil

        return run_in_node(ns, argv, **kwargs)

    def node_argv(self, ns: Netns, argv: Sequence[str]) -> list[str]:
        from .process import node_argv

        return node_argv(ns, argv)

    def missing_command(self, ns: Netns, argv: Sequence[str]) -> str | None:
        from .process import missing_command

        return missing_command(argv, ns)

    def oneshot_succeeded(self, log_path: str) -> bool:
        return services.oneshot_succeeded(log_path)

    def run_on_machine(self, machine: str, address: str, argv: list[str],
                       timeout: float) -> CompletedProcess[str]:
        from .machines import vethlab_on

        return vethlab_on(machine, address, argv, timeout)

    def host_listeners(self) -> list[Listener]:
        from .listeners import listeners

        return listeners()

    # -- nodes' own views (mount and UTS namespaces) -----------------------------
    def views(self) -> dict[str, tuple[str, str]]:
        return nodefs.views()

    def view_alive(self, ns: str) -> bool:
        return nodefs.has_view(ns)

    def view_dir(self, ns: str) -> str:
        return nodefs.pin_dir(ns)

    def create_view(self, ns: str, marker: str, view: View, replace: bool = False) -> None:
        try:
            nodefs.build(ns, marker, view, replace, view.digest())
        except FileExistsError:
            raise ConflictError(f"namespace {ns} already has a view (mount and UTS namespaces) of its own") from None
        except OSError as exc:
            raise KernelError(f"cannot make the view of namespace {ns}: {exc.strerror or exc}"
                              + (f" ({exc.filename})" if exc.filename else "")) from None

    def remove_view(self, ns: str, marker: str) -> bool:
        try:
            return nodefs.remove(ns, marker)
        except OSError as exc:
            raise KernelError(f"cannot remove the view of namespace {ns}: {exc.strerror or exc}") from None

    # -- firewall and services: thin delegations, so all side effects share one face ---
    def firewall_chains(self, ns: Netns, table: str) -> list[str] | None:
        return nftables.chains(ns, table)

    def firewall_apply(self, ns: Netns, batch: dict[str, Any], what: str) -> None:
        self._sync()
        nftables.apply(ns, batch, what)

    def firewall_delete(self, ns: Netns, table: str) -> None:
        nftables.delete(ns, table)

    def firewall_tables(self, ns: Netns) -> dict[str, list[str]]:
        return nftables.tables(ns)

    def firewall_ruleset(self, ns: Netns) -> list[dict[str, Any]]:
        return nftables.ruleset(ns)

    def start_service(self, ns: Netns, argv: list[str], log_path: str, marker: str,
                      oneshot: bool = False) -> tuple[int, int]:
        self._sync()
        try:
            return services.start(ns, argv, log_path, marker, oneshot)
        except OSError as exc:
            raise KernelError(f"cannot start `{' '.join(argv)}`: {plain(exc)}") from None

    def stop_service(self, ns: Netns, label: str, pid: int, started: int) -> None:
        services.stop(ns, label, pid, started)

    def release_service(self, pid: int) -> None:
        services.release(pid)

    def service_alive(self, pid: int, started: int) -> bool:
        return services.alive(pid, started)

    def service_exit(self, pid: int) -> int | None:
        return services.exit_status(pid)

    def lab_processes(self, namespaces: list[str],
                      recorded: list[tuple[int, int, int]]) -> dict[str, list[tuple[int, int, str | None]]]:
        return services.lab_processes(namespaces, recorded)

    def stop_processes(self, procs: list[tuple[int, int]], grace: float) -> int:
        return services.signal_all(procs, grace)

    def ready_check(self, ns: Netns, check: tuple[str, ...], timeout: float) -> bool:
        if ns is not None and len(check) == 1 and check[0].startswith("tcp:"):
            return services.listening(ns, int(check[0][4:]))
        return services.check_command(ns, list(check), timeout)

    def link_events(self, nodes: dict[str, Netns]) -> EventStream:
        from .events import NetlinkEvents

        return NetlinkEvents(nodes)

    def link_removals(self, ns: Netns) -> Removals:
        from .events import LinkRemovals

        self._sync()  # queued deletes reach the kernel before anything is read
        return LinkRemovals(ns)

    def qdisc_supported(self, kind: str) -> bool:
        from . import tc

        return tc.supported(kind)

    def set_shaping(self, ns: Netns, ifname: str, shaping: dict[str, Any] | None) -> None:
        from . import tc

        self._sync()
        tc.apply(ns, ifname, shaping)

    def shaping_kind(self, ns: Netns, ifname: str) -> str | None:
        from . import tc

        self._sync()
        return tc.root_kind(ns, ifname)

    # -- VXLAN: links and networks across machines (SPEC §7; see kernel/vxlan.py) ----------
    def create_vxlan(self, ns: Netns, ifname: str, vni: int, local: str, remote: str | None, *,
                     port: int = 4789, dev: str | None = None, mtu: int | None = None,
                     marker: str | None = None, mac: bytes | None = None) -> None:
        """A VXLAN device named `ifname` in `ns` whose UDP socket lives in the namespace
        vethlab runs in (the machine's), queued.  In the machine's own namespace it is
        made under an ifindex of our choosing and marked by it in the same send(), as
        bridges are; in a node's namespace (the lab's) the interface phase marks it."""
        from . import vxlan

        dev_index = self._ifindex(None, dev) if dev else None
        what = f"create VXLAN {ifname} (VNI {vni}) in {where(ns)}"
        if ns is None:
            index = random.randint(1 << 20, (1 << 30) - 1)
            requests = [(nl.RTM_NEWLINK, nl.F_CREATE | nl.F_EXCL,
                         vxlan.vxlan_body(ifname, vni, local, remote, port=port, dev_index=dev_index, mtu=mtu,
                                          index=index, mac=mac), what)]
            if marker is not None:
                requests.append((nl.RTM_NEWLINK, 0, nl.setlink_body(index, alias=marker), f"mark {ifname}"))
            self._sock(None).queue_together(requests)
            self._dirty = True
            self._index.setdefault(None, {})[ifname] = index
            return
        self._queue(None, nl.RTM_NEWLINK, nl.F_CREATE | nl.F_EXCL,
                    vxlan.vxlan_body(ifname, vni, local, remote, port=port, dev_index=dev_index,
                                     ns_fd=self._ns_fd(ns), mtu=mtu, mac=mac), what)
        self._index.get(ns, {}).pop(ifname, None)

    def fdb_append(self, ns: Netns, ifname: str, dst: str) -> None:
        """`bridge fdb append 00:00:00:00:00:00 dev IFNAME dst DST` (queued): flood to DST."""
        from . import vxlan

        self._queue(ns, vxlan.RTM_NEWNEIGH, nl.F_CREATE | vxlan.F_APPEND,
                    vxlan.fdb_body(self._ifindex(ns, ifname), dst), f"add flood entry to {dst} on {ifname}",
                    (errno.EEXIST,))

    def fdb_delete(self, ns: Netns, ifname: str, dst: str) -> None:
        from . import vxlan

        self._queue(ns, vxlan.RTM_DELNEIGH, 0, vxlan.fdb_body(self._ifindex(ns, ifname), dst),
                    f"remove flood entry to {dst} from {ifname}", (errno.ENOENT,))

    def fdb_floods(self, ns: Netns, ifname: str) -> list[str]:
        """The all-zero-MAC destinations of a VXLAN device: where it floods."""
        from . import vxlan

        index = self._ifindex(ns, ifname)
        out = []
        for msg in self._sock(ns).dump(vxlan.RTM_GETNEIGH, vxlan.fdb_dump_body(index), f"list FDB of {ifname}"):
            got, mac, dst = vxlan.parse_fdb(msg)
            if got == index and mac == "00:00:00:00:00:00" and dst is not None:
                out.append(dst)
        return sorted(out)

    def vxlan_info(self, ns: Netns, ifname: str) -> dict[str, Any] | None:
        """vni, local, remote, port, link of a VXLAN device; None if it is none."""
        from . import vxlan

        sock = self._sock(ns)
        self._sync()
        try:
            msg = sock.get(nl.RTM_GETLINK, nl.ifinfo() + nl.attr_str(nl.IFLA_IFNAME, ifname), f"read {ifname}")
        except nl.NetlinkError:
            return None
        return vxlan.parse_vxlan(msg)


#: IFLA_AF_SPEC { AF_INET6 { IFLA_INET6_ADDR_GEN_MODE: IN6_ADDR_GEN_MODE_NONE } }, sent before a
#: host-namespace bridge port is enslaved and set up.  The port's own IPv6 stack is never used
#: (what it receives goes to the bridge), but with an address it joins groups, sends MLD reports
#: and router solicitations into its node and runs address work under RTNL for seconds after a
#: large `up` (1000 ports: ~6000 packets and 1000 link-local addresses in the host namespace that
#: every later read of it dumps).  LXC and systemd-networkd leave such ports without one too.
#: The nodes' ends keep theirs.  Without IPv6 (EAFNOSUPPORT) there is nothing to stop.
_NO_LINK_LOCAL = nl.attr(26, nl.attr(socket.AF_INET6, nl.attr(8, b"\x01")))

_SYSCTL_SWAP = str.maketrans("./", "/.")


def _no_dad_for_new_interfaces(sysctls: SysctlWriter) -> None:
    """In the calling thread's (new, empty) namespace: interfaces made from now on
    skip IPv6 duplicate address detection.  The lab's own addresses are added NODAD
    already; this is for each interface's link-local address, which is otherwise
    tentative for 1-2 s after the link comes up — and a router sends the neighbour
    solicitation for a packet it forwards only from a non-tentative link-local
    address, so IPv6 through a lab router failed for that long after `up` (measured:
    6 of 6 first pings, 0 of 6 without DAD).  Addresses in a lab are the file's;
    there is no one to collide with.  No IPv6 (no such file): nothing to do."""
    try:
        sysctls.write("net/ipv6/conf/default/accept_dad", "0")
    except FileNotFoundError:
        pass


def _sysctl_path(key: str) -> str:
    """The path under /proc/sys, by sysctl(8)'s convention: '.' separates, '/' stands
    for a '.' inside a name (net.ipv4.conf.vb/t/lan.route_localnet is
    net/ipv4/conf/vb.t.lan/route_localnet)."""
    return key.translate(_SYSCTL_SWAP)
