"""What every validating module of topology/ shares: the checker that collects
problems with their paths (every problem at once, each with its line), and the
cached address parser the validators and the network checks both use.

Kept apart from validate.py so that networks.py (the `networks:` section) and
validate.py (the rest of the file) both import it, and not each other.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from typing import Any

from ..errors import Issue
from .loader import MAX_ISSUES, Document, Path


class Checker:
    """Collects the problems of one document, each with its path (and so its line),
    up to MAX_ISSUES, then counts the rest."""

    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.issues: list[Issue] = list(doc.issues)
        self.dropped = doc.dropped
        if self.dropped:
            self._count_dropped()

    def err(self, path: Path, message: str) -> None:
        if len(self.issues) < MAX_ISSUES:
            self.issues.append(self.doc.issue(path, message))
        else:
            self.dropped += 1
            self._count_dropped()

    def _count_dropped(self) -> None:
        """One last issue says how many more there were (kept up to date in place)."""
        note = Issue(self.doc.file, None, "", f"{self.dropped} more problems are not shown (the first "
                                               f"{MAX_ISSUES} are)")
        if len(self.issues) > MAX_ISSUES:
            self.issues[-1] = note
        else:
            self.issues.append(note)

    def mapping(self, value: Any, path: Path, what: str, allow_none: bool = False) -> dict[str, Any] | None:
        if value is None and allow_none:
            return {}
        if not isinstance(value, dict):
            self.err(path, f"must be a mapping ({what}), not {kind_of(value)}")
            return None
        return value

    def section(self, value: Any, path: Path, what: str, allowed: set[str],
                later: set[str] | None = None) -> dict[str, Any] | None:
        """A mapping (or nothing) whose keys must be among `allowed`."""
        spec = self.mapping(value, path, what, allow_none=True)
        if spec is not None:
            self.keys(spec, path, allowed, later or set())
        return spec

    def keys(self, value: dict[str, Any], path: Path, allowed: set[str], later: set[str]) -> None:
        if value.keys() <= allowed:  # the common case, as one set operation
            return
        for key in value:
            if key in later:
                self.err(path + (key,), f"'{key}' is not supported yet by this version of vethlab")
            elif key not in allowed:
                hint = closest(key, allowed)
                self.err(path + (key,), f"unknown key '{key}'" + (f" (did you mean '{hint}'?)" if hint else ""))


def kind_of(value: Any) -> str:
    if value is None:
        return "nothing"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "true/false", int: "a number", float: "a number"}.get(
        type(value), type(value).__name__
    )


def closest(key: str, allowed: set[str]) -> str | None:
    import difflib

    match = difflib.get_close_matches(key, sorted(allowed), n=1, cutoff=0.6)
    return match[0] if match else None


_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"  # 0-255, no leading zero
_V4 = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}/(3[0-2]|[0-2]?[0-9])")


@functools.lru_cache(maxsize=1 << 18)  # bounded (the API may validate many files in one process), yet
# above a file's 200 000 values: a smaller cache thrashed on a link with 120 000 addresses (4x the work)
def parse_interface(text: str) -> Any:
    """ip_interface, parsed once per distinct text.  Plain IPv4 CIDRs, the bulk of a
    big lab file, take a fast path (ipaddress' parser costs ~30 us a call)."""
    m = _V4.fullmatch(text)
    if m:  # each octet 0-255 without a leading zero, a prefix length 0-32: the regex says so
        return FastV4(text, m)
    return ipaddress.ip_interface(text)


class FastV4:
    """The parts of IPv4Interface validation needs, from integers."""

    version = 4

    def __init__(self, text: str, m: re.Match[str]) -> None:
        a, b, c, d, plen = map(int, m.groups())
        self._int = (a << 24) | (b << 16) | (c << 8) | d
        self._plen = plen
        self._text = text

    @property
    def ip(self) -> ipaddress.IPv4Address:
        return ipaddress.IPv4Address(self._int)

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network((self._int, self._plen), strict=False)

    def quick(self) -> tuple[int, int, int]:
        """(address, network address, broadcast address) as integers."""
        mask = (0xFFFFFFFF << (32 - self._plen)) & 0xFFFFFFFF
        return self._int, self._int & mask, (self._int & mask) | (~mask & 0xFFFFFFFF)

    def __str__(self) -> str:
        return self._text


def address_parts(text: str) -> tuple[int, int, int]:
    """(IP version, address as int, prefix length) of a validated address text."""
    parsed = parse_interface(text)
    if isinstance(parsed, FastV4):
        return 4, parsed._int, parsed._plen
    return parsed.version, int(parsed.ip), parsed.network.prefixlen
