"""Per-lab lock: same lab serializes (and says for whom it waits); different labs
run in parallel."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

from helpers import SEED, ip_json, vethlab
from vethlab.state.lock import LabLock


def test_waits_and_names_the_holder(seed_file: str) -> None:
    lock = LabLock("seed", say=False)
    lock.acquire()
    try:
        r = vethlab("up", seed_file, "--wait", "0.3")
        assert r.returncode == 1
        assert f"lab seed is busy: held by pid {os.getpid()}" in r.stderr and "--wait" in r.stderr
        assert os.listdir("/run/netns") == []
        threading.Timer(0.5, lock.release).start()
        r = vethlab("up", seed_file, "--wait", "10")
        assert r.returncode == 0, r.stderr
        assert f"waiting for lab seed, held by pid {os.getpid()}" in r.stderr
    finally:
        lock.release()


def test_ten_labs_in_parallel(tmp_path) -> None:
    files = []
    for i in range(10):
        path = tmp_path / f"lab{i}.yaml"
        text = SEED.replace("name: seed", f"name: lab{i}\nprefix: true").replace("192.168.1.", f"10.{i}.1.")
        path.write_text(text + f"  - endpoints: [ns1:x, host:vh-lab{i}]\n    addresses: [10.{i}.2.1/24, 10.{i}.2.2/24]\n")
        files.append(str(path))

    def run_all(verb: str) -> list[subprocess.CompletedProcess[str]]:
        procs = [subprocess.Popen([sys.executable, "-m", "vethlab", verb, f], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for f in files]
        return [subprocess.CompletedProcess(p.args, p.wait(60), *p.communicate()) for p in procs]

    start = time.monotonic()
    for r in run_all("up"):
        assert r.returncode == 0, r.stderr
    assert len(os.listdir("/run/netns")) == 20
    for i in range(10):
        assert vethlab("pingall", "--lab", f"lab{i}").returncode == 0
        assert vethlab("exec", "--lab", f"lab{i}", "ns1", "--", "ping", "-c1", "-W1", f"10.{i}.2.2").returncode == 0
    for r in run_all("down"):
        assert r.returncode == 0, r.stderr
    assert os.listdir("/run/netns") == [] and [link["ifname"] for link in ip_json("link")] == ["lo"]
    assert time.monotonic() - start < 120


def test_ambiguous_node_needs_lab(tmp_path) -> None:
    for name in ("one", "two"):
        path = tmp_path / f"{name}.yaml"
        path.write_text(SEED.replace("name: seed", f"name: {name}\nprefix: true"))
        vethlab("up", str(path), check=True)
    r = vethlab("exec", "ns1", "--", "true")
    assert r.returncode == 2 and "node ns1 is in several labs: one, two" in r.stderr
    assert vethlab("exec", "--lab", "two", "ns1", "--", "true").returncode == 0
    r = vethlab("status")
    assert r.returncode == 2 and "several labs exist: one, two" in r.stderr


# -- host-wide resources: subnets, published ports, host addresses --------------------------
RACE_LABS = 10
# 20 rounds were measured by hand (VETHLAB_RACE_ROUNDS=20); a few rounds catch the race
# too: without the host-wide lock every round measured had duplicates.
RACE_ROUNDS = int(os.environ.get("VETHLAB_RACE_ROUNDS", "3"))


def _parallel(verb: str, files: list[str]) -> list[subprocess.CompletedProcess[str]]:
    """`vethlab VERB FILE` for every file at once, as separate processes."""
    procs = [subprocess.Popen([sys.executable, "-m", "vethlab", verb, f], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for f in files]
    return [subprocess.CompletedProcess(p.args, p.wait(120), *p.communicate()) for p in procs]


def _bridge_subnets() -> dict[str, list[str]]:
    """Subnet -> the bridges of the host namespace that carry an address in it."""
    import ipaddress

    seen: dict[str, list[str]] = {}
    for link in ip_json("addr"):
        if link.get("linkinfo", {}).get("info_kind") == "bridge" or link["ifname"].startswith("vb."):
            for addr in link.get("addr_info", []):
                if addr["family"] == "inet":
                    net = str(ipaddress.ip_interface(f"{addr['local']}/{addr['prefixlen']}").network)
                    seen.setdefault(net, []).append(link["ifname"])
    return seen


def test_parallel_labs_never_share_an_automatic_subnet(tmp_path) -> None:
    files = []
    for i in range(RACE_LABS):
        path = tmp_path / f"r{i}.yaml"
        path.write_text(f"name: r{i}\nprefix: true\nnodes: {{a: {{}}, b: {{}}}}\n"
                        "networks: {n: {nat: true, members: {a: {}, b: {}}}}\n")
        files.append(str(path))
    shared = []  # per round: the bridges whose subnet another lab's bridge has too
    for _round in range(RACE_ROUNDS):
        for r in _parallel("up", files):
            assert r.returncode == 0, r.stderr
        subnets = _bridge_subnets()
        assert sum(len(bridges) for bridges in subnets.values()) == RACE_LABS
        shared.append(sorted(b for bridges in subnets.values() if len(bridges) > 1 for b in bridges))
        for r in _parallel("down", files):
            assert r.returncode == 0, r.stderr
        assert os.listdir("/run/netns") == []
    print("bridges sharing a subnet, per round:", [len(s) for s in shared])
    assert shared == [[]] * RACE_ROUNDS, shared
