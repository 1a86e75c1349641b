"""The benchmark's labs, each as a vethlab file and as plain data for the peers."""

from __future__ import annotations

from typing import Any

KINDS = ["star", "chain"]


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


def star(n: int) -> tuple[str, dict[str, Any]]:
    """n nodes on one bridge network (10.0.0.0/16, gateway 10.0.0.1 on the bridge)."""
    nodes = [f"n{i}" for i in range(n)]
    ports = []
    for i, node in enumerate(nodes):
        host = i + 2
        ports.append([node, "eth0", f"10.0.{host >> 8}.{host & 255}/16", f"vs{i}"])
    lines = ["name: star", "nodes:"] + [f"  {node}: {{}}" for node in nodes]
    lines += ["networks:", "  lan:", "    subnet: 10.0.0.0/16", "    members:"]
    lines += [f"      {node}: {{ip: {addr.split('/')[0]}}}" for node, _, addr, _ in ports]
    spec = {"nodes": nodes, "links": [], "bridge": ["br0", "10.0.0.1/16"], "ports": ports, "gateway": "10.0.0.1"}
    return "\n".join(lines) + "\n", spec


def build(kind: str, n: int) -> tuple[str, dict[str, Any]]:
    return {"chain": chain, "star": star}[kind](n)


def probe(kind: str, spec: dict[str, Any]) -> tuple[str, str]:
    """One ping across the lab: over the first link, or from the first member to the last."""
    if spec.get("ports"):
        return spec["ports"][0][0], spec["ports"][-1][2].split("/")[0]
    a, _, _, _, _, baddr = spec["links"][0]
    return a, baddr.split("/")[0]


def edit_one_link(text: str) -> str:
    """The same lab with one link changed: a second address on the first link's far end
    (star: the first member's static address moves)."""
    if "networks:" in text:
        return text.replace("{ip: 10.0.0.2}", "{ip: 10.0.255.250}", 1)
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("  - {endpoints:"):
            head, addrs = line.rsplit("addresses: [", 1)
            first, second = addrs.rstrip("]}").split(", ")
            lines[i] = f"{head}addresses: [{first}, [{second}, 10.255.255.1/24]]}}"
            break
    return "\n".join(lines) + "\n"
