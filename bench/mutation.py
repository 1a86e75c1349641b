"""Mutation check of the pure core: how many small bugs would the fast unit tests catch?

mutmut (3.x, in the `dev` extra: `.venv/bin/pip install -e '.[dev]'`) changes one
thing at a time in the modules listed under [tool.mutmut] only_mutate in
pyproject.toml — a `<` for a `<=`, a constant, a dropped argument — and runs the
unit tests that cover the changed function against each change.  A mutant the
tests do not notice ("survived") is a bug they would let through.  This prints
the score per module and, with --survivors, the survivors to read with
`.venv/bin/mutmut show NAME`.

Dev tooling, not CI: a full run is ~2300 mutants and takes 20-40 min on two
shared cores.  mutmut keeps its results in ./mutants/ (ignored by git) and on a
later run re-tests only the functions whose *source* changed: after adding or
sharpening tests, run with --fresh to judge every mutant again.

    .venv/bin/python bench/mutation.py                  # run (or update), then the scores
    .venv/bin/python bench/mutation.py --report         # the scores of the last run, without running
    .venv/bin/python bench/mutation.py --module naming --survivors
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOG = ROOT / "bench" / "results" / "mutation.log"
#: mutmut's statuses, and which count as caught by the tests
CAUGHT = {"killed", "timeout", "caught by type check"}
COUNTED = CAUGHT | {"survived", "no tests", "suspicious", "segfault"}


def targets() -> list[str]:
    """The mutated modules, dotted (vethlab.topology.naming), from pyproject.toml."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]
    return [str(Path(p).relative_to("src").with_suffix("")).replace("/", ".") for p in config["only_mutate"]]


def mutmut() -> str:
    exe = Path(sys.executable).with_name("mutmut")
    if not exe.exists():
        sys.exit("mutmut is not installed: .venv/bin/pip install -e '.[dev]'")
    return str(exe)


def run(modules: list[str], jobs: int) -> float:
    """`mutmut run`, its progress spinner sent to the log; returns the seconds it took."""
    LOG.parent.mkdir(parents=True, exist_ok=True)
    names = [f"{module}.*" for module in modules] if modules != targets() else []
    start = time.monotonic()
    with LOG.open("w") as log:
        done = subprocess.run([mutmut(), "run", "--max-children", str(jobs), *names], cwd=ROOT, stdout=log,
                              stderr=subprocess.STDOUT, check=False, env={**os.environ, "PYTHONHASHSEED": "0"})
    if done.returncode != 0:
        sys.exit(f"mutmut run failed (exit {done.returncode}); see {LOG}")
    return time.monotonic() - start


def results() -> dict[str, str]:
    """mutant name -> status, for every mutant of the last run."""
    out = subprocess.run([mutmut(), "results", "--all", "true"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    found = {}
    for line in out.splitlines():
        m = re.fullmatch(r"\s*(\S+): (.+)", line)
        if m:
            found[m.group(1)] = m.group(2).strip()
    return found


def module_of(name: str, modules: list[str]) -> str | None:
    return next((module for module in modules if name.startswith(module + ".")), None)


def report(modules: list[str], survivors: bool) -> None:
    statuses = results()
    if not statuses:
        sys.exit("no results: run without --report first")
    print(f"{'module':32} {'mutants':>7} {'killed':>7} {'survived':>8} {'no tests':>8} {'score':>6}")
    total: Counter[str] = Counter()
    for module in modules:
        mine = Counter(status for name, status in statuses.items() if module_of(name, modules) == module)
        total += mine
        print(_row(module, mine))
    if len(modules) > 1:
        print(_row("all", total))
    print("score = caught / (caught + survived + no tests): a mutant no fast test runs counts as not caught")
    if survivors:
        for name, status in sorted(statuses.items()):
            if module_of(name, modules) and status not in CAUGHT:
                print(f"  {status:9} {name}")
        print("read one with: .venv/bin/mutmut show NAME")


def _row(label: str, counts: Counter[str]) -> str:
    caught = sum(counts[s] for s in CAUGHT)
    counted = sum(counts[s] for s in COUNTED)
    score = f"{100 * caught / counted:5.1f}%" if counted else "    -"
    return (f"{label:32} {counted:7} {caught:7} {counts['survived']:8} {counts['no tests']:8} {score:>6}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--module", action="append", default=[],
                        help="only this module (a suffix such as naming or model.ipam); repeatable")
    parser.add_argument("--jobs", type=int, default=2, help="mutants tested at once (default 2: the machine is shared)")
    parser.add_argument("--report", action="store_true", help="print the last run's scores; run nothing")
    parser.add_argument("--fresh", action="store_true", help="forget earlier results (rm -r mutants/) first")
    parser.add_argument("--survivors", action="store_true", help="list the mutants the tests did not catch")
    args = parser.parse_args()
    modules = targets()
    if args.module:
        chosen = [m for m in modules if any(m == s or m.endswith("." + s) for s in args.module)]
        if not chosen:
            sys.exit(f"no such target; pyproject.toml [tool.mutmut] mutates: {', '.join(modules)}")
        modules = chosen
    if args.fresh:
        shutil.rmtree(ROOT / "mutants", ignore_errors=True)
    if not args.report:
        seconds = run(modules, args.jobs)
        print(f"mutmut run: {seconds:.0f} s with {args.jobs} at once (log: {LOG.relative_to(ROOT)})")
    report(modules, args.survivors)


if __name__ == "__main__":
    main()
