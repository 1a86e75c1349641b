"""IP addresses as (version, integer) pairs, parsed and printed by the C library
(inet_pton/inet_ntop through `_socket`), for the plugin's start-up path.

`ipaddress` imports functools and collections (~2 ms of every run, see jsonio.py);
the plugin needs only parsing, printing, masks and counting, which integers do.
inet_pton is strict where it matters (no octal `010.0.0.1`, no trailing junk)."""

from __future__ import annotations

import _socket

_FAMILY = {4: _socket.AF_INET, 6: _socket.AF_INET6}
_BITS = {4: 32, 6: 128}


def parse(text: object) -> tuple[int, int]:
    """(version, value) of an address; ValueError if `text` is not one."""
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not an IP address")
    version = 6 if ":" in text else 4
    try:
        raw = _socket.inet_pton(_FAMILY[version], text)
    except OSError:
        raise ValueError(f"{text!r} is not an IP address") from None
    return version, int.from_bytes(raw, "big")


def parse_cidr(text: object) -> tuple[int, int, int]:
    """(version, address value, prefix length) of "ADDR/PREFIX" (a bare address: full length)."""
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not an address/prefix")
    ip, sep, prefix = text.partition("/")
    version, value = parse(ip)
    if not sep:
        return version, value, _BITS[version]
    if not prefix.isdigit() or not 0 <= int(prefix) <= _BITS[version]:
        raise ValueError(f"{text!r}: {prefix!r} is not a prefix length for IPv{version}")
    return version, value, int(prefix)


def text(version: int, value: int) -> str:
    return str(_socket.inet_ntop(_FAMILY[version], packed(version, value)))


def packed(version: int, value: int) -> bytes:
    return value.to_bytes(_BITS[version] // 8, "big")


def mask(version: int, prefix: int) -> int:
    bits = _BITS[version]
    return ((1 << bits) - 1) ^ ((1 << (bits - prefix)) - 1)


def network(version: int, value: int, prefix: int) -> int:
    return value & mask(version, prefix)


def last(version: int, value: int, prefix: int) -> int:
    """The subnet's highest address (IPv4: its broadcast)."""
    return network(version, value, prefix) | ((1 << (_BITS[version] - prefix)) - 1)


def cidr(version: int, value: int, prefix: int) -> str:
    return f"{text(version, value)}/{prefix}"


def subnet_text(version: int, value: int, prefix: int) -> str:
    return cidr(version, network(version, value, prefix), prefix)


def is_link_local(version: int, value: int) -> bool:
    return version == 6 and value >> 118 == 0x3FA  # fe80::/10
