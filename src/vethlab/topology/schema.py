"""The validated topology: plain frozen data, no behaviour, no kernel.

A `LabSpec` is what a topology file means once every field has been checked; it
can also be built in code (`Lab.from_dict`).  Addresses are kept as the user wrote
them but canonical (`ipaddress.ip_interface` strings).
"""

from __future__ import annotations

from typing import NamedTuple

from ..deferred import dataclass
from .shaping import Shaping

HOST = "host"  #: the reserved node name for the namespace vethlab runs in


class RouteSpec(NamedTuple):
    """One route: `DST [via GW] [dev IFNAME] [metric N] [src ADDR]`."""

    dst: str  # "default", "default6" is not a thing: IPv6 default is dst "::/0"
    via: str | None = None
    dev: str | None = None
    metric: int | None = None
    src: str | None = None
    text: str = ""

    @property
    def family(self) -> int:
        """4 or 6."""
        probe = self.via or self.dst
        return 6 if ":" in probe else 4

    def __str__(self) -> str:
        return self.text or self.dst


class FileSpec(NamedTuple):
    """`files:` item: `path` in the node holds `content` (given, or read from `source`)."""

    path: str
    content: bytes
    mode: int = 0o644
    source: str | None = None  # the file next to the topology file it was read from


class PrivateSpec(NamedTuple):
    """`private:` item: the node sees its own directory at `path` (empty, or a copy
    of the host's when `copy`), owned as asked (default: as the host's, else root)."""

    path: str
    copy: bool = False
    owner: tuple[int, int] | None = None
    mode: int | None = None


class MountSpec(NamedTuple):
    """`mounts:` item: the host's `source` seen at `target` in the node."""

    source: str
    target: str
    writable: bool = False


class NodeSpec(NamedTuple):
    name: str
    sysctls: tuple[tuple[str, str], ...] = ()
    routes: tuple[RouteSpec, ...] = ()
    exec: tuple[tuple[str, ...], ...] = ()
    run: tuple[tuple[str, ...], ...] = ()
    line: int | None = None
    oneshot: tuple[int, ...] = ()  # indexes of `run` items that may exit (with status 0) during `up`
    ready: tuple[tuple[str, ...], ...] = ()  # readiness checks: ("tcp:PORT",) or a command's words
    hostname: str | None = None  # set (to the node's name by default) when the node has a view of its own
    files: tuple[FileSpec, ...] = ()
    private: tuple[PrivateSpec, ...] = ()
    mounts: tuple[MountSpec, ...] = ()

    machine: str | None = None  # with `machines:` (SPEC §7): the machine this node lives on

    @property
    def has_view(self) -> bool:
        """Does the node get its own mount and UTS namespaces (kernel/nodefs.py)?"""
        return bool(self.hostname or self.files or self.private or self.mounts)


class PublishSpec(NamedTuple):
    """`[HOSTIP:]HOSTPORT:PORT[/tcp|udp]`: host port forwarded to a member's port."""

    host_port: int
    port: int
    protocol: str = "tcp"
    host_ip: str | None = None

    def __str__(self) -> str:
        ip = f"{self.host_ip}:" if self.host_ip else ""
        return f"{ip}{self.host_port}:{self.port}/{self.protocol}"


class MemberSpec(NamedTuple):
    node: str
    ip: str | None = None  # static IPv4 address (no prefix: the subnet's)
    ip6: str | None = None
    ifname: str | None = None  # default eth0, eth1, ... in the order of the node's networks
    publish: tuple[PublishSpec, ...] = ()


class NetworkSpec(NamedTuple):
    """A Linux bridge in `host` (Docker's bridge driver), or macvlan on `parent`."""

    name: str
    host: str = HOST
    driver: str = "bridge"  # bridge | macvlan
    bridge: str | None = None
    parent: str | None = None
    subnet: str | None = None  # None: allocated from the pool
    subnet6: str | None = None
    gateway: bool = True
    nat: bool = False
    internal: bool = False
    isolated: bool = True
    uplinks: tuple[str, ...] = ()
    mtu: int | None = None
    members: tuple[MemberSpec, ...] = ()
    line: int | None = None
    machine: str | None = None  # across machines: where the gateway is (default: the first machine with a member)
    vni: int | None = None  # across machines: the VXLAN id joining its bridges (default derived)


class Endpoint(NamedTuple):
    node: str
    ifname: str

    def __str__(self) -> str:
        return f"{self.node}:{self.ifname}"


class LinkSpec(NamedTuple):
    """One veth pair between two endpoints."""

    a: Endpoint
    b: Endpoint
    addresses_a: tuple[str, ...] = ()
    addresses_b: tuple[str, ...] = ()
    mtu: int | None = None
    up: bool = True
    line: int | None = None
    shaping_a: Shaping | None = None  # egress of end a (link values, overridden by its `a:` block)
    shaping_b: Shaping | None = None
    vni: int | None = None  # across machines: the VXLAN id (default derived from lab and link)
    carrier: bool = False  # across machines: a veth stitched to the tunnel, so carrier can be taken away

    @property
    def endpoints(self) -> tuple[Endpoint, Endpoint]:
        return (self.a, self.b)

    def addresses_of(self, end: Endpoint) -> tuple[str, ...]:
        return self.addresses_a if end == self.a else self.addresses_b


class MachineSpec(NamedTuple):
    """One machine of a lab that spans several (SPEC §7): its underlay address, and
    optionally the underlay interface and its MTU (default 1500)."""

    name: str
    address: str
    dev: str | None = None
    mtu: int | None = None
    line: int | None = None


@dataclass(frozen=True)
class LabSpec:
    name: str
    nodes: dict[str, NodeSpec]
    links: tuple[LinkSpec, ...] = ()
    networks: tuple[NetworkSpec, ...] = ()
    prefix: bool = False
    file: str | None = None
    machines: tuple[MachineSpec, ...] = ()
    machine: str | None = None  # with `machines:`: the machine whose part this process builds (`--machine`)

    def netns_of(self, node: str) -> str | None:
        """The /run/netns name of a node; None for `host`."""
        if node == HOST:
            return None
        return f"{self.name}-{node}" if self.prefix else node
