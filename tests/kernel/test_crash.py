"""SIGKILL real `up`/`down` runs of a 50-node lab at random moments; then `up`
completes the lab and `down` (or `clean`, with the state lost) leaves nothing."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest

from helpers import ip_json, vethlab

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench"))
import topologies  # noqa: E402

KILLS = int(os.environ.get("VETHLAB_CRASH_KILLS", "12"))


def lab_file(tmp_path) -> str:
    text, _ = topologies.chain(50)
    text += "  - {endpoints: [host:vh-n0, n0:up], addresses: [10.250.0.1/30, 10.250.0.2/30]}\n"
    path = tmp_path / "crash.yaml"
    path.write_text(text)
    return str(path)


def start_and_kill(args: list[str], delay: float) -> int:
    proc = subprocess.Popen([sys.executable, "-m", "vethlab", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    return proc.wait()


def nothing_left() -> list[str]:
    left = [f"namespace {n}" for n in os.listdir("/run/netns")]
    left += [f"interface {link['ifname']}" for link in ip_json("link") if link["ifname"] != "lo"]
    left += [f"/etc/netns/{n}" for n in os.listdir("/etc/netns")]
    left += [f"state {e}" for e in os.listdir(os.environ["VETHLAB_STATE_DIR"])]
    return left


@pytest.mark.slow
def test_sigkill_during_up_and_down(tmp_path) -> None:
    path = lab_file(tmp_path)
    rng = random.Random(20261128)
    killed_mid_way = 0
    for round_ in range(KILLS):
        if start_and_kill(["up", path], rng.uniform(0.02, 0.35)) == -signal.SIGKILL:
            killed_mid_way += 1
        r = vethlab("up", path)
        assert r.returncode == 0, f"round {round_}: up after kill: {r.stderr}"
        assert vethlab("exec", "n0", "--", "ping", "-c", "1", "-W", "1", "10.250.0.1").returncode == 0
        assert vethlab("exec", "n49", "--", "ping", "-c", "1", "-W", "1", "10.0.0.193").returncode == 0
        start_and_kill(["down", path], rng.uniform(0.0, 0.3))
        r = vethlab("down", path)
        assert r.returncode == 0, f"round {round_}: down after kill: {r.stderr}"
        assert nothing_left() == [], f"round {round_}"
    print(f"\n{KILLS} SIGKILLs of up ({killed_mid_way} mid-way) and {KILLS} of down: 0 leftovers")


@pytest.mark.slow
def test_sigkill_then_state_lost_then_clean(tmp_path) -> None:
    path = lab_file(tmp_path)
    rng = random.Random(7)
    for round_ in range(max(3, KILLS // 2)):
        start_and_kill(["up", path], rng.uniform(0.02, 0.35))
        shutil.rmtree(os.environ["VETHLAB_STATE_DIR"])
        os.makedirs(os.environ["VETHLAB_STATE_DIR"], mode=0o700)
        r = vethlab("clean")
        assert r.returncode == 0, r.stderr
        assert nothing_left() == [], f"round {round_}"
