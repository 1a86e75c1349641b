"""/etc/netns/NS/{hosts,resolv.conf}: what `ip netns exec NS` bind-mounts over /etc.

hosts = the host's own /etc/hosts (localhost and the machine's name, which
programs such as `python3 -m http.server` look up before listening) followed by
one line per lab node.  resolv.conf = the host's, without loopback name servers
(unreachable from a node, as Docker also filters them): with none left, the
resolver falls back to 127.0.0.1 inside the node and fails at once instead of
waiting out a 10 s timeout when `getent hosts NAME` asks for IPv6 first.
"""

from __future__ import annotations

import ipaddress
import os
import shutil

ETC_NETNS = "/etc/netns"
HEADER = "# written by vethlab; removed by `vethlab down`\n"


def node_dir(ns: str) -> str:
    return os.path.join(ETC_NETNS, ns)


def read_entries(ns: str) -> list[tuple[str, str]] | None:
    """The lab's lines of the node's hosts file, or None if it has no file of ours."""
    try:
        with open(os.path.join(node_dir(ns), "hosts"), encoding="utf-8") as fh:
            text = fh.read()
    except OSError:
        return None
    if HEADER not in text:
        return None
    out = []
    for line in text.split(HEADER, 1)[1].splitlines():
        words = line.split()
        if len(words) == 2:
            out.append((words[0], words[1]))
    return out


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError:
        return ""


def hosts_content(entries: list[tuple[str, str]]) -> str:
    base = _read("/etc/hosts")
    if base and not base.endswith("\n"):
        base += "\n"
    if "localhost" not in base:
        base += "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    lines = "".join(f"{addr}\t{name}\n" for addr, name in entries)
    return base + HEADER + lines


def resolv_content() -> str:
    kept = []
    for line in _read("/etc/resolv.conf").splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver":
            try:
                if ipaddress.ip_address(words[1].split("%")[0]).is_loopback:
                    continue
            except ValueError:
                continue
        kept.append(line)
    return HEADER + "\n".join(kept) + "\n"


def write_files(ns: str, entries: list[tuple[str, str]]) -> None:
    hosts = hosts_content(entries)
    directory = node_dir(ns)
    os.makedirs(directory, mode=0o755, exist_ok=True)
    for name, content in (("hosts", hosts), ("resolv.conf", resolv_content())):
        tmp = os.path.join(directory, f".{name}.tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(content)
        os.chmod(tmp, 0o644)
        os.replace(tmp, os.path.join(directory, name))


def remove_files(ns: str) -> None:
    shutil.rmtree(node_dir(ns), ignore_errors=True)
