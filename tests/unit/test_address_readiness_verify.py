"""`up` returns only once the lab's IPv6 addresses are in use (reconcile/verify.py).

The kernel acknowledges and lists an IPv6 address added without DAD before its
addrconf work item has joined the solicited-node group and added the local
route; under load that item runs late and the first ping after `up` is lost.
The fake models it with `addrconf_delay`: each new IPv6 address stays unusable
for that many reads of its namespace."""

from __future__ import annotations

import pytest

from vethlab import Lab
from vethlab.errors import KernelError
from vethlab.kernel.fake import FakeKernel
from vethlab.reconcile import verify
from vethlab.topology import lab_from_text

DUAL = """\
name: six
nodes: {a: {}, b: {}}
links:
  - endpoints: [a:e0, b:e0]
    addresses: [[fd00:1::1/64, 10.1.0.1/30], [fd00:1::2/64, 10.1.0.2/30]]
"""
V4 = DUAL.replace("fd00:1::1/64, ", "").replace("fd00:1::2/64, ", "")


pytestmark = pytest.mark.usefixtures("state_root")  # tests/unit/conftest.py


def test_up_waits_until_ipv6_addresses_are_in_use() -> None:
    kernel = FakeKernel()
    kernel.addrconf_delay = 3
    Lab(lab_from_text(DUAL), kernel=kernel).up(wait=1.0)
    # both addresses were still being configured when applied; `up` returned once both were in use
    assert kernel.unready == {("a", "fd00:1::1/64"): 0, ("b", "fd00:1::2/64"): 0}


def test_ipv4_only_lab_reads_no_ipv6_routes(monkeypatch: pytest.MonkeyPatch) -> None:
    kernel = FakeKernel()
    calls: list[object] = []
    real = kernel.unready_addresses
    monkeypatch.setattr(kernel, "unready_addresses", lambda ns, addrs: calls.append(ns) or real(ns, addrs))
    Lab(lab_from_text(V4), kernel=kernel).up(wait=1.0)
    assert calls == []


def test_address_never_in_use_fails_up_and_rolls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(verify, "VERIFY_TIMEOUT", 0.3)
    kernel = FakeKernel()
    before = kernel.snapshot()
    kernel.addrconf_delay = 10**9  # DAD never ends (or failed)
    with pytest.raises(KernelError) as err:
        Lab(lab_from_text(DUAL), kernel=kernel).up(wait=1.0)
    assert "IPv6 address fd00:1::1/64 of a is not in use" in str(err.value)
    assert "everything this run created was removed again" in str(err.value)
    assert kernel.snapshot() == before
