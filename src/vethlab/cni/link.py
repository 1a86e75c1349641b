"""The kernel side of an attachment, over vethlab's netlink codec (kernel/nl.py):
the bridge, its gateway address, the veth pair with one end in the container,
the container's addresses and routes.  No pyroute2 (its import alone would cost
more than a whole ADD of the reference plugin).

Every object made here is marked with an alias (ownership.cni_marker) in the same
send() that makes it, under an ifindex chosen here, as kernel/rtnl.py does: a kill
between "create" and "mark" is impossible, and a failed create never marks a
foreign interface.  A bridge or veth of our name that is not marked ours is a
conflict (code 101), never taken over."""

from __future__ import annotations

import _socket as socket  # not `socket`: its import re-wraps constants as enums (start-up cost)
import errno
import os
import struct

from ..kernel import nl
from . import addr
from .protocol import CONFLICT, INVALID_ENVIRONMENT, KERNEL_FAILURE, CniError

TYPE_CHECKING = False  # typing itself is not imported at run time: start-up cost (main.py)
if TYPE_CHECKING:
    from typing import Any

IFF_PROMISC = 0x100
RTM_SETLINK = 19
AF_BRIDGE = 7
IFLA_PROTINFO = 12
IFLA_BRPORT_MODE = 4  # hairpin
NLA_F_NESTED = 0x8000
RTPROT_BOOT = 3


class LinkFacts:
    def __init__(self, index: int, ifname: str, kind: str | None, alias: str | None, mac: str, master: int | None,
                 up: bool, mtu: int, stats: dict[str, int] | None = None, operstate: str = "UNKNOWN",
                 carrier: bool = False) -> None:
        self.index, self.ifname, self.kind, self.alias = index, ifname, kind, alias
        self.mac, self.master, self.up, self.mtu = mac, master, up, mtu
        self.stats, self.operstate, self.carrier = stats or {}, operstate, carrier


def _facts(msg: memoryview) -> LinkFacts:
    link = nl.parse_link(msg)
    raw = nl.attrs(msg, 32, len(msg)).get(nl.IFLA_ADDRESS)
    mac = ":".join(f"{b:02x}" for b in bytes(raw)) if raw is not None else ""
    return LinkFacts(link.index, link.ifname, link.kind, link.alias, mac, link.master,
                     bool(link.flags & nl.IFF_UP), link.mtu, link.stats, link.operstate, link.carrier)


def host_veth_name(container_id: str, ifname: str) -> str:
    """The host end's name, a function of the attachment: DEL finds it without state."""
    try:
        from _sha256 import sha256  # the builtin: hashlib's OpenSSL import costs ~2 ms of start-up
    except ImportError:
        from hashlib import sha256
    return "vc" + str(sha256(f"{container_id}/{ifname}".encode()).hexdigest())[:13]  # "vc": never a lab port (vl…)


def _random_index() -> int:
    """An ifindex far above what the kernel hands out (kernel/rtnl.py does the same),
    so "create" and "mark by index" can go in one send()."""
    return (1 << 20) + int.from_bytes(os.urandom(4), "little") % ((1 << 30) - (1 << 20))


def _fail(exc: nl.NetlinkError | OSError, what: str) -> CniError:
    code = getattr(exc, "code", None) or exc.errno or 0
    detail = getattr(exc, "detail", "")
    return CniError(KERNEL_FAILURE, f"cannot {what}: {os.strerror(code).lower()}" + (f" ({detail})" if detail else ""))


def _random_mac() -> bytes:
    """A locally administered unicast MAC.  A bridge given its own address keeps it;
    left to itself it takes its lowest port's, and changes as containers come and go
    (what ADD reported for the bridge would go stale; the reference plugin sets it too)."""
    raw = bytearray(os.urandom(6))
    raw[0] = (raw[0] & 0xFE) | 0x02
    return bytes(raw)


def open_netns(path: str) -> int:
    """The container's namespace, opened read-only; code 4 if CNI_NETNS is not one."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise CniError(INVALID_ENVIRONMENT, f"CNI_NETNS {path}: cannot open it ({exc.strerror})") from None
    # every namespace file lives on the one nsfs: a plain file (or a dead /run/netns
    # entry after a reboot) does not, and is refused before anything is built
    st, own = os.fstat(fd), os.stat("/proc/thread-self/ns/net")
    problem = None
    if st.st_dev != own.st_dev:
        problem = "is not a network namespace"
    elif (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino):
        # the plugin's own (the host's): the "container" end, its address and routes would
        # land in the host namespace
        problem = "is the host's own network namespace, not a container's"
    else:
        import fcntl

        try:
            if fcntl.ioctl(fd, NS_GET_NSTYPE) != CLONE_NEWNET:  # a mount or PID namespace file
                problem = "is not a network namespace"
        except OSError:
            pass  # a kernel without NS_GET_NSTYPE (< 4.11): setns refuses the wrong kind later
    if problem:
        os.close(fd)
        raise CniError(INVALID_ENVIRONMENT, f"CNI_NETNS {path} {problem}")
    return fd


NS_GET_NSTYPE = 0xB703


CLONE_NEWNET = 0x40000000


def _setns(fd: int) -> None:
    """setns(fd, CLONE_NEWNET) for this thread.

    Through `_ctypes` (the C half of ctypes: dlsym + call), not `ctypes`, whose
    import and CDLL cost ~4 ms CPU of every ADD on a loaded machine, 20% of the
    plugin's Python start-up.  A failure is redone through kernel/netns.py's setns,
    which raises the OSError with its errno (the raw call cannot read errno); so
    is everything when `_ctypes` lacks these functions."""
    try:
        import _ctypes

        # RTLD_NOW on None: this process itself, libc included (the stub forgets None)
        address = _ctypes.dlsym(_ctypes.dlopen(None, 2), "setns")  # type: ignore[arg-type]
        if _ctypes.call_function(address, (fd, CLONE_NEWNET)) == 0:
            return
    except (ImportError, AttributeError, OSError):
        pass
    from ..kernel.netns import setns

    setns(fd)


def socket_in(ns_fd: int) -> nl.NlSocket:
    """A netlink socket living in the namespace `ns_fd` (a socket keeps the namespace
    it was opened in).

    The plugin's one thread enters the namespace, opens the socket and returns at
    once, restoring its namespace in `finally`.  STYLE.md says never to move the
    main thread; the rule is for long-lived processes with threads, and a helper
    thread here would import `threading` (with functools and collections: ~2 ms of
    a run).  If returning fails the process is in the wrong namespace: it stops
    there with an error rather than touch anything else."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            _setns(ns_fd)
        except OSError as exc:
            raise CniError(INVALID_ENVIRONMENT, f"cannot enter the container's namespace: {exc.strerror or exc}"
                           ) from None
        try:
            fd = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0).detach()
        finally:
            try:
                _setns(home)
            except OSError as exc:
                from .jsonio import dumps

                why = f"cannot return to the host's namespace after opening a socket in the container's: {exc}"
                os.write(1, dumps(CniError(KERNEL_FAILURE, why).to_json("1.0.0")).encode())
                os.write(2, f"vethlab-cni: {why}\n".encode())
                os._exit(1)
    finally:
        os.close(home)
    return nl.NlSocket(fd)


def socket_in_netns(path: str) -> nl.NlSocket:
    """A netlink socket in the container's namespace CNI_NETNS (code 4 if it is not
    one), for CHECK's reads; the namespace file is not kept open."""
    ns_fd = open_netns(path)
    try:
        return socket_in(ns_fd)
    finally:
        os.close(ns_fd)


def get_link(sock: nl.NlSocket, ifname: str, stats: bool = False) -> LinkFacts | None:
    mask = b"" if stats else nl.attr_u32(nl.IFLA_EXT_MASK, nl.RTEXT_FILTER_SKIP_STATS)
    try:
        msg = sock.get(nl.RTM_GETLINK, nl.ifinfo() + nl.attr_str(nl.IFLA_IFNAME, ifname) + mask,
                       f"look up {ifname}")
    except nl.NetlinkError as exc:
        if exc.code in (errno.ENODEV, errno.ENOENT):
            return None
        raise _fail(exc, f"look up interface {ifname}") from None
    return _facts(msg)


def flush(sock: nl.NlSocket) -> None:
    errors = sock.flush()
    if errors:
        raise _fail(errors[0], errors[0].what)


def ensure_bridge(sock: nl.NlSocket, name: str, mtu: int | None, marker: str, promisc: bool) -> LinkFacts:
    """The bridge `name`, made and marked if missing; a foreign one is a conflict."""
    facts = get_link(sock, name)
    if facts is None:
        index = _random_index()
        sock.queue_together([
            (nl.RTM_NEWLINK, nl.F_CREATE | nl.F_EXCL, nl.bridge_body(name, mtu, index) + nl.attr(
                nl.IFLA_ADDRESS, _random_mac()), f"create bridge {name}"),
            (nl.RTM_NEWLINK, 0, nl.setlink_body(index, alias=marker), f"mark bridge {name}")])
        errors = sock.flush()
        if errors and errors[0].code != errno.EEXIST:
            raise _fail(errors[0], errors[0].what)
        facts = get_link(sock, name)  # made by another network's ADD meanwhile: checked below like any
        if facts is None:
            raise CniError(KERNEL_FAILURE, f"bridge {name} vanished right after it was made")
    if facts.kind != "bridge":
        raise CniError(CONFLICT, f"interface {name} already exists and is not a bridge")
    if facts.alias != marker:
        raise CniError(CONFLICT, f"bridge {name} already exists and is not this network's (alias {facts.alias!r}, "
                       f"vethlab's would be {marker!r}): name another `bridge` in the config")
    if not facts.up or promisc:
        flags = nl.IFF_UP | (IFF_PROMISC if promisc else 0)
        body = nl.ifinfo(facts.index, flags, flags)
        sock.request(nl.RTM_NEWLINK, 0, body, f"set bridge {name} up")
        facts.up = True
    return facts


def add_addresses(sock: nl.NlSocket, index: int, cidrs: list[str], what: str) -> None:
    """Queue addresses (an existing one is fine: a bridge's gateway, added by every ADD)."""
    for cidr in cidrs:
        version, value, prefix = addr.parse_cidr(cidr)
        sock.queue(nl.RTM_NEWADDR, nl.F_CREATE | nl.F_EXCL,
                   nl.addr_body(index, addr.packed(version, value), prefix, nodad=True),
                   f"add address {cidr} to {what}", (errno.EEXIST,))


def await_in_use(sock: nl.NlSocket, cidrs: list[str], what: str, timeout: float = 10.0) -> None:
    """Return once each IPv6 address of `cidrs` has its local route: the kernel
    acknowledges an address added NODAD before addrconf's work item makes it answer
    neighbour solicitations, and under load a runtime's first packet would be lost."""
    import time

    wanted = set()
    for cidr in cidrs:
        version, value, _prefix = addr.parse_cidr(cidr)
        if version == 6:
            wanted.add(addr.packed(version, value))
    deadline = time.monotonic() + timeout
    while wanted - nl.local_ipv6(sock, f"list IPv6 routes of {what}"):
        if time.monotonic() > deadline:
            raise CniError(KERNEL_FAILURE, f"an IPv6 address of {what} is not in use after {timeout:g} s "
                           "(duplicate address detection?)")
        time.sleep(0.005)


def create_veth(host: nl.NlSocket, host_name: str, ifname: str, ns_fd: int, mtu: int | None,
                marker: str) -> None:
    """The pair host_name <-> ifname, the latter straight into the container, the
    former marked in the same send()."""
    stale = get_link(host, host_name)
    if stale is not None:
        if stale.alias != marker:
            raise CniError(CONFLICT, f"interface {host_name} already exists and is not vethlab's")
        host.request(nl.RTM_DELLINK, 0, nl.ifinfo(stale.index), f"remove the stale {host_name}")
    index = _random_index()
    host.queue_together([
        (nl.RTM_NEWLINK, nl.F_CREATE | nl.F_EXCL, nl.veth_body(host_name, ifname, index, 0, None, ns_fd, mtu),
         f"create veth pair {host_name} <-> container:{ifname}"),
        (nl.RTM_NEWLINK, 0, nl.setlink_body(index, alias=marker), f"mark {host_name}")])
    errors = host.flush()
    if errors:
        if errors[0].code == errno.EEXIST:
            raise CniError(CONFLICT, f"cannot create {ifname} in the container: an interface of that name "
                           "already exists there") from None
        raise _fail(errors[0], errors[0].what)


def port_up(host: nl.NlSocket, host_name: str, bridge_index: int, hairpin: bool) -> LinkFacts:
    facts = get_link(host, host_name)
    if facts is None:
        raise CniError(KERNEL_FAILURE, f"veth {host_name} vanished right after it was made")
    host.queue(nl.RTM_NEWLINK, 0, nl.setlink_body(facts.index, up=True, master=bridge_index),
               f"attach {host_name} to its bridge")
    if hairpin:
        mode = nl.attr(IFLA_BRPORT_MODE, b"\x01")
        host.queue(RTM_SETLINK, 0, nl.ifinfo(facts.index, family=AF_BRIDGE) +
                   struct.pack("=HH", 4 + len(mode), IFLA_PROTINFO | NLA_F_NESTED) + mode,
                   f"set hairpin mode on {host_name}")
    flush(host)
    facts.up, facts.master = True, bridge_index
    return facts


def route_body(dst: str, gateway: str | None, oif: int) -> bytes:
    version, value, prefix = addr.parse_cidr(dst)
    gw = addr.packed(*addr.parse(gateway)) if gateway else None
    return nl.route_body(addr.packed(version, addr.network(version, value, prefix)), prefix, gw, oif, None, None,
                         RTPROT_BOOT)


def configure_container(sock: nl.NlSocket, ifname: str, cidrs: list[str],
                        routes: list[dict[str, Any]]) -> LinkFacts:
    """Addresses, up, routes (in that order, in one send()) on the container's end."""
    facts = get_link(sock, ifname)
    if facts is None:
        raise CniError(KERNEL_FAILURE, f"{ifname} did not appear in the container's namespace")
    add_addresses(sock, facts.index, cidrs, f"{ifname} in the container")
    sock.queue(nl.RTM_NEWLINK, 0, nl.setlink_body(facts.index, up=True), f"set {ifname} up in the container")
    for route in routes:
        sock.queue(nl.RTM_NEWROUTE, nl.F_CREATE | nl.F_EXCL, route_body(route["dst"], route.get("gw"), facts.index),
                   f"add route {route['dst']}" + (f" via {route['gw']}" if route.get("gw") else "")
                   + " in the container", (errno.EEXIST,))
    flush(sock)
    await_in_use(sock, cidrs, f"{ifname} in the container")
    facts.up = True
    return facts


def delete_owned(sock: nl.NlSocket, ifname: str, marker: str) -> bool:
    """Delete `ifname` if it carries `marker` (True when it was there and went)."""
    facts = get_link(sock, ifname)
    if facts is None or facts.alias != marker:
        return False
    sock.queue(nl.RTM_DELLINK, 0, nl.ifinfo(facts.index), f"delete {ifname}", (errno.ENODEV,))
    flush(sock)
    return True


def addresses(sock: nl.NlSocket, index: int) -> list[str]:
    out = []
    for msg in sock.dump(nl.RTM_GETADDR, struct.pack("=BBBBI", 0, 0, 0, 0, index), "list addresses"):
        ifindex, family, raw, prefixlen = nl.parse_addr(msg)
        if ifindex != index or family not in (socket.AF_INET, socket.AF_INET6) or not raw:
            continue
        version, value = (6 if len(raw) == 16 else 4), int.from_bytes(raw, "big")
        if addr.is_link_local(version, value):
            continue
        out.append(addr.cidr(version, value, prefixlen))
    return out


def refuse_overlap(sock: nl.NlSocket, bridge: LinkFacts, cidrs: list[str]) -> None:
    """The bridge's gateway subnets must not overlap an address of another interface of
    the host namespace (the host's LAN, lo, another network's bridge): a connected
    route for them on the bridge would change how the host reaches what it already
    reaches — the host's routing, not vethlab's.  Code 101, before the bridge gets them."""
    wanted = [addr.parse_cidr(c) for c in cidrs]
    for msg in sock.dump(nl.RTM_GETADDR, struct.pack("=BBBBI", 0, 0, 0, 0, 0), "list addresses"):
        ifindex, family, raw, prefixlen = nl.parse_addr(msg)
        if ifindex == bridge.index or family not in (socket.AF_INET, socket.AF_INET6) or not raw:
            continue
        version, value = (6 if len(raw) == 16 else 4), int.from_bytes(raw, "big")
        if addr.is_link_local(version, value):
            continue
        for v, w, p in wanted:
            shortest = min(p, prefixlen)
            if v == version and addr.network(v, w, shortest) == addr.network(version, value, shortest):
                raise CniError(CONFLICT, f"subnet {addr.subnet_text(v, w, p)} overlaps "
                               f"{addr.cidr(version, value, prefixlen)} of interface #{ifindex} of the host "
                               f"namespace: give bridge {bridge.ifname} a subnet of its own")


def links(sock: nl.NlSocket) -> list[LinkFacts]:
    return [_facts(msg) for msg in sock.dump(nl.RTM_GETLINK, nl.ifinfo() + nl.attr_u32(
        nl.IFLA_EXT_MASK, nl.RTEXT_FILTER_SKIP_STATS), "list interfaces")]


def enable_forwarding(versions: set[int]) -> None:
    """ip_forward (and IPv6 forwarding) on, as the reference plugin does for a gateway."""
    for version in versions:
        path = "/proc/sys/net/ipv4/ip_forward" if version == 4 else "/proc/sys/net/ipv6/conf/all/forwarding"
        try:
            with open(path, "r+") as fh:
                if fh.read().strip() != "1":
                    fh.seek(0)
                    fh.write("1")
        except OSError as exc:
            raise CniError(KERNEL_FAILURE, f"cannot enable forwarding ({path}): {exc.strerror}") from None


def set_sysctl(path: str, value: str) -> None:
    try:
        with open(path, "w") as fh:
            fh.write(value)
    except OSError as exc:
        raise CniError(KERNEL_FAILURE, f"cannot set {path}: {exc.strerror}") from None
