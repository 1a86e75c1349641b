"""The lab's mark never lands on a foreign interface, even when a create fails
because a foreign interface of that name appeared after the plan (the kernel runs
the mark request that travels with the create all the same)."""

from __future__ import annotations

import json
import subprocess

import pytest

from vethlab.errors import KernelError
from vethlab.kernel.rtnl import NetlinkKernel


def _alias(ifname: str, ns: str | None = None) -> str | None:
    argv = ["ip", "-j"] + (["-n", ns] if ns else []) + ["link", "show", ifname]
    return json.loads(subprocess.run(argv, capture_output=True, text=True, check=True).stdout)[0].get("ifalias")


@pytest.fixture
def kernel():
    k = NetlinkKernel()
    yield k
    k.close()


def test_bridge_create_failing_on_a_foreign_name_marks_nothing(kernel) -> None:
    subprocess.run(["ip", "link", "add", "br-admin", "type", "bridge"], check=True)
    kernel.create_bridge(None, "br-admin", None, "vethlab:x")
    with pytest.raises(KernelError, match="create bridge br-admin"):
        kernel.flush()
    assert _alias("br-admin") is None


def test_host_veth_create_failing_on_a_foreign_name_marks_nothing(kernel) -> None:
    subprocess.run(["ip", "link", "add", "vh-admin", "type", "veth", "peer", "name", "vh-admin-p"], check=True)
    subprocess.run(["ip", "netns", "add", "n1"], check=True)
    kernel.create_veth(None, "vh-admin", "n1", "e0", None, "vethlab:x")
    with pytest.raises(KernelError, match="create veth pair host:vh-admin"):
        kernel.flush()
    assert _alias("vh-admin") is None


def test_made_bridge_and_host_end_are_marked(kernel) -> None:
    subprocess.run(["ip", "netns", "add", "n1"], check=True)
    kernel.create_bridge(None, "br-lab", None, "vethlab:x")
    kernel.create_veth(None, "vh-lab", "n1", "e0", None, "vethlab:x")
    kernel.flush()
    assert _alias("br-lab") == "vethlab:x" and _alias("vh-lab") == "vethlab:x"
