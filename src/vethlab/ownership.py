"""The ownership marker: the only place that writes or reads it.

Every interface vethlab creates carries the alias `vethlab:LAB`; every namespace it
creates carries the same alias on its `lo` (a namespace has no attribute of its own
to mark, and `lo` is born with it and dies with it).  Routes vethlab adds carry the
route protocol ROUTE_PROTO, so they are told apart from the admin's even in the
host namespace.  `clean` finds leftovers by these markers, never by name patterns.

Anyone may set an alias or name a file under /run/netns, so a marker is read
through topology.naming: one carrying a name vethlab could not have written
(`vethlab:../../x`) is not a marker, and is never acted on as a lab or a path.
"""

from __future__ import annotations

from .topology.naming import lab_problem, netns_problem

PREFIX = "vethlab:"
#: a namespace file is born as /run/netns/.vethlab:LAB:NAME (hard-linked to NAME
#: before it is mounted), so a file left dead by a crash mid-creation is traceable
NETNS_TAG_PREFIX = "." + PREFIX
#: rtm_protocol for routes vethlab adds (unassigned in /etc/iproute2/rt_protos).
ROUTE_PROTO = 118


def marker(lab: str) -> str:
    return PREFIX + lab


def lab_of(alias: str | None) -> str | None:
    """The lab an alias marks, or None when the object is not vethlab's."""
    if alias and alias.startswith(PREFIX) and not lab_problem(alias[len(PREFIX):]):
        return alias[len(PREFIX):]
    return None


def table_name(lab: str) -> str:
    """The lab's nftables table, `vethlab_LAB` ('-' becomes '_': lab names have no
    '_', so it stays unique): the table's name is its marker."""
    return "vethlab_" + lab.replace("-", "_")


def lab_of_table(name: str) -> str | None:
    """The lab a firewall table is named for, or None."""
    lab = name[len("vethlab_"):].replace("_", "-") if name.startswith("vethlab_") else None
    return lab if lab and not lab_problem(lab) else None


def netns_tag(lab: str, netns: str) -> str:
    """The marker file name a lab's namespace file is born under."""
    return f"{NETNS_TAG_PREFIX}{lab}:{netns}"


def parse_netns_tag(filename: str) -> tuple[str, str] | None:
    """(lab, netns) of a marker file name, or None."""
    if not filename.startswith(NETNS_TAG_PREFIX):
        return None
    lab, sep, netns = filename[len(NETNS_TAG_PREFIX):].partition(":")
    return (lab, netns) if sep and not lab_problem(lab) and not netns_problem(netns) else None
