"""The kernel boundary: every side effect of vethlab goes through `Kernel`.

Verbs speak plain terms (namespace names, interface names, addresses), never the
core's resource types, so the reconciler, `clean`, the sandbox and the CNI plugin
can all call them.  A namespace of None means the namespace vethlab runs in.
`kernel.fake.FakeKernel` implements the same protocol for unit tests.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

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


@dataclass(frozen=True)
class Route:
    dst: str  # "0.0.0.0/0", "10.0.0.0/8", "::/0"
    via: str | None = None
    dev: str | None = None
    metric: int | None = None
    src: str | None = None
    proto: int | None = None  # on read: who made it; on write: ignored (kernel layer marks ours)


class Kernel(Protocol):
    def list_namespaces(self) -> list[str]: ...
    def namespace_exists(self, ns: str) -> bool: ...
    def namespace_alive(self, ns: str) -> bool: ...
    def namespace_owner(self, ns: str) -> str | None: ...
    def create_namespaces(self, names: Iterable[str], marker: str) -> None: ...
    def delete_namespace(self, ns: str) -> None: ...
    def links(self, ns: Netns) -> list[LinkInfo]: ...
    def routes(self, ns: Netns) -> list[Route]: ...
    def create_veth(self, a_ns: Netns, a_if: str, b_ns: Netns, b_if: str, mtu: int | None) -> None: ...
    def delete_link(self, ns: Netns, ifname: str) -> None: ...
    def set_link(self, ns: Netns, ifname: str, *, mtu: int | None = None, up: bool | None = None,
                 alias: str | None = None) -> None: ...
    def add_address(self, ns: Netns, ifname: str, cidr: str) -> None: ...
    def delete_address(self, ns: Netns, ifname: str, cidr: str) -> None: ...
    def add_route(self, ns: Netns, route: Route) -> None: ...
    def delete_route(self, ns: Netns, route: Route) -> None: ...
    def read_sysctl(self, ns: Netns, key: str) -> str | None: ...
    def write_sysctl(self, ns: Netns, key: str, value: str) -> None: ...
    def close(self) -> None: ...
