"""An in-memory kernel for unit tests of planning, execution and rollback.

It follows the real kernel where the core relies on it: a veth's ends know each
other's ifindex, deleting one end deletes both, deleting a namespace deletes its
interfaces (and their peers), names clash with EEXIST.  `fail_at=N` makes the
N-th mutating call fail, `crash_at=N` raise a BaseException (a stand-in for
SIGKILL: nothing is unwound), to prove rollback and crash recovery.

It batches as NetlinkKernel does: the verbs that the real kernel queues (links,
addresses, routes, sysctl writes) do not raise when they fail; the failed request
is not applied, the others are, and `flush()` — or the next read, which flushes
first — raises KernelError for the first failure.  The verbs the real kernel
carries out at once (namespaces, firewall, services, shaping, node files) raise at
once.  `batched=False` makes every injected failure raise at the call instead.
"""

from __future__ import annotations

import copy
import ipaddress
import time
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from subprocess import CompletedProcess
from typing import Any

from ..errors import ConflictError, KernelError
from ..ownership import ROUTE_PROTO, table_owner
from . import tc
from .api import AddressEvent, Event, Kernel, LinkEvent, LinkInfo, LinkState, Listener, Netns, Route, default_metric


class Crash(BaseException):
    """Simulated SIGKILL: not an Exception, so nothing catches and unwinds it."""


@dataclass
class _Link:
    index: int
    ifname: str
    kind: str
    alias: str | None = None
    mtu: int = 1500
    up: bool = False
    peer: tuple[Netns, int] | None = None
    addresses: list[str] = field(default_factory=list)
    master: int | None = None


@dataclass
class _Ns:
    links: dict[int, _Link] = field(default_factory=dict)
    routes: list[Route] = field(default_factory=list)
    sysctls: dict[str, str] = field(default_factory=dict)
    next_index: int = 2


class FakeKernel:
    def __init__(self, fail_at: int | None = None, crash_at: int | None = None, batched: bool = True) -> None:
        self.spaces: dict[Netns, _Ns] = {None: _Ns(next_index=10)}
        self.spaces[None].links[1] = _Link(1, "lo", "loopback", up=True)
        self.stale: set[str] = set()
        self.calls = 0
        self.fail_at = fail_at
        self.crash_at = crash_at
        self.log: list[str] = []
        self.files: dict[str, list[tuple[str, str]]] = {}
        self.hosts_digests: dict[str, str] = {}  # /etc/netns/NS -> the digest line written with its entries
        self.listening: list[Listener] = []  # what `host_listeners` reports
        self.oneshots_done: set[str] = set()  # log paths of one-shots whose gate recorded exit 0
        self.file_owners: dict[str, str] = {}  # /etc/netns/NS -> the marker it holds ("" foreign)
        self.temp_files: set[str] = set()  # temporary entries of /etc/netns (named by ownership.temp_prefix)
        self.commands: list[tuple[Netns, list[str]]] = []
        self.command_status: dict[str, int] = {}  # argv[0] -> exit status to return
        self.tables: dict[tuple[Netns, str], list[str]] = {}
        self.ruleset: dict[Netns, list[dict[str, Any]]] = {}  # foreign rules `firewall_ruleset` returns
        self.services: dict[int, tuple[str, list[str]]] = {}  # pid -> (label, argv)
        self.vxlans: dict[tuple[Netns, str], dict[str, Any]] = {}  # VXLAN settings, by (ns, ifname)
        self.floods: dict[tuple[Netns, str], set[str]] = {}  # flood FDB entries, by (ns, ifname)
        self.service_ns: dict[int, Netns] = {}
        self.exits: dict[int, int] = {}  # pid -> exit status of a service that ended
        self.released: set[int] = set()  # services let past their gate (recorded first)
        self.next_pid = 1000
        self.qdiscs = {"tbf", "netem"}
        self.shaped: dict[tuple[Netns, str], str] = {}
        self.batched = batched
        self.pending: list[str] = []  # failures of queued requests, raised at the next flush or read
        self.streams: list[_Stream] = []  # open `link_events` subscriptions
        self.built_views: dict[str, tuple[str, Any]] = {}  # netns -> (owner marker, the View it was built from)
        # IPv6 addresses added from now on stay unusable for this many reads (`unready_addresses`)
        self.addrconf_delay = 0
        self.unready: dict[tuple[Netns, str], int] = {}  # (ns, address) -> reads it stays unusable

    def snapshot(self) -> dict[Netns, _Ns]:
        return copy.deepcopy(self.spaces)

    def _step(self, what: str, queued: bool = False) -> bool:
        """Count a mutating call; False: a queued request that failed (skip it, the
        failure waits for flush)."""
        self.calls += 1
        self.log.append(what)
        if self.crash_at is not None and self.calls == self.crash_at:
            raise Crash(what)
        if self.fail_at is not None and self.calls == self.fail_at:
            message = f"injected failure at step {self.calls}: {what}"
            if queued and self.batched:
                self.pending.append(message)
                return False
            raise KernelError(message)
        return True

    def _ns(self, ns: Netns) -> _Ns:
        if ns not in self.spaces:
            raise KernelError(f"namespace {ns} does not exist")
        return self.spaces[ns]

    def _by_name(self, ns: Netns, ifname: str) -> _Link:
        for link in self._ns(ns).links.values():
            if link.ifname == ifname:
                return link
        raise KernelError(f"interface {ifname} not found in {ns or 'the host namespace'}")

    def flush(self) -> None:
        """Raise the first failure of the requests queued since the last flush."""
        failed, self.pending = self.pending, []
        if failed:
            more = f" (and {len(failed) - 1} more failures)" if len(failed) > 1 else ""
            raise KernelError(f"{failed[0]}{more}")

    def settle(self, ns: str, marker: str, done: bool = False) -> None:
        """Nothing to hurry: the fake's links change state at once."""

    # -- namespaces
    def list_namespaces(self) -> list[str]:
        return sorted([n for n in self.spaces if n is not None] + list(self.stale))

    def namespace_exists(self, ns: str) -> bool:
        return ns in self.spaces or ns in self.stale

    def namespace_alive(self, ns: str) -> bool:
        return ns in self.spaces

    def namespace_id(self, ns: str) -> int | None:
        return id(self.spaces[ns]) if ns in self.spaces else None

    def alive_namespaces(self) -> set[str]:
        return {n for n in self.spaces if n is not None}

    def namespace_owner(self, ns: str) -> str | None:
        self.flush()
        return self.spaces[ns].links[1].alias if ns in self.spaces else None

    def namespace_tags(self) -> list[tuple[str, bool]]:
        return []

    def remove_namespace_tag(self, tag: str) -> None:
        pass

    def open_namespaces(self, names: Iterable[str]) -> None:
        pass

    def create_namespaces(self, names: Iterable[str], marker: str) -> None:
        for name in names:
            if name in self.spaces or name in self.stale:
                raise ConflictError(f"namespace {name} already exists and is not this lab's")
            self._step(f"create namespace {name}")
            space = _Ns()
            space.links[1] = _Link(1, "lo", "loopback", alias=marker, up=True)
            self.spaces[name] = space

    def delete_namespace(self, ns: str) -> None:
        self._step(f"delete namespace {ns}")
        self.stale.discard(ns)
        space = self.spaces.pop(ns, None)
        if space:
            for link in space.links.values():
                if link.peer and link.peer[0] in self.spaces:
                    self._gone(link.peer[0], self.spaces[link.peer[0]].links.pop(link.peer[1], None))
        self.shaped = {key: kind for key, kind in self.shaped.items() if key[0] != ns}

    def _gone(self, ns: Netns, link: _Link | None) -> None:
        """What goes with an interface in the kernel: its per-interface sysctls and its qdisc."""
        if link is None:
            return
        self._changed(ns, link, deleted=True)
        conf = f".conf.{link.ifname.replace('.', '/')}."
        space = self.spaces.get(ns)
        if space is not None:
            space.sysctls = {key: value for key, value in space.sysctls.items() if conf not in key}
        self.shaped.pop((ns, link.ifname), None)

    def delete_namespaces(self, names: list[str], owners: dict[str, str]) -> dict[str, Exception]:
        """As the real one (netns.delete_many): every namespace goes whatever its files
        do, and a failure of either is reported by name (the namespace's first)."""
        errors: dict[str, Exception] = {}
        for ns in names:
            try:
                if ns in owners:
                    self.remove_node_files(ns, owners[ns])
            except (KernelError, OSError) as exc:
                errors[ns] = exc
            try:
                self.delete_namespace(ns)
            except KernelError as exc:
                errors[ns] = exc
        return errors

    # -- links
    def links(self, ns: Netns, stats: bool = False, addresses: bool = True,
              only_addressed: bool = False, names: Collection[str] | None = None) -> list[LinkInfo]:
        self.flush()
        return [self._info(link) for link in self._ns(ns).links.values()
                if (link.addresses or not only_addressed) and (names is None or link.ifname in names)]

    def oper_states(self, ns: Netns, kind: str | None = None) -> dict[str, str]:
        self.flush()
        return {link.ifname: self._info(link).operstate for link in self._ns(ns).links.values()
                if kind is None or link.kind == kind}

    def _info(self, link: _Link) -> LinkInfo:
        peer_up = True
        if link.peer:
            other = self.spaces.get(link.peer[0], _Ns()).links.get(link.peer[1])
            peer_up = bool(other and other.up)
        carrier = link.up and peer_up
        return LinkInfo(link.index, link.ifname, link.kind, link.alias, link.mtu, link.up,
                        "UP" if carrier else ("UNKNOWN" if link.kind == "loopback" and link.up else "DOWN"),
                        carrier, link.peer[1] if link.peer else None, link.master, list(link.addresses))

    def create_veth(self, a_ns: Netns, a_if: str, b_ns: Netns, b_if: str, mtu: int | None,
                    marker: str | None = None) -> None:
        for ns, name in ((a_ns, a_if), (b_ns, b_if)):
            if any(link.ifname == name for link in self._ns(ns).links.values()):
                raise KernelError(f"cannot create veth pair: {name} already exists in {ns or 'host'}")
        if not self._step(f"create veth {a_ns}:{a_if} {b_ns}:{b_if}", queued=True):
            return
        a, b = self._ns(a_ns), self._ns(b_ns)
        ai = a.next_index
        a.next_index += 1
        bi = b.next_index
        b.next_index += 1
        a.links[ai] = _Link(ai, a_if, "veth", mtu=mtu or 1500, peer=(b_ns, bi), alias=marker)
        b.links[bi] = _Link(bi, b_if, "veth", mtu=mtu or 1500, peer=(a_ns, ai), alias=marker)
        self._changed(a_ns, a.links[ai])
        self._changed(b_ns, b.links[bi])

    def create_bridge(self, ns: Netns, name: str, mtu: int | None, marker: str) -> None:
        if any(link.ifname == name for link in self._ns(ns).links.values()):
            raise KernelError(f"cannot create bridge {name}: already exists")
        if not self._step(f"create bridge {ns}:{name}", queued=True):
            return
        space = self._ns(ns)
        index = space.next_index
        space.next_index += 1
        space.links[index] = _Link(index, name, "bridge", alias=marker, mtu=mtu or 1500)
        self._changed(ns, space.links[index])

    def create_macvlan(self, parent_ns: Netns, parent: str, ns: Netns, ifname: str, mtu: int | None,
                       marker: str) -> None:
        self._by_name(parent_ns, parent)
        if not self._step(f"create macvlan {ns}:{ifname}", queued=True):
            self.flush()  # as NetlinkKernel: the create is sent at once, to mark the link after it
        space = self._ns(ns)
        index = space.next_index
        space.next_index += 1
        space.links[index] = _Link(index, ifname, "macvlan", alias=marker, mtu=mtu or 1500)
        self._changed(ns, space.links[index])

    def create_vxlan(self, ns: Netns, ifname: str, vni: int, local: str, remote: str | None, *, port: int = 4789,
                     dev: str | None = None, mtu: int | None = None, marker: str | None = None,
                     mac: bytes | None = None) -> None:
        self._step(f"create vxlan {ns}:{ifname}")
        space = self._ns(ns)
        index = space.next_index
        space.next_index += 1
        space.links[index] = _Link(index, ifname, "vxlan", alias=marker if ns is None else None, mtu=mtu or 1450)
        self.vxlans[(ns, ifname)] = {"vni": vni, "local": local, "remote": remote, "port": port, "link": None}

    def vxlan_info(self, ns: Netns, ifname: str) -> dict[str, Any] | None:
        return self.vxlans.get((ns, ifname))

    def fdb_append(self, ns: Netns, ifname: str, dst: str) -> None:
        self._step(f"flood {ns}:{ifname} -> {dst}")
        self.floods.setdefault((ns, ifname), set()).add(dst)

    def fdb_delete(self, ns: Netns, ifname: str, dst: str) -> None:
        self.floods.get((ns, ifname), set()).discard(dst)

    def fdb_floods(self, ns: Netns, ifname: str) -> list[str]:
        return sorted(self.floods.get((ns, ifname), set()))

    def firewall_chains(self, ns: Netns, table: str) -> list[str] | None:
        return self.tables.get((ns, table))

    def firewall_apply(self, ns: Netns, batch: dict[str, Any], what: str) -> None:
        self._step(f"firewall {ns}: {what}")
        tables = copy.deepcopy(self.tables)  # one transaction: all or nothing, as nft applies a batch
        for command in batch["nftables"]:
            (verb, body), = command.items()
            if "table" in body:
                key = (ns, body["table"]["name"])
                if verb == "create" and key in tables:
                    raise KernelError(f"cannot {what}: table {key[1]} exists")
                if verb == "delete":
                    del tables[key]
                else:
                    tables.setdefault(key, [])
            elif "chain" in body:
                key, name = (ns, body["chain"]["table"]), body["chain"]["name"]
                if verb == "delete":
                    tables[key].remove(name)
                elif name not in tables[key]:
                    tables[key].append(name)
        self.tables = tables

    def firewall_delete(self, ns: Netns, table: str) -> None:
        if table_owner(table, self.tables.get((ns, table), [])) is None:
            return  # as nftables.delete: a table without the lab's marker chain is not ours
        self._step(f"firewall {ns}: delete {table}")
        self.tables.pop((ns, table), None)

    def firewall_tables(self, ns: Netns) -> dict[str, list[str]]:
        return {name: list(chains) for (space, name), chains in self.tables.items() if space == ns}

    def start_service(self, ns: Netns, argv: list[str], log_path: str, marker: str,
                      oneshot: bool = False) -> tuple[int, int]:
        self._step(f"start {ns}: {' '.join(argv)}")
        self.next_pid += 1
        status = self.command_status.get(argv[0])
        if status is None:
            self.services[self.next_pid] = (marker, list(argv))
            self.service_ns[self.next_pid] = ns
        else:  # a service that exits at once with this status
            self.exits[self.next_pid] = status
        return self.next_pid, 1

    def stop_service(self, ns: Netns, label: str, pid: int, started: int) -> None:
        self.services.pop(pid, None)
        for other in [p for p, (mark, _) in self.services.items() if mark == label and self.service_ns[p] == ns]:
            self.services.pop(other)

    def release_service(self, pid: int) -> None:
        self.released.add(pid)

    def service_alive(self, pid: int, started: int) -> bool:
        return pid in self.services

    def service_exit(self, pid: int) -> int | None:
        return self.exits.get(pid)

    def lab_processes(self, namespaces: list[str],
                      recorded: list[tuple[int, int, int]]) -> dict[str, list[tuple[int, int, str | None]]]:
        out: dict[str, list[tuple[int, int, str | None]]] = {}
        for pid, (label, _argv) in self.services.items():
            ns = self.service_ns.get(pid)
            if ns in namespaces:
                out.setdefault(str(ns), []).append((pid, 1, label))
        return out

    def stop_processes(self, procs: list[tuple[int, int]], grace: float) -> int:
        hit = [pid for pid, _ in procs if pid in self.services]
        for pid in hit:
            self.services.pop(pid)
        return len(hit)

    def ready_check(self, ns: Netns, check: tuple[str, ...], timeout: float) -> bool:
        return True

    def qdisc_supported(self, kind: str) -> bool:
        return kind in self.qdiscs

    def set_shaping(self, ns: Netns, ifname: str, shaping: dict[str, Any] | None) -> None:
        self._step(f"shape {ns}:{ifname}")
        self._by_name(ns, ifname)
        if shaping is None:
            self.shaped.pop((ns, ifname), None)
        else:
            self.shaped[(ns, ifname)] = tc.params(shaping)[0]

    def shaping_kind(self, ns: Netns, ifname: str) -> str | None:
        return self.shaped.get((ns, ifname))

    def delete_link(self, ns: Netns, ifname: str) -> None:
        if not self._step(f"delete link {ns}:{ifname}", queued=True):
            return
        try:
            link = self._by_name(ns, ifname)
        except KernelError:
            return
        self._gone(ns, self._ns(ns).links.pop(link.index))
        if link.peer and link.peer[0] in self.spaces:
            self._gone(link.peer[0], self.spaces[link.peer[0]].links.pop(link.peer[1], None))

    def set_link(self, ns: Netns, ifname: str, *, mtu: int | None = None, up: bool | None = None,
                 alias: str | None = None, master: str | None = None) -> None:
        link = self._by_name(ns, ifname)  # as NetlinkKernel: the name is looked up when queued
        if not self._step(f"set link {ns}:{ifname}", queued=True):
            return
        if master is not None:
            link.master = self._by_name(ns, master).index if master else None
        if mtu is not None:
            link.mtu = mtu
        if up is not None:
            link.up = up
        if alias is not None:
            link.alias = alias
        self._changed(ns, link)
        if link.peer and up is not None and link.peer[0] in self.spaces:  # the peer's carrier follows
            peer = self.spaces[link.peer[0]].links.get(link.peer[1])
            if peer is not None:
                self._changed(link.peer[0], peer)

    def add_address(self, ns: Netns, ifname: str, cidr: str) -> None:
        link = self._by_name(ns, ifname)
        if not self._step(f"add address {ns}:{ifname} {cidr}", queued=True):
            return
        cidr = str(ipaddress.ip_interface(cidr))
        if cidr in link.addresses:
            raise KernelError(f"cannot add address {cidr} on {ifname}: already exists")
        link.addresses.append(cidr)
        self._address(ns, link, cidr, True)
        if ":" in cidr and self.addrconf_delay:
            self.unready[(ns, cidr)] = self.addrconf_delay

    def unready_addresses(self, ns: Netns, addresses: Iterable[str]) -> list[str]:
        """As the real kernel's addrconf work item: an IPv6 address added while
        `addrconf_delay` is N stays unusable for the next N reads of its namespace."""
        self.flush()
        self._ns(ns)
        out = []
        for cidr in addresses:
            key = (ns, str(ipaddress.ip_interface(cidr)))
            if self.unready.get(key, 0) > 0:
                self.unready[key] -= 1
                out.append(cidr)
        return out

    def delete_address(self, ns: Netns, ifname: str, cidr: str) -> None:
        if not self._step(f"delete address {ns}:{ifname} {cidr}", queued=True):
            return
        link = self._by_name(ns, ifname)
        cidr = str(ipaddress.ip_interface(cidr))
        if cidr in link.addresses:
            link.addresses.remove(cidr)
            self._address(ns, link, cidr, False)

    # -- routes and sysctls
    def routes(self, ns: Netns) -> list[Route]:
        self.flush()
        return list(self._ns(ns).routes)

    def add_route(self, ns: Netns, route: Route) -> None:
        if not self._step(f"add route {ns}: {route.dst}", queued=True):
            return
        metric = route.metric if route.metric is not None else default_metric(route.dst)
        dev = route.dev
        if dev is None and route.via:
            gateway = ipaddress.ip_address(route.via)
            for link in self._ns(ns).links.values():
                if any(gateway in ipaddress.ip_interface(a).network for a in link.addresses):
                    dev = link.ifname
        self._ns(ns).routes.append(Route(route.dst, route.via, dev, metric, route.src, ROUTE_PROTO))

    def delete_route(self, ns: Netns, route: Route) -> None:
        if not self._step(f"delete route {ns}: {route.dst}", queued=True):
            return
        space = self._ns(ns)
        space.routes = [r for r in space.routes if not (r.dst == route.dst and r.via == route.via)]

    def read_sysctl(self, ns: Netns, key: str) -> str | None:
        parts = key.split(".")
        if len(parts) > 4 and parts[2] == "conf" and parts[3] not in ("all", "default"):
            ifname = parts[3].replace("/", ".")
            if not any(link.ifname == ifname for link in self._ns(ns).links.values()):
                return None  # as /proc/sys: no such file before the interface exists
        return self._ns(ns).sysctls.get(key, "0")

    def write_sysctl(self, ns: Netns, key: str, value: str) -> None:
        if not self._step(f"sysctl {ns}: {key}={value}", queued=True):
            return
        self._ns(ns).sysctls[key] = value

    def node_hosts(self, ns: str) -> str | None:
        return self.hosts_digests.get(ns) if ns in self.files else None

    def write_node_files(self, namespaces: list[str], entries: list[tuple[str, str]], marker: str,
                         digest: str) -> None:
        for ns in namespaces:
            if self.file_owners.get(ns, marker) != marker:
                raise ConflictError(f"/etc/netns/{ns} already exists and is not this lab's")
        self._step(f"write files {', '.join(namespaces)}")
        for ns in namespaces:
            self.files[ns] = list(entries)
            self.hosts_digests[ns] = digest
            self.file_owners[ns] = marker

    def remove_node_files(self, ns: str, marker: str) -> None:
        if self.file_owners.get(ns) == marker:
            self.files.pop(ns, None)
            del self.file_owners[ns]

    def node_files_owners(self, namespaces: Iterable[str] | None) -> dict[str, str]:
        wanted = None if namespaces is None else set(namespaces)
        return {ns: owner for ns, owner in self.file_owners.items() if wanted is None or ns in wanted}

    def node_temp_files(self, namespaces: Iterable[str] | None) -> list[tuple[str | None, str]]:
        return [(None, name) for name in self.temp_files]

    def remove_node_temp_file(self, name: str) -> None:
        self.temp_files.discard(name)

    def firewall_ruleset(self, ns: Netns) -> list[dict[str, Any]]:
        return list(self.ruleset.get(ns, []))

    def run_command(self, ns: Netns, argv: list[str], timeout: float) -> tuple[int, str]:
        self.flush()
        self._step(f"run {ns}: {' '.join(argv)}")
        self.commands.append((ns, list(argv)))
        return self.command_status.get(argv[0], 0), ""

    def run_in_node(self, ns: Netns, argv: Sequence[str], **kwargs: Any) -> CompletedProcess[Any]:
        status, output = self.run_command(ns, list(argv), kwargs.get("timeout") or 0.0)
        return CompletedProcess(list(argv), status, output, "")

    def node_argv(self, ns: Netns, argv: Sequence[str]) -> list[str]:
        return list(argv) if ns is None else ["ip", "netns", "exec", ns, *argv]

    def missing_command(self, ns: Netns, argv: Sequence[str]) -> str | None:
        from .process import missing_command  # looked up on this machine: the fake's nodes have no files

        return missing_command(argv)

    def oneshot_succeeded(self, log_path: str) -> bool:
        return log_path in self.oneshots_done

    def run_on_machine(self, machine: str, address: str, argv: list[str],
                       timeout: float) -> CompletedProcess[str]:
        status, output = self.run_command(None, [f"vethlab@{machine}", *argv], timeout)
        return CompletedProcess([f"vethlab@{machine}", *argv], status, output, "")

    def host_listeners(self) -> list[Listener]:
        return list(self.listening)

    def views(self) -> dict[str, tuple[str, str]]:
        return {ns: (owner, view.digest()) for ns, (owner, view) in self.built_views.items()}

    def view_alive(self, ns: str) -> bool:
        return ns in self.built_views

    def view_dir(self, ns: str) -> str:
        return f"/run/fake-views/{ns}"

    def create_view(self, ns: str, marker: str, view: Any, replace: bool = False) -> None:
        self._step(f"view {ns}")
        if replace:
            self.remove_view(ns, marker)
        if ns in self.built_views:
            raise ConflictError(f"namespace {ns} already has a view")
        self.built_views[ns] = (marker, view)

    def remove_view(self, ns: str, marker: str) -> bool:
        self._step(f"remove view {ns}")
        if self.built_views.get(ns, ("", None))[0] != marker:
            return False
        del self.built_views[ns]
        return True

    def close(self) -> None:
        self.pending.clear()

    # -- events
    def link_events(self, nodes: dict[str, Netns]) -> _Stream:
        stream = _Stream(self, {ns: node for node, ns in nodes.items()})
        self.streams.append(stream)
        return stream

    def link_removals(self, ns: Netns) -> _Removals:
        self.flush()
        return _Removals(self.link_events({"": ns}))

    def _changed(self, ns: Netns, link: _Link, deleted: bool = False) -> None:
        for stream in self.streams:
            if ns in stream.nodes:
                stream.queue.append(LinkEvent(stream.nodes[ns], self._state(link, deleted), deleted))

    def _address(self, ns: Netns, link: _Link, cidr: str, added: bool) -> None:
        for stream in self.streams:
            if ns in stream.nodes:
                stream.queue.append(AddressEvent(stream.nodes[ns], link.index, cidr, added))

    def _state(self, link: _Link, deleted: bool = False) -> LinkState:
        if deleted:
            return LinkState(link.index, link.ifname, link.alias, False, False, "DOWN")
        info = self._info(link)
        return LinkState(info.index, info.ifname, info.alias, info.admin_up, info.carrier, info.operstate)


class _Stream:
    """`link_events` of the fake: what the fake's verbs changed since it was opened."""

    def __init__(self, kernel: FakeKernel, nodes: dict[Netns, str]) -> None:
        self.kernel, self.nodes = kernel, nodes
        self.queue: list[Event] = []

    def initial(self) -> list[tuple[str, LinkState]]:
        return [(node, self.kernel._state(link)) for ns, node in self.nodes.items() if ns in self.kernel.spaces
                for link in self.kernel.spaces[ns].links.values()]

    def next(self, timeout: float | None) -> list[Event]:
        out, self.queue = self.queue, []
        return out

    def close(self) -> None:
        if self in self.kernel.streams:
            self.kernel.streams.remove(self)


class _Removals:
    """`link_removals` of the fake: the deletions among a `_Stream`'s events."""

    def __init__(self, stream: _Stream) -> None:
        self.stream = stream

    def present(self) -> set[int]:
        return {state.index for _node, state in self.stream.initial()}

    def gone(self, timeout: float) -> set[int] | None:
        out = {e.link.index for e in self.stream.next(timeout) if isinstance(e, LinkEvent) and e.deleted}
        if not out:  # nothing happens in the fake by itself: as the kernel would, let the time pass (no busy loop)
            time.sleep(min(timeout, 0.05))
        return out

    def close(self) -> None:
        self.stream.close()


def _conforms(kernel: FakeKernel) -> Kernel:
    """mypy's proof that the fake implements every aspect of the protocol."""
    return kernel
