"""ls, status, graph, link up/down: looking at labs and poking their links."""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import StateDamaged, UsageError
from ..state import store
from .common import print_json, resolve_lab, table
from .words import natural_key, plural


def cmd_ls(args: argparse.Namespace) -> int:
    """The labs.  A lab whose state is damaged is listed as such, with why: it is
    still there (its namespaces may run) and `down` still removes it.  A state
    directory that cannot be trusted or read is an error, never "no labs"."""
    rows: list[dict[str, Any]] = []
    for name in store.labs():
        try:
            state, damage = store.load(name), None
        except StateDamaged as exc:
            state, damage = None, f"{exc.path}: {exc.reason}"
        rows.append({"name": name, "nodes": len(state.nodes) if state else 0, "links": len(state.links) if state else 0,
                     "complete": bool(state and state.complete), "file": state.file if state else None,
                     **({"damaged": damage} if damage else {})})
    if args.json:
        print_json({"labs": rows})
    elif not rows:
        print("no labs")
    else:
        table(None, ["lab", "nodes", "links", "state", "file"],
              [[r["name"], str(r["nodes"]), str(r["links"]),
                f"damaged ({r['damaged']})" if "damaged" in r else "up" if r["complete"] else "incomplete",
                r["file"] or ""] for r in rows])
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from ..ops.inspect import lab_status

    name = resolve_lab(args.lab)
    from ..ops.machines import choose, name_peers, spec_of

    state = store.load(name)
    if state is not None and getattr(args, "machine", None) is not None:
        # the state here is this machine's part: `status --machine m2` on m1 would show m1's
        # nodes as m2's; refused as up/plan/down refuse it (exit 2)
        choose(spec_of(state), args.machine)
    report = lab_status(name)
    if state is not None:
        name_peers(report, state)
    if args.json:
        print_json(report)
        return 0
    missing = [n["name"] for n in report["nodes"] if not n["exists"]]
    print(f"lab {report['lab']}: {plural(len(report['nodes']), 'node')}"
          + (f" (missing: {', '.join(missing)})" if missing else ""))
    report["interfaces"].sort(key=lambda i: (natural_key(i["node"]), natural_key(i["name"])))
    table(None, ["node", "interface", "peer", "addresses", "mtu", "admin", "oper", "carrier", "shaping",
                 "rx/tx packets", "rx/tx bytes", "rx/tx drops"],
          [[i["node"], i["name"], i["peer"] or "", " ".join(i["addresses"]), str(i["mtu"]), i["admin_state"],
            i["operstate"], "yes" if i["carrier"] else "NO", i["shaping"] or "",
            f"{i['stats'].get('rx_packets', 0)}/{i['stats'].get('tx_packets', 0)}",
            f"{i['stats'].get('rx_bytes', 0)}/{i['stats'].get('tx_bytes', 0)}",
            f"{i['stats'].get('rx_dropped', 0)}/{i['stats'].get('tx_dropped', 0)}"] for i in report["interfaces"]])
    if report["services"]:
        table(None, ["node", "service", "pid", "state", "log"],
              [[s["node"], s["command"], str(s["pid"]), s["state"], s["log"]] for s in report["services"]])
    return 0


def cmd_graph(args: argparse.Namespace) -> int:
    from ..model import graph

    if args.file and not args.lab:
        from ..state.speccache import load_lab

        pic = graph.from_spec(load_lab(args.file))
    else:
        state = store.load(resolve_lab(args.lab))
        if state is None:
            raise UsageError("lab does not exist")
        if state.file:
            try:
                from ..state.speccache import load_lab

                pic = graph.from_spec(load_lab(state.file), state.allocation)
            except Exception:
                pic = graph.from_state(state)
        else:
            pic = graph.from_state(state)
    graph.write(pic, args.output)
    if not args.json:
        print(f"wrote {args.output}")
    return 0
