"""After apply, `up` trusts the kernel's acknowledgements for what the run made whole
(new namespaces, veths, bridges, and the settings and addresses of new interfaces)
and still waits for every link to be operationally up and re-plans what the acks
do not prove (reconcile/verify.py, Action.verified).  Against the fake kernel,
through the Lab facade, as `up` runs."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import pytest

from vethlab import Lab
from vethlab.drivers.link import SetInterface
from vethlab.errors import VethlabError
from vethlab.kernel.api import LinkInfo, Netns
from vethlab.kernel.fake import FakeKernel
from vethlab.reconcile import verify
from vethlab.topology import lab_from_text

CHAIN = """\
name: acks
nodes: {a: {}, b: {}, c: {}}
links:
  - endpoints: [a:e0, b:e0]
    addresses: [10.1.0.1/30, 10.1.0.2/30]
  - endpoints: [b:e1, c:e0]
    addresses: [10.1.0.5/30, 10.1.0.6/30]
"""


pytestmark = pytest.mark.usefixtures("state_root")  # tests/unit/conftest.py


class ReadLog(FakeKernel):
    """The fake, noting which namespaces are read whole and which by link state only,
    with the number of changes made before each read."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.read: list[tuple[str, Netns, int]] = []

    def links(self, ns: Netns, stats: bool = False, addresses: bool = True, only_addressed: bool = False,
              names: Collection[str] | None = None) -> list[LinkInfo]:
        self.read.append(("links", ns, self.calls))
        return super().links(ns, stats, addresses, only_addressed, names)

    def oper_states(self, ns: Netns, kind: str | None = None) -> dict[str, str]:
        self.read.append(("oper_states", ns, self.calls))
        return super().oper_states(ns, kind)


def _states(kernel: FakeKernel) -> dict[tuple[Netns, str], tuple[bool, str, list[str]]]:
    return {(ns, info.ifname): (info.admin_up, info.operstate, info.addresses)
            for ns in kernel.spaces if ns is not None for info in kernel.links(ns)}


def test_a_new_lab_is_verified_by_waiting_for_its_links_alone() -> None:
    kernel = ReadLog()
    spec = lab_from_text(CHAIN)
    Lab(spec, kernel=kernel).up(wait=1.0)
    a, b, c = (spec.netns_of(node) for node in "abc")
    # after apply nothing was read whole: the link states of each node, once
    after = [(what, ns) for what, ns, calls in kernel.read if calls == kernel.calls]
    assert sorted(after, key=str) == sorted((("oper_states", ns) for ns in (a, b, c)), key=str)
    up = True, "UP"
    assert {key: state for key, state in _states(kernel).items() if key[1] != "lo"} == {
        (a, "e0"): (*up, ["10.1.0.1/30"]), (b, "e0"): (*up, ["10.1.0.2/30"]),
        (b, "e1"): (*up, ["10.1.0.5/30"]), (c, "e0"): (*up, ["10.1.0.6/30"])}
    assert not Lab(lab_from_text(CHAIN), kernel=kernel).plan(refresh=True)


def test_a_new_link_that_does_not_come_up_fails_up_and_is_rolled_back(monkeypatch) -> None:
    """The acknowledgement of `set up` proves the request, not the link's state."""
    monkeypatch.setattr(verify, "VERIFY_TIMEOUT", 0.3)
    real = SetInterface.apply

    def lost_on_c(self: SetInterface, ctx: Any) -> None:
        real(self, ctx) if self.node != "c" else ctx.kernel.set_link(self.netns, self.ifname, alias=self.alias)

    monkeypatch.setattr(SetInterface, "apply", lost_on_c)
    kernel = FakeKernel()
    before = kernel.snapshot()
    with pytest.raises(VethlabError, match=r"did not settle within 0\.3 s: (b:e1|c:e0) is DOWN") as err:
        Lab(lab_from_text(CHAIN), kernel=kernel).up(wait=1.0)
    assert "everything this run created was removed again" in str(err.value)
    assert kernel.snapshot() == before


def test_an_in_place_change_that_does_not_take_is_caught(monkeypatch) -> None:
    """In a node that was there, a change is re-read: its ack is not taken for it."""
    kernel = FakeKernel()
    Lab(lab_from_text(CHAIN), kernel=kernel).up(wait=1.0)
    before = kernel.snapshot()
    monkeypatch.setattr(SetInterface, "apply", lambda self, ctx: None)
    edited = CHAIN.replace("  - endpoints: [b:e1, c:e0]\n", "  - endpoints: [b:e1, c:e0]\n    mtu: 1400\n")
    with pytest.raises(VethlabError, match="still differs from the file:\n  modify interface b:e1: mtu 1500 -> 1400"):
        Lab(lab_from_text(edited), kernel=kernel).up(wait=1.0)
    assert kernel.snapshot() == before


# a lab built down, then a link added down whose addresses are not the first of their
# nodes (the hosts files stay): all its actions are acknowledged ones, on interfaces it
# makes, and there is no link to wait for
BUILT_DOWN = CHAIN.replace("/30]\n", "/30]\n    state: down\n")
GROWN = BUILT_DOWN + """\
  - endpoints: [b:e2, c:e1]
    addresses: [10.1.0.9/30, 10.1.0.10/30]
    state: down
"""


def _held(kernel: FakeKernel) -> dict[Netns, Any]:
    """What each namespace holds: its links with all their fields, routes, sysctls."""
    return {ns: (sorted((link.index, link.ifname, link.kind, link.alias, link.mtu, link.up, link.peer,
                         tuple(link.addresses), link.master) for link in space.links.values()),
                 sorted(space.routes, key=repr), dict(space.sysctls)) for ns, space in kernel.spaces.items()}


def test_a_refused_request_of_the_last_phase_fails_up_with_nothing_to_wait_for(tmp_path, monkeypatch) -> None:
    """Nothing is read after apply, yet every acknowledgement is checked (the
    executor's last flush): a refusal at any step of the change rolls it back."""
    clean = FakeKernel()
    Lab(lab_from_text(BUILT_DOWN), kernel=clean).up(wait=1.0)
    first = clean.calls
    plan = Lab(lab_from_text(GROWN), kernel=clean).up(wait=1.0)
    assert {a.phase for a in plan.actions} == {"veth", "interface", "address"}
    for step in range(first + 1, clean.calls + 1):
        root = tmp_path / f"state{step}"
        root.mkdir(mode=0o700)
        monkeypatch.setenv("VETHLAB_STATE_DIR", str(root))
        kernel = FakeKernel(fail_at=step)
        Lab(lab_from_text(BUILT_DOWN), kernel=kernel).up(wait=1.0)
        before = _held(kernel)
        with pytest.raises(VethlabError, match="injected failure"):
            Lab(lab_from_text(GROWN), kernel=kernel).up(wait=1.0)
        assert _held(kernel) == before, step
