"""`up`'s wait for links hurries the kernel's linkwatch when links are still down at
its second look, however few (reconcile/verify.py, Kernel.settle).

Linkwatch applies an urgent run's carrier changes at most 200 devices at a time and
leaves the rest for its paced run, up to a second later: a 200-member star (400
veth ends) took 1.1 s instead of 0.2 s in 1 run of 5 when only more than 100
waiting links at the first look were hurried.  The fake's links here stay down
until the lab's namespace is nudged, as such a tail does until the next urgent event."""

from __future__ import annotations

import pytest

from vethlab import Lab
from vethlab.errors import KernelError
from vethlab.kernel.fake import FakeKernel
from vethlab.reconcile import verify
from vethlab.topology import lab_from_text

PAIR = """\
name: pair
nodes: {a: {}, b: {}}
links:
  - endpoints: [a:e0, b:e0]
    addresses: [[10.1.0.1/30], [10.1.0.2/30]]
"""

pytestmark = pytest.mark.usefixtures("state_root")  # tests/unit/conftest.py


class LateLinkwatch(FakeKernel):
    """a's end stays down until some namespace is nudged (Kernel.settle)."""

    def __init__(self) -> None:
        super().__init__()
        self.nudges: list[tuple[str, bool]] = []

    def settle(self, ns: str, marker: str, done: bool = False) -> None:
        self.nudges.append((ns, done))

    def oper_states(self, ns: str | None, kind: str | None = None) -> dict[str, str]:
        states = super().oper_states(ns, kind)
        if ns == "a" and "e0" in states and not any(not done for _ns, done in self.nudges):
            states["e0"] = "LOWERLAYERDOWN"
        return states


def test_few_links_left_down_are_hurried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(verify, "VERIFY_TIMEOUT", 0.5)  # without the nudge: KernelError, not a slow pass
    kernel = LateLinkwatch()
    try:
        Lab(lab_from_text(PAIR), kernel=kernel).up(wait=1.0)
    except KernelError as exc:
        pytest.fail(f"the waiting link was never hurried: {exc}")
    # hurried once (the scratch pair lives in a namespace this run made), then the pair removed
    assert kernel.nudges == [("a", False), ("a", True)]


def test_links_up_at_once_are_not_hurried() -> None:
    kernel = LateLinkwatch()
    kernel.nudges.append(("none", False))  # every link up from the first look
    Lab(lab_from_text(PAIR), kernel=kernel).up(wait=1.0)
    assert kernel.nudges == [("none", False)]
