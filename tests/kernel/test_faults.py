"""Imperfect networks on purpose: shaping, faults, live events, capture, throughput."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from helpers import vethlab

SHAPED = """\
name: shape
nodes: {a: {}, b: {}, c: {}}
links:
  - endpoints: [a:e0, b:e0]
    addresses: [10.0.0.1/24, 10.0.0.2/24]
    rate: 8mbit
  - endpoints: [b:e1, c:e0]
    addresses: [10.0.1.1/24, 10.0.1.2/24]
"""


def perf(src: str, dst: str, seconds: float = 2) -> float:
    r = vethlab("perf", src, dst, "--time", str(seconds), "--json", check=True)
    report = json.loads(r.stdout)
    assert set(report) >= {"src", "dst", "seconds", "bits_per_second"}
    return float(report["bits_per_second"])


def test_rate_is_measured_within_25_percent(write) -> None:
    vethlab("up", write(SHAPED), check=True)
    rate = perf("a", "b")
    assert 6e6 <= rate <= 10e6, f"{rate / 1e6:.2f} Mbit/s for an 8mbit link"
    assert "tbf" in subprocess.run(["tc", "-n", "a", "qdisc", "show", "dev", "e0"], capture_output=True,
                                   text=True).stdout
    status = json.loads(vethlab("status", "--json", check=True).stdout)
    assert {i["name"]: i["shaping"] for i in status["interfaces"] if i["node"] == "a"} == {"e0": "rate 8mbit"}


def test_runtime_set_and_clear_change_throughput(write) -> None:
    path = write(SHAPED)
    vethlab("up", path, check=True)
    vethlab("link", "set", "a:e0", "--rate", "4mbit", check=True)
    slow = perf("a", "b")
    assert 3e6 <= slow <= 5e6, f"{slow / 1e6:.2f} Mbit/s for 4mbit"
    vethlab("link", "clear", "a:e0", check=True)
    fast = perf("a", "b")
    assert fast > 20 * slow
    # the file still says 8mbit: `up` changes only the qdisc back, not the link
    index = json.loads(subprocess.run(["ip", "-j", "-n", "a", "link", "show", "e0"], capture_output=True,
                                      text=True).stdout)[0]["ifindex"]
    r = vethlab("up", path, check=True)
    assert "1 shaping" in r.stdout
    assert json.loads(subprocess.run(["ip", "-j", "-n", "a", "link", "show", "e0"], capture_output=True,
                                     text=True).stdout)[0]["ifindex"] == index


def test_flap_gives_exactly_the_expected_events(write) -> None:
    vethlab("up", write(SHAPED), check=True)
    watcher = subprocess.Popen([sys.executable, "-m", "vethlab", "watch", "--json", "--duration", "4"],
                               stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    vethlab("link", "flap", "a:e0", "--down", "0.3s", "--up", "0.3s", "--count", "2", check=True)
    out, _ = watcher.communicate(timeout=20)
    events = [json.loads(line) for line in out.splitlines()]
    assert all({"time", "lab", "node", "ifname", "state", "carrier"} <= set(e) for e in events)
    peer = [(e["state"], e["carrier"]) for e in events if (e["node"], e["ifname"]) == ("b", "e0")]
    # transitions: an operstate detail (DOWN vs LOWERLAYERDOWN) may repeat a state
    transitions = [p for i, p in enumerate(peer) if i == 0 or p != peer[i - 1]]
    assert transitions == [("down", False), ("up", True), ("down", False), ("up", True)], events


def test_node_isolate_fails_only_that_node(write) -> None:
    vethlab("up", write(SHAPED), check=True)
    vethlab("node", "isolate", "c", check=True)
    r = vethlab("pingall", "--json")
    assert r.returncode == 1
    failed = {(p["src"], p["dst"]) for p in json.loads(r.stdout)["pairs"] if not p["ok"]}
    assert failed == {("b", "c"), ("c", "b")}
    vethlab("node", "restore", "c", check=True)
    assert vethlab("pingall").returncode == 0


def test_chaos_replays_with_the_same_seed(write) -> None:
    vethlab("up", write(SHAPED), check=True)
    runs = [json.loads(vethlab("chaos", "--duration", "1.5s", "--seed", "42", "--json", check=True).stdout)["flaps"]
            for _ in range(2)]
    assert runs[0] == runs[1] and runs[0]
    assert vethlab("pingall").returncode == 0, "every link is back up after chaos"


def test_capture_writes_a_pcap_with_the_ping(write, tmp_path) -> None:
    vethlab("up", write(SHAPED), check=True)
    pcap = str(tmp_path / "ping.pcap")
    cap = subprocess.Popen([sys.executable, "-m", "vethlab", "capture", "a:e0", "-w", pcap, "-c", "2", "icmp"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(50):
        time.sleep(0.1)
        if os.path.exists(pcap):
            break
    vethlab("ping", "a", "b", "-c", "1", check=True)
    cap.wait(10)
    text = subprocess.run(["tcpdump", "-r", pcap, "-n"], capture_output=True, text=True).stdout
    assert "ICMP echo request" in text and "ICMP echo reply" in text
    assert os.stat(pcap).st_uid == os.geteuid(), "the pcap belongs to who asked for it, not to tcpdump"


def test_delay_on_a_kernel_without_netem(write) -> None:
    from vethlab.kernel import tc

    path = write(SHAPED.replace("    rate: 8mbit\n", "    delay: 20ms\n    jitter: 5ms\n    loss: 1%\n"))
    if tc.supported("netem"):
        vethlab("up", path, check=True)
        assert "netem" in subprocess.run(["tc", "-n", "a", "qdisc"], capture_output=True, text=True).stdout
        pytest.skip("this kernel has netem: the delay link was built and shaped")
    r = vethlab("up", path)
    assert r.returncode == 1
    assert "sch_netem" in r.stderr and "nothing was changed" in r.stderr
    assert os.listdir("/run/netns") == [] and os.listdir(os.environ["VETHLAB_STATE_DIR"]) == []
    r = vethlab("up", write(SHAPED, "ok.yaml"), check=True)
    r = vethlab("link", "set", "a:e0", "--delay", "10ms")
    assert r.returncode == 1 and "sch_netem" in r.stderr
