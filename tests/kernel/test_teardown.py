"""Teardown in the order that lets the kernel batch, on the real kernel: a 200-member
star's `down`, a failed `up`'s rollback and a shrinking `up` leave exactly what was
there before, and never delete the members' veths one by one (the kernel takes them
along with the namespaces, one RCU grace period for all instead of one each)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from helpers import star_lab
from vethlab.errors import CommandFailed
from vethlab.kernel import nl
from vethlab.kernel.rtnl import NetlinkKernel
from vethlab.lab import Lab
from vethlab.topology import lab_from_text

N = 200


star = star_lab


def _run(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def snapshot() -> dict[str, Any]:
    """Everything of the machine (sandbox) a lab could leave behind."""
    state_dir = os.environ["VETHLAB_STATE_DIR"]
    return {
        "links": json.loads(_run("ip", "-j", "-d", "link") or "[]"),
        "netns": json.loads(_run("ip", "-j", "netns") or "[]"),
        "ruleset": json.loads(_run("nft", "-j", "list", "ruleset")),
        "etc_netns": sorted(os.listdir("/etc/netns")) if os.path.isdir("/etc/netns") else [],
        "run_netns": sorted(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else [],
        "state": sorted(os.listdir(state_dir)) if os.path.isdir(state_dir) else [],
        "ip_forward": open("/proc/sys/net/ipv4/ip_forward").read(),
    }


@pytest.fixture
def deletes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str | None, int]]]:
    """Every RTM_DELLINK vethlab queues: (namespace, ifindex)."""
    seen: list[tuple[str | None, int]] = []
    queue = NetlinkKernel._queue

    def spy(self: NetlinkKernel, ns: str | None, kind: int, flags: int, body: bytes, what: str,
            tolerate: tuple[int, ...] = ()) -> None:
        if kind == nl.RTM_DELLINK:
            seen.append((ns, int.from_bytes(body[4:8], "little", signed=True)))
        queue(self, ns, kind, flags, body, what, tolerate)

    monkeypatch.setattr(NetlinkKernel, "_queue", spy)
    yield seen


def host_links() -> list[str]:
    return sorted(link["ifname"] for link in json.loads(_run("ip", "-j", "link")))


def test_down_of_a_200_member_star_leaves_nothing(deletes: list[tuple[str | None, int]]) -> None:
    before = snapshot()
    lab = Lab(lab_from_text(star(N)))
    lab.up()
    assert len(host_links()) == N + 2
    deletes.clear()
    lab.down()
    lab.close()
    assert len(deletes) == 1, f"{len(deletes)} links deleted one by one"  # the bridge alone
    assert snapshot() == before


def test_rollback_of_a_200_member_star_leaves_nothing(deletes: list[tuple[str | None, int]]) -> None:
    before = snapshot()
    lab = Lab(lab_from_text(star(N, exec_last="false")))
    with pytest.raises(CommandFailed, match="everything this run created was removed again"):
        lab.up()
    lab.close()
    # the linkwatch nudger's scratch veth lives in one node and goes with it; the bridge alone is deleted
    assert [ns for ns, _ in deletes if ns is None] == [None], deletes
    assert len(deletes) <= 2, deletes
    assert snapshot() == before


def test_shrinking_a_star_takes_the_ports_along(deletes: list[tuple[str | None, int]]) -> None:
    before = snapshot()
    first = Lab(lab_from_text(star(N)))
    first.up()
    first.close()  # its sockets in the namespaces would keep them alive
    deletes.clear()
    smaller = Lab(lab_from_text(star(N // 2)))
    smaller.up()
    assert [d for d in deletes if d[0] is None] == [], "host-side veths deleted one by one"
    assert len(host_links()) == N // 2 + 2
    assert not smaller.plan()
    smaller.down()
    smaller.close()
    assert snapshot() == before
