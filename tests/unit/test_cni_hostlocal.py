"""vethlab's host-local-compatible allocator, on a temporary directory: the same
files, order and reuse rules as the reference host-local (which the kernel tests
run against the same store)."""

from __future__ import annotations

import os

import pytest

from vethlab.cni import hostlocal
from vethlab.cni.protocol import CniError


def ipam(data: str, **range_keys: str) -> dict[str, object]:
    return {"type": "host-local", "ranges": [[{"subnet": "10.9.0.0/29", **range_keys}]], "dataDir": data,
            "routes": [{"dst": "0.0.0.0/0"}]}


def add(conf: dict[str, object], cid: str, args: dict[str, str] | None = None) -> str:
    result = hostlocal.add(conf, "net", cid, "eth0", args or {}, 1.0)
    return str(result.ips[0]["address"])


def test_hands_out_in_order_skipping_gateway_and_round_robin(tmp_path) -> None:
    conf = ipam(str(tmp_path))
    # /29: .0 network, .1 gateway, .2-.6 usable, .7 broadcast
    assert [add(conf, f"c{i}") for i in range(3)] == ["10.9.0.2/29", "10.9.0.3/29", "10.9.0.4/29"]
    hostlocal.delete(conf, "net", "c0", "eth0", 1.0)
    assert add(conf, "c3") == "10.9.0.5/29"  # round robin: not the freed .2 at once, as host-local does
    assert add(conf, "c4") == "10.9.0.6/29"
    assert add(conf, "c5") == "10.9.0.2/29"  # wrapped round
    with pytest.raises(CniError) as info:
        add(conf, "c6")
    assert info.value.code == 102 and "no free address" in info.value.details


def test_files_are_host_local_s(tmp_path) -> None:
    conf = ipam(str(tmp_path))
    add(conf, "abc")
    store = tmp_path / "net"
    assert sorted(os.listdir(store)) == ["10.9.0.2", "last_reserved_ip.0", "lock"]
    assert (store / "10.9.0.2").read_bytes() == b"abc\r\neth0"
    assert (store / "last_reserved_ip.0").read_text() == "10.9.0.2"


def test_result_has_gateway_and_routes(tmp_path) -> None:
    result = hostlocal.add(ipam(str(tmp_path), gateway="10.9.0.6"), "net", "c", "eth0", {}, 1.0)
    assert result.ips == [{"address": "10.9.0.1/29", "gateway": "10.9.0.6"}]
    assert result.routes == [{"dst": "0.0.0.0/0"}]


def test_a_retried_add_keeps_its_lease_and_ip_arg_is_honoured(tmp_path) -> None:
    conf = ipam(str(tmp_path))
    assert add(conf, "c") == add(conf, "c") == "10.9.0.2/29"
    assert add(conf, "d", {"IP": "10.9.0.5"}) == "10.9.0.5/29"
    with pytest.raises(CniError):
        add(conf, "e", {"IP": "10.9.0.5"})


def test_range_start_end_and_two_families(tmp_path) -> None:
    conf = {"type": "host-local", "dataDir": str(tmp_path), "ranges": [
        [{"subnet": "10.9.0.0/24", "rangeStart": "10.9.0.100", "rangeEnd": "10.9.0.101"}],
        [{"subnet": "fd00:9::/64"}]]}
    result = hostlocal.add(conf, "net", "c", "eth0", {}, 1.0)
    assert [ip["address"] for ip in result.ips] == ["10.9.0.100/24", "fd00:9::2/64"]


def test_release_and_gc(tmp_path) -> None:
    conf = ipam(str(tmp_path))
    for cid in ("a", "b", "c"):
        add(conf, cid)
    (tmp_path / "net" / "10.9.0.6").write_text("old-style-id")  # a lease from before ifnames were recorded
    gone = hostlocal.gc(conf, "net", {("b", "eth0")}, 1.0)
    assert sorted(gone) == ["10.9.0.2", "10.9.0.4", "10.9.0.6"]
    assert hostlocal.leases(conf, "net", 1.0) == {"10.9.0.3": ("b", "eth0")}
    hostlocal.delete(conf, "net", "b", "eth0", 1.0)
    hostlocal.delete(conf, "net", "b", "eth0", 1.0)  # idempotent
    assert hostlocal.leases(conf, "net", 1.0) == {}


@pytest.mark.parametrize("bad", [
    {"ranges": []}, {"ranges": [[{"subnet": "nonsense"}]]}, {"ranges": [[{"subnet": "10.0.0.0/31"}]]},
    {"ranges": [[{"subnet": "10.0.0.0/24", "rangeStart": "10.0.1.5"}]]},
    {"ranges": [[{"subnet": "10.0.0.0/24"}]], "dataDir": "relative"},
    {"ranges": [[{"subnet": "10.0.0.0/24"}]], "routes": [{"gw": "10.0.0.1"}]},
])
def test_bad_ipam_config_is_code_7(tmp_path, bad: dict[str, object]) -> None:
    with pytest.raises(CniError) as info:
        hostlocal.add({"type": "host-local", "dataDir": str(tmp_path), **bad}, "net", "c", "eth0", {}, 1.0)
    assert info.value.code == 7


def test_old_single_subnet_form(tmp_path) -> None:
    conf = {"type": "host-local", "subnet": "10.9.0.0/29", "gateway": "10.9.0.1", "dataDir": str(tmp_path)}
    assert add(conf, "c") == "10.9.0.2/29"


def test_the_round_robin_cursor_is_never_written_through_a_symlink(tmp_path) -> None:
    """(review) last_reserved_ip.N was opened with open(…, "w"): a symlink planted
    under that name had its target truncated and overwritten."""
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "last_reserved_ip.0").symlink_to(victim)
    assert add(ipam(str(tmp_path)), "abc") == "10.9.0.2/29"
    assert victim.read_text() == "precious\n"
    assert sorted(os.listdir(tmp_path / "net")) == ["10.9.0.2", "last_reserved_ip.0", "lock"]
    assert (tmp_path / "net" / "last_reserved_ip.0").read_text() == "10.9.0.2"
