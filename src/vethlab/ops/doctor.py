"""`vethlab doctor`: a preflight of this host, a plain verdict and a fix per line.

Kernel features are probed for real, in a throw-away network namespace made by a
child process (`unshare --net`, or `unshare --user --map-root-user --net` when not
root): the only sure way to know whether this kernel has macvlan or netem is to
ask it for one, and a namespace of its own means nothing on the host is touched
even if the probe is killed half-way.  Everything else is read-only: /proc/sys,
the host's nftables ruleset (`nft -j list ruleset`), /run/netns, /proc/*/comm.

With a FILE, the checks that FILE needs become requirements (exit 1 when one is
missing) and the file is planned against this host (`vethlab plan`), which finds
name clashes with foreign objects and subnet overlaps before anything is built.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from ..deferred import dataclass
from ..errors import VethlabError
from ..kernel import open_kernel
from ..kernel.api import Firewall, Kernel, Namespaces

OK, WARN, FAIL, INFO = "ok", "warn", "FAIL", "info"

#: what each probe asks the kernel for, as `ip`/`tc`/`nft` argv run inside the scratch namespace
PROBES: dict[str, list[list[str]]] = {
    "veth": [["ip", "link", "add", "vlp0", "type", "veth", "peer", "name", "vlp1"]],
    "bridge": [["ip", "link", "add", "vlpbr", "type", "bridge"]],
    "macvlan": [["ip", "link", "add", "vlpmv", "link", "vlp0", "type", "macvlan", "mode", "bridge"]],
    "vxlan": [["ip", "link", "add", "vlpvx", "type", "vxlan", "id", "42", "dstport", "4789"]],
    "tbf": [["ip", "link", "set", "vlp0", "up"],
            ["tc", "qdisc", "add", "dev", "vlp0", "root", "tbf", "rate", "1mbit", "burst", "32kbit",
             "latency", "400ms"]],
    "netem": [["tc", "qdisc", "add", "dev", "vlp1", "root", "netem", "delay", "1ms"]],
    "nftables": [["nft", "add", "table", "inet", "vethlab_probe"]],
}

FIXES = {
    "veth": "the kernel needs CONFIG_VETH; vethlab cannot work without veth pairs",
    "bridge": "the kernel needs CONFIG_BRIDGE (modprobe bridge): `networks:` cannot be built",
    "macvlan": "the kernel needs CONFIG_MACVLAN (modprobe macvlan): `driver: macvlan` cannot be built",
    "vxlan": "the kernel needs CONFIG_VXLAN (modprobe vxlan): links across machines cannot be built",
    "tbf": "modprobe sch_tbf: `rate:` cannot be applied",
    "netem": "modprobe sch_netem (if the module exists): `delay:`, `jitter:` and `loss:` cannot be applied; "
             "`rate:` (tbf) still works",
    "nftables": "apt-get install nftables (and a kernel with nf_tables): `nat`, `publish` and isolation need it",
}


@dataclass
class Check:
    name: str
    status: str  # ok | warn | FAIL | info
    detail: str
    fix: str = ""
    needed: bool = False  # the FILE given needs this


# -- kernel features -----------------------------------------------------------------------
def probe_here() -> dict[str, bool]:
    """Run every probe in the current (throw-away) network namespace.  Called in the
    child made by `probe_features`; never in the host's namespace."""
    result: dict[str, bool] = {}
    for feature, steps in PROBES.items():
        ok = True
        for argv in steps:
            tool = shutil.which(argv[0]) or f"/usr/sbin/{argv[0]}"
            try:
                done = subprocess.run([tool, *argv[1:]], capture_output=True, timeout=10, check=False)
            except (OSError, subprocess.TimeoutExpired):
                ok = False
                break
            if done.returncode != 0:
                ok = False
                break
        result[feature] = ok
    return result


def probe_features() -> dict[str, bool] | str:
    """Feature -> present, probed in a scratch namespace; or why it could not be probed."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return "the `unshare` command (util-linux) is missing"
    argv = [unshare, "--net"]
    if os.geteuid() != 0:
        argv += ["--user", "--map-root-user"]
    argv += ["--", sys.executable, "-c", "import json, vethlab.ops.doctor as d; print(json.dumps(d.probe_here()))"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except subprocess.TimeoutExpired:
        return "the probe did not finish within 60 s"
    if done.returncode != 0:
        return (done.stderr.strip().splitlines() or ["unknown error"])[-1]
    data = json.loads(done.stdout)
    return {str(k): bool(v) for k, v in data.items()}


# -- host settings ------------------------------------------------------------------------
def _sysctl(key: str) -> str | None:
    try:
        with open("/proc/sys/" + key.replace(".", "/"), encoding="ascii") as fh:
            return fh.read().strip()
    except OSError:
        return None


def host_checks(kernel: Kernel, bridges: list[str] | None = None) -> list[Check]:
    checks = []
    brnf = _sysctl("net.bridge.bridge-nf-call-iptables")
    if brnf == "1":
        checks.append(Check("bridge-nf-call-iptables", INFO, "1: traffic between members of a bridge passes the "
                            "IP firewall's forward hook of the namespace holding the bridge",
                            "nothing, unless a foreign forward chain drops (see below)"))
    else:
        checks.append(Check("bridge-nf-call-iptables", OK, f"{brnf or 'off (br_netfilter not loaded)'}: "
                            "bridged traffic does not pass the IP firewall"))
    forward = _sysctl("net.ipv4.ip_forward")
    checks.append(Check("ip_forward", INFO, f"{forward}: vethlab turns it on for networks with a gateway and "
                        "restores it when the last lab that needed it is gone"))
    rmem = _sysctl("net.core.rmem_max")
    if rmem is not None and int(rmem) < 1 << 20:
        checks.append(Check("net.core.rmem_max", WARN, f"{rmem} bytes: vethlab bounds its netlink requests in "
                            "flight to fit, so large labs build in more round trips",
                            "sysctl -w net.core.rmem_max=4194304"))
    else:
        checks.append(Check("net.core.rmem_max", OK, f"{rmem} bytes"))
    checks.append(_userns_check())
    checks.extend(_firewall_checks(kernel, bridges or []))
    checks.extend(_stale_netns_checks(kernel))
    return checks


def _userns_check() -> Check:
    limit = _sysctl("user.max_user_namespaces")
    clone = _sysctl("kernel.unprivileged_userns_clone")
    if limit == "0" or clone == "0":
        return Check("user namespaces", WARN, "unprivileged user namespaces are off: rootless `vethlab sandbox` "
                     "cannot work", "sysctl -w kernel.unprivileged_userns_clone=1 user.max_user_namespaces=15000")
    return Check("user namespaces", OK, "unprivileged user namespaces are on: rootless `vethlab sandbox` works")


def _firewall_checks(kernel: Firewall, bridges: list[str]) -> list[Check]:
    """Foreign forward chains that will drop lab traffic (forward_policy.py judges them,
    as `up` does); without a FILE, judged for a stand-in bridge name."""
    from ..reconcile.forward_policy import blockers

    try:
        items = kernel.firewall_ruleset(None)
    except VethlabError:  # no nft: nobody's table to warn about
        items = []
    bridge_nf = {family: _sysctl(f"net.bridge.bridge-nf-call-{name}") == "1"
                 for family, name in (("ip", "iptables"), ("ip6", "ip6tables"))}
    checks = [Check(f"firewall {b.family} {b.table} {b.chain}", WARN, b.message().split("\n")[0],
                    "; ".join(b.commands())) for b in blockers(items, bridges or ["BRIDGE"], bridge_nf, routed=True)]
    if not checks:
        checks.append(Check("firewall", OK, "no foreign forward chain will drop lab traffic"))
    if _running("firewalld"):
        checks.append(Check("firewalld", WARN, "firewalld is running: it may reload its rules over lab traffic",
                            "firewall-cmd --zone=trusted --add-interface=BRIDGE for each lab bridge"))
    return checks


def _running(comm: str) -> bool:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm", encoding="utf-8", errors="replace") as fh:
                    if fh.read().strip() == comm:
                        return True
            except OSError:
                continue
    return False


def _stale_netns_checks(kernel: Namespaces) -> list[Check]:
    mounted = kernel.alive_namespaces()
    dead = [n for n in kernel.list_namespaces() if n not in mounted]
    if dead:
        return [Check("/run/netns", WARN, f"{len(dead)} dead namespace file(s), e.g. after a reboot with /run on disk: "
                      f"{', '.join(dead[:5])}", f"ip netns del {dead[0]} (for each), or `vethlab clean` for vethlab's")]
    return [Check("/run/netns", OK, "no dead namespace files")]


# -- what a file needs ------------------------------------------------------------------------
def file_needs(spec: Any) -> set[str]:
    """The kernel features a validated lab needs."""
    needs = {"veth"} if spec.links or spec.networks else set()
    for net in spec.networks:
        needs.add("macvlan" if net.driver == "macvlan" else "bridge")
        if net.driver == "bridge" and (net.nat or net.isolated or any(m.publish for m in net.members)):
            needs.add("nftables")
    for link in spec.links:
        for shaping in (link.shaping_a, link.shaping_b):
            if shaping:
                needs.add(shaping.qdisc)
    return needs


def plan_check(path: str, plan: Callable[[], int]) -> Check:
    """The file planned against this host: `plan()` returns how many changes `up`
    would make, or raises what it would refuse with."""
    try:
        changes = plan()
    except VethlabError as exc:
        return Check(f"plan {path}", FAIL, str(exc), "resolve the conflict, or change the file", needed=True)
    return Check(f"plan {path}", OK, f"no clash with this host; `up` would make {changes} change(s)", needed=True)


def verdict(checks: list[Check]) -> bool:
    return not any(c.status == FAIL for c in checks)


def run(path: str | None = None) -> tuple[list[Check], bool]:
    """Every check of the host, and whether FILE (if given) has all it needs from
    it (planning the file is the caller's: ops does not load the Lab facade)."""
    checks: list[Check] = []
    needs: set[str] = set()
    bridges: list[str] = []
    if path is not None:
        from ..model.desired import bridge_name
        from ..topology import load_lab

        spec = load_lab(path)
        needs = file_needs(spec)
        bridges = [bridge_name(spec.name, net) for net in spec.networks if net.driver == "bridge" and net.host == "host"]
    features = probe_features()
    if isinstance(features, str):
        checks.append(Check("kernel features", WARN, f"could not probe: {features}",
                            "run as root, or enable unprivileged user namespaces"))
    else:
        for feature, present in features.items():
            needed = feature in needs
            status = OK if present else (FAIL if needed else WARN)
            checks.append(Check(feature, status, "present" if present else "missing in this kernel",
                                "" if present else FIXES[feature], needed))
    kernel = open_kernel()
    try:
        checks.extend(host_checks(kernel, bridges))
    finally:
        kernel.close()
    return checks, verdict(checks)


