"""prepare() reads the mounted namespaces (mountinfo: ~1.5 ms at 1000 nodes) once for
both scope() and the observation: between the two it only reads the kernel."""

from __future__ import annotations

from typing import Any

import pytest

from vethlab import Lab
from vethlab.kernel.fake import FakeKernel
from vethlab.topology import lab_from_text

pytestmark = pytest.mark.usefixtures("state_root")  # tests/unit/conftest.py

CHAIN = "name: pr\nnodes:\n  a: {}\n  b: {}\n  c: {}\nlinks:\n" \
        "  - {endpoints: [a:r, b:l], addresses: [10.0.0.1/30, 10.0.0.2/30]}\n" \
        "  - {endpoints: [b:r, c:l], addresses: [10.0.0.5/30, 10.0.0.6/30]}\n"


class CountingReads(FakeKernel):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reads = 0

    def alive_namespaces(self) -> set[str]:
        self.reads += 1
        return super().alive_namespaces()


def test_a_plan_reads_the_mounted_namespaces_once() -> None:
    kernel = CountingReads()
    Lab(lab_from_text(CHAIN), kernel=kernel).up(wait=1.0)
    for refresh in (False, True):
        kernel.reads = 0
        assert Lab(lab_from_text(CHAIN), kernel=kernel).plan(refresh=refresh).actions == []
        assert kernel.reads == 1


def test_the_one_read_still_sees_a_namespace_gone() -> None:
    """scope() judges a node whose namespace vanished changed: the shared read is the
    kernel's, not a remembered one."""
    kernel = CountingReads()
    Lab(lab_from_text(CHAIN), kernel=kernel).up(wait=1.0)
    ns = next(n for n in kernel.spaces if n is not None and n.endswith("b"))
    del kernel.spaces[ns]
    plan = Lab(lab_from_text(CHAIN), kernel=kernel).plan()
    assert kernel.reads and any(action.node == "b" for action in plan.actions)
