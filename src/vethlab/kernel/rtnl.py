"""The real kernel, over rtnetlink with pyroute2.

Why pyroute2 and how: it encodes and decodes every rtnetlink message we need, so
we keep no netlink code of our own.  But `IPRoute(netns=NAME)` forks a helper per
namespace (and by default *creates* a missing one); instead we open each
namespace's netlink socket ourselves in a worker thread that has `setns`-ed into it
(see netns.py) and hand the socket to `IPRoute(fileno=…)`.  A socket keeps the
namespace it was opened in, so one object per namespace then serves every request
without any further namespace switching, and the main thread never moves.

Importing pyroute2 costs ~0.15-0.3 s; this module is imported only by commands
that talk to the kernel (not by validate/plan-less paths such as `exec`).
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
from collections.abc import Iterable
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from ..errors import ConflictError, KernelError
from ..ownership import ROUTE_PROTO
from . import netns as nsmod
from . import nodefiles
from .process import run_in_node
from .api import LinkInfo, Netns, Route

IFA_F_NODAD = 0x02
IFF_UP = 0x1
RT_TABLE_MAIN = 254
NETLINK_ROUTE = 0

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
    if isinstance(code, int) and code in _PLAIN:
        return _PLAIN[code]
    if isinstance(code, int):
        return os.strerror(code).lower()
    return str(exc)


def where(ns: Netns) -> str:
    return f"namespace {ns}" if ns else "the host namespace"


def _netlink_socket() -> int:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_ROUTE)
    return sock.detach()


class NetlinkKernel:
    """`Kernel` over rtnetlink; one IPRoute per namespace, opened on first use."""

    def __init__(self) -> None:
        self._handles: dict[Netns, IPRoute] = {}
        self._index: dict[Netns, dict[str, int]] = {}
        self._next_index: dict[str, int] = {}

    # -- sockets ---------------------------------------------------------
    def _ipr(self, ns: Netns) -> IPRoute:
        handle = self._handles.get(ns)
        if handle is None:
            if ns is None:
                handle = IPRoute()
            else:
                try:
                    fd = nsmod.call_inside(ns, _netlink_socket)
                except FileNotFoundError:
                    raise KernelError(f"namespace {ns} does not exist") from None
                except OSError as exc:
                    raise KernelError(f"cannot enter namespace {ns}: {plain(exc)}") from None
                handle = IPRoute(fileno=fd)
            self._handles[ns] = handle
        return handle

    def open_namespaces(self, names: Iterable[str]) -> None:
        """Open sockets in many namespaces with one thread (cheaper than one each)."""
        todo = [n for n in names if n not in self._handles]
        if todo:
            fds = nsmod.call_inside_many(todo, lambda _n: _netlink_socket())
            for name, fd in fds.items():
                self._handles[name] = IPRoute(fileno=fd)

    def _ifindex(self, ns: Netns, ifname: str) -> int:
        cache = self._index.setdefault(ns, {})
        if ifname not in cache:
            found = self._ipr(ns).link_lookup(ifname=ifname)
            if not found:
                raise KernelError(f"interface {ifname} not found in {where(ns)}")
            cache[ifname] = found[0]
        return cache[ifname]

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()
        self._handles.clear()
        self._index.clear()

    # -- namespaces --------------------------------------------------------
    def list_namespaces(self) -> list[str]:
        return nsmod.list_names()

    def namespace_exists(self, ns: str) -> bool:
        return nsmod.exists(ns)

    def namespace_alive(self, ns: str) -> bool:
        return nsmod.is_mounted(ns)

    def namespace_owner(self, ns: str) -> str | None:
        """The alias on the namespace's lo: vethlab's marker, or None."""
        try:
            self._ipr(ns)
        except KernelError:
            return None
        for msg in self._ipr(ns).link("get", index=1):
            return str(msg.get("ifalias") or "") or None
        return None

    def create_namespaces(self, names: Iterable[str], marker: str) -> None:
        """Create namespaces, each marked (lo alias) and with lo up *before* it
        appears under /run/netns, so no unmarked namespace of ours ever exists."""

        def inside(name: str) -> int:
            # pyroute2 objects keep per-thread state: this one lives and dies here;
            # the socket returned is wrapped by an IPRoute of the calling thread.
            with IPRoute() as ipr:
                ipr.link("set", index=1, state="up", ifalias=marker)
            return _netlink_socket()

        try:
            made = nsmod.create_many(names, inside)
        except FileExistsError as exc:
            raise ConflictError(f"namespace {os.path.basename(str(exc.filename))} already exists and is not this lab's") from None
        except OSError as exc:
            raise KernelError(f"cannot create namespace: {plain(exc)}") from None
        for name, fd in made.items():
            self._handles[name] = IPRoute(fileno=fd)
            self._next_index[name] = 2  # lo is 1

    def delete_namespace(self, ns: str) -> None:
        handle = self._handles.pop(ns, None)
        if handle is not None:
            handle.close()
        self._index.pop(ns, None)
        try:
            nsmod.delete(ns)
        except OSError as exc:
            raise KernelError(f"cannot delete namespace {ns}: {plain(exc)}") from None

    # -- links ----------------------------------------------------------------
    def links(self, ns: Netns) -> list[LinkInfo]:
        ipr = self._ipr(ns)
        out: dict[int, LinkInfo] = {}
        cache: dict[str, int] = {}
        for msg in ipr.link("dump"):
            info = _link_info(msg)
            out[info.index] = info
            cache[info.ifname] = info.index
        self._index[ns] = cache
        for msg in ipr.addr("dump"):
            link = out.get(msg["index"])
            if link is None:
                continue
            addr = msg.get("address")
            if msg["family"] == socket.AF_INET6 and ipaddress.ip_address(addr).is_link_local:
                continue
            link.addresses.append(str(ipaddress.ip_interface(f"{addr}/{msg['prefixlen']}")))
        return list(out.values())

    def _pick_indexes(self, a_ns: Netns, b_ns: Netns) -> tuple[int | None, int | None]:
        """Distinct ifindexes for the two ends of a veth in two lab namespaces.

        Left to itself the kernel numbers both ends 2 in two fresh namespaces; a veth
        whose ifindex equals its peer's (iflink) is not an "urgent" linkwatch event,
        so its carrier/operstate change is applied up to a second later, and
        packets sent meanwhile hit the noop qdisc.  Distinct numbers make `up`
        settle in milliseconds instead of ~1 s."""
        if a_ns is None or b_ns is None:
            return None, None
        for ns in (a_ns, b_ns):
            if ns not in self._next_index:
                self._next_index[ns] = max((m["index"] for m in self._ipr(ns).link("dump")), default=1) + 1
        a = self._next_index[a_ns]
        self._next_index[a_ns] = a + 1
        b = self._next_index[b_ns]
        if a_ns != b_ns and b == a:
            b += 1
        self._next_index[b_ns] = b + 1
        return a, b

    def create_veth(self, a_ns: Netns, a_if: str, b_ns: Netns, b_if: str, mtu: int | None) -> None:
        """One RTM_NEWLINK puts both ends straight into their namespaces, as
        `ip link add A netns X type veth peer B netns Y` does."""
        a_index, b_index = self._pick_indexes(a_ns, b_ns)
        try:
            self._create_veth(a_ns, a_if, b_ns, b_if, mtu, a_index, b_index)
        except NetlinkError as exc:
            if exc.code == errno.EBUSY and a_index is not None:  # an index got taken meanwhile
                self._next_index.pop(a_ns or "", None)
                self._next_index.pop(b_ns or "", None)
                self._create_veth(a_ns, a_if, b_ns, b_if, mtu, None, None)
            else:
                raise KernelError(f"cannot create veth pair {a_ns or 'host'}:{a_if} <-> {b_ns or 'host'}:{b_if}: "
                                  f"{plain(exc)}") from None

    def _create_veth(self, a_ns: Netns, a_if: str, b_ns: Netns, b_if: str, mtu: int | None,
                     a_index: int | None, b_index: int | None) -> None:
        # The peer is spelled out as raw IFLA_LINKINFO: pyroute2's `peer=` shortcut
        # cannot carry the peer's ifindex (a header field, not an attribute).
        fds = []
        try:
            peer_attrs: list[tuple[str, Any]] = [("IFLA_IFNAME", b_if)]
            kwargs: dict[str, Any] = {"ifname": a_if}
            if a_ns is not None:
                fds.append(nsmod.open_ns(a_ns))
                kwargs["net_ns_fd"] = fds[-1]
            if b_ns is not None:
                fds.append(nsmod.open_ns(b_ns))
                peer_attrs.append(("IFLA_NET_NS_FD", fds[-1]))
            if mtu:
                kwargs["mtu"] = mtu
                peer_attrs.append(("IFLA_MTU", mtu))
            peer: dict[str, Any] = {"attrs": peer_attrs}
            if a_index is not None and b_index is not None:
                kwargs["index"] = a_index
                peer["index"] = b_index
            kwargs["IFLA_LINKINFO"] = {"attrs": [("IFLA_INFO_KIND", "veth"),
                                                 ("IFLA_INFO_DATA", {"attrs": [("VETH_INFO_PEER", peer)]})]}
            self._ipr(None).link("add", **kwargs)
        finally:
            for fd in fds:
                os.close(fd)

    def delete_link(self, ns: Netns, ifname: str) -> None:
        try:
            self._ipr(ns).link("del", index=self._ifindex(ns, ifname))
        except NetlinkError as exc:
            if exc.code != errno.ENODEV:
                raise KernelError(f"cannot delete interface {ifname} in {where(ns)}: {plain(exc)}") from None
        self._index.get(ns, {}).pop(ifname, None)

    def set_link(self, ns: Netns, ifname: str, *, mtu: int | None = None, up: bool | None = None,
                 alias: str | None = None) -> None:
        kwargs: dict[str, Any] = {}
        if mtu is not None:
            kwargs["mtu"] = mtu
        if up is not None:
            kwargs["state"] = "up" if up else "down"
        if alias is not None:
            kwargs["ifalias"] = alias
        if not kwargs:
            return
        try:
            self._ipr(ns).link("set", index=self._ifindex(ns, ifname), **kwargs)
        except NetlinkError as exc:
            raise KernelError(f"cannot set {', '.join(kwargs)} of {ifname} in {where(ns)}: {plain(exc)}") from None

    # -- addresses --------------------------------------------------------------
    def _addr(self, op: str, ns: Netns, ifname: str, cidr: str) -> None:
        iface = ipaddress.ip_interface(cidr)
        kwargs: dict[str, Any] = {"index": self._ifindex(ns, ifname), "address": str(iface.ip),
                                  "prefixlen": iface.network.prefixlen}
        if iface.version == 6 and op == "add":
            kwargs["flags"] = IFA_F_NODAD  # usable at once: no duplicate-address-detection wait
        try:
            self._ipr(ns).addr(op, **kwargs)
        except NetlinkError as exc:
            if op == "del" and exc.code == errno.EADDRNOTAVAIL:
                return
            verb = "add" if op == "add" else "remove"
            raise KernelError(f"cannot {verb} address {cidr} on {ifname} in {where(ns)}: {plain(exc)}") from None

    def add_address(self, ns: Netns, ifname: str, cidr: str) -> None:
        self._addr("add", ns, ifname, cidr)

    def delete_address(self, ns: Netns, ifname: str, cidr: str) -> None:
        self._addr("del", ns, ifname, cidr)

    # -- routes ---------------------------------------------------------------------
    def routes(self, ns: Netns) -> list[Route]:
        ipr = self._ipr(ns)
        names = {index: name for name, index in self._index.get(ns, {}).items()}
        if not names:
            names = {m["index"]: m.get("ifname") for m in ipr.link("dump")}
        out = []
        for family in (socket.AF_INET, socket.AF_INET6):
            for msg in ipr.route("dump", family=family, table=RT_TABLE_MAIN):
                if msg.get("table") != RT_TABLE_MAIN or msg["type"] != 1:  # unicast, main table
                    continue
                dst = msg.get("dst") or ("0.0.0.0" if family == socket.AF_INET else "::")
                oif = msg.get("oif")
                out.append(Route(
                    dst=str(ipaddress.ip_network(f"{dst}/{msg['dst_len']}", strict=False)),
                    via=msg.get("gateway"), dev=names.get(oif) if oif else None,
                    metric=msg.get("priority"), src=msg.get("prefsrc"), proto=msg["proto"],
                ))
        return out

    def _route_args(self, ns: Netns, route: Route) -> dict[str, Any]:
        net = ipaddress.ip_network(route.dst)
        kwargs: dict[str, Any] = {"dst": str(net.network_address), "dst_len": net.prefixlen,
                                  "family": socket.AF_INET6 if net.version == 6 else socket.AF_INET,
                                  "proto": ROUTE_PROTO, "table": RT_TABLE_MAIN}
        if route.via:
            kwargs["gateway"] = route.via
        if route.dev:
            kwargs["oif"] = self._ifindex(ns, route.dev)
        if route.metric is not None:
            kwargs["priority"] = route.metric
        if route.src:
            kwargs["prefsrc"] = route.src
        return kwargs

    def add_route(self, ns: Netns, route: Route) -> None:
        try:
            self._ipr(ns).route("add", **self._route_args(ns, route))
        except NetlinkError as exc:
            raise KernelError(f"cannot add route '{_route_text(route)}' in {where(ns)}: {plain(exc)}") from None

    def delete_route(self, ns: Netns, route: Route) -> None:
        try:
            self._ipr(ns).route("del", **self._route_args(ns, route))
        except NetlinkError as exc:
            if exc.code not in (errno.ESRCH, errno.ENOENT):
                raise KernelError(f"cannot remove route '{_route_text(route)}' in {where(ns)}: {plain(exc)}") from None

    # -- sysctls ------------------------------------------------------------------------
    def read_sysctl(self, ns: Netns, key: str) -> str | None:
        def read() -> str | None:
            try:
                with open(_sysctl_path(key)) as fh:
                    return fh.read().strip()
            except FileNotFoundError:
                return None
        return read() if ns is None else nsmod.call_inside(ns, read)

    def write_sysctl(self, ns: Netns, key: str, value: str) -> None:
        def write() -> None:
            with open(_sysctl_path(key), "w") as fh:
                fh.write(value)
        try:
            write() if ns is None else nsmod.call_inside(ns, write)
        except FileNotFoundError:
            raise KernelError(f"sysctl {key} does not exist in {where(ns)}") from None
        except OSError as exc:
            raise KernelError(f"cannot set sysctl {key}={value} in {where(ns)}: {plain(exc)}") from None

    # -- /etc/netns files and commands in nodes ------------------------------------
    def node_hosts(self, ns: str) -> list[tuple[str, str]] | None:
        return nodefiles.read_entries(ns)

    def write_node_files(self, ns: str, entries: list[tuple[str, str]]) -> None:
        nodefiles.write_files(ns, entries)

    def remove_node_files(self, ns: str) -> None:
        nodefiles.remove_files(ns)

    def run_command(self, ns: Netns, argv: list[str], timeout: float) -> tuple[int, str]:
        """Run argv in a node; (exit status, combined output).  127: not found."""
        import subprocess

        try:
            result = run_in_node(ns, argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                 timeout=timeout)
        except FileNotFoundError:
            return 127, f"command not found: {argv[0]}"
        except subprocess.TimeoutExpired:
            return 124, f"did not finish within {timeout:g} s"
        return result.returncode, result.stdout


def _sysctl_path(key: str) -> str:
    return "/proc/sys/" + key.replace(".", "/")


def _route_text(route: Route) -> str:
    words = [route.dst]
    for name, value in (("via", route.via), ("dev", route.dev), ("metric", route.metric), ("src", route.src)):
        if value is not None:
            words += [name, str(value)]
    return " ".join(words)


def _link_info(msg: Any) -> LinkInfo:
    kind = None
    linkinfo = msg.get("IFLA_LINKINFO")
    if linkinfo is not None:
        kind = linkinfo.get("IFLA_INFO_KIND")
    stats = msg.get("IFLA_STATS64") or {}
    return LinkInfo(
        index=msg["index"],
        ifname=msg.get("ifname"),
        kind=kind,
        alias=msg.get("ifalias"),
        mtu=msg.get("mtu"),
        admin_up=bool(msg["flags"] & IFF_UP),
        operstate=msg.get("operstate") or "UNKNOWN",
        carrier=bool(msg.get("carrier")),
        peer_index=msg.get("link") if kind == "veth" else None,
        master=msg.get("master"),
        stats={k: stats.get(k, 0) for k in ("rx_packets", "tx_packets", "rx_bytes", "tx_bytes", "rx_dropped", "tx_dropped")} if stats else {},
    )
