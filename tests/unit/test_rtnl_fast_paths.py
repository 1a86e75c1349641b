"""The real kernel's shortcuts on `up`'s hot paths (kernel/rtnl.py) against the slow,
complete way they stand in for: link states decoded from a message's first
attributes against nl.parse_link, and addresses packed with inet_pton against the
ipaddress module.  Both on the messages/strings pyroute2 and users write, then on
random and corrupted input (a result or the same error, nothing else)."""

from __future__ import annotations

import copy
import ipaddress
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from vethlab.kernel import nl
from vethlab.kernel.rtnl import _name_and_state, _packed


def link_message(attrs: list[tuple[str, Any]], index: int = 5) -> bytes:
    """pyroute2's encoding of a link as the kernel dumps it."""
    msg = ifinfmsg()
    msg["header"]["type"] = nl.RTM_NEWLINK
    msg["header"]["flags"] = nl.F_MULTI
    msg["index"] = index
    msg["attrs"] = copy.deepcopy(attrs)
    msg.encode()
    return bytes(msg.data)


LINKS = [
    [("IFLA_IFNAME", "eth0"), ("IFLA_TXQLEN", 1000), ("IFLA_OPERSTATE", "UP"), ("IFLA_MTU", 1500)],
    [("IFLA_IFNAME", "vl0123456789abc"), ("IFLA_OPERSTATE", "LOWERLAYERDOWN")],
    [("IFLA_MTU", 9000), ("IFLA_OPERSTATE", "DOWN"), ("IFLA_IFALIAS", "vethlab:x"), ("IFLA_IFNAME", "late")],
    [("IFLA_IFNAME", "lo")],  # no operational state: UNKNOWN, as parse_link says
    [("IFLA_OPERSTATE", "DORMANT")],  # no name
    [("IFLA_IFNAME", "e0"), ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "veth")]}), ("IFLA_OPERSTATE", "UP")],
]


@pytest.mark.parametrize("attrs", LINKS, ids=[str(i) for i in range(len(LINKS))])
def test_name_and_state_are_parse_links(attrs: list[tuple[str, Any]]) -> None:
    data = memoryview(link_message(attrs))
    link = nl.parse_link(data)
    assert _name_and_state(data) == (link.ifname, link.operstate)


def _kinds(data: bytes) -> list[int]:
    """The attribute numbers of a link message, in order (empty if it does not walk)."""
    out, offset = [], 32
    while offset + 4 <= len(data):
        size, kind = struct.unpack_from("=HH", data, offset)
        if size < 4:
            return []
        out.append(kind & 0x3FFF)
        offset += (size + 3) & ~3
    return out


def _same_outcome(data: bytes) -> None:
    """Where parse_link decodes the first attributes, so do we; we raise nothing but
    DecodeError (we may stop before a later attribute parse_link rejects).  A name or
    state given twice (never from the kernel) may differ: we take the first."""
    try:
        theirs: tuple[str, str] | None = (lambda link: (link.ifname, link.operstate))(nl.parse_link(memoryview(data)))
    except nl.DecodeError:
        theirs = None
    try:
        mine = _name_and_state(memoryview(data))
    except nl.DecodeError:
        assert theirs is None
        return
    kinds = _kinds(data)
    if theirs is not None and kinds.count(nl.IFLA_IFNAME) <= 1 and kinds.count(nl.IFLA_OPERSTATE) <= 1:
        assert mine == theirs


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_random_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    _same_outcome(data)


@st.composite
def corrupted(draw: st.DrawFn) -> bytes:
    data = bytearray(link_message(draw(st.sampled_from(LINKS))))
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(data) - 2))
        if draw(st.booleans()):
            data[i:i + 2] = struct.pack("=H", draw(st.sampled_from([0, 1, 3, 4, 5, 0xFFFF, len(data)])))
        else:
            data = data[:draw(st.integers(0, len(data)))]
            if len(data) < 2:
                break
    return bytes(data)


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(corrupted())
def test_corrupted_messages_decode_or_raise_decode_error(data: bytes) -> None:
    _same_outcome(data)


ADDRESSES = ["10.0.0.1/30", "10.1.2.3", "192.168.255.254/16", "0.0.0.0/0", "1.2.3.4/32", "fd00:1::1/64",
             "FD00:1::A/64", "::/0", "::1/128", "::ffff:1.2.3.4/96", "fe80::1%eth0/64", "2001:db8::/32",
             # what ipaddress refuses, which must still be refused (with its message)
             "10.0.0.1/33", "10.0.0.1/", "10.0.0.1/ 30", "10.0.0.1/+30", "10.0.0.1/\u0663", "010.0.0.1/8",
             "10.0.0.256/8", "1.2.3/8", "fd00::1/129", "fd00:::1/64", "1.2.3.4/1/2", "", "/8", "x/8"]


def _reference(cidr: str) -> tuple[bytes, int] | str:
    try:
        iface = ipaddress.ip_interface(cidr)
    except ValueError as exc:
        return str(exc)
    return iface.ip.packed, iface.network.prefixlen


def _mine(cidr: str) -> tuple[bytes, int] | str:
    try:
        return _packed(cidr)
    except ValueError as exc:
        return str(exc)


@pytest.mark.parametrize("cidr", ADDRESSES)
def test_packed_is_ipaddress(cidr: str) -> None:
    assert _mine(cidr) == _reference(cidr)


@settings(max_examples=1500, deadline=None)
@given(st.one_of(st.text(alphabet="0123456789abcdefABCDEF.:/% +", max_size=45), st.text(max_size=20)))
def test_packed_is_ipaddress_on_any_text(cidr: str) -> None:
    assert _mine(cidr) == _reference(cidr)
