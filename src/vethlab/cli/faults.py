"""link set|clear|flap, node isolate|restore, chaos, watch, capture, perf."""

from __future__ import annotations

import argparse
import os
import shutil
import sys

from ..errors import ConflictError, UsageError
from ..kernel.process import exec_in_node
from .common import print_json, resolve_lab, split_endpoint


def _seconds(text: str) -> float:
    from ..topology.shaping import parse_time

    try:
        return parse_time(text if text[-1].isalpha() else f"{text}s") / 1_000_000
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _say(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    def emit(line: str) -> None:
        if not args.json:
            print(line, flush=True)
    return emit


def cmd_link(args: argparse.Namespace) -> int:
    from ..ops.faults import flap, set_link_state, set_shaping
    from ..topology.shaping import parse_shaping

    node, ifname = split_endpoint(args.endpoint)
    lab = resolve_lab(args.lab, node)
    if args.action in ("up", "down"):
        import time

        from ..ops.machines import check_far_end, tell_far_end

        start = time.monotonic()
        if args.all:
            check_far_end(lab, node, ifname)  # refused before this end changes
        set_link_state(lab, node, ifname, up=args.action == "up")
        far = tell_far_end(lab, node, ifname, up=args.action == "up") if args.all else None
        if not args.json:
            print(f"{node}:{ifname} is {args.action}" + (
                f"; {far} ({(time.monotonic() - start) * 1000:.0f} ms after the command)" if far else ""))
    elif args.action == "set":
        values = {"rate": args.rate, "delay": args.delay, "jitter": args.jitter, "loss": args.loss}
        if not any(values.values()):
            raise UsageError("link set needs at least one of --rate, --delay, --jitter, --loss")
        try:
            shaping = parse_shaping(values)
        except ValueError as exc:
            raise UsageError(f"--{exc.args[0]}: {exc.args[1]}") from None
        set_shaping(lab, node, ifname, shaping)
        if not args.json:
            print(f"{node}:{ifname} shaped: {shaping.describe()} (traffic leaving {node})")
    elif args.action == "clear":
        set_shaping(lab, node, ifname, None)
        if not args.json:
            print(f"{node}:{ifname}: shaping removed")
    elif args.action == "flap":
        flap(lab, node, ifname, _seconds(args.down), _seconds(args.up), args.count, _say(args))
    return 0


def cmd_node(args: argparse.Namespace) -> int:
    from ..ops.faults import isolate

    lab = resolve_lab(args.lab, args.node)
    isolate(lab, args.node, up=args.action == "restore", emit=_say(args))
    return 0


def cmd_chaos(args: argparse.Namespace) -> int:
    from ..ops.faults import chaos

    lab = resolve_lab(args.lab)
    schedule = chaos(lab, _seconds(args.duration), args.seed, _say(args))
    if args.json:
        print_json({"lab": lab, "seed": args.seed, "flaps": schedule})
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    from ..ops.watch import as_json_line, human, watch

    lab = resolve_lab(args.lab)

    def emit(event: dict) -> None:  # type: ignore[type-arg]
        print(as_json_line(event) if args.json else human(event), flush=True)

    try:
        watch(lab, emit, duration=_seconds(args.duration) if args.duration else None, count=args.count)
    except KeyboardInterrupt:
        pass
    return 0


def cmd_capture(args: argparse.Namespace) -> int:
    from .run import _netns

    node, ifname = split_endpoint(args.endpoint)
    lab = resolve_lab(args.lab, node)
    tcpdump = shutil.which("tcpdump") or ("/usr/bin/tcpdump" if os.path.exists("/usr/bin/tcpdump") else None)
    if tcpdump is None:
        raise ConflictError("capture needs tcpdump: apt-get install tcpdump")
    argv = [tcpdump, "-i", ifname, "-n", "-U"]
    if os.geteuid() == 0:
        # tcpdump drops to its own user before it creates -w FILE, leaving the user a
        # pcap owned by `tcpdump`; stay the invoking user (root, or root of a sandbox)
        argv += ["-Z", "root"]
    if args.write:
        argv += ["-w", args.write]
    if args.count:
        argv += ["-c", str(args.count)]
    filt = list(args.filter)
    if filt and filt[0] == "--":
        filt = filt[1:]
    exec_in_node(_netns(lab, node), argv + filt)
    return 0


def cmd_perf(args: argparse.Namespace) -> int:
    from ..kernel import open_kernel
    from ..ops.inspect import pick_address
    from ..ops.perf import measure
    from .run import _netns, node_addresses

    lab = resolve_lab(args.lab, args.src)
    src_ns, dst_ns = _netns(lab, args.src), _netns(lab, args.dst)  # DST is a node: the receiver runs there
    addrs = node_addresses(lab)
    address = pick_address(addrs.get(args.src, []), addrs.get(args.dst, []))
    if address is None:
        raise UsageError(f"node {args.dst} has no address")
    kernel = open_kernel()
    try:
        result = measure(kernel, src_ns, dst_ns, address, args.time)
    finally:
        kernel.close()
    report = {"src": args.src, "dst": args.dst, "address": address, **result}
    if args.json:
        print_json(report)
    else:
        print(f"{args.src} -> {args.dst} ({address}): {result['bits_per_second'] / 1e9:.3f} Gbit/s "
              f"({result['bits_per_second'] / 1e6:.1f} Mbit/s) over {result['seconds']:.1f} s, {result['tool']}",
              file=sys.stdout)
    return 0
