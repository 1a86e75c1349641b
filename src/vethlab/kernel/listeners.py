"""Sockets of this namespace that wait for traffic: TCP listeners and bound UDP sockets.

Read from /proc/thread-self/net/{tcp,tcp6,udp,udp6}, the tables of the calling
thread's network namespace (what `ss -ltun` shows), without spawning `ss`.
A published port DNATs its host port in prerouting and output, so a process of the
host namespace listening there would silently stop receiving its traffic: `up`
refuses that (see claims.py), as Docker refuses a port already bound.
"""

from __future__ import annotations

import ipaddress
import sys

from .api import Listener

TCP_LISTEN = "0A"


def _address(hex_text: str) -> str:
    """/proc/net's address: 32-bit words in host byte order, as hex."""
    raw = bytes.fromhex(hex_text)
    if sys.byteorder == "little":
        raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(raw))


def parse(text: str, protocol: str) -> list[Listener]:
    """Listeners in one /proc/net/{tcp,tcp6,udp,udp6} table.  TCP: sockets in LISTEN.
    UDP: sockets with no remote end (a connected UDP socket is a client's)."""
    out = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4:
            continue
        local, remote, state = fields[1], fields[2], fields[3]
        address, _, port = local.rpartition(":")
        if protocol == "tcp" and state != TCP_LISTEN:
            continue
        if protocol == "udp" and int(remote.rpartition(":")[2], 16) != 0:
            continue
        try:
            out.append(Listener(_address(address), int(port, 16), protocol))
        except ValueError:
            continue
    return out


def listeners() -> list[Listener]:
    """Every listener of the calling thread's network namespace."""
    out: list[Listener] = []
    for table, protocol in (("tcp", "tcp"), ("tcp6", "tcp"), ("udp", "udp"), ("udp6", "udp")):
        try:
            with open(f"/proc/thread-self/net/{table}", encoding="ascii") as fh:
                out += parse(fh.read(), protocol)
        except OSError:
            continue  # no IPv6 in this kernel: no tcp6/udp6 table
    return out
