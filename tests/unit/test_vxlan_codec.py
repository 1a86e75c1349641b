"""kernel/vxlan.py's messages against pyroute2's encoding of the same requests
(as tests/unit/test_nl_codec.py does for the rest of the codec): a wrong
attribute number, byte order (the port is big-endian) or padding fails here."""

from __future__ import annotations

import copy
import struct
from typing import Any

import pytest
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.ndmsg import ndmsg

from vethlab.kernel import nl, vxlan

FLAGS = nl.F_REQUEST | nl.F_ACK | nl.F_CREATE | nl.F_EXCL


def ours(kind: int, body: bytes, flags: int = FLAGS) -> bytes:
    return struct.pack("=IHHII", 16 + len(body), kind, flags, 7, 0) + body


def theirs(cls: type, kind: int, fields: dict[str, Any], attrs: list[Any], flags: int = FLAGS) -> bytes:
    msg = cls()
    msg["header"]["type"] = kind
    msg["header"]["flags"] = flags
    msg["header"]["sequence_number"] = 7
    for key, value in fields.items():
        msg[key] = value
    msg["attrs"] = copy.deepcopy(attrs)
    msg.encode()
    return bytes(msg.data)


def vxlan_attrs(name: str, data: list[Any], extra: list[Any] | None = None) -> list[Any]:
    return [("IFLA_IFNAME", name), *(extra or []),
            ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "vxlan"), ("IFLA_INFO_DATA", {"attrs": data})]})]


CASES = [
    ("link into a node, IPv4, dev, mtu",
     vxlan.vxlan_body("e0", 4242, "10.200.0.1", "10.200.0.2", dev_index=2, ns_fd=9, mtu=1450),
     {}, vxlan_attrs("e0", [("IFLA_VXLAN_ID", 4242), ("IFLA_VXLAN_GROUP", "10.200.0.2"),
                            ("IFLA_VXLAN_LOCAL", "10.200.0.1"), ("IFLA_VXLAN_LINK", 2), ("IFLA_VXLAN_PORT", 4789),
                            ("IFLA_VXLAN_LEARNING", 1)], [("IFLA_NET_NS_FD", 9), ("IFLA_MTU", 1450)])),
    ("IPv6 underlay, fixed MAC", vxlan.vxlan_body("e1", 16777215, "fd00:200::1", "fd00:200::2",
                                                  mac=bytes.fromhex("02aabbccddee")),
     {}, vxlan_attrs("e1", [("IFLA_VXLAN_ID", 16777215), ("IFLA_VXLAN_GROUP6", "fd00:200::2"),
                            ("IFLA_VXLAN_LOCAL6", "fd00:200::1"), ("IFLA_VXLAN_PORT", 4789),
                            ("IFLA_VXLAN_LEARNING", 1)], [("IFLA_ADDRESS", "02:aa:bb:cc:dd:ee")])),
    ("network port: no remote, chosen index, other port, no learning",
     vxlan.vxlan_body("vx1", 5, "10.200.0.3", None, port=8472, index=77, learning=False),
     {"index": 77}, vxlan_attrs("vx1", [("IFLA_VXLAN_ID", 5), ("IFLA_VXLAN_LOCAL", "10.200.0.3"),
                                        ("IFLA_VXLAN_PORT", 8472), ("IFLA_VXLAN_LEARNING", 0)])),
]


@pytest.mark.parametrize(("name", "body", "fields", "attrs"), CASES, ids=[c[0] for c in CASES])
def test_vxlan_body_is_pyroute2s(name: str, body: bytes, fields: dict[str, Any], attrs: list[Any]) -> None:
    assert ours(nl.RTM_NEWLINK, body) == theirs(ifinfmsg, nl.RTM_NEWLINK, fields, attrs)


@pytest.mark.parametrize("dst", ["10.200.0.2", "fd00:200::2"])
def test_fdb_append_is_pyroute2s(dst: str) -> None:
    flags = nl.F_REQUEST | nl.F_ACK | nl.F_CREATE | vxlan.F_APPEND
    fields = {"family": vxlan.AF_BRIDGE, "ifindex": 12, "state": vxlan.NUD_NOARP | vxlan.NUD_PERMANENT,
              "flags": vxlan.NTF_SELF}
    want = theirs(ndmsg, vxlan.RTM_NEWNEIGH, fields, [("NDA_LLADDR", "00:00:00:00:00:00"), ("NDA_DST", dst)], flags)
    assert ours(vxlan.RTM_NEWNEIGH, vxlan.fdb_body(12, dst), flags) == want


def test_macs_are_a_pure_function_locally_administered_unicast() -> None:
    from vethlab.model.placement import mac_of

    mac = mac_of("lab", "a", "e0")
    assert mac == mac_of("lab", "a", "e0") != mac_of("lab", "b", "e0")
    assert len(mac) == 6 and mac[0] & 0x03 == 0x02


def test_parsers_read_pyroute2s_encoding() -> None:
    data = [("IFLA_VXLAN_ID", 99), ("IFLA_VXLAN_GROUP", "10.1.0.2"), ("IFLA_VXLAN_LINK", 3),
            ("IFLA_VXLAN_LOCAL", "10.1.0.1"), ("IFLA_VXLAN_PORT", 4789)]
    msg = theirs(ifinfmsg, nl.RTM_NEWLINK, {"index": 5}, vxlan_attrs("e0", data))
    assert vxlan.parse_vxlan(memoryview(msg)) == {"vni": 99, "remote": "10.1.0.2", "local": "10.1.0.1",
                                                  "port": 4789, "link": 3}
    veth = theirs(ifinfmsg, nl.RTM_NEWLINK, {}, [("IFLA_IFNAME", "x"), ("IFLA_LINKINFO", {"attrs": [
        ("IFLA_INFO_KIND", "veth")]})])
    assert vxlan.parse_vxlan(memoryview(veth)) is None
    neigh = theirs(ndmsg, vxlan.RTM_NEWNEIGH, {"family": vxlan.AF_BRIDGE, "ifindex": 8},
                   [("NDA_LLADDR", "00:00:00:00:00:00"), ("NDA_DST", "fd00::7")])
    assert vxlan.parse_fdb(memoryview(neigh)) == (8, "00:00:00:00:00:00", "fd00::7")
