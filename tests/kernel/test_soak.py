"""Soak: many up/down cycles must not grow namespaces, interfaces, file
descriptors or memory."""

from __future__ import annotations

import os

import pytest

from helpers import ip_json

CYCLES = int(os.environ.get("VETHLAB_SOAK_CYCLES", "200"))


def rss_kb() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


@pytest.mark.slow
def test_soak_up_down_cycles() -> None:
    from vethlab import Lab

    topology = {"name": "soak", "nodes": {f"n{i}": {} for i in range(20)},
                "links": [{"endpoints": [f"n{i}:r", f"n{i + 1}:l"],
                           "addresses": [f"10.9.{i}.1/24", f"10.9.{i}.2/24"]} for i in range(19)]}
    topology["links"].append({"endpoints": ["n0:up", "host:vh-soak"], "addresses": ["10.8.0.2/24", "10.8.0.1/24"]})
    samples = []
    for cycle in range(CYCLES):
        with Lab.from_dict(topology) as lab:
            if cycle % 50 == 0:
                assert lab.node("n0").exec(["ping", "-c1", "-W1", "10.9.0.2"]).returncode == 0
        assert os.listdir("/run/netns") == []
        if cycle in (19, CYCLES - 1):
            samples.append((len(os.listdir("/proc/self/fd")), rss_kb(), len(ip_json("link"))))
    (fd0, rss0, links0), (fd1, rss1, links1) = samples
    print(f"\nsoak {CYCLES} cycles of a 20-node lab: fds {fd0} -> {fd1}, RSS {rss0} -> {rss1} KB, "
          f"host interfaces {links0} -> {links1}")
    assert fd1 <= fd0
    assert links1 == links0 == 1
    assert rss1 - rss0 < 8 * 1024, "memory grew by more than 8 MB"
