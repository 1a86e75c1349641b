"""What waiting for IPv6 addresses to be in use (reconcile/verify.py, _await_addresses)
costs `up`, side by side: a 200-node star, IPv4-only and dual-stack, built with the
wait and with it switched off, interleaved, in one `vethlab sandbox`.

    .venv/bin/vethlab sandbox -- .venv/bin/python bench/address_wait.py [--nodes 200] [--reps 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

from vethlab.kernel.rtnl import NetlinkKernel
from vethlab.lab import Lab
from vethlab.reconcile import verify
from vethlab.topology import lab_from_text


def star(n: int, six: bool) -> str:
    lines = ["name: star", "nodes:"] + [f"  n{i}: {{}}" for i in range(n)]
    lines += ["networks:", "  lan:", "    subnet: 10.0.0.0/16"] + (["    subnet6: fd00:30::/64"] if six else [])
    lines += ["    members:"] + [f"      n{i}: {{}}" for i in range(n)]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    real = verify._await_addresses
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.reps):
        for family in ("IPv4", "dual"):
            spec = lab_from_text(star(args.nodes, family == "dual"))
            for variant in ("without", "with"):
                verify._await_addresses = real if variant == "with" else (lambda *_a: None)
                start = time.monotonic()
                Lab(spec, kernel=NetlinkKernel()).up(wait=30)
                times.setdefault((family, variant), []).append(time.monotonic() - start)
                Lab.existing("star", kernel=NetlinkKernel()).down(wait=30)
                time.sleep(1)  # the kernel destroys namespaces after down returned
    print(f"{args.nodes}-node star, `up` in-process, median of {args.reps} (min-max), s")
    for family in ("IPv4", "dual"):
        cells = {v: times[(family, v)] for v in ("without", "with")}
        text = "  ".join(f"{v} wait {statistics.median(t):.3f} ({min(t):.3f}-{max(t):.3f})" for v, t in cells.items())
        ratio = statistics.median(cells["with"]) / statistics.median(cells["without"])
        print(f"  {family:5} {text}  ratio with/without {ratio:.3f}")


if __name__ == "__main__":
    main()
