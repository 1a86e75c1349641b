"""The validator's fast paths (no address objects for the common case) must give
exactly what the general path gives: the same value, the same problems."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vethlab.topology import lab_from_text, networks
from vethlab.topology.checker import Checker
from vethlab.topology.loader import Document

SUBNETS = ["10.0.0.0/24", "10.0.0.0/30", "172.16.0.0/12", "192.168.7.128/25", "fd00::/64"]
TEXTS = ["10.0.0.5", "10.0.0.0", "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.255", "10.0.0.254", "10.0.1.5",
         "10.0.0.05", "010.0.0.5", "10.0.0.256", "1.2.3", "10.0.0.5/24", "10.0.0.5/8", "١٠.0.0.5", "10.0.0.5\n",
         "172.31.255.255", "172.16.0.1", "172.16.0.2", "192.168.7.129", "192.168.7.200", "0.0.0.0", "fd00::5", ""]


DOTTED = networks._DOTTED


def run(value: Any, subnet: str, gateway: bool, fast: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, list[str]]:
    monkeypatch.setattr(networks, "_DOTTED", DOTTED if fast else re.compile(r"(?!)"))  # (?!) matches nothing
    c = Checker(Document(file="f", data=None))
    net = ipaddress.ip_network(subnet)
    got = networks._member_ip(c, value, ("networks", "n", "members", "a", "ip"), net, 4, gateway)
    return got, [str(issue) for issue in c.issues]


@pytest.mark.parametrize("subnet", SUBNETS)
@pytest.mark.parametrize("gateway", [True, False])
def test_member_addresses_fast_and_general_agree(subnet: str, gateway: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    for text in TEXTS:
        try:
            slow = run(text, subnet, gateway, False, monkeypatch)
        except ValueError:
            slow = None  # the general path itself cannot judge it: then neither may the fast one
        fast = run(text, subnet, gateway, True, monkeypatch)
        assert slow is None or fast == slow, (text, subnet)


@given(st.tuples(*[st.integers(0, 300)] * 4), st.sampled_from(SUBNETS[:4]), st.booleans())
def test_member_addresses_agree_on_any_quad(quad: tuple[int, ...], subnet: str, gateway: bool) -> None:
    with pytest.MonkeyPatch.context() as mp:
        text = ".".join(map(str, quad))
        assert run(text, subnet, gateway, True, mp) == run(text, subnet, gateway, False, mp)


def test_empty_nodes_are_the_same_spec_as_before() -> None:
    spec = lab_from_text("name: t\nnodes:\n  a: {}\n  b:\n  c: {sysctls: {}}\nlinks: [{endpoints: [a:e0, b:e0]}]\n")
    assert [(n.name, n.line, n.sysctls, n.routes, n.exec, n.run, n.oneshot, n.ready) for n in spec.nodes.values()] == \
        [("a", 3, (), (), (), (), (), ()), ("b", 4, (), (), (), (), (), ()), ("c", 5, (), (), (), (), (), ())]


LINK_ADDRESSES = ["10.0.0.1/30", "10.0.0.2/30", "10.0.0.5/30", "10.0.0.2/24", "10.0.1.2/16", "10.0.0.2/32",
                  "192.168.0.1/24", "fd00::1/64", "fd00::2/64", "fd00:1::2/64", "fd00::2/128", "10.0.0.1/31",
                  "10.0.0.0/31"]


@given(st.sampled_from(LINK_ADDRESSES), st.sampled_from(LINK_ADDRESSES))
def test_one_address_per_end_is_judged_as_the_general_path_judges(a: str, b: str) -> None:
    """A link with one address at each end takes a fast path in _check_link_subnets;
    the same addresses written twice per end take the general one: the same verdict."""
    from vethlab.topology import validate

    def verdict(addresses_a: tuple[str, ...], addresses_b: tuple[str, ...]) -> bool:
        from vethlab.topology.schema import Endpoint, LinkSpec

        c = Checker(Document(file="f", data=None))
        link = LinkSpec(a=Endpoint("x", "e0"), b=Endpoint("y", "e0"), addresses_a=addresses_a, addresses_b=addresses_b)
        validate._check_link_subnets(c, [(0, link)])
        return bool(c.issues)

    assert verdict((a,), (b,)) == verdict((a, a), (b, b))


def test_a_link_without_shaping_keys_is_the_link_with_them_null() -> None:
    """Links without rate/delay/jitter/loss/a/b skip the shaping parser: the same
    LinkSpec as with those keys given as null."""
    head = "name: x\nnodes: {a: {}, b: {}}\nlinks:\n"
    plain = "  - {endpoints: [a:e0, b:e0], addresses: [10.0.0.1/24, 10.0.0.2/24], mtu: 1400, state: down}\n"
    nulls = plain.replace("}\n", ", rate: null, delay: null, a: null, b: null}\n")
    assert lab_from_text(head + plain).links == lab_from_text(head + nulls).links


ENDS = ["a:e0", "b:e0", "a:e1", "host:v0", "c:e0", "a:lo", "a:e/0", "a:", ":e0", "a:e0:x", "a:" + "e" * 16, 7, None]
ADDRESS_VALUES: list[Any] = [*LINK_ADDRESSES, "10.0.0.0/24", "10.0.0.255/24", "127.0.0.1/8", "224.0.0.1/4",
                             "0.1.2.3/8", "10.0.0.1", "10.0.0.01/24", None, 5, ["10.0.0.1/24"], "x"]


@given(st.fixed_dictionaries({"endpoints": st.lists(st.sampled_from(ENDS), min_size=0, max_size=3)},
                             optional={"addresses": st.one_of(st.none(), st.lists(st.sampled_from(ADDRESS_VALUES),
                                                                                   max_size=3)),
                                       "mtu": st.sampled_from([1400, 60])}))
def test_plain_links_are_the_links_the_general_path_reads(raw: dict[str, Any]) -> None:
    """_plain_link takes the common links without a path per field; whatever it takes,
    _any_link reads to the same LinkSpec, without a problem."""
    from vethlab.topology import validate

    nodes = {"a": {}, "b": {}}
    fast = validate._plain_link(raw, 7, nodes)
    if fast is None:
        return
    c = Checker(Document(file="f", data=None, lines={("links", 0): 7}))
    assert validate._any_link(c, raw, ("links", 0), nodes) == (fast, fast)
    assert c.issues == []


def test_the_plain_path_takes_the_benchmark_links() -> None:
    from vethlab.topology import validate

    raw = {"endpoints": ["a:r", "b:l"], "addresses": ["10.0.0.1/30", "10.0.0.2/30"]}
    assert validate._plain_link(raw, 3, {"a": {}, "b": {}}) is not None


def test_each_address_the_plain_path_takes_is_one_the_general_path_accepts() -> None:
    from vethlab.topology import validate

    nodes = {"a": {}, "b": {}}
    for value in ADDRESS_VALUES:
        raw = {"endpoints": ["a:e0", "b:e0"], "addresses": [value, "fd00::9/64"]}
        raw_v4 = {"endpoints": ["a:e0", "b:e0"], "addresses": [value, None]}
        for link in (raw, raw_v4):
            fast = validate._plain_link(link, 7, nodes)
            c = Checker(Document(file="f", data=None, lines={("links", 0): 7}))
            general = validate._any_link(c, link, ("links", 0), nodes)
            if fast is not None:
                assert (general, c.issues) == ((fast, fast), []), value
