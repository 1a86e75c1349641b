"""The benchmark's labs, each as a vethlab file and as plain data for the peers."""

from __future__ import annotations

from typing import Any

KINDS = ["chain"]


def _p2p(i: int) -> tuple[str, str]:
    """The i-th /30 of 10.0.0.0/8: (first host, second host)."""
    base = i * 4
    net = f"10.{(base >> 16) & 255}.{(base >> 8) & 255}"
    return f"{net}.{(base & 255) + 1}/30", f"{net}.{(base & 255) + 2}/30"


def chain(n: int) -> tuple[str, dict[str, Any]]:
    """n nodes n0..n{n-1}; link i joins n{i}:r to n{i+1}:l on its own /30."""
    nodes = [f"n{i}" for i in range(n)]
    links = []
    for i in range(n - 1):
        a, b = _p2p(i)
        links.append([f"n{i}", "r", a, f"n{i + 1}", "l", b])
    lines = ["name: chain", "nodes:"] + [f"  {node}: {{}}" for node in nodes] + ["links:"]
    lines += [f"  - {{endpoints: [{a}:{aif}, {b}:{bif}], addresses: [{aa}, {ba}]}}" for a, aif, aa, b, bif, ba in links]
    return "\n".join(lines) + "\n", {"nodes": nodes, "links": links}


def build(kind: str, n: int) -> tuple[str, dict[str, Any]]:
    return {"chain": chain}[kind](n)


def probe(kind: str, spec: dict[str, Any]) -> tuple[str, str]:
    """One ping across the lab: from the first link's first end to its other end."""
    a, _, _, _, _, baddr = spec["links"][0]
    return a, baddr.split("/")[0]


def edit_one_link(text: str) -> str:
    """The same lab with one link changed: a second address on the first link's far end."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("  - {endpoints:"):
            head, addrs = line.rsplit("addresses: [", 1)
            first, second = addrs.rstrip("]}").split(", ")
            lines[i] = f"{head}addresses: [{first}, [{second}, 10.255.255.1/24]]}}"
            break
    return "\n".join(lines) + "\n"
