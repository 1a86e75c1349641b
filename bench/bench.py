"""Build and tear down the same labs with vethlab and with its peers, side by side.

    ./run bench [--quick] [--sizes 10,100] [--reps 5] [--topologies chain] [--peers vethlab,floor,ipbatch]

Everything runs inside one `vethlab sandbox` (nothing reaches the machine).  Each
repetition runs every peer once, interleaved, so drift on this shared machine
hits all of them alike; results are min/median/max and ratios to the floor of the
same run.  Every side is timed as whole processes (interpreter start-up and
imports included): "up" = build + the first successful ping across a link,
"down" = teardown until nothing of the lab is left in the host (namespaces gone,
the bridge's ports gone, the bridge gone).

The kernel destroys namespaces asynchronously, after `down` has returned: a phase
that starts right after a teardown shares the machine with that work.  Every
phase therefore starts after a pause (--settle, 1 s).

Output: a table on the terminal, bench/results/latest.json.
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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import topologies  # noqa: E402
from floor import _present as floor_present  # noqa: E402

PY = sys.executable
VETHLAB = [PY, "-m", "vethlab"]
SETTLE = 1.0  # seconds between phases (--settle)


def settle() -> None:
    """Let the kernel finish destroying the last teardown's namespaces."""
    time.sleep(SETTLE)


QUIET_BUSY = 0.15  # share of all CPUs busy below which the machine counts as quiet
QUIET_LIMIT = 30.0  # seconds: wait no longer (a machine others use may never be quiet)


def _cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    with open("/proc/stat") as fh:
        values = [int(v) for v in fh.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def wait_quiet() -> float:
    """Wait until the machine is quiet -- two consecutive quarter-seconds with less
    than QUIET_BUSY of the CPUs busy -- and return how long that took.  A 1000-member
    star keeps the kernel busy for several seconds after `up` with its members' own
    IPv6 start-up traffic (each fresh interface's MLD reports and router
    solicitations, flooded by the bridge to every other port): a command timed then
    measures that storm as much as itself.  bench/README.md, "the one-link edit"."""
    start = time.perf_counter()
    calm = 0
    busy0, total0 = _cpu_times()
    while calm < 2 and time.perf_counter() - start < QUIET_LIMIT:
        time.sleep(0.25)
        busy1, total1 = _cpu_times()
        share = (busy1 - busy0) / max(1, total1 - total0)
        calm = calm + 1 if share < QUIET_BUSY else 0
        busy0, total0 = busy1, total1
    return time.perf_counter() - start


@dataclass
class Sample:
    up: float
    down: float
    rss_kb: int = 0
    plan_change: float = 0.0  # `vethlab plan` of the lab with one link edited
    up_change: float = 0.0  # `vethlab up` applying that one-link edit
    up_again: float = 0.0  # `vethlab up` of the same file once more: no changes, the file from the cache
    up_change_quiet: float = 0.0  # the edit undone (one link again) once the machine is quiet
    quiet_wait: float = 0.0  # how long the machine took to become quiet after that


@dataclass
class Case:
    topology: str
    n: int
    files: dict[str, str] = field(default_factory=dict)
    probe: tuple[str, str] = ("n0", "10.0.0.2")  # node, address: one ping across a link


def timed(argv: list[str], stdin: str | None = None) -> tuple[float, int]:
    """Run a process, feeding it stdin; (wall seconds, 0).  Raises on failure."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, err = proc.communicate(stdin)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])} failed ({proc.returncode}): {err.strip()[-500:]}")
    return elapsed, 0


def timed_rss(argv: list[str]) -> tuple[float, int]:
    """Run a process; (wall seconds, its own peak RSS in KB from wait4)."""
    start = time.perf_counter()
    pid = os.posix_spawnp(argv[0], argv, os.environ,
                          file_actions=[(os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0)])
    _, status, usage = os.wait4(pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(argv[:4])} failed")
    return elapsed, int(usage.ru_maxrss)


def ping_until_ok(node: str, address: str, timeout: float = 10.0) -> float:
    start = time.perf_counter()
    while True:
        r = subprocess.run(["ip", "netns", "exec", node, "ping", "-c", "1", "-W", "1", "-q", address],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if r.returncode == 0:
            return time.perf_counter() - start
        if time.perf_counter() - start > timeout:
            raise RuntimeError(f"ping {node} -> {address} never succeeded")
        time.sleep(0.01)


def assert_empty() -> None:
    """Nothing of the last run may be left: no namespace, no interface but lo (a
    namespace's veths die asynchronously; give the kernel a moment)."""
    left = os.listdir("/run/netns")
    if left:
        raise RuntimeError(f"{len(left)} namespaces left after teardown, e.g. {left[:3]}")
    for _ in range(200):
        links = json.loads(subprocess.run(["ip", "-j", "link"], capture_output=True, text=True).stdout)
        if [link["ifname"] for link in links] == ["lo"]:
            return
        time.sleep(0.05)
    raise RuntimeError(f"interfaces left after teardown: {[link['ifname'] for link in links][:5]}")


# -- peers -------------------------------------------------------------------------
def run_vethlab(case: Case) -> Sample:
    # Every file is new to vethlab's topology cache (state/speccache.py keeps validated
    # files by content): a comment unique to this run makes each one a miss, so `up`,
    # `plan` and the edit pay for YAML and validation as a first read does.  Only
    # `up_again` reads a file it has read before.
    first = unique_copy(case.files["yaml"])
    edited_plan, edited_up = unique_copy(case.files["edited"]), unique_copy(case.files["edited"])
    settle()
    up, rss = timed_rss([*VETHLAB, "up", first])
    up += ping_until_ok(*case.probe)
    settle()
    plan_change, _ = timed_rss([*VETHLAB, "plan", edited_plan])
    up_change, _ = timed_rss([*VETHLAB, "up", edited_up])
    up_again, _ = timed_rss([*VETHLAB, "up", edited_up])
    # the same one-link edit undone (back to the first file, as new bytes), timed on a quiet machine
    undo = unique_copy(case.files["yaml"])
    quiet_wait = wait_quiet()
    up_change_quiet, _ = timed_rss([*VETHLAB, "up", undo])
    os.unlink(undo)
    settle()
    down, _ = timed_rss([*VETHLAB, "down", first])
    assert_empty()
    for path in (first, edited_plan, edited_up):
        os.unlink(path)
    return Sample(up, down, rss, plan_change, up_change, up_again, up_change_quiet, quiet_wait)


def unique_copy(path: str) -> str:
    """A copy of a topology file whose bytes vethlab has never seen (a unique comment)."""
    global _COPIES
    _COPIES += 1
    copy = f"{path[:-len('.yaml')]}-{_COPIES}.yaml"
    with open(path) as src, open(copy, "w") as dst:
        dst.write(src.read() + f"# bench copy {_COPIES} {time.time_ns()}\n")
    return copy


_COPIES = 0


def run_floor(case: Case) -> Sample:
    settle()
    up, _ = timed([PY, os.path.join(HERE, "floor.py"), "up", case.files["json"]])
    up += ping_until_ok(*case.probe)
    settle()
    down, _ = timed([PY, os.path.join(HERE, "floor.py"), "down", case.files["json"]])
    assert_empty()
    return Sample(up, down)


def run_ipbatch(case: Case) -> Sample:
    """iproute2 as a careful shell user would: one `ip -batch` for namespaces, one for
    veths, then one `ip -n NS -batch` per namespace for its links and addresses."""
    spec = json.load(open(case.files["json"]))
    settle()
    start = time.perf_counter()
    timed(["ip", "-batch", "-"], "".join(f"netns add {n}\n" for n in spec["nodes"]))
    timed(["ip", "-batch", "-"], "".join(f"link add {aif} netns {a} type veth peer name {bif} netns {b}\n"
                                         for a, aif, _, b, bif, _ in spec["links"]))
    per: dict[str, list[str]] = {n: ["link set lo up"] for n in spec["nodes"]}
    if spec.get("bridge"):
        name, address = spec["bridge"]
        lines = [f"link add {name} type bridge", f"link set dev {name} up", f"addr add {address} dev {name}"]
        for node, ifname, addr, port in spec["ports"]:
            lines += [f"link add {port} type veth peer name {ifname} netns {node}",
                      f"link set dev {port} master {name} up"]
            per[node] += [f"link set dev {ifname} up", f"addr add {addr} dev {ifname}",
                          f"route add default via {spec['gateway']}"]
        timed(["ip", "-batch", "-"], "\n".join(lines) + "\n")
    for a, aif, aaddr, b, bif, baddr in spec["links"]:
        for node, ifname, addr in ((a, aif, aaddr), (b, bif, baddr)):
            per[node].append(f"link set dev {ifname} up")
            if addr:
                per[node].append(f"addr add {addr} dev {ifname}")
    for node, lines in per.items():
        timed(["ip", "-n", node, "-batch", "-"], "\n".join(lines) + "\n")
    up = time.perf_counter() - start + ping_until_ok(*case.probe)
    settle()
    # down as a careful shell user would: the bridge and the namespaces in one batch (the
    # kernel takes the bridge's ports along with the namespaces), then until the ports are gone
    start = time.perf_counter()
    timed(["ip", "-batch", "-"], (f"link del {spec['bridge'][0]}\n" if spec.get("bridge") else "")
          + "".join(f"netns del {n}\n" for n in spec["nodes"]))
    ports = {port for *_, port in spec.get("ports", [])}
    while ports and floor_present(ports):
        time.sleep(0.01)
    down = time.perf_counter() - start
    assert_empty()
    return Sample(up, down)


def run_mininet(case: Case) -> Sample | None:
    """Mininet builds the star (its native shape); its chain would not be the same lab."""
    if case.topology != "star":
        return None
    settle()
    start = time.time()
    r = subprocess.run(["/usr/bin/python3", os.path.join(HERE, "mininet_peer.py"), str(case.n), str(SETTLE)],
                       capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        raise RuntimeError(f"mininet failed: {r.stderr.strip()[-500:]}")
    times = json.loads(r.stdout.strip().splitlines()[-1])
    return Sample(times["up"] - start, times["down"] - times["stop"])


PEERS: dict[str, Callable[[Case], Sample | None]] = {"vethlab": run_vethlab, "floor": run_floor,
                                                      "ipbatch": run_ipbatch, "mininet": run_mininet}
if not os.path.exists("/usr/lib/python3/dist-packages/mininet"):
    del PEERS["mininet"]  # `./run bench` installs it; a bare `python bench.py` may not have it


# -- datapath and start-up -----------------------------------------------------------------
DATAPATH_VETH = """name: dpveth
nodes: {a: {}, b: {}}
links: [{endpoints: [a:e0, b:e0], addresses: [10.77.0.1/24, 10.77.0.2/24]}]
"""
DATAPATH_NAT = """name: dpnat
prefix: true
nodes: {a: {}, b: {}}
networks: {lan: {nat: true, subnet: 10.78.0.0/24, members: {a: {}, b: {}}}}
"""


def datapath(workdir: str, reps: int, seconds: float) -> dict[str, Any]:
    """iperf3 between two members of a NAT bridge network vs over a bare veth pair."""
    files = {}
    for name, text in (("veth", DATAPATH_VETH), ("nat", DATAPATH_NAT)):
        files[name] = os.path.join(workdir, f"dp-{name}.yaml")
        with open(files[name], "w") as fh:
            fh.write(text)
        subprocess.run([*VETHLAB, "up", files[name]], check=True, stdout=subprocess.DEVNULL)
    rates: dict[str, list[float]] = {"veth": [], "nat": []}
    for _ in range(reps):
        for name, lab in (("veth", "dpveth"), ("nat", "dpnat")):
            out = subprocess.run([*VETHLAB, "perf", "--lab", lab, "a", "b", "--time", str(seconds), "--json"],
                                 capture_output=True, text=True, check=True).stdout
            rates[name].append(json.loads(out)["bits_per_second"])
    for path in files.values():
        subprocess.run([*VETHLAB, "down", path], check=True, stdout=subprocess.DEVNULL)
    veth, nat = statistics.median(rates["veth"]), statistics.median(rates["nat"])
    return {"veth_bps": veth, "nat_bridge_bps": nat, "ratio": nat / veth, "samples": rates}


def startup(workdir: str, runs: int = 20) -> dict[str, Any]:
    """`vethlab exec NODE -- true` and `vethlab down --lab NOLAB` (a whole command
    that finds nothing: start-up, imports, lock, state, one look at the kernel)
    against `python -c pass`, interleaved."""
    path = os.path.join(workdir, "startup.yaml")
    with open(path, "w") as fh:
        fh.write("name: startup\nnodes: {n0: {}}\n")
    subprocess.run([*VETHLAB, "up", path], check=True, stdout=subprocess.DEVNULL)
    exec_times, down_times, bare_times = [], [], []
    for _ in range(runs):
        exec_times.append(timed([*VETHLAB, "exec", "n0", "--", "true"])[0])
        down_times.append(timed([*VETHLAB, "down", "--lab", "nolab"])[0])
        bare_times.append(timed([PY, "-c", "pass"])[0])
    subprocess.run([*VETHLAB, "down", path], check=True, stdout=subprocess.DEVNULL)
    e, d, b = statistics.median(exec_times), statistics.median(down_times), statistics.median(bare_times)
    return {"exec_s": e, "down_nolab_s": d, "python_pass_s": b, "extra_ms": (e - b) * 1000,
            "down_extra_ms": (d - b) * 1000}


def make_case(topology: str, n: int, workdir: str) -> Case:
    case = Case(topology, n)
    text, spec = topologies.build(topology, n)
    case.files["yaml"] = os.path.join(workdir, f"{topology}{n}.yaml")
    case.files["json"] = os.path.join(workdir, f"{topology}{n}.json")
    with open(case.files["yaml"], "w") as fh:
        fh.write(text)
    case.files["edited"] = os.path.join(workdir, f"{topology}{n}-edited.yaml")
    with open(case.files["edited"], "w") as fh:
        fh.write(topologies.edit_one_link(text))
    with open(case.files["json"], "w") as fh:
        json.dump(spec, fh)
    case.probe = topologies.probe(topology, spec)
    return case


def _vethlab_init() -> str:
    import vethlab

    return str(vethlab.__file__)


def summarize(samples: list[float]) -> dict[str, float]:
    return {"min": min(samples), "median": statistics.median(samples), "max": max(samples)}


def main() -> int:
    global SETTLE
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="N <= 200, one repetition")
    parser.add_argument("--sizes", default="10,100,200,1000")
    parser.add_argument("--reps", type=int, default=5, help="repetitions (medians are reported; default 5)")
    parser.add_argument("--settle", type=float, default=SETTLE, metavar="SECONDS",
                        help="pause before each phase, for the kernel to finish the last teardown (default 1)")
    parser.add_argument("--topologies", default=",".join(topologies.KINDS))
    parser.add_argument("--peers", default=",".join(PEERS))
    parser.add_argument("--out", default=os.path.join(HERE, "results", "latest.json"))
    parser.add_argument("--no-extras", action="store_true", help="skip the datapath and start-up measurements")
    args = parser.parse_args()
    if not os.environ.get("VETHLAB_SANDBOX"):
        return subprocess.call([*VETHLAB, "sandbox", "--", PY, *sys.argv])
    SETTLE = args.settle
    # what an installed package has (pip compiles it); PYTHONDONTWRITEBYTECODE would
    # otherwise make every vethlab process compile its modules again (~50 ms)
    subprocess.run([PY, "-m", "compileall", "-q", os.path.dirname(os.path.dirname(_vethlab_init()))],
                   stdout=subprocess.DEVNULL, check=False)
    sizes = [int(s) for s in args.sizes.split(",")]
    reps = args.reps
    if args.quick:
        sizes, reps = [s for s in sizes if s <= 200], 1
    peers = [p for p in args.peers.split(",") if p]
    workdir = tempfile.mkdtemp(prefix="vethlab-bench-", dir="/run")
    results = []
    for topology in args.topologies.split(","):
        for n in sizes:
            case = make_case(topology, n, workdir)
            samples: dict[str, list[Sample]] = {p: [] for p in peers}
            for _ in range(reps):
                for peer in peers:
                    sample = PEERS[peer](case)
                    if sample is not None:
                        samples[peer].append(sample)
            row = {"topology": topology, "n": n, "reps": reps, "peers": {}}
            for peer, got in samples.items():
                if not got:
                    continue
                row["peers"][peer] = {"up": summarize([s.up for s in got]), "down": summarize([s.down for s in got]),
                                      "rss_mb": max(s.rss_kb for s in got) / 1024}
                if peer == "vethlab":
                    row["peers"][peer]["plan_change"] = summarize([s.plan_change for s in got])
                    row["peers"][peer]["up_change"] = summarize([s.up_change for s in got])
                    row["peers"][peer]["up_again"] = summarize([s.up_again for s in got])
                    row["peers"][peer]["up_change_quiet"] = summarize([s.up_change_quiet for s in got])
                    row["peers"][peer]["quiet_wait"] = summarize([s.quiet_wait for s in got])
            # the floor of each operation is the fastest correct way measured in this run:
            # bench/floor.py, or iproute2's batch where it is faster (a `down` of a small
            # star: two C processes start in ~2 ms each, a Python process in ~25 ms)
            correct = [row["peers"][p] for p in ("floor", "ipbatch") if p in row["peers"]]
            if "floor" in row["peers"]:
                for phase in ("up", "down"):
                    best = min(correct, key=lambda d: d[phase]["median"])
                    row[f"{phase}_floor"] = next(p for p in ("floor", "ipbatch") if row["peers"].get(p) is best)
                    for data in row["peers"].values():
                        data[f"{phase}_ratio"] = data[phase]["median"] / best[phase]["median"]
            results.append(row)
            print_row(row)
    extra: dict[str, Any] = {}
    if not args.no_extras:
        extra["datapath"] = datapath(workdir, 1 if args.quick else 3, 2 if args.quick else 3)
        print(f"\ndatapath: NAT bridge {extra['datapath']['nat_bridge_bps'] / 1e9:.2f} Gbit/s vs bare veth "
              f"{extra['datapath']['veth_bps'] / 1e9:.2f} Gbit/s = {extra['datapath']['ratio']:.2f}x")
        extra["startup"] = startup(workdir)
        print(f"start-up: vethlab exec NODE -- true {extra['startup']['exec_s'] * 1000:.0f} ms, python -c pass "
              f"{extra['startup']['python_pass_s'] * 1000:.0f} ms: +{extra['startup']['extra_ms']:.0f} ms; "
              f"vethlab down --lab NOLAB {extra['startup']['down_nolab_s'] * 1000:.0f} ms: "
              f"+{extra['startup']['down_extra_ms']:.0f} ms")
    verdicts = targets(results, extra)
    print("\ntargets:")
    for line in verdicts:
        print(f"  {line}")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump({"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "results": results, **extra, "targets": verdicts},
                  fh, indent=1)
    print(f"\nwrote {args.out}")
    plot(results, os.path.join(HERE, "build-time.png"))
    return 0


def targets(results: list[dict[str, Any]], extra: dict[str, Any]) -> list[str]:
    """Issue 10's targets (issue 6's, with the floor made the fastest correct way),
    each PASS, FAIL or n/a (not measured in this run)."""
    out = []

    def row(topology: str, n: int) -> dict[str, Any] | None:
        return next((r for r in results if r["topology"] == topology and r["n"] == n), None)

    def verdict(ok: bool, text: str) -> str:
        return f"{'PASS' if ok else 'FAIL'} {text}"

    for topology in ("star", "chain"):
        for n in (200, 1000):
            r = row(topology, n)
            if not r or "floor" not in r["peers"]:
                out.append(f"n/a  {topology} N={n}: not measured")
                continue
            v = r["peers"]["vethlab"]
            out.append(verdict(v["up_ratio"] <= 1.3, f"{topology} N={n} up {v['up_ratio']:.2f}x floor "
                                                     f"[{r['up_floor']}] (<= 1.3x)"))
            out.append(verdict(v["down_ratio"] <= 1.5, f"{topology} N={n} down {v['down_ratio']:.2f}x floor "
                                                       f"[{r['down_floor']}] (<= 1.5x)"))
        small, big = row(topology, 100) or row(topology, 200), row(topology, 1000)
        if small and big:
            for phase in ("up", "down"):
                per_small = small["peers"]["vethlab"][phase]["median"] / small["n"]
                per_big = big["peers"]["vethlab"][phase]["median"] / 1000
                out.append(verdict(per_big <= 1.3 * per_small, f"{topology} linear {phase}: per node at 1000 = "
                                   f"{per_big / per_small:.2f}x per node at {small['n']} (<= 1.3x)"))
        if big:
            v = big["peers"]["vethlab"]
            share = v["up_change"]["median"] / v["up"]["median"]
            out.append(verdict(share <= 0.10, f"{topology} N=1000 one-link change {share:.0%} of a full build, "
                               f"{SETTLE:g} s after it (<= 10%)"))
            if "up_change_quiet" in v:
                quiet = v["up_change_quiet"]["median"] / v["up"]["median"]
                out.append(verdict(quiet <= 0.10, f"{topology} N=1000 one-link change {quiet:.0%} of a full build, "
                                   f"machine quiet (<= 10%)"))
            out.append(verdict(v["rss_mb"] <= 150, f"{topology} N=1000 peak RSS {v['rss_mb']:.0f} MB (<= 150 MB)"))
    r = row("star", 200)
    if r and "mininet" in r["peers"]:
        speed = r["peers"]["mininet"]["up"]["median"] / r["peers"]["vethlab"]["up"]["median"]
        out.append(verdict(speed >= 5, f"star N=200 {speed:.1f}x faster than Mininet (>= 5x)"))
    if "datapath" in extra:
        out.append(verdict(extra["datapath"]["ratio"] >= 0.9,
                           f"datapath NAT bridge {extra['datapath']['ratio']:.2f}x bare veth (>= 0.9x)"))
    if "startup" in extra:
        out.append(verdict(extra["startup"]["extra_ms"] <= 50,
                           f"exec start-up +{extra['startup']['extra_ms']:.0f} ms over python -c pass (<= 50 ms)"))
    return out


COLORS = {"vethlab": "tab:red", "floor": "tab:blue", "ipbatch": "tab:orange", "mininet": "tab:green"}


def plot(results: list[dict[str, Any]], path: str) -> None:
    """Up and down against N, per topology and peer (PNG), when matplotlib is there."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(no matplotlib: no plot)")
        return
    topologies_seen = sorted({r["topology"] for r in results})
    fig, axes = plt.subplots(2, len(topologies_seen), figsize=(6 * len(topologies_seen), 9), squeeze=False)
    for column, topology in enumerate(topologies_seen):
        rows = sorted((r for r in results if r["topology"] == topology), key=lambda r: r["n"])
        peers = sorted({p for r in rows for p in r["peers"]})
        for line, (phase, label) in enumerate((("up", "build until first ping (s)"),
                                               ("down", "teardown until nothing is left (s)"))):
            ax = axes[line][column]
            for peer in peers:
                points = [(r["n"], r["peers"][peer][phase]["median"]) for r in rows if peer in r["peers"]]
                ax.plot([n for n, _ in points], [t for _, t in points], marker="o", label=peer,
                        color=COLORS.get(peer))
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("nodes (N)")
            ax.set_ylabel(label)
            ax.set_title(f"{topology}: {phase}, median of {rows[0]['reps'] if rows else 0} runs")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def print_row(row: dict) -> None:
    print(f"\n{row['topology']} N={row['n']} ({row['reps']} reps)")
    print(f"  {'peer':<10}{'up median':>11}{'(min-max)':>18}{'x floor':>9}{'down median':>13}{'(min-max)':>18}"
          f"{'x floor':>9}{'RSS MB':>8}")
    for peer, d in row["peers"].items():
        up, down = d["up"], d["down"]
        spread = f"({up['min']:.3f}-{up['max']:.3f})"
        down_spread = f"({down['min']:.3f}-{down['max']:.3f})"
        print(f"  {peer:<10}{up['median']:>10.3f}s{spread:>18}{d.get('up_ratio', float('nan')):>9.2f}"
              f"{down['median']:>12.3f}s{down_spread:>18}{d.get('down_ratio', float('nan')):>9.2f}{d['rss_mb']:>8.1f}")
    if "up_floor" in row:
        print(f"  (x floor: the fastest correct way in this run -- up: {row['up_floor']}, down: {row['down_floor']})")
    if "vethlab" in row["peers"]:
        v = row["peers"]["vethlab"]
        print(f"  vethlab one-link change: plan {v['plan_change']['median']:.3f}s, up {v['up_change']['median']:.3f}s "
              f"({100 * v['up_change']['median'] / v['up']['median']:.0f}% of a full build); up again (no changes, "
              f"file cached) {v['up_again']['median']:.3f}s")
        if "up_change_quiet" in v:
            print(f"  vethlab one-link change on a quiet machine: up {v['up_change_quiet']['median']:.3f}s "
                  f"({100 * v['up_change_quiet']['median'] / v['up']['median']:.0f}% of a full build; "
                  f"quiet {v['quiet_wait']['median']:.1f}s after the changes above)")
    sys.stdout.flush()


if __name__ == "__main__":
    raise SystemExit(main())
