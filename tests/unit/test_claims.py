"""Host-namespace claims (subnets, host link addresses, published ports), the
listener table parser and the host-wide lock: pure logic, no kernel."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from vethlab.errors import ConflictError, LockTimeout
from vethlab.kernel.listeners import Listener, parse
from vethlab.model import claims
from vethlab.model.claims import HostUse, Port
from vethlab.model.ipam import allocate
from vethlab.state.hostwide import AllocationLock, tidy
from vethlab.topology import lab_from_text

LAB = """\
name: t
nodes: {a: {}, b: {}, r: {}}
links:
  - endpoints: [host:vh0, a:e1]
    addresses: [[10.9.0.1/24, "fd00:9::1/64"], [10.9.0.2/24, "fd00:9::2/64"]]
  - endpoints: [r:x, b:e1]
    addresses: [10.8.0.1/24, 10.8.0.2/24]
networks:
  one: {nat: true, subnet6: "fd00:30::/64", members: {a: {publish: ["8080:80", "127.0.0.1:53:53/udp"]}}}
  inner: {host: r, nat: true, members: {b: {publish: ["9090:80"]}}}
  phys: {driver: macvlan, parent: eth0, subnet: 192.168.7.0/24, members: {b: {}}}
"""


def test_port_overlap() -> None:
    any_tcp, local_tcp = Port(8080, "tcp"), Port(8080, "tcp", "127.0.0.1")
    assert any_tcp.overlaps(local_tcp) and local_tcp.overlaps(any_tcp)
    assert local_tcp.overlaps(Port(8080, "tcp", "0.0.0.0")) and local_tcp.overlaps(Port(8080, "tcp", "::"))
    assert not local_tcp.overlaps(Port(8080, "tcp", "127.0.0.2"))
    assert not any_tcp.overlaps(Port(8080, "udp")) and not any_tcp.overlaps(Port(8081, "tcp"))
    for port in (any_tcp, local_tcp, Port(53, "udp", "::1")):
        assert Port.parse(str(port)) == port


def test_claims_are_what_lives_in_the_host_namespace() -> None:
    spec = lab_from_text(LAB)
    mine = claims.of(spec, allocate(spec))
    # the network in node r, its published port and the link r--b are r's own; macvlan is a real LAN's
    assert mine.subnets == {"172.30.0.0/24", "fd00:30::/64"}
    assert mine.addresses == {"10.9.0.1/24", "fd00:9::1/64"}
    assert mine.ports == {"8080/tcp", "127.0.0.1:53/udp"}
    assert claims.wants_host(spec)
    assert not claims.wants_host(lab_from_text("name: s\nnodes: {a: {}, b: {}}\nlinks: [{endpoints: [a:x, b:x]}]\n"))


@pytest.mark.parametrize("use, message", [
    (HostUse(ports=[("8080/tcp", "lab x")]), "member a publishes host port 8080/tcp, which lab x already publishes"),
    (HostUse(ports=[("127.0.0.1:8080/tcp", "lab x")]), "which lab x already publishes (127.0.0.1:8080/tcp)"),
    (HostUse(ports=[("53/udp", "lab x")]), "host port 127.0.0.1:53/udp, which lab x already publishes"),
    (HostUse(listeners=[("0.0.0.0:8080/tcp", "a process")]), "but a process listens on 0.0.0.0:8080/tcp"),
    (HostUse(listeners=[("::1:53/udp", "a process")]), None),  # a v6 loopback socket vs 127.0.0.1
    (HostUse(listeners=[("127.0.0.53:53/udp", "a process")]), None),
    (HostUse(ports=[("9090/tcp", "lab x"), ("8080/udp", "lab x")]), None),
    (HostUse(addresses=[("10.9.0.1/16", "interface eth0")]), "address 10.9.0.1/24 is already taken: interface eth0 has it"),
    (HostUse(addresses=[("10.9.0.77/24", "lab x")]), "address 10.9.0.1/24 overlaps 10.9.0.0/24 of lab x"),
    (HostUse(addresses=[("fd00:9::1/128", "lab x")]), "address fd00:9::1/64 is already taken: lab x has it"),
    (HostUse(subnets=[("10.0.0.0/8", "lab x")]), "address 10.9.0.1/24 overlaps 10.0.0.0/8 of lab x"),
    (HostUse(addresses=[("127.0.0.1/8", "interface lo"), ("fe80::1/64", "interface lo")]), None),
    (HostUse(addresses=[("10.8.0.1/24", "interface eth0")]), None),  # r:x is in r's namespace
])
def test_check(use: HostUse, message: str | None) -> None:
    spec = lab_from_text(LAB)
    if message is None:
        claims.check(spec, use)
        return
    with pytest.raises(ConflictError) as err:
        claims.check(spec, use)
    assert message in str(err.value) and "nothing was changed" in str(err.value)


def test_subnets_avoid_other_labs_host_link_ends_and_v6() -> None:
    spec = lab_from_text(LAB)
    use = HostUse(addresses=[("172.30.0.1/24", "lab x"), ("127.0.0.1/8", "interface lo"),
                             ("fe80::1/64", "interface eth0")], subnets=[("172.30.1.0/24", "lab y")])
    assert allocate(spec, taken={"host": use.taken_subnets()}).subnet["one"] == "172.30.2.0/24"
    with pytest.raises(ConflictError, match="subnet6 fd00:30::/64 overlaps fd00:30::/48 of lab y"):
        allocate(spec, taken={"host": HostUse(subnets=[("fd00:30::/48", "lab y")]).taken_subnets()})


def test_listener_tables() -> None:
    tcp = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0
   1: 0100007F:0050 0100007F:A1B2 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0 100 0 0 10 0
"""
    udp6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue ...
  0: 00000000000000000000000001000000:0035 00000000000000000000000000000000:0000 07 00000000:00000000 ...
  1: 00000000000000000000000000000000:A000 0000000000000000FFFF00000100007F:0035 01 00000000:00000000 ...
"""
    assert parse(tcp, "tcp") == [Listener("0.0.0.0", 8080, "tcp")]  # the established one is a connection
    assert parse(udp6, "udp") == [Listener("::1", 53, "udp")]  # the connected one is a client


def test_allocation_lock_waits_and_names_the_holder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("VETHLAB_STATE_DIR", str(tmp_path))
    holder = AllocationLock("one")
    holder.acquire()
    try:
        with pytest.raises(LockTimeout) as err:
            AllocationLock("two", wait=0.1).acquire()
        assert f"lab two: the host-wide allocation lock {tmp_path}/.alloc.lock is held by pid {os.getpid()}" \
            in str(err.value) and "--wait" in str(err.value)
        timer = threading.Timer(0.2, holder.release)
        timer.start()
        with AllocationLock("two", wait=5):
            assert "lab two waits for the host-wide allocation lock, held by pid" in capsys.readouterr().err
        timer.join()
    finally:
        holder.release()


def test_allocation_lock_is_not_opened_through_a_symlink(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VETHLAB_STATE_DIR", str(tmp_path))
    os.symlink(tmp_path / "elsewhere", tmp_path / ".alloc.lock")
    with pytest.raises(ConflictError, match="is a symlink"):
        AllocationLock("one").acquire()
    assert not (tmp_path / "elsewhere").exists()


def test_networks_in_a_node_of_their_own_ignore_the_host() -> None:
    spec = lab_from_text("name: i\nnodes: {r: {}, a: {}}\nnetworks: {n: {host: r, members: {a: {}}}}\n")
    assert not claims.wants_host(spec)
    everything = {"host": [("172.30.0.0/16", "lab x")]}
    assert allocate(spec, taken=everything).subnet["n"] == "172.30.0.0/24"


def test_allocation_lock_file_goes_with_the_last_lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VETHLAB_STATE_DIR", str(tmp_path))
    (tmp_path / "one").mkdir()
    with AllocationLock("one"):
        pass
    assert sorted(os.listdir(tmp_path)) == [".alloc.lock", "one"]
    (tmp_path / "one").rmdir()
    tidy()
    assert os.listdir(tmp_path) == []
    # a waiter that opened the file before the last holder unlinked it, and wins the
    # lock on that unlinked inode, takes the new file instead: never two holders
    holder = AllocationLock("a")
    holder.acquire()
    stale = os.open(holder.path, os.O_RDWR)
    waiter = AllocationLock("b", say=False)
    real_open, opened = waiter._open, [stale]
    monkeypatch.setattr(waiter, "_open", lambda: opened.pop() if opened else real_open())
    holder.release()  # no lab left: unlinks the file
    waiter.acquire()
    (tmp_path / "b").mkdir()
    with pytest.raises(LockTimeout, match="held by pid"):
        AllocationLock("c", wait=0.05, say=False).acquire()
    waiter.release()


def test_host_wide_names() -> None:
    spec = lab_from_text(LAB.replace("  phys:", "  up: {uplinks: [enp7s0], subnet: 10.7.0.0/24, members: {a: {}}}\n  phys:"))
    assert claims.of(spec, allocate(spec)).names == {
        "netns:a", "netns:b", "netns:r", "if:vh0", "if:vb.t.one", "if:vb.t.up", "if:enp7s0"}
    for key, message in (("netns:r", "namespace r (node r) is already taken: lab x has it"),
                         ("if:vh0", "interface vh0 of the host namespace (link end host:vh0) is already taken"),
                         ("if:enp7s0", "uplink enp7s0 of network up is already taken: lab x has it")):
        with pytest.raises(ConflictError, match=message.replace("(", "\\(").replace(")", "\\)")):
            claims.check(spec, HostUse(names=[(key, "lab x")]))
    claims.check(spec, HostUse(names=[("netns:t-r", "lab x"), ("if:r", "lab x")]))
    prefixed = lab_from_text("name: a\nprefix: true\nnodes: {b: {}}\n")
    assert claims.of(prefixed, allocate(prefixed)).names == {"netns:a-b"}  # lab x may have a node a-b


ORDER = """\
name: o
nodes: {a: {}, b: {}, r: {}, host: {sysctls: {net.ipv4.conf.all.rp_filter: 2},
                                    routes: ["default via 10.9.0.2", "10.50.0.0/16 via 10.9.0.2 metric 5",
                                             "10.50.0.0/16 via 10.9.0.2 metric 7"]}}
links:
  - endpoints: [a:e1, host:vh0]
    addresses: [10.9.0.2/24, ["fe80::1/64", 10.9.0.1/24]]
  - endpoints: [b:e1, host:vh1]
    addresses: [10.7.0.2/24, 10.7.0.1/24]
networks:
  inner: {host: r, nat: true, members: {b: {publish: ["9090:80"]}}}
  one: {nat: true, members: {a: {publish: ["8080:80"]}, b: {publish: ["8081:80"]}}}
"""


def test_every_claim_counts_whatever_comes_before_it_in_the_file() -> None:
    """A network in another node listed first, a host end second in its link, a
    link-local address first on an end: none of them hides the claims after it."""
    spec = lab_from_text(ORDER)
    mine = claims.of(spec, allocate(spec))
    assert mine.subnets == {"172.30.0.0/24"}
    assert mine.ports == {"8080/tcp", "8081/tcp"}
    assert mine.addresses == {"fe80::1/64", "10.9.0.1/24", "10.7.0.1/24"}
    for use, message in ((HostUse(ports=[("8081/tcp", "lab x")]), "member b publishes host port 8081/tcp"),
                         (HostUse(addresses=[("10.9.0.1/32", "lab x")]), "address 10.9.0.1/24 is already taken"),
                         (HostUse(subnets=[("10.7.0.0/16", "lab x")]), "address 10.7.0.1/24 overlaps 10.7.0.0/16")):
        with pytest.raises(ConflictError, match=message):
            claims.check(spec, use)


def test_the_host_namespace_s_sysctls_and_routes_are_claimed_by_destination_and_metric() -> None:
    """Two labs may not both set a host sysctl or the same host route: the first
    `down` would undo the other's.  "default" is 0.0.0.0/0, as the kernel keys it;
    the same destination at another metric is another route."""
    names = claims.names(lab_from_text(ORDER))
    assert {key: what for key, what in names.items() if key.startswith(("sysctl:", "route:"))} == {
        "sysctl:net.ipv4.conf.all.rp_filter": "sysctl net.ipv4.conf.all.rp_filter of the host namespace",
        "route:0.0.0.0/0:0": "route 0.0.0.0/0 of the host namespace",
        "route:10.50.0.0/16:5": "route 10.50.0.0/16 of the host namespace",
        "route:10.50.0.0/16:7": "route 10.50.0.0/16 of the host namespace",
    }
    assert names["if:vb.o.one"] == "bridge vb.o.one of network one"
    with pytest.raises(ConflictError, match=r"^route 0.0.0.0/0 of the host namespace is already taken: lab x"):
        claims.check(lab_from_text(ORDER), HostUse(names=[("route:0.0.0.0/0:0", "lab x")]))


def test_a_lab_uses_the_host_with_only_a_host_link_or_only_a_host_network() -> None:
    assert claims.wants_host(lab_from_text("name: s\nnodes: {a: {}}\nlinks: [{endpoints: [a:x, host:x]}]\n"))
    assert claims.wants_host(lab_from_text("name: s\nnodes: {a: {}}\nnetworks: {n: {members: {a: {}}}}\n"))


def test_the_host_s_loopback_and_link_local_addresses_take_no_subnet() -> None:
    use = HostUse(subnets=[("172.30.9.0/24", "lab y")],
                  addresses=[("127.0.0.1/8", "interface lo"), ("::1/128", "interface lo"),
                             ("fe80::1/64", "interface eth0"), ("192.168.1.10/24", "interface eth0")])
    assert use.taken_subnets() == [("172.30.9.0/24", "lab y"), ("192.168.1.0/24", "interface eth0")]


def test_a_lab_claims_something_when_it_holds_any_one_kind_of_thing() -> None:
    assert not claims.HostClaims()
    for one in ({"subnets": {"10.0.0.0/24"}}, {"addresses": {"10.0.0.1/24"}}, {"ports": {"80/tcp"}},
                {"names": {"netns:a"}}):
        assert claims.HostClaims(**one), one
