"""The plugin's start-up-cheap stand-ins for `json` and `ipaddress` agree with them."""

from __future__ import annotations

import ipaddress
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vethlab.cni import addr, jsonio

values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(),
                      lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
                      max_leaves=20)


@given(values)
def test_json_round_trip_matches_the_json_module(value: object) -> None:
    assert jsonio.dumps(value) == json.dumps(value)
    assert jsonio.dumps(value, compact=True, sort_keys=True) == json.dumps(value, separators=(",", ":"),
                                                                         sort_keys=True)
    assert jsonio.loads(json.dumps(value)) == value
    assert jsonio.loads(json.dumps(value).encode()) == value


@pytest.mark.parametrize("bad", ["", "{", "{not json", '{"a": 1} x', "[1,]", "NaN", '"\\x"', b"\xff\xfe"])
def test_json_refuses_what_json_refuses(bad: str | bytes) -> None:
    with pytest.raises(ValueError):
        jsonio.loads(bad)


@given(st.ip_addresses())
def test_addresses_match_ipaddress(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    version, value = addr.parse(str(ip))
    assert (version, value) == (ip.version, int(ip))
    assert addr.text(version, value) == str(ip) or ip.version == 6 and ip.ipv4_mapped is not None
    assert addr.packed(version, value) == ip.packed
    assert addr.is_link_local(version, value) == (ip.version == 6 and ip.is_link_local)


@given(st.ip_addresses(v=4), st.integers(0, 32))
def test_subnets_match_ipaddress(ip: ipaddress.IPv4Address, prefix: int) -> None:
    net = ipaddress.ip_network(f"{ip}/{prefix}", strict=False)
    assert addr.subnet_text(*addr.parse_cidr(f"{ip}/{prefix}")) == str(net)
    assert addr.last(4, int(ip), prefix) == int(net.broadcast_address)


@pytest.mark.parametrize("bad", ["010.0.0.1", "10.0.0", "10.0.0.1 ", "1.2.3.4/33", "::1/129", "x", "10.0.0.1/-1"])
def test_addresses_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        addr.parse_cidr(bad)
