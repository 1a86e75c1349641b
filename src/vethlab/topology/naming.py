"""Names the kernel accepts, checked before the kernel sees them — and before any
name becomes part of a path.

One family of checks for every name vethlab acts on, wherever it comes from: the
topology file (validate.py), the command line (--lab), the state (store), the
state directory's entries, and markers found in the kernel (ownership.py).  Each
`*_problem` returns why a name is refused, or None; nothing here raises except
`check_lab`, the command line's form.

Patterns are matched with fullmatch: `re.match(r"^x$")` also accepts "x\\n" ($
matches before a trailing newline), and a lab named "x\\n" then reaches paths.
"""

from __future__ import annotations

import re

IFNAMSIZ = 16  # including the trailing NUL: at most 15 bytes
LAB_RULE = "[a-z][a-z0-9-]{0,11}"
LAB_NAME = re.compile(LAB_RULE)
NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")
#: a namespace is named NODE, or LAB-NODE with `prefix: true` (12 + 1 + 63 characters)
NETNS_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,75}")
SYSCTL_KEY = re.compile(r"net\.[A-Za-z0-9_./-]+")


def _shown(name: object) -> str:
    """A name as an error message shows it: quoted, escaped, and short."""
    text = repr(name) if isinstance(name, str) else f"{type(name).__name__} {name!r}"
    return text if len(text) <= 40 else text[:37] + "..."


def lab_problem(name: object) -> str | None:
    """Why `name` cannot name a lab, or None.  A lab name becomes a directory
    (STATE/LAB), a lock file, an alias, an nftables table and a marker file name."""
    if not isinstance(name, str) or not LAB_NAME.fullmatch(name):
        return f"lab name {_shown(name)} must match {LAB_RULE}"
    return None


def node_problem(name: object) -> str | None:
    """Why `name` cannot name a node, or None."""
    if not isinstance(name, str) or not NODE_NAME.fullmatch(name):
        return (f"node name {_shown(name)} must start with a letter or digit and use only letters, digits, '-' and '_' "
                "(at most 63)")
    return None


def name_resolution_problem(name: str) -> str | None:
    """Why nodes could not reach node `name` by its name, or None.  What inet_aton(3)
    parses (decimal, octal 017, hex 0x1f numbers) every resolver takes for an IPv4
    address before it reads a hosts file: a node named "10" was 0.0.0.10 to
    `getent hosts 10` and `ping 10` inside the lab, never the node."""
    # glibc's resolver also takes any all-digit name for a number and, when inet_aton
    # refuses it ("08": 8 is no octal digit), answers "not found" without a lookup
    if name[:1].isascii() and name[:1].isalpha():
        return None  # inet_aton wants a digit first, and this is no all-digit name (most names: no exception)
    try:
        import socket  # here, not at the top: the CNI plugin checks names and must start fast

        where = f"goes to {socket.inet_ntoa(socket.inet_aton(name))}"
    except OSError:
        if not name.isdigit():
            return None
        where = "finds nothing"
    return (f"node name {_shown(name)} is read as an IPv4 address by resolvers (ping {name} {where}, "
            f"not the node); add a letter, e.g. 'n{name}'")


def netns_problem(name: object) -> str | None:
    """Why `name` cannot be one of vethlab's namespaces (/run/netns/NAME), or None."""
    if not isinstance(name, str) or not NETNS_NAME.fullmatch(name):
        return f"namespace name {_shown(name)} is not a node name or LAB-NODE"
    return None


def ifname_problem(name: object) -> str | None:
    """Why the kernel would refuse `name` as an interface name, or None."""
    if not isinstance(name, str):
        return f"interface name {_shown(name)} is not a string"
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


def sysctl_problem(key: object) -> str | None:
    """Why `key` is not a per-namespace sysctl vethlab may write, or None.

    The key becomes /proc/sys/KEY with '.' and '/' swapped (sysctl(8)), so a '/'
    stands for a '.' in the path: "net.//.//.//.etc.x" contains no "..", yet is
    /proc/sys/net/../../../etc/x.  Every path component must be a plain name."""
    if not isinstance(key, str) or not SYSCTL_KEY.fullmatch(key):
        return f"{_shown(key)} is not a per-namespace sysctl (only net.* keys can be set in a node)"
    if any(part.replace("/", ".") in ("", ".", "..") for part in key.split(".")):
        return f"'{key}' is not a per-namespace sysctl (an empty, '.' or '..' part would leave /proc/sys/net)"
    return None


def check_lab(name: object, source: str = "--lab") -> str:
    """`name`, if it can name a lab; otherwise exit 2 saying where it came from."""
    from ..errors import UsageError

    problem = lab_problem(name)
    if problem:
        raise UsageError(f"{source}: {problem}")
    assert isinstance(name, str)
    return name
