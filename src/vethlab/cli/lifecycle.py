"""up, plan, down, validate, clean: building and removing labs."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from ..errors import UsageError, VethlabError
from ..state import store
from .common import print_json, require_privileges, resolve_lab, topology_file
from .words import plural

if TYPE_CHECKING:  # the planner is loaded by the commands that plan, not by `down`
    from ..lab import Lab
    from ..reconcile.planner import Action, Plan


def _describe(plan: Plan) -> list[str]:
    return [f"{_sign(a)} {a.kind} {a.target}: {a.reason}" for a in plan.ordered()]


def _sign(action: Action) -> str:
    return {"create": "+", "delete": "-", "modify": "~", "run": ">"}.get(action.verb, "?")


def _warn(plan: Plan) -> None:
    for warning in plan.warnings:
        print(f"warning: {warning}", file=sys.stderr)


def cmd_validate(args: argparse.Namespace) -> int:
    from ..state.speccache import load_lab

    spec = load_lab(topology_file(args.file))
    if args.json:
        print_json({"file": args.file, "valid": True, "lab": spec.name, "nodes": len(spec.nodes), "links": len(spec.links)})
    else:
        print(f"{args.file}: lab {spec.name}: {plural(len(spec.nodes), 'node')}, {plural(len(spec.links), 'link')}: valid")
    return 0


def _lab_of_file(args: argparse.Namespace, command: str) -> Lab:
    """The lab of FILE, with the machine whose part this is (`--machine`, else
    recognised by its addresses), once root privileges are checked."""
    from ..lab import Lab
    from ..ops.machines import choose

    lab = Lab.load(topology_file(args.file))
    lab.machine = choose(lab.spec, args.machine)
    require_privileges(command)
    return lab


def cmd_plan(args: argparse.Namespace) -> int:
    lab = _lab_of_file(args, "plan")
    plan = lab.plan(refresh=args.refresh)
    _tell(args, lab, plan, ": no changes", f": {plural(len(plan.actions), 'change')}",
          ["  " + line for line in _describe(plan)])
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    lab = _lab_of_file(args, "up")
    verbose = args.verbose and not args.json

    def progress(action: Action) -> None:
        print(f"  {_sign(action)} {action.kind} {action.target}", file=sys.stderr)

    from ..reconcile.progress import showing, wanted

    shown = not verbose and wanted(len(lab.spec.nodes) if lab.spec else 0, args.json)
    with showing(f"vethlab up {lab.name}", shown):
        plan = lab.up(keep_on_error=args.keep_on_error, wait=args.wait, progress=progress if verbose else None,
                      refresh=args.refresh)
    counts: dict[str, int] = {}
    for a in plan.actions:
        counts[a.kind] = counts.get(a.kind, 0) + 1
    summary = ", ".join(plural(n, k) for k, n in counts.items())
    _tell(args, lab, plan, ": up to date, no changes", f" is up ({plural(len(plan.actions), 'change')}: {summary})")
    return 0


def _tell(args: argparse.Namespace, lab: Lab, plan: Plan, unchanged: str, changed: str,
          details: list[str] | None = None) -> None:
    """What `plan` and `up` print: the plan's warnings, then the plan as JSON, or
    `lab NAME [on machine M]` followed by what became of it (and the details)."""
    _warn(plan)
    if args.json:
        print_json(plan.to_json())
        return
    print(f"lab {lab.name}{_on(lab.machine)}{changed if plan else unchanged}")
    if plan and details:
        print("\n".join(details))


def _on(machine: str | None) -> str:
    return f" on machine {machine}" if machine else ""


def cmd_down(args: argparse.Namespace) -> int:
    if getattr(args, "machine", None) is not None and args.file:  # the state here holds only this machine's part
        from ..ops.machines import choose
        from ..state.speccache import load_lab  # here: `down` otherwise needs no topology cache

        choose(load_lab(topology_file(args.file)), args.machine)
    if args.lab:
        name = resolve_lab(args.lab)
    elif args.file or os.path.exists("vethlab.yaml"):
        name = _lab_name(args.file or "vethlab.yaml")
    else:
        name = resolve_lab(None)
    require_privileges("down")
    existed = name in store.labs()
    from ..kernel import open_kernel  # not lab.py: `down` needs none of the planning machinery
    from ..ops.down import down
    from ..reconcile.progress import showing, wanted
    from ..reconcile.removal import stopped_text

    kernel = open_kernel()
    try:
        with showing(f"vethlab down {name}", sys.stderr.isatty() and wanted(_size(name), args.json)):
            stopped = down(name, kernel, wait=args.wait)
    finally:
        kernel.close()
    if args.json:
        print_json({"lab": name, "removed": existed, "stopped": stopped})
    else:
        said = stopped_text(stopped)
        print((f"lab {name} removed" if existed else f"lab {name}: nothing to remove") + (f" ({said})" if said else ""))
    return 0


def _size(name: str) -> int:
    """The number of nodes of a lab, from its state (0 if none): read only when a
    terminal could show progress."""
    state = store.load(name)
    return len(state.nodes) if state else 0


def _quick_name(path: str) -> str | None:
    """The lab of a file `up` built, without loading YAML (0.2 s for a 1000-node file
    here): its one top-level `name: NAME` line, trusted only when lab NAME's state
    records this very file as the one it was built from.  None: ask the parser."""
    import re

    try:
        with open(path, encoding="utf-8") as fh:
            found = re.findall(r"^name:[ \t]*([A-Za-z0-9][A-Za-z0-9_.-]*)[ \t]*(?:#.*)?$", fh.read(), re.M)
        state = store.load(found[0]) if len(found) == 1 else None
        return found[0] if state and state.file and os.path.samefile(state.file, path) else None
    except (OSError, UnicodeDecodeError, VethlabError):
        return None


def _lab_name(path: str) -> str:
    """The lab a file names.  `down` needs only that: even a file that no longer
    validates can take its lab down."""
    quick = _quick_name(path)
    if quick:
        return quick
    from ..errors import ValidationError
    from ..topology.loader import load
    from ..topology.naming import lab_problem

    doc = load(path)
    name = doc.data.get("name") if isinstance(doc.data, dict) else None
    if not isinstance(name, str):
        raise ValidationError([*doc.issues]) if doc.issues else UsageError(f"{path} names no lab")
    problem = lab_problem(name)  # the one rule `up` applies: a name like ../../x never becomes a path
    if problem:
        raise ValidationError([doc.issue(("name",), problem)])
    return name


def cmd_clean(args: argparse.Namespace) -> int:
    from ..ops.clean import clean
    from ..reconcile.removal import stopped_text

    require_privileges("clean")
    report = clean(all_labs=args.all, wait=0.0)
    if args.json:
        print_json(report)
    elif not any(report.values()):
        print("nothing to clean")
    else:
        for lab in report["labs"]:
            said = stopped_text(report["stopped"].get(lab, {}))
            print(f"removed leftovers of lab {lab}" + (f" ({said})" if said else ""))
        for skipped in report["busy"]:
            print(f"skipped lab {skipped}: a vethlab process is working on it")
    return 0
