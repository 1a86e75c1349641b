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

import re
from collections.abc import Callable
from typing import Any

from ..topology.naming import (
    NETNS_NAME,
    NODE_NAME,
    ifname_problem,
    lab_problem,
    netns_problem,
    node_problem,
    sysctl_problem,
)

#: a check raises ShapeError or returns; the field path is built only on the way
#: out of an error (formatting "nodes.n17" for every good item made a 1000-node
#: load cost ~20 ms, more than `exec` itself)
Check = Callable[[Any], None]


class ShapeError(Exception):
    """One field of a state has the wrong type or an unsafe value."""

    def __init__(self, message: str, path: list[str] | None = None) -> None:
        self.message = message
        self.path = path or []
        super().__init__(message)

    def within(self, part: str) -> ShapeError:
        self.path.insert(0, part)
        return self

    @property
    def field(self) -> str:
        return "".join(self.path).lstrip(".")

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.path else self.message


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "a list", str: "a string", bool: "true/false", int: "a number",
            float: "a number"}.get(type(value), type(value).__name__)


def _str(value: Any) -> None:
    if not isinstance(value, str):
        raise ShapeError(f"must be a string, not {_kind(value)}")


def _int(value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ShapeError(f"must be an integer, not {_kind(value)}")


def _number(value: Any) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ShapeError(f"must be a number, not {_kind(value)}")


def _bool(value: Any) -> None:
    if not isinstance(value, bool):
        raise ShapeError(f"must be true or false, not {_kind(value)}")


#: bulk checks, at C speed, that all of many values pass a check: a container
#: asks before checking item by item (which it then does only to find the culprit)
_BULK: dict[Check, Callable[[Any], bool]] = {}


def _all_ok(check: Check, values: Any) -> bool:
    bulk = _BULK.get(check)
    try:
        return bulk is not None and bulk(values)
    except TypeError:  # a pattern given a non-string
        return False


def _types(*types: type) -> Callable[[Any], bool]:
    allowed = set(types)
    return lambda values: set(map(type, values)) <= allowed


def _optional(check: Check) -> Check:
    def run(value: Any) -> None:
        if value is not None:
            check(value)

    if check in _BULK:
        _BULK[run] = lambda values: _all_ok(check, [v for v in values if v is not None])
    return run


def _named(problem: Callable[[object], str | None], fast: re.Pattern[str] | None = None) -> Check:
    """A name passing `problem`; `fast` is a pattern every good name of the common
    kind matches, tried first (one regex call per name)."""

    def run(value: Any) -> None:
        if fast is not None and isinstance(value, str) and fast.fullmatch(value):
            return
        why = problem(value)
        if why:
            raise ShapeError(why)

    if fast is not None:
        _BULK[run] = lambda values: all(map(fast.fullmatch, values))
    return run


def _list(item: Check, length: int | None = None) -> Check:
    def run(value: Any) -> None:
        if not isinstance(value, list):
            raise ShapeError(f"must be a list, not {_kind(value)}")
        if length is not None and len(value) != length:
            raise ShapeError(f"must have {length} items, not {len(value)}")
        if _all_ok(item, value):
            return
        i = 0
        try:
            for i, v in enumerate(value):  # noqa: B007 (i names the item that failed)
                item(v)
        except ShapeError as exc:
            raise exc.within(f"[{i}]") from None

    return run


def _tuple(*items: Check) -> Check:
    def run(value: Any) -> None:
        if not isinstance(value, list):
            raise ShapeError(f"must be a list, not {_kind(value)}")
        if len(value) != len(items):
            raise ShapeError(f"must have {len(items)} items, not {len(value)}")
        i = 0
        try:
            for i, (check, v) in enumerate(zip(items, value, strict=True)):  # noqa: B007
                check(v)
        except ShapeError as exc:
            raise exc.within(f"[{i}]") from None

    def bulk(values: Any) -> bool:  # many tuples: check column by column
        return (_types(list)(values) and set(map(len, values)) <= {len(items)}
                and all(_all_ok(check, column) for check, column in zip(items, zip(*values, strict=True), strict=False)))

    _BULK[run] = bulk
    return run


def _dict(key: Check, val: Check) -> Check:
    def run(value: Any) -> None:
        if not isinstance(value, dict):
            raise ShapeError(f"must be an object, not {_kind(value)}")
        if _all_ok(key, value.keys()) and _all_ok(val, value.values()):
            return
        k: Any = None
        try:
            for k, v in value.items():  # noqa: B007
                key(k)
                val(v)
        except ShapeError as exc:
            raise exc.within(f".{k}") from None

    return run


def _record(fields: dict[str, Check], required: frozenset[str] = frozenset()) -> Check:
    """An object with only these keys (each optional unless `required`)."""

    def run(value: Any) -> None:
        if not isinstance(value, dict):
            raise ShapeError(f"must be an object, not {_kind(value)}")
        for k in required - value.keys():
            raise ShapeError(f"lacks '{k}'")
        for k, v in value.items():
            if k not in fields:
                raise ShapeError("is not a field vethlab knows here", [f".{k}"])
            try:
                fields[k](v)
            except ShapeError as exc:
                raise exc.within(f".{k}") from None

    return run


_BULK[_str] = _types(str)
_BULK[_int] = _types(int)
_BULK[_bool] = _types(bool)

_V4_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
#: what ipaddress accepts for the common case, checked at regex speed; the rest
#: (IPv6 above all) goes through ipaddress itself
_V4_PREFIX = re.compile(rf"{_V4_OCTET}(?:\.{_V4_OCTET}){{3}}/(?:3[0-2]|[12]?[0-9])")


def _address(value: Any, network: bool) -> None:
    _str(value)
    if _V4_PREFIX.fullmatch(value):
        return
    import ipaddress

    try:
        ipaddress.ip_network(value, strict=False) if network else ipaddress.ip_interface(value)
    except ValueError:
        raise ShapeError(f"{value!r} is not {'a subnet' if network else 'an address/prefix'}") from None


def _network(value: Any) -> None:
    _address(value, True)


def _interface(value: Any) -> None:
    _address(value, False)


_BULK[_network] = _BULK[_interface] = lambda values: all(map(_V4_PREFIX.fullmatch, values))


_IFNAME_FAST = re.compile(r"(?!(?:lo|\.|\.\.)\Z)[A-Za-z0-9_.-]{1,15}")
_ifname = _named(ifname_problem, _IFNAME_FAST)


def _endpoint(value: Any) -> None:
    """A "node:ifname" key."""
    node, sep, ifname = str(value).partition(":")
    if not sep:
        raise ShapeError(f"{value!r} is not NODE:IFNAME")
    _node(node)
    _ifname(ifname)


def _service_pid(value: Any) -> None:
    _int(value)
    if value != 0 and value < 2:  # 0: recorded before it started (write-ahead); -1 and 1 would signal everything, init
        raise ShapeError(f"{value} is not a service's process id")


_SERVICE_FIELDS: tuple[Check, ...] = ()  # set below, once the checks exist


def _service(value: Any) -> None:
    """[argv, pid, start time, label, done, netns inode]; older states have the first three."""
    if not isinstance(value, list):
        raise ShapeError(f"must be a list, not {_kind(value)}")
    if not 3 <= len(value) <= len(_SERVICE_FIELDS):
        raise ShapeError(f"must have 3 to {len(_SERVICE_FIELDS)} items, not {len(value)}")
    for i, (check, item) in enumerate(zip(_SERVICE_FIELDS, value, strict=False)):
        try:
            check(item)
        except ShapeError as exc:
            raise exc.within(f"[{i}]") from None


def _route_dev(value: Any) -> None:
    if value != "lo":
        _ifname(value)


_node = _named(node_problem, NODE_NAME)
_netns = _named(netns_problem, NETNS_NAME)
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
    "links": _list(_tuple(_node, _ifname, _node, _ifname)),
    "routed": _list(_node),
    "allocation": _allocation,
    "host_subnets": _list(_network),
    "host_addresses": _list(_interface),  # claims.py: compared, never used as a path
    "host_ports": _list(_str),
    "host_names": _list(_str),
    "firewall_nodes": _dict(_node, _optional(_netns)),
    "uplinks": _dict(_endpoint, _record({"up": _bool, "netns": _optional(_netns)})),
    "services": _dict(_node, _list(_service)),
    "shaped": _dict(_endpoint, _shaping),
    "fingerprints": _dict(_node, _str),
    "hosts_digest": _str,
    "netns_ids": _dict(_netns, _int),
    "complete": _bool,
    "version": _int,
}


_SERVICE_FIELDS = (_list(_str), _service_pid, _int, _str, _bool, _int)


def check(data: Any, lab: str | None = None) -> dict[str, Any]:
    """`data` if it is a well-shaped state (of lab `lab`, when given); ShapeError otherwise."""
    if not isinstance(data, dict):
        raise ShapeError(f"must be a JSON object, not {_kind(data)}")
    if "lab" not in data:
        raise ShapeError("is missing", ["lab"])
    for name, field_check in FIELDS.items():
        if name in data:
            try:
                field_check(data[name])
            except ShapeError as exc:
                raise exc.within(name) from None
    if lab is not None and data["lab"] != lab:
        raise ShapeError(f"names lab {data['lab']!r}, but the file is lab {lab}'s", ["lab"])
    return data
