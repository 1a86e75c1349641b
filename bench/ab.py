"""bench.py with one more peer, `base`: vethlab from another source tree, interleaved
with this one in the same run, so that a change is judged before/after side by side
(absolute times drift on a shared machine; see README.md).

    git -C . archive main src | tar -x -C /tmp/base       # the tree to compare against
    .venv/bin/python bench/ab.py --base-src /tmp/base/src --sizes 200,1000 --reps 5 \\
        --peers vethlab,base,floor --no-extras --topologies chain

Every other option is bench.py's.  `base` runs `python -m vethlab` with PYTHONPATH set
to --base-src (its `up` and its `down`); each row then prints `up: vethlab/base`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402 - after the path it lives on

BASE_SRC = ""


def run_base(case: bench.Case) -> bench.Sample:
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = BASE_SRC
    try:
        return bench.run_vethlab(case)
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


def main() -> int:
    global BASE_SRC
    args = sys.argv[1:]
    if "--base-src" in args[:-1]:
        at = args.index("--base-src")
        BASE_SRC = os.path.abspath(args[at + 1])
        args = [*args[:at], *args[at + 2:]]
    else:  # inside the sandbox bench.main re-ran us in: handed over in the environment
        BASE_SRC = os.environ.get("VETHLAB_AB_BASE", "")
    if not os.path.isdir(os.path.join(BASE_SRC, "vethlab")):
        print(f"usage: ab.py --base-src DIR [bench.py options] ({BASE_SRC or 'no DIR'} holds no vethlab package)",
              file=sys.stderr)
        return 2
    os.environ["VETHLAB_AB_BASE"] = BASE_SRC
    subprocess.run([bench.PY, "-m", "compileall", "-q", BASE_SRC], stdout=subprocess.DEVNULL, check=False)
    sys.argv = [sys.argv[0], *args]
    bench.PEERS["base"] = run_base
    show = bench.print_row

    def print_row(row: dict[str, Any]) -> None:
        show(row)
        peers = row["peers"]
        if "base" in peers and "vethlab" in peers:
            print(f"  up: vethlab/base = {peers['vethlab']['up']['median'] / peers['base']['up']['median']:.2f}")

    bench.print_row = print_row
    return bench.main()


if __name__ == "__main__":
    sys.exit(main())
