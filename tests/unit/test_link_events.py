"""Reading rtnetlink link events: what counts as an interface gone.  A bridge sends
RTM_DELLINK of family AF_BRIDGE for each port that leaves it (all of them when the
bridge is deleted, which `down` does first); the port is still there, and neither
`down`'s wait (events.deleted_indexes) nor `vethlab watch` (events.parse) may take
it for deleted.  Only the kernel's own RTM_DELLINK (AF_UNSPEC) says so."""

from __future__ import annotations

import socket
import struct

from vethlab.kernel import events, nl
from vethlab.kernel.api import LinkEvent


def message(kind: int, index: int, family: int = socket.AF_UNSPEC, name: str = "p0") -> bytes:
    body = nl.ifinfo(index, family=family) + nl.attr_str(nl.IFLA_IFNAME, name)
    return struct.pack("=IHHII", 16 + len(body), kind, 0, 0, 0) + body


DATAGRAM = (message(nl.RTM_NEWLINK, 5, name="a")  # a change, not a deletion
            + message(nl.RTM_DELLINK, 6, socket.AF_BRIDGE, name="b")  # port 6 let go by its bridge: still there
            + message(nl.RTM_DELLINK, 7, name="c"))  # interface 7 gone


def test_only_the_kernels_own_deletions_count_for_the_wait() -> None:
    assert events.deleted_indexes(DATAGRAM) == {7}


def test_watch_does_not_show_a_port_let_go_by_its_bridge_as_deleted() -> None:
    seen = [(e.link.index, e.deleted) for e in events.parse("h", memoryview(DATAGRAM)) if isinstance(e, LinkEvent)]
    assert seen == [(5, False), (7, True)]
