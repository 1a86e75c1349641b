"""The kernel verbs for VXLAN (kernel/vxlan.py, NetlinkKernel.create_vxlan and
fdb_*), against the real kernel, between simulated machines."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

from vethlab.kernel import machines

MARK = "vethlab:t"


@pytest.fixture
def trio() -> Iterator[list[machines.Machine]]:
    made = machines.start(["m1", "m2", "m3"])
    yield made
    machines.stop(made)


def py(machine: machines.Machine, code: str) -> str:
    """Run Python code inside a machine (with a NetlinkKernel `k` at hand); its stdout."""
    prelude = "from vethlab.kernel.rtnl import NetlinkKernel\nk = NetlinkKernel()\n"
    r = subprocess.run(machines.on_command(machine, [sys.executable, "-c", prelude + textwrap.dedent(code)]),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def sh(machine: machines.Machine, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(machines.on_command(machine, list(argv)), capture_output=True, text=True, timeout=60)


def test_a_vxlan_link_lives_in_the_node_and_tunnels_through_the_machine(trio: list[machines.Machine]) -> None:
    m1, m2, _ = trio
    for me, peer, address in ((m1, m2, "10.0.0.1/24"), (m2, m1, "10.0.0.2/24")):
        py(me, f"""
            k.create_namespaces(["a"], "{MARK}")
            k.create_vxlan("a", "e0", 4242, "{me.address}", "{peer.address}", dev="eth0", mtu=1450)
            k.flush()
            k.set_link("a", "e0", up=True, alias="{MARK}")
            k.add_address("a", "e0", "{address}")
            k.flush()
            print(k.vxlan_info("a", "e0"))
            """)
    info = py(m1, 'print(k.vxlan_info("a", "e0"))').strip()
    assert info == str({"vni": 4242, "remote": m2.address, "local": m1.address, "port": 4789, "link": 2})
    assert sh(m1, "ip", "netns", "exec", "a", "ping", "-c1", "-W2", "10.0.0.2").returncode == 0
    # the node sees an ordinary interface; its tunnel socket is the machine's: no UDP socket in the node
    assert json.loads(sh(m1, "ip", "-n", "a", "-j", "-d", "link", "show", "e0").stdout)[0]["mtu"] == 1450
    assert sh(m1, "ip", "netns", "exec", "a", "ss", "-uanH").stdout.strip() == ""
    assert "4789" in sh(m1, "ss", "-uanH").stdout


def test_a_1450_mtu_carries_1422_byte_df_pings_and_refuses_1423(trio: list[machines.Machine]) -> None:
    m1, m2, _ = trio
    for me, peer, address in ((m1, m2, "10.0.0.1/24"), (m2, m1, "10.0.0.2/24")):
        py(me, f"""
            k.create_namespaces(["a"], "{MARK}")
            k.create_vxlan("a", "e0", 7, "{me.address}", "{peer.address}", mtu=1450)
            k.flush()
            k.set_link("a", "e0", up=True)
            k.add_address("a", "e0", "{address}")
            k.flush()
            """)
    ok = sh(m1, "ip", "netns", "exec", "a", "ping", "-c1", "-W2", "-M", "do", "-s", "1422", "10.0.0.2")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    big = sh(m1, "ip", "netns", "exec", "a", "ping", "-c1", "-W2", "-M", "do", "-s", "1423", "10.0.0.2")
    assert big.returncode != 0 and "message too long" in (big.stdout + big.stderr).lower()


def test_a_clashing_vni_is_a_plain_error(trio: list[machines.Machine]) -> None:
    out = py(trio[0], f"""
        from vethlab.errors import KernelError
        k.create_namespaces(["a", "b"], "{MARK}")
        k.create_vxlan("a", "e0", 9, "{trio[0].address}", "{trio[1].address}")
        k.flush()
        k.create_vxlan("b", "e0", 9, "{trio[0].address}", "{trio[1].address}")
        try:
            k.flush()
        except KernelError as exc:
            print(exc)
        """)
    assert out.startswith("cannot create VXLAN e0 (VNI 9) in namespace b: already exists"), out


def test_flood_entries_join_three_bridges_without_multicast(trio: list[machines.Machine]) -> None:
    """A spanning network's building blocks: per machine a bridge in the machine,
    a VXLAN port without remote, one all-zero FDB entry per other machine."""
    for n, me in enumerate(trio, start=1):
        others = [m.address for m in trio if m is not me]
        py(me, f"""
            k.create_namespaces(["n"], "{MARK}")
            k.create_bridge(None, "br0", None, "{MARK}")
            k.create_vxlan(None, "vx0", 100, "{me.address}", None, mtu=1450, marker="{MARK}")
            k.create_veth("n", "eth0", None, "p0", 1450, "{MARK}")
            k.flush()
            for name in ("br0", "vx0", "p0"):
                k.set_link(None, name, up=True, master=None if name == "br0" else "br0")
            k.set_link("n", "eth0", up=True)
            k.add_address("n", "eth0", "172.31.0.{n}/24")
            for dst in {others!r}:
                k.fdb_append(None, "vx0", dst)
            k.flush()
            """)
    floods = py(trio[0], 'print(k.fdb_floods(None, "vx0"))').strip()
    assert floods == str(sorted(m.address for m in trio[1:]))
    for src, dst in ((trio[0], "172.31.0.3"), (trio[2], "172.31.0.2")):
        r = sh(src, "ip", "netns", "exec", "n", "ping", "-c1", "-W2", dst)
        assert r.returncode == 0, r.stdout + r.stderr
    aliases = {link["ifname"]: link.get("ifalias") for link in json.loads(sh(trio[0], "ip", "-j", "link").stdout)}
    assert aliases["vx0"] == MARK and aliases["br0"] == MARK
    py(trio[0], 'k.fdb_delete(None, "vx0", "10.200.0.2"); k.flush()')
    assert py(trio[0], 'print(k.fdb_floods(None, "vx0"))').strip() == "['10.200.0.3']"
