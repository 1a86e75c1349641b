"""pytest plugin: a lab per test, each in its own sandbox.

    def test_ping(vethlab_lab):
        lab = vethlab_lab({"name": "t", "nodes": {...}, "links": [...]})
        assert lab.node("a").exec(["ping", "-c1", "10.0.0.2"]).returncode == 0

    def test_ping_built(vethlab_lab):
        lab = Lab.new("t")
        lab.add_node("a"); lab.add_node("b")
        lab.add_link("a:e0", "b:e0", addresses=["10.0.0.1/24", "10.0.0.2/24"])
        vethlab_lab(lab)   # up now, down after the test

`vethlab_sandbox` moves the test process into fresh network and mount namespaces
(private /run, /etc/netns, state dir) for the duration of the test; whatever the
test builds vanishes with them, even if it crashes.  Needs root, or running the
test session inside `vethlab sandbox` (which is rootless-capable).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest


def _can_sandbox() -> str | None:
    if os.geteuid() == 0:
        return None
    return "kernel tests need root, or run them inside `vethlab sandbox -- pytest`"


@pytest.fixture
def vethlab_sandbox() -> Iterator[None]:
    """A throw-away network + mount namespace for this test."""
    reason = _can_sandbox()
    if reason:
        pytest.skip(reason)
    from vethlab.kernel import sandbox

    sandbox.enter_private()
    yield


@pytest.fixture
def vethlab_lab(vethlab_sandbox: None) -> Iterator[Callable[[Any], Any]]:
    """A factory: call it with a dict, YAML text or a Lab built with `Lab.new`;
    the lab is up on return and taken down after the test."""
    from vethlab import Lab
    from vethlab.topology import lab_from_text

    made: list[Any] = []

    def make(topology: dict[str, Any] | str | Lab) -> Lab:
        if isinstance(topology, Lab):
            lab = topology
        elif isinstance(topology, dict):
            lab = Lab.from_dict(topology)
        else:
            lab = Lab(lab_from_text(topology))
        lab.up()
        made.append(lab)
        return lab

    yield make
    for lab in reversed(made):
        try:
            lab.down()
        finally:
            lab.close()
