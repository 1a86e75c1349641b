"""The kernel boundary as the fake implements it: batching reported the way
NetlinkKernel reports it, and the events verb that `watch` consumes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from vethlab.errors import KernelError
from vethlab.kernel.api import Route
from vethlab.kernel.fake import FakeKernel
from vethlab.ops import inspect, watch
from vethlab.state import store


def pair(kernel: FakeKernel) -> None:
    """Namespaces a and b joined by a veth a:e0 <-> b:e0, both ends up (4 steps)."""
    kernel.create_namespaces(["a", "b"], "vethlab:t")
    kernel.create_veth("a", "e0", "b", "e0", None, "vethlab:t")
    kernel.flush()


def test_a_queued_failure_surfaces_at_flush_and_the_rest_of_the_batch_applies() -> None:
    kernel = FakeKernel(fail_at=4)
    pair(kernel)  # steps 1-3
    kernel.add_address("a", "e0", "10.0.0.1/24")  # step 4: fails, but queued: no error yet
    kernel.add_address("b", "e0", "10.0.0.2/24")
    kernel.add_route("a", Route("10.9.0.0/16", "10.0.0.2"))
    with pytest.raises(KernelError, match=r"injected failure at step 4: add address a:e0 10.0.0.1/24"):
        kernel.flush()
    kernel.flush()  # reported once
    addresses = {(ns, link.ifname): link.addresses for ns in ("a", "b") for link in kernel.links(ns)}
    assert addresses == {("a", "lo"): [], ("a", "e0"): [], ("b", "lo"): [], ("b", "e0"): ["10.0.0.2/24"]}
    assert [r.dst for r in kernel.routes("a")] == ["10.9.0.0/16"]


def test_a_read_flushes_first_and_so_reports_a_queued_failure() -> None:
    kernel = FakeKernel(fail_at=4)
    pair(kernel)
    kernel.set_link("a", "e0", up=True)
    with pytest.raises(KernelError, match="set link a:e0"):
        kernel.links("b")
    assert [link.admin_up for link in kernel.links("a") if link.ifname == "e0"] == [False]


def test_failures_of_one_batch_are_reported_together() -> None:
    kernel = FakeKernel(fail_at=4)
    pair(kernel)
    kernel.write_sysctl("a", "net.ipv4.ip_forward", "1")
    kernel.fail_at = 5
    kernel.write_sysctl("b", "net.ipv4.ip_forward", "1")
    with pytest.raises(KernelError, match=r"step 4: sysctl a: net.ipv4.ip_forward=1 \(and 1 more failures\)$"):
        kernel.flush()
    assert [kernel.read_sysctl(ns, "net.ipv4.ip_forward") for ns in ("a", "b")] == ["0", "0"]


def test_verbs_the_real_kernel_runs_at_once_fail_at_once() -> None:
    kernel = FakeKernel(fail_at=4)
    pair(kernel)
    with pytest.raises(KernelError, match="step 4: firewall a"):
        kernel.firewall_apply("a", {"nftables": []}, "make table")
    kernel.flush()  # nothing was queued


def test_unbatched_fake_fails_at_the_call() -> None:
    kernel = FakeKernel(fail_at=4, batched=False)
    pair(kernel)
    with pytest.raises(KernelError, match="step 4: add address"):
        kernel.add_address("a", "e0", "10.0.0.1/24")


@pytest.fixture
def lab_t(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeKernel:
    """Lab t in the state store: nodes a and b, link a:e0 <-> b:e0, on a fake kernel."""
    monkeypatch.setenv("VETHLAB_STATE_DIR", str(tmp_path))
    kernel = FakeKernel()
    pair(kernel)
    kernel.set_link("a", "e0", up=True)
    kernel.set_link("b", "e0", up=True)
    kernel.add_address("b", "e0", "10.0.0.2/24")
    kernel.add_address("a", "e0", "10.0.0.1/24")
    kernel.flush()
    store.save(store.LabState("t", nodes={"a": "a", "b": "b"}, links=[["a", "e0", "b", "e0"]], complete=True))
    return kernel


def test_watch_shows_each_change_as_old_to_new_state(lab_t: FakeKernel) -> None:
    kernel = lab_t
    seen: list[dict[str, Any]] = []

    def changes() -> None:  # made once the state before the first event was read
        kernel.set_link("a", "e0", up=False)
        kernel.set_link("a", "e0", mtu=1400)  # nothing the user sees changes: no event
        kernel.add_address("b", "e0", "fe80::1/64")  # link-local: not shown
        kernel.delete_address("b", "e0", "10.0.0.2/24")
        kernel.flush()

    assert watch.watch("t", seen.append, count=3, ready=changes, kernel=kernel) == 3
    for event in seen:
        assert event.pop("time")
    assert seen == [
        {"lab": "t", "node": "a", "ifname": "e0", "event": "link", "state": "down", "carrier": False, "admin": "down",
         "operstate": "DOWN", "old_state": "up", "deleted": False},
        {"lab": "t", "node": "b", "ifname": "e0", "event": "link", "state": "down", "carrier": False, "admin": "up",
         "operstate": "DOWN", "old_state": "up", "deleted": False},
        {"lab": "t", "node": "b", "ifname": "e0", "event": "address", "action": "delete", "address": "10.0.0.2/24",
         "state": "down", "carrier": False},
    ]
    assert kernel.streams == []  # the subscription is closed


def test_one_reader_serves_status_and_addresses(lab_t: FakeKernel) -> None:
    state = inspect.lab_state("t")
    assert inspect.node_addresses(lab_t, state) == {"a": [("e0", "10.0.0.1/24")], "b": [("e0", "10.0.0.2/24")]}
    report = inspect.lab_status("t", kernel=lab_t, nodes=["b"])
    assert [(i["node"], i["name"], i["peer"], i["addresses"], i["operstate"]) for i in report["interfaces"]] == \
        [("b", "e0", "a:e0", ["10.0.0.2/24"], "UP")]
    assert report["nodes"] == [{"name": "b", "netns": "b", "exists": True}]


def test_status_of_some_nodes_reads_service_records_of_every_shape(lab_t: FakeKernel) -> None:
    """The live page asks for the nodes on screen; records carry a label, a done flag
    and a namespace inode since the state grew them (the page's reader unpacked three)."""
    state = inspect.lab_state("t")
    state.services = {"a": [[["sleep", "9"], 7, 1, "t:a:0", False, 0], [["true"], 8, 1]], "b": [[["x"], 9, 1]]}
    store.save(state)
    report = inspect.lab_status("t", kernel=lab_t, nodes=["a"])
    assert [(s["node"], s["command"], s["pid"], s["state"], Path(s["log"]).name) for s in report["services"]] == \
        [("a", "sleep 9", 7, "exited", "a-0.log"), ("a", "true", 8, "exited", "a-1.log")]
