"""The shape of a lab's state file, checked on every load.

A state is data vethlab acts on as root: a node's namespace becomes
/run/netns/NAME, a sysctl key a /proc/sys path, a pid a signal's target.  Valid
JSON of the wrong shape ({"nodes": "abc", "services": 5}) used to crash every
command with a TypeError deep inside, leaving a lab nobody could remove.  Each
field is checked here against LabState's annotations, and every name in it
through topology.naming — the same rules a topology file passes — so what
load() returns is well-typed and every name in it is safe to use.  Unknown
fields are ignored (a newer vethlab may add some); missing ones take defaults.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from ..topology.naming import ifname_problem, lab_problem, netns_problem, node_problem, sysctl_problem

Check = Callable[[Any, str], None]


class ShapeError(Exception):
    """One field of a state has the wrong type or an unsafe value."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "a list", str: "a string", bool: "true/false", int: "a number",
            float: "a number"}.get(type(value), type(value).__name__)


def _str(value: Any, field: str) -> None:
    if not isinstance(value, str):
        raise ShapeError(field, f"must be a string, not {_kind(value)}")


def _int(value: Any, field: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ShapeError(field, f"must be an integer, not {_kind(value)}")


def _number(value: Any, field: str) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ShapeError(field, f"must be a number, not {_kind(value)}")


def _bool(value: Any, field: str) -> None:
    if not isinstance(value, bool):
        raise ShapeError(field, f"must be true or false, not {_kind(value)}")


def _optional(check: Check) -> Check:
    def run(value: Any, field: str) -> None:
        if value is not None:
            check(value, field)

    return run


def _named(problem: Callable[[object], str | None]) -> Check:
    def run(value: Any, field: str) -> None:
        why = problem(value)
        if why:
            raise ShapeError(field, why)

    return run


def _list(item: Check, length: int | None = None) -> Check:
    def run(value: Any, field: str) -> None:
        if not isinstance(value, list):
            raise ShapeError(field, f"must be a list, not {_kind(value)}")
        if length is not None and len(value) != length:
            raise ShapeError(field, f"must have {length} items, not {len(value)}")
        for i, v in enumerate(value):
            item(v, f"{field}[{i}]")

    return run


def _tuple(*items: Check) -> Check:
    def run(value: Any, field: str) -> None:
        _list(lambda v, f: None, len(items))(value, field)
        for i, (check, v) in enumerate(zip(items, value, strict=True)):
            check(v, f"{field}[{i}]")

    return run


def _dict(key: Check, val: Check) -> Check:
    def run(value: Any, field: str) -> None:
        if not isinstance(value, dict):
            raise ShapeError(field, f"must be an object, not {_kind(value)}")
        for k, v in value.items():
            key(k, f"{field}.{k}")
            val(v, f"{field}.{k}")

    return run


def _record(fields: dict[str, Check], required: frozenset[str] = frozenset()) -> Check:
    """An object with only these keys (each optional unless `required`)."""

    def run(value: Any, field: str) -> None:
        if not isinstance(value, dict):
            raise ShapeError(field, f"must be an object, not {_kind(value)}")
        for k in required - value.keys():
            raise ShapeError(field, f"lacks '{k}'")
        for k, v in value.items():
            if k not in fields:
                raise ShapeError(f"{field}.{k}", "is not a field vethlab knows here")
            fields[k](v, f"{field}.{k}")

    return run


def _network(value: Any, field: str) -> None:
    _str(value, field)
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ShapeError(field, f"{value!r} is not a subnet") from None


def _interface(value: Any, field: str) -> None:
    _str(value, field)
    try:
        ipaddress.ip_interface(value)
    except ValueError:
        raise ShapeError(field, f"{value!r} is not an address/prefix") from None


def _endpoint(value: Any, field: str) -> None:
    """A "node:ifname" key."""
    node, sep, ifname = str(value).partition(":")
    why = node_problem(node) if sep else f"{value!r} is not NODE:IFNAME"
    if why or (why := ifname_problem(ifname)):
        raise ShapeError(field, why)


def _pid(value: Any, field: str) -> None:
    _int(value, field)
    if value < 2:  # 0, -1 and 1 signal a process group, everything, init
        raise ShapeError(field, f"{value} is not a service's process id")


def _route_dev(value: Any, field: str) -> None:
    if value != "lo":
        _named(ifname_problem)(value, field)


_node = _named(node_problem)
_netns = _named(netns_problem)
_route = _record({"dst": _network, "via": _optional(_str), "dev": _optional(_route_dev), "metric": _optional(_int),
                  "src": _optional(_str), "proto": _optional(_int)}, frozenset({"dst"}))
_shaping = _record({"rate": _optional(_number), "delay": _optional(_number), "jitter": _optional(_number),
                    "loss": _optional(_number)})
_allocation = _record({"subnet": _dict(_str, _network), "subnet6": _dict(_str, _network),
                       "gateway": _dict(_str, _interface), "gateway6": _dict(_str, _interface),
                       "address": _dict(_str, _dict(_str, _interface)),
                       "address6": _dict(_str, _dict(_str, _interface))})

FIELDS: dict[str, Check] = {
    "lab": _named(lab_problem),
    "file": _optional(_str),
    "nodes": _dict(_node, _optional(_netns)),
    "host_routes": _list(_route),
    "host_sysctls": _dict(_named(sysctl_problem), _str),
    "exec_digests": _dict(_node, _str),
    "links": _list(_tuple(_node, _named(ifname_problem), _node, _named(ifname_problem))),
    "routed": _list(_node),
    "allocation": _allocation,
    "host_subnets": _list(_network),
    "firewall_nodes": _dict(_node, _optional(_netns)),
    "uplinks": _dict(_endpoint, _record({"up": _bool, "netns": _optional(_netns)})),
    "services": _dict(_node, _list(_tuple(_list(_str), _pid, _int))),
    "shaped": _dict(_endpoint, _shaping),
    "fingerprints": _dict(_node, _str),
    "hosts_digest": _str,
    "netns_ids": _dict(_netns, _int),
    "complete": _bool,
    "version": _int,
}


def check(data: Any, lab: str | None = None) -> dict[str, Any]:
    """`data` if it is a well-shaped state (of lab `lab`, when given); ShapeError otherwise."""
    if not isinstance(data, dict):
        raise ShapeError("", f"must be a JSON object, not {_kind(data)}")
    if "lab" not in data:
        raise ShapeError("lab", "is missing")
    for name, field_check in FIELDS.items():
        if name in data:
            field_check(data[name], name)
    if lab is not None and data["lab"] != lab:
        raise ShapeError("lab", f"names lab {data['lab']!r}, but the file is lab {lab}'s")
    return data
