"""The wait of a teardown until veth ends have gone with their namespaces follows
the kernel's RTM_DELLINK events (kernel.link_removals), on the real kernel: an
interface already gone before the wait looks is not waited for, one that cannot go
is given back once the bound passes, and events lost to a full receive buffer
(ENOBUFS) are made up for by looking again, so the wait still ends exactly when
the last one is gone."""

from __future__ import annotations

import json
import subprocess

import pytest

from vethlab.kernel import nl
from vethlab.kernel.rtnl import NetlinkKernel
from vethlab.reconcile.removal import Vanishing, wait_gone

N = 50


def _run(*argv: str, stdin: str | None = None) -> str:
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, check=True).stdout


def host_links() -> dict[str, int]:
    return {link["ifname"]: link["ifindex"] for link in json.loads(_run("ip", "-j", "link") or "[]")}


def make_members(count: int) -> dict[str, int]:
    """`count` namespaces, each holding one end of a veth pair whose other end is in
    the host: the host ends by name -> ifindex."""
    batch = [f"netns add tev{i}" for i in range(count)]
    batch += [f"link add hv{i} type veth peer name eth0 netns tev{i}" for i in range(count)]
    _run("ip", "-batch", "-", stdin="\n".join(batch) + "\n")
    links = host_links()
    return {f"hv{i}": links[f"hv{i}"] for i in range(count)}


def delete_namespaces(count: int) -> None:
    _run("ip", "-batch", "-", stdin="".join(f"netns del tev{i}\n" for i in range(count)))


def members_deleted_and_waited_for(kernel: NetlinkKernel, before: dict[str, int]) -> None:
    """N members made, their namespaces deleted: `wait_gone` returns with every end
    gone and the host's links what they were before."""
    ends = make_members(N)
    delete_namespaces(N)
    assert wait_gone(kernel, ends, timeout=30.0) == set()
    assert host_links() == before


def test_the_wait_ends_when_the_last_end_is_gone() -> None:
    before = host_links()
    kernel = NetlinkKernel()
    try:
        members_deleted_and_waited_for(kernel, before)
    finally:
        kernel.close()


def test_ends_gone_before_the_wait_looks_are_not_waited_for() -> None:
    """Subscribed first, then one dump: what went before the dump is absent from it
    (no event for it will ever come, and none is needed)."""
    before = host_links()
    ends = make_members(N)
    delete_namespaces(N)
    while set(host_links()) & set(ends):  # the kernel destroys them asynchronously
        _run("sleep", "0.05")
    kernel = NetlinkKernel()
    try:
        assert wait_gone(kernel, ends, timeout=30.0) == set()
    finally:
        kernel.close()
    assert host_links() == before


def test_an_end_that_cannot_go_is_given_back_after_the_bound() -> None:
    """A namespace some process still holds never takes its devices along: the wait
    gives that end back when its bound passes (the caller then deletes it)."""
    ends = make_members(2)
    holder = subprocess.Popen(["ip", "netns", "exec", "tev1", "sleep", "60"])
    try:
        while subprocess.run(["ip", "netns", "pids", "tev1"], capture_output=True, text=True).stdout.strip() == "":
            _run("sleep", "0.01")
        delete_namespaces(2)
        kernel = NetlinkKernel()
        try:
            assert wait_gone(kernel, ends, timeout=1.0) == {"hv1"}
        finally:
            kernel.close()
        assert "hv1" in host_links() and "hv0" not in host_links()
    finally:
        holder.kill()
        holder.wait()


def test_lost_events_are_made_up_for_by_looking_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a receive buffer of a few messages, the kernel drops most RTM_DELLINK
    events (ENOBUFS): `gone()` says so (None) instead of failing, `present()` tells
    what is left, and `wait_gone` still returns only once every end is gone."""
    monkeypatch.setattr(nl, "RCVBUF_LIMIT", 2048)
    before = host_links()
    ends = make_members(N)
    kernel = NetlinkKernel()
    watch = kernel.link_removals(None)
    try:
        delete_namespaces(N)
        while set(host_links()) & set(ends):
            _run("sleep", "0.05")
        assert watch.gone(5.0) is None  # N deletions do not fit: events were dropped
        assert not watch.present() & set(ends.values())
    finally:
        watch.close()
    try:
        members_deleted_and_waited_for(kernel, before)
    finally:
        kernel.close()


def test_ports_let_go_by_their_bridge_are_not_taken_for_gone() -> None:
    """Deleting a bridge sends RTM_DELLINK (family AF_BRIDGE) for each of its ports,
    which are still there: subscribed before the bridge goes, as `down` does, the
    wait counts only the kernel's own deletions of the interfaces."""
    before = host_links()
    ends = make_members(N)
    _run("ip", "-batch", "-", stdin="link add tevbr type bridge\n"
         + "".join(f"link set hv{i} master tevbr\n" for i in range(N)))
    kernel = NetlinkKernel()
    try:
        with Vanishing(kernel, ends) as expected:
            _run("ip", "link", "del", "tevbr")
            delete_namespaces(N)
            assert expected.wait(30.0) == set()
            assert host_links() == before
    finally:
        kernel.close()
