"""A re-run that pulls the host in only as a changed member's peer reads just that
member's port and the host's bridges, never all the ports of the network; one that
changes the host's own part (a member added or removed) reads the host whole."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import pytest

from vethlab import Lab
from vethlab.kernel.api import LinkInfo, Netns
from vethlab.kernel.fake import FakeKernel
from vethlab.model.desired import bridge_name, compile_lab, port_name, restricted
from vethlab.reconcile.observe import host_names
from vethlab.topology import HOST, lab_from_text


def star(members: dict[str, str]) -> str:
    lines = ["name: hs", "nodes:"] + [f"  {n}: {{}}" for n in ("n0", "n1", "n2", "n3")]
    lines += ["links:", "  - {endpoints: [host:hp1, n1:up], addresses: [10.9.0.1/30, 10.9.0.2/30]}"]
    lines += ["networks:", "  lan:", "    subnet: 10.0.0.0/24", "    members:"]
    lines += [f"      {n}: {{ip: {ip}}}" for n, ip in members.items()]
    return "\n".join(lines) + "\n"


MEMBERS = {"n0": "10.0.0.10", "n1": "10.0.0.11", "n2": "10.0.0.12", "n3": "10.0.0.13"}
BRIDGE = "vb.hs.lan"


pytestmark = pytest.mark.usefixtures("state_root")  # tests/unit/conftest.py


class HostReads(FakeKernel):
    """The fake, noting what each read of the host's links asked for (None: all)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.host_reads: list[frozenset[str] | None] = []

    def links(self, ns: Netns, stats: bool = False, addresses: bool = True, only_addressed: bool = False,
              names: Collection[str] | None = None) -> list[LinkInfo]:
        if ns is None and not only_addressed:
            self.host_reads.append(None if names is None else frozenset(names))
        return super().links(ns, stats, addresses, only_addressed, names)


def test_restricted_keeps_of_a_peer_host_only_what_the_nodes_in_scope_use() -> None:
    full = compile_lab(lab_from_text(star(MEMBERS)))
    assert bridge_name("hs", lab_from_text(star(MEMBERS)).networks[0]) == BRIDGE
    part = restricted(full, {"n0", HOST}, frozenset({HOST}))
    assert sorted(k for k in part.interfaces if k[0] == HOST) == sorted([(HOST, BRIDGE),
                                                                         (HOST, port_name("hs", "lan", "n0"))])
    assert host_names(part) == {BRIDGE, port_name("hs", "lan", "n0")}
    whole = restricted(full, {"n0", HOST})
    assert {k for k in whole.interfaces if k[0] == HOST} == {k for k in full.interfaces if k[0] == HOST}


def test_a_member_edit_reads_its_port_and_the_bridge_of_the_host_only() -> None:
    kernel = HostReads()
    Lab(lab_from_text(star(MEMBERS)), kernel=kernel).up(wait=1.0)
    kernel.host_reads.clear()
    Lab(lab_from_text(star({**MEMBERS, "n0": "10.0.0.99"})), kernel=kernel).up(wait=1.0)
    # the plan's and verification's reads (and the wait for the port to come up): never the whole host
    wanted = {BRIDGE, port_name("hs", "lan", "n0")}
    assert kernel.host_reads and all(read is not None and read <= wanted for read in kernel.host_reads)
    assert wanted in kernel.host_reads
    assert Lab(lab_from_text(star({**MEMBERS, "n0": "10.0.0.99"})), kernel=kernel).plan(refresh=True).actions == []


def test_a_member_removed_reads_the_host_whole_and_removes_its_port() -> None:
    kernel = HostReads()
    Lab(lab_from_text(star(MEMBERS)), kernel=kernel).up(wait=1.0)
    kernel.host_reads.clear()
    fewer = {k: v for k, v in MEMBERS.items() if k != "n3"}
    Lab(lab_from_text(star(fewer)), kernel=kernel).up(wait=1.0)
    assert None in kernel.host_reads
    assert port_name("hs", "lan", "n3") not in {link.ifname for link in kernel.links(None)}
    assert port_name("hs", "lan", "n2") in {link.ifname for link in kernel.links(None)}
