"""netns.delete_many: every namespace goes and every name is given to `beside`,
whatever fails for another name or in the other thread, on the serial path and on
the one that spreads to more threads when umounts prove slow; failures come back
by name.  Compares the whole of /run/netns, not counts."""

from __future__ import annotations

import os
import threading

import pytest

from vethlab.kernel import netns

N = 40  # more than two probes: the switch can happen and leave work for the helpers


def make(count: int) -> list[str]:
    names = [f"del{i}" for i in range(count)]
    netns.create_many(names, lambda name: None)
    assert sorted(netns.list_names()) == sorted(names)
    return names


def umounted_by(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """name -> the thread that deleted it (observed, the real delete still runs)."""
    seen: dict[str, str] = {}
    real = netns.delete

    def delete(name: str) -> None:
        seen[name] = threading.current_thread().name
        real(name)

    monkeypatch.setattr(netns, "delete", delete)
    return seen


@pytest.mark.parametrize("slow", [False, True])
def test_every_namespace_goes_and_every_name_is_given_beside(monkeypatch: pytest.MonkeyPatch, slow: bool) -> None:
    # a threshold no umount meets, or one every umount exceeds: both paths, whatever the machine's load
    monkeypatch.setattr(netns, "SLOW_UMOUNT", 0.0 if slow else 3600.0)
    names = make(N)
    seen = umounted_by(monkeypatch)
    given: list[str] = []
    assert netns.delete_many(names, given.append) == {}
    assert netns.list_names() == []
    assert given == names  # in order, each once
    assert sorted(seen) == sorted(names)
    helpers = {thread for thread in seen.values() if thread == "vethlab-netns-del"}
    assert helpers == ({"vethlab-netns-del"} if slow else set())
    assert [t.name for t in threading.enumerate() if t.name.startswith("vethlab-netns")] == []


@pytest.mark.parametrize("slow", [False, True])
@pytest.mark.parametrize("error", [OSError(13, "Permission denied"), ValueError("a bug")])
def test_a_failure_beside_is_reported_and_the_umounts_all_happen(monkeypatch: pytest.MonkeyPatch, slow: bool,
                                                                  error: Exception) -> None:
    monkeypatch.setattr(netns, "SLOW_UMOUNT", 0.0 if slow else 3600.0)
    names = make(N)
    given: list[str] = []

    def beside(name: str) -> None:
        given.append(name)
        if name in ("del3", "del30"):
            raise error

    assert netns.delete_many(names, beside) == {"del3": error, "del30": error}
    assert netns.list_names() == []
    assert given == names


@pytest.mark.parametrize("slow", [False, True])
def test_a_failed_umount_is_reported_and_the_others_go_on(monkeypatch: pytest.MonkeyPatch, slow: bool) -> None:
    monkeypatch.setattr(netns, "SLOW_UMOUNT", 0.0 if slow else 3600.0)
    names = make(N)
    # a namespace file that cannot be unlinked: a mount on top of it, the namespace's own
    # file bound again (umount detaches the top one, unlink then meets the one below: EBUSY)
    target = netns.ns_path("del7")
    from vethlab.kernel.libc import MS_BIND, mount

    mount(target, target, None, MS_BIND)
    given: list[str] = []
    failed = netns.delete_many(names, given.append)
    assert list(failed) == ["del7"] and isinstance(failed["del7"], OSError)
    assert netns.list_names() == ["del7"]
    assert given == names
    netns.delete("del7")
    assert netns.list_names() == []
    assert not os.path.exists(target)
