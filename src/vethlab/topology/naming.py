"""Names the kernel accepts, checked before the kernel sees them."""

from __future__ import annotations

IFNAMSIZ = 16  # including the trailing NUL: at most 15 bytes


def ifname_problem(name: str) -> str | None:
    """Why the kernel would refuse `name` as an interface name, or None."""
    if not name:
        return "interface name is empty"
    size = len(name.encode())
    if size >= IFNAMSIZ:
        return f"interface name '{name}' is {size} bytes; the kernel allows at most {IFNAMSIZ - 1}"
    if name in (".", ".."):
        return f"'{name}' cannot name an interface"
    bad = [ch for ch in name if ch in "/:" or ch.isspace()]
    if bad:
        return f"interface name '{name}' contains {bad[0]!r}, which the kernel refuses"
    if name == "lo":
        return "'lo' is the loopback interface every node already has"
    return None
