"""What a path the machine lacks costs a node's view: making and removing one
view whose private directory the machine has (bound straight) against one whose
directory and parent are missing (made inside the node on an overlay of /run,
the mounts below /run bound back), alternated, side by side in one sandbox.

    .venv/bin/python bench/node_overlay.py [--rounds 60] [--netns 50]

`--netns` namespaces are made first, so /run/netns holds that many mounts (what
an overlay of /run binds back is /run/netns, whole: their number should not
matter).  Prints medians (ms) and the ratio overlay/straight.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

VETHLAB = [sys.executable, "-m", "vethlab"]


def one(ns: str, target: str, backing: str) -> tuple[float, float]:
    from vethlab.kernel import nodefs as nf

    view = nf.View("bench", (nf.Private(target, backing),))
    t0 = time.perf_counter()
    nf.build(ns, "vethlab:bench", view)
    t1 = time.perf_counter()
    nf.remove(ns, "vethlab:bench")
    t2 = time.perf_counter()
    shutil.rmtree(backing)
    return t1 - t0, t2 - t1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--netns", type=int, default=50)
    args = parser.parse_args()
    if not os.environ.get("VETHLAB_SANDBOX"):
        return subprocess.call([*VETHLAB, "sandbox", "--", sys.executable, *sys.argv])

    for i in range(args.netns):
        subprocess.run(["ip", "netns", "add", f"bench{i}"], check=True)
    os.makedirs("/run/bench-have/p", exist_ok=True)
    base = "/run/bench-backing"
    os.makedirs(base, exist_ok=True)
    times: dict[str, list[tuple[float, float]]] = {"straight": [], "overlay": []}
    try:
        for n in range(args.rounds):
            for kind, target in (("straight", "/run/bench-have/p"), ("overlay", "/run/bench-missing/p")):
                times[kind].append(one("node", target, f"{base}/{kind}{n}"))
        assert not os.path.exists("/run/bench-missing"), "an overlay left something on the machine"
    finally:
        for i in range(args.netns):
            subprocess.run(["ip", "netns", "del", f"bench{i}"], check=False)
    med = {kind: (statistics.median(t[0] for t in items) * 1e3, statistics.median(t[1] for t in items) * 1e3)
           for kind, items in times.items()}
    print(f"{args.rounds} rounds, {args.netns} namespaces in /run/netns; medians:")
    for kind, (build, remove) in med.items():
        print(f"  {kind:9} build {build:6.2f} ms   remove {remove:6.2f} ms")
    print(f"  overlay/straight: build {med['overlay'][0] / med['straight'][0]:.2f}x, "
          f"remove {med['overlay'][1] / med['straight'][1]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
