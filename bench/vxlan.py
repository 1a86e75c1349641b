"""Throughput of a vethlab link across machines against a bare VXLAN between the same
two machines, side by side, in one run (issue 13: the lab must reach >= 0.8x).

    vethlab sandbox -- python bench/vxlan.py [--reps 5] [--time 3]

Two simulated machines (kernel/machines.py) on an underlay bridge.  On them:

* **vethlab**: a two-node lab, `a` on m1 and `b` on m2, one link across (what
  `vethlab up FILE` builds on each machine: a VXLAN device in each node);
* **carrier**: a second link of that lab with `carrier: true` (a veth in each
  node, bridged to the tunnel in the machine);
* **bare**: the same by hand with iproute2 on the same machines — a namespace on
  each and `ip link add vx netns X type vxlan id 99 local L remote R dstport 4789`.

iperf3 (TCP, one stream) from m1 to m2, the set-ups alternated `--reps` times;
prints each run, the medians and their ratios to bare.  Then the time from
`vethlab link down a:e1 --all` on m1 to b:e1 on m2 showing NO-CARRIER (the
command returns once it does), `--reps` times.  Absolute numbers drift on a shared
machine; the ratio measured side by side is what counts.
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

from vethlab.kernel import machines

LAB = """\
name: bench
machines:
  m1: {address: 10.200.0.1}
  m2: {address: 10.200.0.2}
nodes:
  a: {machine: m1}
  b: {machine: m2}
links:
  - endpoints: [a:e0, b:e0]
    addresses: [10.0.0.1/24, 10.0.0.2/24]
  - endpoints: [a:e1, b:e1]
    addresses: [10.0.1.1/24, 10.0.1.2/24]
    carrier: true
"""


def on(m: machines.Machine, *argv: str) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(machines.on_command(m, list(argv)), capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise SystemExit(f"{m.name}: {' '.join(argv)}: {r.stderr.strip() or r.stdout.strip()}")
    return r


def bare(m1: machines.Machine, m2: machines.Machine) -> None:
    """The same link made by hand: a namespace per machine, a VXLAN in each."""
    for me, peer, address in ((m1, m2, "10.1.0.1/24"), (m2, m1, "10.1.0.2/24")):
        on(me, "ip", "netns", "add", "x")
        on(me, "ip", "link", "add", "vx", "netns", "x", "type", "vxlan", "id", "99", "local", me.address,
           "remote", peer.address, "dstport", "4789")
        on(me, "ip", "-n", "x", "addr", "add", address, "dev", "vx")
        on(me, "ip", "-n", "x", "link", "set", "vx", "up")
        on(me, "ip", "-n", "x", "link", "set", "lo", "up")


def iperf(m1: machines.Machine, m2: machines.Machine, src_ns: str, dst_ns: str, address: str, seconds: int) -> float:
    server = subprocess.Popen(machines.on_command(m2, ["ip", "netns", "exec", dst_ns, "iperf3", "-s", "-1", "-B",
                                                       address]), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(50):  # until the server listens
            probe = subprocess.run(machines.on_command(m1, ["ip", "netns", "exec", src_ns, "iperf3", "-c", address,
                                                            "-t", str(seconds), "-J"]), capture_output=True, text=True,
                                   timeout=seconds + 30)
            report = json.loads(probe.stdout or "{}")
            if "error" not in report and "end" in report:
                return float(report["end"]["sum_received"]["bits_per_second"])
            time.sleep(0.1)
        raise SystemExit(f"iperf3 failed: {probe.stdout or probe.stderr}")
    finally:
        try:
            server.wait(5)
        except subprocess.TimeoutExpired:
            server.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--time", type=int, default=3, help="seconds per iperf3 run")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run inside `vethlab sandbox -- python bench/vxlan.py`")
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as fh:
        fh.write(LAB)
    made = machines.start(["m1", "m2"])
    m1, m2 = made
    os.environ[machines.ENV] = machines.export(made)  # `link --all` reaches m2 as in `sandbox --machines`
    try:
        for m in made:
            on(m, sys.executable, "-m", "vethlab", "up", fh.name)
        bare(m1, m2)
        runs: dict[str, list[float]] = {"vethlab": [], "carrier": [], "bare": []}
        for rep in range(args.reps):
            for name, ns, dst_ns, address in (("vethlab", "a", "b", "10.0.0.2"), ("bare", "x", "x", "10.1.0.2"),
                                              ("carrier", "a", "b", "10.0.1.2")):
                bps = iperf(m1, m2, ns, dst_ns, address, args.time)
                runs[name].append(bps)
                print(f"rep {rep + 1} {name:8} {bps / 1e9:6.2f} Gbit/s", flush=True)
        med = {name: statistics.median(values) for name, values in runs.items()}
        print(f"\n| across machines ({args.reps} x {args.time} s, iperf3, median) | Gbit/s |\n|---|---|")
        for name in ("bare", "vethlab", "carrier"):
            print(f"| {name} | {med[name] / 1e9:.2f} (min {min(runs[name]) / 1e9:.2f}, max "
                  f"{max(runs[name]) / 1e9:.2f}) |")
        ratios = {name: med[name] / med["bare"] for name in ("vethlab", "carrier")}
        for name, ratio in ratios.items():
            print(f"| ratio {name} / bare | {ratio:.2f} ({'PASS' if ratio >= 0.8 else 'FAIL'} >= 0.8) |")
        times = []
        for _ in range(args.reps):
            for action in ("down", "up"):
                start = time.monotonic()
                on(m1, sys.executable, "-m", "vethlab", "link", action, "a:e1", "--all")
                if action == "down":
                    times.append(time.monotonic() - start)
        print(f"\n`link down a:e1 --all` on m1 -> b:e1 NO-CARRIER on m2: median {statistics.median(times) * 1000:.0f} ms"
              f" (min {min(times) * 1000:.0f}, max {max(times) * 1000:.0f}; includes starting vethlab on each machine)")
        return 0 if min(ratios.values()) >= 0.8 else 1
    finally:
        machines.stop(made)
        os.unlink(fh.name)


if __name__ == "__main__":
    sys.exit(main())
