"""Parse the route strings of a topology file (`ip route` syntax, a subset)."""

from __future__ import annotations

import ipaddress
import re

from .naming import ifname_problem
from .schema import RouteSpec


class RouteSyntaxError(ValueError):
    pass


def _address_word(fields: dict[str, str], key: str) -> str | None:
    """The address after `via` or `src`, in its canonical form (None: not given)."""
    value = fields.get(key)
    if value is None:
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise RouteSyntaxError(f"{key} {value!r} is not an IP address") from None


def parse_route(text: str) -> RouteSpec:
    """`DST [via GW] [dev IFNAME] [metric N] [src ADDR]`; DST is `default`,
    `default6`-free: an IPv6 default is `::/0` or `default via <IPv6>`."""
    words = text.split()
    if not words:
        raise RouteSyntaxError("empty route")
    dst_word, rest = words[0], words[1:]
    fields: dict[str, str] = {}
    while rest:
        key = rest.pop(0)
        if key not in ("via", "dev", "metric", "src"):
            raise RouteSyntaxError(f"unknown word '{key}' in route '{text}' (known: via, dev, metric, src)")
        if key in fields:
            raise RouteSyntaxError(f"'{key}' given twice in route '{text}'")
        if not rest:
            raise RouteSyntaxError(f"'{key}' needs a value in route '{text}'")
        fields[key] = rest.pop(0)
    via, src = _address_word(fields, "via"), _address_word(fields, "src")
    if dst_word == "default":
        family = 6 if (via and ":" in via) or (src and ":" in src) else 4
        dst = "::/0" if family == 6 else "0.0.0.0/0"
    else:
        try:
            dst = str(ipaddress.ip_network(dst_word, strict=True))
        except ValueError as exc:
            raise RouteSyntaxError(f"destination {dst_word!r} is not a network: {exc}") from None
    for name, value in (("via", via), ("src", src)):
        if value and (":" in value) != (":" in dst):
            raise RouteSyntaxError(f"{name} {value} and destination {dst} are of different IP versions")
    dev = fields.get("dev")
    if dev is not None and ifname_problem(dev) and dev != "lo":
        raise RouteSyntaxError(str(ifname_problem(dev)))
    metric = None
    if "metric" in fields:
        # ASCII digits, at most 10: str.isdigit() accepts "²", which int() refuses, and int()
        # refuses more than 4300 digits; both were internal errors
        if not re.fullmatch(r"[0-9]{1,10}", fields["metric"]) or int(fields["metric"]) > 0xFFFFFFFF:
            raise RouteSyntaxError(f"metric {fields['metric']!r} is not a whole number")
        metric = int(fields["metric"])
    return RouteSpec(dst=dst, via=via, dev=dev, metric=metric, src=src, text=" ".join(words))
