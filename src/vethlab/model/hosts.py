"""The fingerprint of a lab's name-resolution lines.  Pure.

Every node's /etc/netns/NODE/hosts carries it as one line (the kernel writes what
it is given and reads it back, kernel/nodefiles.py), so a re-run compares one
line per node instead of reading N lines N times.  One rule, used by the hosts
driver (what to plan), the state record (what was written) and the CNI plugin
(the lab's lines plus its containers')."""

from __future__ import annotations


def hosts_digest(entries: list[tuple[str, str]]) -> str:
    """16 hex digits of sha256 over the (address, name) lines, in order."""
    from ..digests import sha256

    return sha256("".join(f"{a} {n}\n" for a, n in entries).encode()).hexdigest()[:16]
