"""Topology files for the benchmark: chain (a veth per adjacent pair) and star."""

from __future__ import annotations


def chain(n: int, name: str = "chain") -> str:
    """n nodes n0..n{n-1}; link i joins n{i}:r to n{i+1}:l on 10.(i//256).(i%256).0/30... as /31-free /30s."""
    lines = [f"name: {name}", "nodes:"]
    lines += [f"  n{i}: {{}}" for i in range(n)]
    lines.append("links:")
    for i in range(n - 1):
        base = i * 4
        net = f"10.{(base >> 16) & 255}.{(base >> 8) & 255}"
        lo = base & 255
        lines.append(f"  - {{endpoints: [n{i}:r, n{i + 1}:l], addresses: [{net}.{lo + 1}/30, {net}.{lo + 2}/30]}}")
    return "\n".join(lines) + "\n"
