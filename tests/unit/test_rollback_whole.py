"""A failure at every kernel step of a full lab's first `up` restores everything:
the whole fake kernel (every namespace's interfaces with all their fields, routes,
sysctls; tables with their chains; /etc/netns files and their owners; services;
shaping) and the state directory compare equal to what they were — not names, not
counts.  The host starts with an administrator's own interface, route and sysctl,
which must come through untouched.  Driven through the Lab facade, as `up` is."""

from __future__ import annotations

import copy
import os
from typing import Any

import pytest

from vethlab import Lab
from vethlab.errors import VethlabError
from vethlab.kernel.api import Route
from vethlab.kernel.fake import FakeKernel, _Link
from vethlab.topology import lab_from_text

FULL = """\
name: full
nodes:
  a:
    sysctls: {net.ipv4.ip_forward: 1}
    routes: ["10.9.0.0/16 via 192.168.1.2"]
    exec: ["true"]
  b:
    run: ["sleep 1000"]
  host:
    routes: ["10.77.0.0/16 via 203.0.113.2"]
links:
  - endpoints: [a:e0, b:e0]
    addresses: [192.168.1.1/24, 192.168.1.2/24]
    rate: 10mbit
  - endpoints: [host:vh-full, a:up0]
    addresses: [203.0.113.1/24, 203.0.113.2/24]
networks:
  lan:
    nat: true
    members:
      a: {publish: ["18080:80/tcp"]}
      b: {}
"""


def _admin_host(kernel: FakeKernel) -> None:
    """What an administrator already has in the host: must survive every rollback."""
    host = kernel.spaces[None]
    host.links[2] = _Link(2, "eth0", "physical", up=True, addresses=["198.51.100.5/24"])
    host.routes.append(Route("0.0.0.0/0", "198.51.100.1", "eth0", None, None, 3))
    host.sysctls["net.ipv4.ip_forward"] = "0"
    host.sysctls["net.ipv4.conf.all.rp_filter"] = "2"


def whole(kernel: FakeKernel, state_root: str) -> dict[str, Any]:
    spaces = {}
    for ns, space in kernel.spaces.items():
        links = sorted((link.index, link.ifname, link.kind, link.alias, link.mtu, link.up, link.peer,
                        tuple(link.addresses), link.master) for link in space.links.values())
        spaces[ns] = (links, sorted(space.routes, key=repr), dict(space.sysctls))
    tree = sorted(os.path.relpath(os.path.join(d, f), state_root)
                  for d, _dirs, files in os.walk(state_root) for f in files)
    return {"spaces": spaces, "stale": set(kernel.stale), "files": copy.deepcopy(kernel.files),
            "owners": dict(kernel.file_owners), "temps": dict(kernel.temp_files),
            "tables": copy.deepcopy(kernel.tables), "services": dict(kernel.services),
            "shaped": dict(kernel.shaped), "state": tree}


def _up(kernel: FakeKernel) -> None:
    lab = Lab(lab_from_text(FULL), kernel=kernel)
    lab.up(wait=1.0)


@pytest.fixture
def state_root(tmp_path, monkeypatch) -> str:
    root = tmp_path / "state"
    root.mkdir(mode=0o700)
    monkeypatch.setenv("VETHLAB_STATE_DIR", str(root))
    monkeypatch.setenv("VETHLAB_READY_TIMEOUT", "2")
    return str(root)


def _steps(state_root: str) -> int:
    kernel = FakeKernel()
    _admin_host(kernel)
    _up(kernel)
    Lab.existing("full", kernel=kernel).down(wait=1.0)
    return kernel.calls


def test_full_lab_builds_and_goes_away_on_the_fake(state_root: str) -> None:
    kernel = FakeKernel()
    _admin_host(kernel)
    before = whole(kernel, state_root)
    _up(kernel)
    built = whole(kernel, state_root)
    assert built != before and len(built["spaces"]) == 3 and built["tables"] and built["services"]
    Lab.existing("full", kernel=kernel).down(wait=1.0)
    assert whole(kernel, state_root) == before


def test_failure_at_every_step_restores_the_whole_kernel(state_root: str) -> None:
    steps = _steps(state_root)
    assert steps > 20
    failures = []
    for step in range(1, steps + 1):
        kernel = FakeKernel(fail_at=step)
        _admin_host(kernel)
        before = whole(kernel, state_root)
        try:
            _up(kernel)
        except VethlabError:
            pass
        else:
            continue  # the step counted was one of down's: up got through
        after = whole(kernel, state_root)
        if after != before:
            diff = {key: (before[key], after[key]) for key in before if before[key] != after[key]}
            failures.append(f"step {step} ({kernel.log[step - 1] if step <= len(kernel.log) else '?'}): {diff}")
    assert not failures, "\n".join(failures[:5])
