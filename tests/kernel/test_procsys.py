"""kernel/procsys.SysctlWriter against the real kernel: a sysctl written from inside
each of many namespaces, through its own procfs instances (renewed as it goes),
lands in that namespace and in no other; no such sysctl is FileNotFoundError; and
where the kernel refuses a procfs instance the writer uses /proc as before."""

from __future__ import annotations

import os

import pytest

from vethlab.kernel import netns as nsmod
from vethlab.kernel import procsys
from vethlab.kernel.procsys import SysctlWriter

ACCEPT_DAD = "net/ipv6/conf/default/accept_dad"
FORWARDING = "net/ipv4/ip_forward"


def _read(path: str) -> str:
    with open("/proc/sys/" + path) as fh:
        return fh.read().strip()


def _read_in(name: str, path: str) -> str:
    return nsmod.call_inside(name, lambda: _read(path))


def _make(names: list[str], writer: SysctlWriter) -> None:
    def inside(name: str) -> None:
        if name.endswith(("1", "3", "5", "7", "9")):  # every other one: its neighbours keep their defaults
            writer.write(FORWARDING, "1")
        writer.write(ACCEPT_DAD, "0")

    try:
        nsmod.create_many(names, inside)
    finally:
        writer.close()


def test_each_namespace_gets_its_own_value_across_renewals() -> None:
    names = [f"ps{i}" for i in range(10)]
    host = (_read(FORWARDING), _read(ACCEPT_DAD))
    _make(names, SysctlWriter(renew=3))  # 15 writes: five procfs instances
    try:
        seen = {name: (_read_in(name, FORWARDING), _read_in(name, ACCEPT_DAD)) for name in names}
        assert seen == {name: ("1" if int(name[2:]) % 2 else "0", "0") for name in names}
        assert (_read(FORWARDING), _read(ACCEPT_DAD)) == host  # the caller's namespace untouched
    finally:
        for name in names:
            nsmod.delete(name)


def test_no_such_sysctl_is_file_not_found() -> None:
    writer = SysctlWriter()
    try:
        with pytest.raises(FileNotFoundError):
            nsmod.run_in_thread(lambda: (nsmod.unshare_net(), writer.write("net/ipv4/no_such_thing", "1")))
    finally:
        writer.close()


def test_falls_back_to_proc_when_no_instance_can_be_made(monkeypatch: pytest.MonkeyPatch) -> None:
    def refused() -> int:
        raise PermissionError(1, "fsopen proc: operation not permitted")

    monkeypatch.setattr(procsys, "_fresh_proc", refused)
    names = ["pf0", "pf1"]
    _make(names, SysctlWriter())
    try:
        assert {name: (_read_in(name, FORWARDING), _read_in(name, ACCEPT_DAD)) for name in names} == \
            {"pf0": ("0", "0"), "pf1": ("1", "0")}
    finally:
        for name in names:
            nsmod.delete(name)


def test_no_descriptor_left_open() -> None:
    before = set(os.listdir("/proc/self/fd"))
    names = [f"pd{i}" for i in range(4)]
    _make(names, SysctlWriter(renew=2))
    try:
        assert set(os.listdir("/proc/self/fd")) == before
    finally:
        for name in names:
            nsmod.delete(name)
