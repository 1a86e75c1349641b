"""`vethlab doctor [FILE]`: the host's preflight, as a table or one JSON document."""

from __future__ import annotations

import argparse

from .common import print_json, table


def cmd_doctor(args: argparse.Namespace) -> int:
    from ..ops import doctor

    checks, ok = doctor.run(args.file)
    if args.file is not None:
        from ..lab import Lab

        lab = Lab.load(args.file)  # invalid file: ValidationError, exit 2, as everywhere
        try:
            checks.append(doctor.plan_check(args.file, lambda: len(lab.plan().actions)))
        finally:
            lab.close()
        ok = doctor.verdict(checks)
    if args.json:
        print_json({"ok": ok, "checks": [vars(c) for c in checks]})
    else:
        table(None, ["check", "verdict", "detail", "fix"],
              [[c.name + (" (needed)" if c.needed else ""), c.status, c.detail, c.fix] for c in checks])
        print("verdict: " + ("ready" if ok else "something the file needs is missing (FAIL above)"))
    return 0 if ok else 1
