"""Every topology under examples/ does what its comment promises: it comes up
with `vethlab up`, `vethlab pingall` exits 0, the extra checks its header shows
(a published port, a routed path across routers or spines) pass, and `down`
leaves the sandbox exactly as it found it.

Each test runs in its own sandbox (tests/kernel/conftest.py), so the examples
can be run one after another with their fixed names and subnets."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from helpers import vethlab

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _json(*argv: str) -> Any:
    out = subprocess.run(list(argv), capture_output=True, text=True, check=True).stdout
    return json.loads(out) if out.strip() else []


def _volatile_free(value: Any) -> Any:
    """Drop what the kernel changes on its own (counters, timers) from `ip -j` output."""
    if isinstance(value, dict):
        return {k: _volatile_free(v) for k, v in value.items()
                if k not in ("stats64", "stats", "valid_life_time", "preferred_life_time", "used", "probes")}
    if isinstance(value, list):
        return [_volatile_free(v) for v in value]
    return value


def world() -> dict[str, Any]:
    """Everything an example may touch, as seen from the sandbox's host namespace."""
    state_dir = os.environ.get("VETHLAB_STATE_DIR", "/run/vethlab")
    services = sorted(p for p in os.listdir("/proc") if p.isdigit() and _is_example_service(p))
    return {
        "links": _volatile_free(_json("ip", "-j", "-d", "link", "show")),
        "addresses": _volatile_free(_json("ip", "-j", "addr", "show")),
        "routes": _json("ip", "-j", "route", "show", "table", "all"),
        "ruleset": _json("nft", "-j", "list", "ruleset"),
        "ip_forward": Path("/proc/sys/net/ipv4/ip_forward").read_text(),
        "netns": sorted(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else [],
        "etc_netns": sorted(os.listdir("/etc/netns")) if os.path.isdir("/etc/netns") else [],
        "state": sorted(os.listdir(state_dir)) if os.path.isdir(state_dir) else [],
        "services": services,
    }


def _is_example_service(pid: str) -> bool:
    try:
        return b"http.server" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def up_pingall_down(name: str, checks: Sequence[tuple[str, ...]] = ()) -> dict[str, Any]:
    """up, pingall (exit 0), each extra `vethlab` check (exit 0), down; returns pingall's JSON."""
    path = str(EXAMPLES / name)
    before = world()
    vethlab("up", path, check=True, timeout=300)
    try:
        result = vethlab("pingall", "--json", timeout=300)
        assert result.returncode == 0, f"pingall of {name} failed:\n{result.stdout}\n{result.stderr}"
        report = json.loads(result.stdout)
        for argv in checks:
            vethlab(*argv, check=True)
    finally:
        vethlab("down", path, check=True, timeout=300)
    assert world() == before
    return report


def pairs(report: dict[str, Any]) -> set[tuple[str, str]]:
    return {(p["src"], p["dst"]) for p in report["pairs"] if p["ok"]}


def test_seed() -> None:
    report = up_pingall_down("seed.yaml")
    assert pairs(report) == {("ns1", "ns2"), ("ns2", "ns1")}


def test_docker_nat_publishes_a_port_and_reaches_out() -> None:
    fetch = ("import sys, time, urllib.request\n"
             "for _ in range(50):\n"
             "    try:\n"
             "        print(urllib.request.urlopen(sys.argv[1], timeout=2).status); break\n"
             "    except OSError: time.sleep(0.1)\n"
             "else: sys.exit(1)\n")
    report = up_pingall_down("docker-nat.yaml", [
        # from "outside" through the published port, then out of the lab through NAT
        ("exec", "internet", "--", "python3", "-c", fetch, "http://203.0.113.1:8080/"),
        ("exec", "client", "--", "ping", "-c1", "-W2", "203.0.113.2"),
    ])
    assert {("web", "client"), ("client", "web"), ("internet", "host")} <= pairs(report)


def test_three_routers_route_end_to_end() -> None:
    report = up_pingall_down("three-routers.yaml", [
        ("exec", "a", "--", "ping", "-c1", "-W2", "10.10.3.2"),
        ("exec", "b", "--", "ping", "-c1", "-W2", "10.10.1.2"),
    ])
    assert len(report["pairs"]) == 8  # two ends of four links


def test_leaf_spine_every_host_reaches_every_host() -> None:
    hosts = {f"h{i}": f"10.1.{i}.2" for i in range(1, 5)}
    checks = [("exec", src, "--", "ping", "-c1", "-W2", address)
              for src in hosts for dst, address in hosts.items() if dst != src]
    report = up_pingall_down("leaf-spine.yaml", checks)
    assert len(report["pairs"]) == 24  # two ends of twelve links


def _ping_until(src: str, source: str, dst: str) -> tuple[str, ...]:
    """A `vethlab exec` check that pings until routing has settled (bounded: 120 tries)."""
    loop = f"for i in $(seq 120); do ping -c1 -W1 -I {source} {dst} >/dev/null && exit 0; sleep 0.5; done; exit 1"
    return ("exec", src, "--", "sh", "-c", loop)


NO_FRR = pytest.mark.skipif(not os.path.exists("/usr/lib/frr/zebra"), reason="FRR is not installed (./run setup)")


@NO_FRR
def test_frr_ring_routes_between_every_loopback() -> None:
    """tests/kernel/test_frr.py checks routes, a failed link and the reroute."""
    report = up_pingall_down("frr-ring.yaml", [_ping_until("r1", "10.255.0.1", f"10.255.0.{i}") for i in range(2, 7)])
    assert len(report["pairs"]) == 12  # two ends of six links


@NO_FRR
def test_bgp_pair_routes_between_loopbacks() -> None:
    report = up_pingall_down("bgp-pair.yaml", [_ping_until("r1", "10.255.1.1", "10.255.2.2")])
    assert len(report["pairs"]) == 2


@pytest.mark.slow
def test_star_of_500() -> None:
    report = up_pingall_down("star-500.yaml")
    assert len(report["pairs"]) == 998
    assert {p["src"] for p in report["pairs"]} == {"hub"} | {f"n{i}" for i in range(1, 500)}


def _example_suite(where: Path, *prefix: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*prefix, sys.executable, "-m", "pytest", str(where), "-q", "-rs", "-p", "no:cacheprovider"],
                          capture_output=True, text=True, timeout=300, check=False, cwd=where)


def test_pytest_plugin_example_passes() -> None:
    """docs/pytest-plugin.md's worked example: every test runs (none skipped) and passes."""
    result = _example_suite(EXAMPLES / "pytest")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed" in result.stdout and "skipped" not in result.stdout, result.stdout


def _nobody_can_run_python() -> bool:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        return False
    probe = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c",
                            "import vethlab, pytest"], capture_output=True, check=False)
    return probe.returncode == 0


@pytest.mark.skipif(not _nobody_can_run_python(), reason="user nobody cannot run this interpreter (see troubleshooting)")
def test_pytest_plugin_example_skips_where_namespaces_cannot_be_made() -> None:
    """As `nobody`, outside a sandbox, the example's tests are skipped with the
    reason, not failed.  Run on a copy in a directory nobody may read (pytest's
    tmp_path is under a 0700 directory, and so may the clone be)."""
    top = Path(tempfile.mkdtemp(prefix="vethlab-example-"))
    try:
        copy = top / "example"
        shutil.copytree(EXAMPLES / "pytest", copy, ignore=shutil.ignore_patterns("__pycache__"))
        for path in [top, copy, *copy.iterdir()]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        result = _example_suite(copy, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "4 skipped" in result.stdout and "need root" in result.stdout, result.stdout
    finally:
        shutil.rmtree(top)


def test_python_chain_example_reaches_end_to_end_and_leaves_nothing() -> None:
    """examples/python/chain.py (docs/python.md): a lab built in a loop with the
    builder routes a -> b across every router, and `with lab:` takes it all down."""
    before = world()
    run = subprocess.run([sys.executable, str(EXAMPLES / "python" / "chain.py"), "3"], capture_output=True,
                         text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.splitlines()[-1] == "a reaches b across 3 routers"
    assert world() == before
