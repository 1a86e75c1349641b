"""ADD and DEL latency of `vethlab-cni` against the reference Go `bridge` plugin.

    .venv/bin/python bench/cni.py [--rounds 40]

Runs inside a `vethlab sandbox` (it re-executes itself there).  Both plugins get
the same network config (isGateway, ipMasq, host-local IPAM with a default route),
each its own bridge and subnet, and are run exactly as a runtime runs them: a new
process per command, CNI_* in the environment, the config on stdin.  Rounds
alternate the plugins, so both see the same machine load; the table gives
medians in milliseconds of wall time (what the runtime waits) and of CPU time
(the plugin and every process it ran: less sensitive to a loaded machine), and
each one's ratio to the reference (< 1: cheaper).

Rows:
  reference            /usr/lib/cni/bridge (Debian containernetworking-plugins), host-local delegated
  vethlab-cni          the console script, host-local delegated to /usr/lib/cni/host-local as the reference does
  vethlab-cni own IPAM the same with VETHLAB_CNI_IPAM=own: the host-local-compatible allocator in-process
  launcher             what `vethlab-cni install DIR` writes for runtimes: python -I -S, explicit sys.path
  launcher own IPAM    the same with VETHLAB_CNI_IPAM=own
  python -IS -c pass   the floor: an interpreter that starts and exits
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
VENV = os.path.join(ROOT, ".venv", "bin")
REFERENCE = "/usr/lib/cni/bridge"
CNI_PATH = "/usr/lib/cni"


def config(name: str, bridge: str, subnet: str, data_dir: str, plugin_type: str) -> bytes:
    return json.dumps({"cniVersion": "1.0.0", "name": name, "type": plugin_type, "bridge": bridge,
                       "isGateway": True, "ipMasq": True,
                       "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]],
                                "routes": [{"dst": "0.0.0.0/0"}], "dataDir": data_dir}}).encode()


def call(argv: list[str], command: str, conf: bytes, cid: str, netns: str, extra: dict[str, str]) -> tuple[float, float]:
    """(wall ms, CPU ms of the plugin and every process it waited for)."""
    env = dict(os.environ, CNI_COMMAND=command, CNI_CONTAINERID=cid, CNI_NETNS=netns, CNI_IFNAME="eth0",
               CNI_PATH=CNI_PATH, **extra)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, input=conf, env=env, capture_output=True, check=False)
    elapsed = (time.perf_counter() - start) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000
    if done.returncode != 0:
        raise SystemExit(f"{argv[0]} {command} failed: {done.stdout.decode()} {done.stderr.decode()}")
    return elapsed, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    if not os.path.exists(REFERENCE):
        print(f"{REFERENCE} is missing: apt-get install containernetworking-plugins", file=sys.stderr)
        return 2
    if not os.environ.get("VETHLAB_SANDBOX"):
        return subprocess.call([os.path.join(VENV, "vethlab"), "sandbox", "--", sys.executable, *sys.argv])
    work = tempfile.mkdtemp(prefix="vethlab-cni-bench-", dir="/run")
    launcher = subprocess.run([os.path.join(VENV, "vethlab-cni"), "install", os.path.join(work, "bin")],
                              capture_output=True, text=True, check=True).stdout.strip()
    os.environ["VETHLAB_STATE_DIR"] = os.path.join(work, "state")
    plugins = {
        "reference bridge (Go)": ([REFERENCE], config("ref", "refbr0", "10.201.0.0/16", work, "bridge"), {}),
        "vethlab-cni": ([os.path.join(VENV, "vethlab-cni")],
                        config("vl", "vlbr0", "10.202.0.0/16", work, "vethlab"), {}),
        "vethlab-cni own IPAM": ([os.path.join(VENV, "vethlab-cni")],
                                 config("vlown", "vlbr1", "10.203.0.0/16", work, "vethlab"),
                                 {"VETHLAB_CNI_IPAM": "own"}),
        "launcher": ([launcher], config("vll", "vlbr2", "10.204.0.0/16", work, "vethlab"), {}),
        "launcher own IPAM": ([launcher], config("vllown", "vlbr3", "10.205.0.0/16", work, "vethlab"),
                              {"VETHLAB_CNI_IPAM": "own"}),
    }
    times: dict[str, dict[str, list[tuple[float, float]]]] = {name: {"ADD": [], "DEL": []} for name in plugins}
    floor: list[float] = []
    for argv, conf, extra in plugins.values():  # warm-up: bridges, NAT tables, page cache
        subprocess.run(["ip", "netns", "add", "warm"], check=True)
        call(argv, "ADD", conf, "warm", "/run/netns/warm", extra)
        call(argv, "DEL", conf, "warm", "/run/netns/warm", extra)
        subprocess.run(["ip", "netns", "del", "warm"], check=True)
    for i in range(args.rounds):
        for name, (argv, conf, extra) in plugins.items():
            ns = f"b{i}"
            subprocess.run(["ip", "netns", "add", ns], check=True)
            times[name]["ADD"].append(call(argv, "ADD", conf, f"c{i}", f"/run/netns/{ns}", extra))
            times[name]["DEL"].append(call(argv, "DEL", conf, f"c{i}", f"/run/netns/{ns}", extra))
            subprocess.run(["ip", "netns", "del", ns], check=True)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-IS", "-c", "pass"], check=True)
        floor.append((time.perf_counter() - start) * 1000)
    def med(name: str, cmd: str, which: int) -> float:
        return statistics.median(sample[which] for sample in times[name][cmd])

    ref = "reference bridge (Go)"
    print(f"{args.rounds} rounds, medians in ms; ratio = plugin / reference (< 1: cheaper); "
          f"load average {os.getloadavg()[0]:.1f}\n")
    print("| plugin                 | ADD wall | ratio | DEL wall | ratio | ADD CPU | ratio | DEL CPU | ratio |")
    print("|------------------------|---------:|------:|---------:|------:|--------:|------:|--------:|------:|")
    for name in plugins:
        cells = []
        for which in (0, 1):
            for cmd in ("ADD", "DEL"):
                value = med(name, cmd, which)
                cells.append(f"{value:8.1f} | {value / med(ref, cmd, which):5.2f}")
        print(f"| {name:<22} | " + " | ".join(cells) + " |")
    print(f"| {'python -IS -c pass':<22} | {statistics.median(floor):8.1f} |       |          |       |"
          "         |       |         |       |")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
