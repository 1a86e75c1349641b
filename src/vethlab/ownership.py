"""The ownership marker: the only place that writes or reads it.

Every interface vethlab creates carries the alias `vethlab:LAB`; every namespace it
creates carries the same alias on its `lo` (a namespace has no attribute of its own
to mark, and `lo` is born with it and dies with it).  Routes vethlab adds carry the
route protocol ROUTE_PROTO, so they are told apart from the admin's even in the
host namespace.  `clean` finds leftovers by these markers, never by name patterns.
"""

from __future__ import annotations

PREFIX = "vethlab:"
#: rtm_protocol for routes vethlab adds (unassigned in /etc/iproute2/rt_protos).
ROUTE_PROTO = 118


def marker(lab: str) -> str:
    return PREFIX + lab


def lab_of(alias: str | None) -> str | None:
    """The lab an alias marks, or None when the object is not vethlab's."""
    if alias and alias.startswith(PREFIX) and len(alias) > len(PREFIX):
        return alias[len(PREFIX):]
    return None
