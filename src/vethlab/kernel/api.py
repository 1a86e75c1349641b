"""The kernel boundary: every side effect of vethlab goes through `Kernel`.

Verbs speak plain terms (namespace names, interface names, addresses, raw marker
strings), never the core's resource types nor lab names decoded from markers (that
is ownership.py's job), so the reconciler, `clean`, the sandbox and the CNI plugin
can all call them.  A namespace of None means the namespace vethlab runs in.

`Kernel` is the union of small protocols, one per aspect (namespaces, links and
their addresses and routes, firewall, processes, node files, sysctls, shaping,
events); a caller that needs one aspect may type against that one.  Mutating verbs
may be queued until `flush()` (or any read), which raises for the first failure.
`kernel.open_kernel()` gives the real one; `kernel.fake.FakeKernel` implements the
same protocols, batching included, for unit tests.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from ..deferred import dataclass

if TYPE_CHECKING:
    from subprocess import CompletedProcess

Netns = str | None


@dataclass
class LinkInfo:
    index: int
    ifname: str
    kind: str | None
    alias: str | None
    mtu: int
    admin_up: bool
    operstate: str
    carrier: bool
    peer_index: int | None = None  # veth: the peer's ifindex (in its own namespace)
    master: int | None = None
    addresses: list[str] = field(default_factory=list)  # "ip/prefix", link-local IPv6 excluded
    stats: dict[str, int] = field(default_factory=dict)


class Route(NamedTuple):
    dst: str  # "0.0.0.0/0", "10.0.0.0/8", "::/0"
    via: str | None = None
    dev: str | None = None
    metric: int | None = None
    src: str | None = None
    proto: int | None = None  # on read: who made it; on write: ignored (kernel layer marks ours)


def default_metric(dst: str) -> int:
    """The metric the kernel gives a route added without one: 0 for IPv4, 1024 for IPv6."""
    return 1024 if ":" in dst else 0


def route_text(route: Route) -> str:
    """A route as `ip route` prints it: `default via 10.0.0.1 dev eth0 metric 5`."""
    words = ["default" if route.dst in ("0.0.0.0/0", "::/0") else route.dst]
    for name, value in (("via", route.via), ("dev", route.dev), ("metric", route.metric), ("src", route.src)):
        if value is not None:
            words += [name, str(value)]
    return " ".join(words)


class Listener(NamedTuple):
    """A socket that waits for traffic: a TCP listener or a bound, unconnected UDP socket."""

    address: str  # "0.0.0.0", "::", or a specific address
    port: int
    protocol: str  # tcp | udp


class Private(NamedTuple):
    """A directory of a node's view that is its own (kernel/nodefs.py)."""

    target: str  # the node's path
    backing: str  # the directory it is, on the host side (in the lab's state directory)
    copy: bool = False
    owner: tuple[int, int] | None = None
    mode: int | None = None


class File(NamedTuple):
    """A file of a node's view."""

    target: str
    content: str  # UTF-8, undecodable bytes as surrogates (kept JSON-able for `vethlab plan --json`)
    mode: int
    backing: str  # used when the file is not inside a private directory: bound over the host's


class Mount(NamedTuple):
    """A host path bound into a node's view."""

    source: str
    target: str
    writable: bool = False


class View(NamedTuple):
    """Everything that makes one node's view (its own mount and UTS namespaces),
    with its backing paths resolved."""

    hostname: str
    private: tuple[Private, ...] = ()
    files: tuple[File, ...] = ()
    mounts: tuple[Mount, ...] = ()

    def digest(self) -> str:
        """What the view was built from, in short: kept beside its pins, so the next
        `up` knows whether the file still asks for the same."""
        import json

        from ..digests import sha256

        return sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()[:16]

    def to_json(self) -> dict[str, Any]:
        return {"hostname": self.hostname, "private": [list(p) for p in self.private],
                "files": [list(f) for f in self.files], "mounts": [list(m) for m in self.mounts]}

    @staticmethod
    def from_json(data: dict[str, Any]) -> View:
        return View(data["hostname"],
                    tuple(Private(t, b, c, tuple(o) if o else None, m) for t, b, c, o, m in data["private"]),
                    tuple(File(*f) for f in data["files"]), tuple(Mount(*m) for m in data["mounts"]))


class Batched(Protocol):
    """What every aspect shares: mutating verbs may be queued until `flush()`, which
    sends them and raises KernelError for the first that failed (a read flushes
    first, so a queued failure can surface there too); `close()` drops sockets and
    open namespace files."""

    def flush(self) -> None: ...
    def close(self) -> None: ...


class Namespaces(Batched, Protocol):
    """Named network namespaces under /run/netns, marked by the alias of their lo."""

    def list_namespaces(self) -> list[str]: ...
    def namespace_exists(self, ns: str) -> bool: ...
    def namespace_alive(self, ns: str) -> bool: ...
    def namespace_owner(self, ns: str) -> str | None: ...
    def alive_namespaces(self) -> set[str]: ...
    def namespace_id(self, ns: str) -> int | None: ...
    # (tag file name, still linked to its namespace file) for every birth tag under /run/netns
    def namespace_tags(self) -> list[tuple[str, bool]]: ...
    def remove_namespace_tag(self, tag: str) -> None: ...
    def create_namespaces(self, names: Iterable[str], marker: str) -> None: ...
    def delete_namespace(self, ns: str) -> None: ...
    # and their /etc/netns files, those owners[ns] (a lab's marker) made
    def delete_namespaces(self, names: list[str], owners: dict[str, str]) -> dict[str, Exception]: ...
    # a hint: many namespaces are about to be read (the real kernel opens their sockets from one thread)
    def open_namespaces(self, names: Iterable[str]) -> None: ...


class Links(Batched, Protocol):
    """Interfaces, their addresses, and routes."""

    # only_addressed: just the interfaces with an address (link-local IPv6 aside), for conflict checks
    # names: only the interfaces of these names (those that exist), looked up one by one
    def links(self, ns: Netns, stats: bool = False, addresses: bool = True,
              only_addressed: bool = False, names: Collection[str] | None = None) -> list[LinkInfo]: ...
    # ifname -> operational state ("UP", "DOWN", ...) of each interface (of that kind, e.g.
    # "veth", if given; others may be listed too): what `up` polls while it waits for links
    # to come up, without decoding the rest of each link
    def oper_states(self, ns: Netns, kind: str | None = None) -> dict[str, str]: ...
    # hurry pending link-state changes: each call one urgent linkwatch event in ns; done: clean up
    def settle(self, ns: str, marker: str, done: bool = False) -> None: ...
    def create_veth(self, a_ns: Netns, a_if: str, b_ns: Netns, b_if: str, mtu: int | None,
                    marker: str | None = None) -> None: ...
    def delete_link(self, ns: Netns, ifname: str) -> None: ...
    def set_link(self, ns: Netns, ifname: str, *, mtu: int | None = None, up: bool | None = None,
                 alias: str | None = None, master: str | None = None) -> None: ...
    def create_bridge(self, ns: Netns, name: str, mtu: int | None, marker: str) -> None: ...
    def create_macvlan(self, parent_ns: Netns, parent: str, ns: Netns, ifname: str, mtu: int | None,
                       marker: str) -> None: ...
    def add_address(self, ns: Netns, ifname: str, cidr: str) -> None: ...
    def delete_address(self, ns: Netns, ifname: str, cidr: str) -> None: ...
    # of `addresses` ("ip/prefix", IPv6 ones are checked), those the kernel does not use yet:
    # an IPv6 address is acknowledged and listed (without the tentative flag when added
    # NODAD) before addrconf's work item joins its solicited-node group and adds its local
    # route; until then neighbour solicitations for it and packets to it are dropped
    def unready_addresses(self, ns: Netns, addresses: Iterable[str]) -> list[str]: ...
    def routes(self, ns: Netns) -> list[Route]: ...
    def add_route(self, ns: Netns, route: Route) -> None: ...
    def delete_route(self, ns: Netns, route: Route) -> None: ...

    # VXLAN (SPEC §7): the device's socket lives in the namespace vethlab runs in
    def create_vxlan(self, ns: Netns, ifname: str, vni: int, local: str, remote: str | None, *, port: int = 4789,
                     dev: str | None = None, mtu: int | None = None, marker: str | None = None,
                     mac: bytes | None = None) -> None: ...
    def vxlan_info(self, ns: Netns, ifname: str) -> dict[str, Any] | None: ...
    def fdb_append(self, ns: Netns, ifname: str, dst: str) -> None: ...
    def fdb_delete(self, ns: Netns, ifname: str, dst: str) -> None: ...
    def fdb_floods(self, ns: Netns, ifname: str) -> list[str]: ...


class Firewall(Batched, Protocol):
    """nftables, one JSON batch per change."""

    def firewall_chains(self, ns: Netns, table: str) -> list[str] | None: ...
    def firewall_apply(self, ns: Netns, batch: dict[str, Any], what: str) -> None: ...
    def firewall_delete(self, ns: Netns, table: str) -> None: ...
    # inet table name -> its chain names (ownership is the caller's to judge: ownership.table_owner)
    def firewall_tables(self, ns: Netns) -> dict[str, list[str]]: ...
    def firewall_ruleset(self, ns: Netns) -> list[dict[str, Any]]: ...


class Processes(Batched, Protocol):
    """Services (long-running, labelled processes) and one-off commands in nodes."""

    def start_service(self, ns: Netns, argv: list[str], log_path: str, marker: str,
                      oneshot: bool = False) -> tuple[int, int]: ...
    def stop_service(self, ns: Netns, label: str, pid: int, started: int) -> None: ...
    def release_service(self, pid: int) -> None: ...
    def service_alive(self, pid: int, started: int) -> bool: ...
    def service_exit(self, pid: int) -> int | None: ...
    def lab_processes(self, namespaces: list[str],
                      recorded: list[tuple[int, int, int]]) -> dict[str, list[tuple[int, int, str | None]]]: ...
    def stop_processes(self, procs: list[tuple[int, int]], grace: float) -> int: ...
    def ready_check(self, ns: Netns, check: tuple[str, ...], timeout: float) -> bool: ...
    def run_command(self, ns: Netns, argv: list[str], timeout: float) -> tuple[int, str]: ...
    # subprocess.run of argv in the node (keyword arguments as subprocess.run's); a command
    # that cannot be found or executed gives 127 or 126 with the shell's message
    def run_in_node(self, ns: Netns, argv: Sequence[str], **kwargs: Any) -> CompletedProcess[Any]: ...
    # the argv that runs argv in the node (namespaces entered), for a caller that runs the process itself
    def node_argv(self, ns: Netns, argv: Sequence[str]) -> list[str]: ...
    # why argv[0] cannot be executed in the node (the shell's message), or None
    def missing_command(self, ns: Netns, argv: Sequence[str]) -> str | None: ...
    # did the one-shot service that logs to log_path exit 0 (its gate says so beside the log)?
    def oneshot_succeeded(self, log_path: str) -> bool: ...
    # `vethlab ARGV` run on another machine of a lab (a simulated one in the sandbox, else over ssh)
    def run_on_machine(self, machine: str, address: str, argv: list[str],
                       timeout: float) -> CompletedProcess[str]: ...
    # the sockets of the namespace vethlab runs in that wait for traffic (what `ss -ltun` shows)
    def host_listeners(self) -> list[Listener]: ...


class NodeFiles(Batched, Protocol):
    """/etc/netns/NODE/{hosts,resolv.conf}, which `ip netns exec` mounts over /etc."""

    # the digest line of the node's hosts file (what write_node_files was given), None: no file of ours
    def node_hosts(self, ns: str) -> str | None: ...
    # digest: the caller's fingerprint of `entries` (model.hosts), written as a line of every hosts file
    def write_node_files(self, namespaces: list[str], entries: list[tuple[str, str]], marker: str,
                         digest: str) -> None: ...
    def remove_node_files(self, ns: str, marker: str) -> None: ...
    def node_files_owners(self, namespaces: Iterable[str] | None) -> dict[str, str]: ...
    # (the marker an entry's marker file holds, or None for a temporary entry, entry name)
    def node_temp_files(self, namespaces: Iterable[str] | None) -> list[tuple[str | None, str]]: ...
    def remove_node_temp_file(self, name: str) -> None: ...


class Sysctls(Batched, Protocol):
    """/proc/sys of a namespace; writes are queued until flush."""

    def read_sysctl(self, ns: Netns, key: str) -> str | None: ...
    def write_sysctl(self, ns: Netns, key: str, value: str) -> None: ...


class Shaping(Batched, Protocol):
    """Root qdiscs (tbf for rate, netem for delay, jitter and loss)."""

    def qdisc_supported(self, kind: str) -> bool: ...
    def set_shaping(self, ns: Netns, ifname: str, shaping: dict[str, Any] | None) -> None: ...
    def shaping_kind(self, ns: Netns, ifname: str) -> str | None: ...


@dataclass(frozen=True)
class LinkState:
    """An interface as `watch` shows it: (index, name, alias, admin up, carrier, operstate)."""

    index: int
    ifname: str
    alias: str | None
    admin_up: bool
    carrier: bool
    operstate: str


@dataclass(frozen=True)
class LinkEvent:
    """An interface changed (or, `deleted`, went) in `node`."""

    node: str
    link: LinkState
    deleted: bool


@dataclass(frozen=True)
class AddressEvent:
    """An address ("ip/prefix") was added to or removed from interface `index` of `node`."""

    node: str
    index: int
    address: str
    added: bool


Event = LinkEvent | AddressEvent


class EventStream(Protocol):
    """Link and address notifications of some namespaces, subscribed to when opened."""

    def initial(self) -> list[tuple[str, LinkState]]: ...
    def next(self, timeout: float | None) -> list[Event]: ...
    def close(self) -> None: ...


class Views(Batched, Protocol):
    """Nodes' own mount and UTS namespaces (kernel/nodefs.py), by namespace name."""

    def views(self) -> dict[str, tuple[str, str]]: ...  # netns -> (owner marker, digest of what it was built from)
    def view_alive(self, ns: str) -> bool: ...
    def view_dir(self, ns: str) -> str: ...  # where the node's view is pinned (for messages)
    def create_view(self, ns: str, marker: str, view: View, replace: bool = False) -> None: ...
    def remove_view(self, ns: str, marker: str) -> bool: ...


class Removals(Protocol):
    """Interfaces of one namespace going away, by ifindex: subscribed to when opened,
    so `present()` read after that and the indexes `gone()` reports afterwards miss
    nothing."""

    def present(self) -> set[int]: ...  # the indexes there now (one dump)
    # indexes deleted within `timeout` s (an empty set: none); None when events were
    # lost (a full receive buffer): `present()` again says what is left
    def gone(self, timeout: float) -> set[int] | None: ...
    def close(self) -> None: ...


class Events(Protocol):
    def link_events(self, nodes: dict[str, Netns]) -> EventStream:
        """Subscribe to the link and address changes of each node's namespace, then
        read its interfaces once (`initial()`): a change made before the read may be
        folded into it, one made after is an event."""
        ...

    def link_removals(self, ns: Netns) -> Removals:
        """Subscribe to interface deletions in `ns` (what a wait for interfaces to go
        with their namespaces follows: no decoding of whole links, no polling)."""
        ...


class Kernel(Namespaces, Links, Firewall, Processes, NodeFiles, Views, Sysctls, Shaping, Events, Protocol):
    """Every side effect of vethlab: the union of the aspects above.  A caller that
    needs one aspect only may type against that one."""
