"""A ring of FRR routers (OSPF) with their own files: how long from `vethlab up`
to full convergence, and how much memory it takes.

    .venv/bin/python bench/frr.py            # 50 routers (runs itself inside `vethlab sandbox`)
    .venv/bin/python bench/frr.py --routers 20 --reps 3

Per repetition, side by side in one sandbox:

* `plain`: the same ring with neither daemons nor views (namespaces, veths,
  addresses, sysctls): what any lab of this shape costs;
* `views`: the ring with every router's view (own /etc/frr with its frr.conf,
  own /run/frr, own hostname) but no daemons: what the mount and UTS namespaces
  add, as a ratio to `plain`;
* `frr`: the example's ring (bench/frr_topology.py): `up` returns once zebra and
  ospfd run in every node; converged when every router's kernel table holds a
  route to every other router's loopback (read over netlink: one dump per node
  per poll, no process started), then checked once more with `vtysh` in two nodes.

Memory, once converged: the resident set (RSS, shared pages counted in each
process) and the proportional set (PSS, shared pages split) summed over every
FRR process, and the growth of the kernel's slab, page tables and kernel stacks
(/proc/meminfo; noisy on a shared machine, so only indicative).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from frr_topology import loopback, ring  # noqa: E402

VETHLAB = [sys.executable, "-m", "vethlab"]


def strip_daemons(text: str, views: bool) -> str:
    """The ring without `run:` (and, unless `views`, without files/private)."""
    out, skip = [], False
    for line in text.splitlines(keepends=True):
        key = line.strip().split(":", 1)[0]
        indent = len(line) - len(line.lstrip())
        if skip and (indent > 4 or not line.strip()):
            continue
        skip = False
        if indent == 4 and (key == "run" or (not views and key in ("files", "private"))):
            skip = True
            continue
        out.append(line)
    return "".join(out)


def vethlab(*args: str) -> None:
    subprocess.run([*VETHLAB, *args], check=True, stdout=subprocess.DEVNULL)


def converged(kernel: object, routers: int) -> bool:
    """Every router's main table has a route to every other loopback."""
    want = {f"{loopback(i)}/32" for i in range(1, routers + 1)}
    for i in range(1, routers + 1):
        have = {r.dst for r in kernel.routes(f"r{i}")}  # type: ignore[attr-defined]
        if len(want - have) > 1:  # its own loopback is on lo, not a route of the main table
            return False
    return True


def frr_memory() -> tuple[int, int, int]:
    """(processes, RSS kB, PSS kB) summed over FRR's daemons."""
    count = rss = pss = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if not Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"/usr/lib/frr/"):
                continue
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
        except OSError:
            continue
        fields = {line.split(":")[0]: int(line.split()[1]) for line in rollup[1:] if line.split()[1:2]}
        count, rss, pss = count + 1, rss + fields.get("Rss", 0), pss + fields.get("Pss", 0)
    return count, rss, pss


def kernel_kb() -> int:
    info = {line.split(":")[0]: int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()}
    return info["Slab"] + info["PageTables"] + info["KernelStack"]


#: the kernel destroys namespaces after `down` returns: each phase starts after this pause (bench/README.md)
SETTLE = 1.0


def run_once(path: str, routers: int, daemons: bool) -> dict[str, float]:
    from vethlab.kernel.rtnl import NetlinkKernel

    time.sleep(SETTLE)
    before = kernel_kb()
    start = time.monotonic()
    vethlab("up", path)
    up = time.monotonic() - start
    out: dict[str, float] = {"up": up}
    if daemons:
        kernel = NetlinkKernel()
        try:
            deadline = start + 600
            while not converged(kernel, routers):
                if time.monotonic() > deadline:
                    raise SystemExit("not converged within 600 s")
                time.sleep(0.2)
            out["converged"] = time.monotonic() - start
        finally:
            kernel.close()
        for node in ("r1", f"r{routers // 2}"):
            table = json.loads(subprocess.run([*VETHLAB, "exec", node, "--", "vtysh", "-c", "show ip route json"],
                                              capture_output=True, text=True, check=True).stdout)
            assert all(f"{loopback(i)}/32" in table for i in range(1, routers + 1)), node
        count, rss, pss = frr_memory()
        out.update(processes=count, rss_mb=rss / 1024, pss_mb=pss / 1024, kernel_mb=(kernel_kb() - before) / 1024)
    time.sleep(SETTLE)
    start = time.monotonic()
    vethlab("down", path)
    out["down"] = time.monotonic() - start
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--routers", type=int, default=50)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    if not os.environ.get("VETHLAB_SANDBOX"):
        return subprocess.call([*VETHLAB, "sandbox", "--", sys.executable, *sys.argv])
    if not os.path.exists("/usr/lib/frr/zebra"):
        print("FRR is not installed (apt-get install frr, or ./run setup)", file=sys.stderr)
        return 1
    work = tempfile.mkdtemp(prefix="vethlab-frr-bench-")
    text = ring(args.routers, name="frrbench")
    paths = {}
    for kind, body in (("plain", strip_daemons(text, False)), ("views", strip_daemons(text, True)), ("frr", text)):
        paths[kind] = os.path.join(work, f"{kind}.yaml")
        Path(paths[kind]).write_text(body)
    results: dict[str, list[dict[str, float]]] = {kind: [] for kind in paths}
    order = list(paths)
    for rep in range(args.reps):
        for kind in order[rep % 3:] + order[:rep % 3]:  # each kind goes first once in three: no order bias
            path = paths[kind]
            results[kind].append(run_once(path, args.routers, kind == "frr"))
            print(f"rep {rep + 1} {kind}: " + ", ".join(f"{k} {v:.2f}" for k, v in results[kind][-1].items()),
                  flush=True)

    def med(kind: str, key: str) -> float:
        return statistics.median(r[key] for r in results[kind])

    print(f"\n{args.routers}-router OSPF ring, medians of {args.reps} (min-max):")
    for kind in paths:
        ups = [r["up"] for r in results[kind]]
        print(f"  {kind:6} up {med(kind, 'up'):6.2f} s ({min(ups):.2f}-{max(ups):.2f})   down {med(kind, 'down'):.2f} s")
    print(f"  views / plain, up:   {med('views', 'up') / med('plain', 'up'):.2f}x")
    print(f"  views / plain, down: {med('views', 'down') / med('plain', 'down'):.2f}x")
    conv = [r["converged"] for r in results["frr"]]
    print(f"  frr: up to full convergence {med('frr', 'converged'):.1f} s ({min(conv):.1f}-{max(conv):.1f}); "
          f"{med('frr', 'converged') / med('plain', 'up'):.1f}x the plain ring's up")
    print(f"  frr memory: {int(med('frr', 'processes'))} processes, RSS {med('frr', 'rss_mb'):.0f} MiB, "
          f"PSS {med('frr', 'pss_mb'):.0f} MiB ({med('frr', 'pss_mb') / args.routers:.1f} MiB per router); "
          f"kernel slab+page tables+stacks grew {med('frr', 'kernel_mb'):.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
