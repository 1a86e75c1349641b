"""exec, shell, ping, pingall: using a lab's nodes."""

from __future__ import annotations

import argparse
import ipaddress
import os
import subprocess
from typing import Any

from ..errors import CommandFailed, UsageError
from ..kernel.process import exec_in_node, run_in_node
from ..state import store
from .common import print_json, resolve_lab, table
from .words import natural_key

HOST = "host"  # topology.schema.HOST, named here so that `exec` does not load the schema


def _netns(lab: str, node: str) -> str | None:
    state = store.load(lab)
    if state is None:
        raise UsageError(f"lab {lab} does not exist")
    if node == HOST:
        return None
    if node not in state.nodes:
        raise UsageError(f"lab {lab} has no node {node} (it has: {', '.join(sorted(state.nodes))})")
    return state.nodes[node]


def cmd_exec(args: argparse.Namespace) -> int:
    if not args.cmd:
        raise UsageError("usage: vethlab exec [--lab NAME] NODE -- CMD [ARG...]")
    lab = resolve_lab(args.lab, args.node)
    exec_in_node(_netns(lab, args.node), args.cmd)
    return 0  # not reached


def cmd_shell(args: argparse.Namespace) -> int:
    lab = resolve_lab(args.lab, args.node)
    ns = _netns(lab, args.node)
    shell = os.environ.get("SHELL") or "/bin/bash"
    os.environ["VETHLAB_LAB"], os.environ["VETHLAB_NODE"] = lab, args.node
    host = _escape_prompt(node_hostname(ns))
    os.environ["PS1"] = f"({lab}:{args.node}) {host}:\\w\\$ "
    argv = [shell, "--norc", "-i"] if shell.endswith("bash") else [shell, "-i"]
    exec_in_node(ns, argv)
    return 0


def node_hostname(ns: str | None) -> str:
    """The host name the node's commands see: its own (`hostname:`, in its UTS
    namespace) when it has a view, else the machine's."""
    import socket

    from ..kernel.nodepins import call_in_view, has_view

    if ns is not None and has_view(ns):
        return call_in_view(ns, socket.gethostname)
    return socket.gethostname()


def _escape_prompt(text: str) -> str:
    """`text` shown as it is in a bash prompt (backslash escapes, $ and ` expansions)."""
    return text.replace("\\", "\\\\").replace("$", "\\$").replace("`", "\\`")


# -- addresses, read from the kernel --------------------------------------------
def node_addresses(lab: str) -> dict[str, list[tuple[str, str]]]:
    """node -> [(ifname, cidr)] for every node of the lab, from the kernel."""
    from ..kernel import open_kernel
    from ..ops import inspect

    state = inspect.lab_state(lab)
    kernel = open_kernel()
    try:
        return inspect.node_addresses(kernel, state)
    finally:
        kernel.close()


def cmd_ping(args: argparse.Namespace) -> int:
    lab = resolve_lab(args.lab, args.src)
    ns = _netns(lab, args.src)
    try:
        target = str(ipaddress.ip_address(args.dst))
    except ValueError:
        addrs = node_addresses(lab)
        if args.dst not in addrs:
            raise UsageError(f"{args.dst} is neither an address nor a node of lab {lab}") from None
        from ..ops.inspect import pick_address

        picked = pick_address(addrs.get(args.src, []), addrs[args.dst])
        if picked is None:
            raise UsageError(f"node {args.dst} has no address") from None
        target = picked
    exec_in_node(ns, ["ping", "-c", str(args.count), "-W", "1", target])
    return 0


def pairs(lab: str, all_addresses: bool) -> list[dict[str, Any]]:
    """(src, dst, address) to test: every two nodes that share a subnet (a link or a
    network), each to the other's address on it; with `all_addresses`, every node to
    every address of every other node."""
    addrs = node_addresses(lab)
    local = set(addrs)
    state = store.load(lab)
    if state is not None:  # a lab across machines: the other machines' nodes, as destinations
        from ..ops.machines import remote_addresses

        addrs.update({n: a for n, a in remote_addresses(state).items() if n not in local})
    out = []
    if all_addresses:
        for src in local:
            for dst, items in addrs.items():
                if dst != src:
                    out += [{"src": src, "dst": dst, "address": str(ipaddress.ip_interface(c).ip)} for _, c in items]
        return out
    by_subnet: dict[Any, list[tuple[str, str]]] = {}
    for node, items in addrs.items():
        for _ifname, cidr in items:
            iface = ipaddress.ip_interface(cidr)
            by_subnet.setdefault(iface.network, []).append((node, str(iface.ip)))
    for members in by_subnet.values():
        for src, _ in members:
            for dst, address in members:
                if src != dst and src in local:
                    out.append({"src": src, "dst": dst, "address": address})
    return out


def cmd_pingall(args: argparse.Namespace) -> int:
    lab = resolve_lab(args.lab)
    state = store.load(lab)
    if state is None:
        raise UsageError(f"lab {lab} does not exist")
    todo = pairs(lab, args.all)
    if not todo:
        # nothing tested is not a pass: a lab whose links share no subnet would otherwise "succeed"
        raise CommandFailed(f"lab {lab}: no pair of nodes shares a link or a network with addresses on both "
                            "ends: nothing to ping (give the link ends addresses on one subnet, or use --all)")

    def probe(item: dict[str, Any]) -> dict[str, Any]:
        result = run_in_node(state.nodes.get(item["src"]), ["ping", "-c", "1", "-W", "1", "-q", item["address"]],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return {**item, "ok": result.returncode == 0}

    from concurrent.futures import ThreadPoolExecutor

    # Bounded parallelism: the neighbour table is shared by all namespaces and
    # small (gc_thresh3 = 1024); a flood of simultaneous pings overflows it.
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(probe, todo))
    failed = [r for r in results if not r["ok"]]
    explained = explain_failures(lab) if failed else []
    if args.json:
        print_json({"lab": lab, "ok": not failed, "pairs": results, **({"blocked_by": explained} if explained else {})})
    else:
        nodes = sorted({r["src"] for r in results} | {r["dst"] for r in results}, key=natural_key)
        cell: dict[tuple[str, str], list[bool]] = {}
        for r in results:
            cell.setdefault((r["src"], r["dst"]), []).append(r["ok"])
        rows = [[src] + [("ok" if all(cell[(src, dst)]) else "FAIL") if (src, dst) in cell else "" for dst in nodes]
                for src in nodes]
        print(f"lab {lab}: {len(results) - len(failed)}/{len(results)} pairs reachable")
        table(None, ["from \\ to", *nodes], rows)
        for r in failed:
            print(f"FAIL {r['src']} -> {r['dst']} ({r['address']})")
        for text in explained:
            print(f"probable cause: {text}")
    return 1 if failed else 0


def explain_failures(lab: str) -> list[str]:
    """Why pairs may fail that vethlab cannot mend: foreign forward chains of the host
    namespace that drop traffic of the lab's bridges there (see forward_policy)."""
    from ..kernel import open_kernel
    from ..ownership import marker
    from ..reconcile.forward_policy import check

    kernel = open_kernel()
    try:
        bridges = [link.ifname for link in kernel.links(None, addresses=False)
                   if link.kind == "bridge" and link.alias == marker(lab)]
        routed = kernel.read_sysctl(None, "net.ipv4.ip_forward") == "1"
        return [b.message() for b in check(kernel, bridges, routed)]
    finally:
        kernel.close()
