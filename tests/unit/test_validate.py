"""Every validation rule, with the line and field path it reports."""

from __future__ import annotations

import textwrap

import pytest

from vethlab.errors import ValidationError
from vethlab.topology import lab_from_dict, lab_from_text

BASE = """\
name: t
nodes:
  a: {}
  b: {}
links:
  - endpoints: [a:e0, b:e0]
    addresses: [10.0.0.1/24, 10.0.0.2/24]
"""


def errors(text: str) -> list[str]:
    with pytest.raises(ValidationError) as info:
        lab_from_text(textwrap.dedent(text), "lab.yaml")
    return [str(i) for i in info.value.issues]


def one_error(text: str) -> str:
    found = errors(text)
    assert len(found) == 1, found
    return found[0]


def test_valid_seed_compiles() -> None:
    spec = lab_from_text(BASE)
    assert spec.name == "t" and set(spec.nodes) == {"a", "b"}
    assert spec.links[0].addresses_a == ("10.0.0.1/24",)


def test_all_errors_reported_at_once_with_lines() -> None:
    found = errors("""\
        name: Bad_Name
        nodes:
          a: {colour: red}
        links:
          - endpoints: [a:e0, c:e0]
            addresses: [10.0.0.0/24, 10.0.0.2]
        """)
    assert "lab.yaml:1: name: lab name 'Bad_Name' must match [a-z][a-z0-9-]{0,11}" in found
    assert "lab.yaml:3: nodes.a.colour: unknown key 'colour'" in found
    assert "lab.yaml:5: links[0].endpoints[1]: node 'c' is not defined under 'nodes'" in found
    assert "lab.yaml:6: links[0].addresses[0]: 10.0.0.0/24 is the network address of 10.0.0.0/24" in found
    assert any(e.startswith("lab.yaml:6: links[0].addresses[1]: '10.0.0.2' is not an address with a prefix") for e in found)


@pytest.mark.parametrize("text, expected", [
    ("name: t\nnodes: {a: {}}\nlinks: [{endpoints: [a:e0, a:e0]}]\n", "lab.yaml:3: links[0].endpoints[1]: both ends are the same interface a:e0"),
    ("name: t\nnodes: {a: {}, b: {}}\nlinks:\n- {endpoints: [a:e0, b:e0]}\n- {endpoints: [a:e0, b:e1]}\n", "lab.yaml:5: links[1].endpoints[0]: interface a:e0 is already used by links[0]"),
    ("name: t\nnodes: {a: {}, b: {}}\nlinks: [{endpoints: [a:abcdefghijklmnop, b:e0]}]\n", "is 16 bytes; the kernel allows at most 15"),
    ("name: t\nnodes: {a: {}, b: {}}\nlinks: [{endpoints: [a:e0, b:lo]}]\n", "'lo' is the loopback interface"),
    ("name: t\nnodes: {a: {}, b: {}}\nlinks: [{endpoints: [a:e0, b:e0], mtu: 40}]\n", "mtu must be a whole number from 68 to 65535"),
    ("name: t\nnodes: {a: {}, b: {}}\nlinks: [{endpoints: [a:e0, b:e0], mtu: 1000, addresses: [fd00::1/64, fd00::2/64]}]\n", "below 1280"),
    ("name: t\nnodes: {a: {}, b: {}}\nlinks: [{endpoints: [a:e0, b:e0], state: sideways}]\n", "state must be 'up' or 'down'"),
    ("name: t\nnodes: {a: {}, b: {}}\nlinks: [{endpoints: [a:e0, b:e0], addresses: [10.0.0.1/24, 10.0.0.1/24]}]\n", "address 10.0.0.1 is already given to a:e0"),
    ("name: t\nnodes: {a: {}, b: {}}\nlinks: [{endpoints: [a:e0, b:e0], addresses: [10.0.0.255/24, 10.0.0.2/24]}]\n", "broadcast address"),
    ("name: t\nnodes: {a: {}, b: {}}\nlinks: [{endpoints: [a:e0, b:e0], addresses: [224.0.0.1/24, 10.0.0.2/24]}]\n", "multicast"),
    ("name: t\nnodes: {a: {}, b: {}}\nlinks: [{endpoints: [a:e0, b:e0], addresses: [10.0.0.300/24, 10.0.0.2/24]}]\n", "is not a valid address"),
    ("name: t\nnodes: {a: {}, b: {}}\nlinks: [{endpoints: [a:e0, b:e0], addresses: [10.0.0.1/24]}]\n", "must be a list of two entries"),
    ("name: t\nnodes: {a: {}, b: {}}\nlinks: [{endpoints: [a-e0, b:e0]}]\n", "an endpoint is NODE:IFNAME"),
    ("name: t\nnodes: {a: {}, b: {}}\nlinks: [{endpoints: [a:e0, b:e0], rate: 10 furlongs}]\n", "is not a rate such as 100mbit"),
    ("name: t\nnodes: {a: {}, b: {}}\nlinks: [{endpoints: [a:e0, b:e0], delay: soon}]\n", "is not a time such as 5ms"),
    ("name: t\nnodes: {a: {}, b: {}}\nlinks: [{endpoints: [a:e0, b:e0], loss: 150%}]\n", "is not a loss such as 0.1%"),
    ("name: t\nnodes: {a: {}, b: {}}\nlinks: [{endpoints: [a:e0, b:e0], jitter: 1ms}]\n", "jitter needs a delay"),
    ("name: t\nnodes: {a: {}, b: {}}\nlinks: [{endpoints: [a:e0, b:e0], a: {speed: 1}}]\n", "unknown key 'speed'"),
    ("name: t\nnodes: {a: {run: x}}\n", "must be a list of commands"),
    ("name: t\nnodes: {a: {}}\nnetworks: [x]\n", "must be a mapping of network name"),
    ("name: t\nnodes: {a: {sysctls: {kernel.panic: 1}}}\n", "not a per-namespace sysctl"),
    ("name: t\nnodes: {a: {sysctls: {net.ipv4.ip_forward: [1]}}}\n", "sysctl value must be a number or a string"),
    ("name: t\nnodes: {a: {routes: [\"default via 10.0.0.1\"]}}\n", "gateway 10.0.0.1 is not on any subnet of this node"),
    ("name: t\nnodes: {a: {routes: [\"10.0.0.0/8 via\"]}}\n", "'via' needs a value"),
    ("name: t\nnodes: {a: {routes: [\"10.0.0.1/8 via 1.1.1.1\"]}}\n", "has host bits set"),
    ("name: t\nnodes: {a: {routes: [\"10.0.0.0/8 gw 1.1.1.1\"]}}\n", "unknown word 'gw'"),
    ("name: t\nnodes: {a: {routes: [\"default via fd00::1 dev e9\"]}}\n", "dev e9 is not an interface of this node"),
    ("name: t\nnodes: {a: {exec: [\"echo 'unclosed\"]}}\n", "cannot split command into words"),
    ("name: t\nnodes: {a: {exec: \"ls\"}}\n", "must be a list of commands"),
    ("name: t\nnodes: {\"-bad\": {}}\n", "node name '-bad'"),
    ("name: t\nprefix: maybe\nnodes: {a: {}}\n", "prefix: must be true or false"),
    ("nodes: {a: {}}\n", "'name' is required"),
    ("name: t\n", "'nodes' is required"),
    ("name: t\nnodes: {a: {}}\nnodes: {b: {}}\n", "lab.yaml:3: nodes: duplicate key"),
    ("name: t\nnodes: [a, b]\n", "must be a mapping"),
    ("name: t\nnodes: {a: {}}\nlinks: {endpoints: [a:e0, b:e0]}\n", "links: must be a list of links"),
    ("", "the file is empty"),
    ("- just\n- a list\n", "must be a mapping (the lab)"),
    ("name: t\nnodes: {a: {}\n", "YAML syntax error"),
    ("name: t\nnodes:\n  a: {}\n\tb: {}\n", "YAML syntax error"),
])
def test_rule(text: str, expected: str) -> None:
    found = errors(text)
    assert any(expected in e for e in found), found
    assert all(e.startswith("lab.yaml") for e in found)


def test_did_you_mean() -> None:
    assert "lab.yaml:3: links[0].endpoint: unknown key 'endpoint' (did you mean 'endpoints'?)" in errors("name: t\nnodes: {a: {}, b: {}}\nlinks: [{endpoint: [a:e0, b:e0]}]\n")


def test_error_lines_point_at_the_field() -> None:
    text = BASE + "  - endpoints: [a:e1, b:e1]\n    addresses:\n      - [10.0.1.1/24, 10.0.0.1/24]\n      - 10.0.1.2/24\n"
    assert one_error(text) == ("lab.yaml:10: links[1].addresses[0][1]: address 10.0.0.1 is already given to a:e0 "
                               "(an address belongs to one interface in the whole lab)")


def test_yaml_syntax_error_names_line() -> None:
    assert one_error("name: t\nnodes:\n  a: {}\n  b: [\n").startswith("lab.yaml:5: column 1: YAML syntax error")


def test_from_dict_has_no_lines_but_paths() -> None:
    with pytest.raises(ValidationError) as info:
        lab_from_dict({"name": "t", "nodes": {"a": {}}, "links": [{"endpoints": ["a:e0", "z:e0"]}]})
    assert str(info.value.issues[0]) == "<dict>: links[0].endpoints[1]: node 'z' is not defined under 'nodes'"


def test_prefix_names_namespaces() -> None:
    spec = lab_from_text("name: lab1\nprefix: true\nnodes: {a: {}}\n")
    assert spec.netns_of("a") == "lab1-a" and spec.netns_of("host") is None


def test_host_endpoint_allowed_and_ipv6_lists() -> None:
    spec = lab_from_text("name: t\nnodes: {a: {}}\nlinks: [{endpoints: [a:e0, host:vl-a], addresses: [[10.0.0.2/24, fd00::2/64], fd00::1/64]}]\n")
    assert spec.links[0].addresses_a == ("10.0.0.2/24", "fd00::2/64")
    assert spec.links[0].addresses_b == ("fd00::1/64",)


def test_exec_list_and_string() -> None:
    spec = lab_from_text("name: t\nnodes: {a: {exec: [\"ip addr add 10.99.0.1/32 dev lo\", [echo, 'a b']]}}\n")
    assert spec.nodes["a"].exec == (("ip", "addr", "add", "10.99.0.1/32", "dev", "lo"), ("echo", "a b"))


LINK = "name: t\nnodes: {a: {}, b: {}}\nlinks:\n  - endpoints: [a:e0, b:e0]\n    addresses: [%s, %s]\n"


@pytest.mark.parametrize("a, b, version", [
    ("10.0.0.1/24", "10.0.1.2/24", 4),
    ("10.0.0.1/32", "10.0.0.2/32", 4),
    ("fd00::1/64", "fd01::2/64", 6),
    ("[10.0.0.1/24, fd00::1/64]", "[10.0.0.2/24, fd01::2/64]", 6),  # IPv4 shared, IPv6 not
    ("[10.0.0.1/24, 10.0.5.1/24]", "[10.0.9.2/24, 10.0.7.2/24]", 4),
])
def test_link_ends_sharing_no_subnet(a: str, b: str, version: int) -> None:
    message = one_error(LINK % (a, b))
    assert message.startswith(f"lab.yaml:5: links[0].addresses: the ends share no IPv{version} subnet: a:e0 has ")
    assert message.endswith("; neither reaches the other directly")


@pytest.mark.parametrize("a, b", [
    ("10.0.0.1/24", "10.0.0.2/24"),
    ("10.0.0.1/24", "10.0.0.2/16"),  # each inside the other's prefix: they reach each other
    ("10.0.0.0/31", "10.0.0.1/31"),
    ("[10.0.5.1/24, 10.0.0.1/24]", "[10.0.9.2/24, 10.0.0.2/24]"),  # one pair is enough
    ("10.0.0.1/24", "null"),  # an address on one end only
    ("null", "null"),
    ("10.0.0.1/24", "fd00::2/64"),  # IPv4 on one end, IPv6 on the other: each judged on its own
    ("fe80::1/64", "fe80::2/64"),
])
def test_link_ends_sharing_a_subnet_or_one_sided(a: str, b: str) -> None:
    lab_from_text(LINK % (a, b))


def test_link_without_addresses_is_fine() -> None:
    lab_from_text("name: t\nnodes: {a: {}, b: {}}\nlinks:\n  - endpoints: [a:e0, b:e0]\n")


def test_many_addresses_without_a_shared_subnet_are_summarised() -> None:
    a = "[" + ", ".join(f"10.0.{i}.1/24" for i in range(5)) + "]"
    message = one_error(LINK % (a, "10.9.0.2/24"))
    assert "a:e0 has 10.0.0.1/24, 10.0.1.1/24, 10.0.2.1/24 and 2 more, b:e0 has 10.9.0.2/24" in message


def test_every_reuse_is_reported_even_on_a_link_with_another_problem() -> None:
    text = """\
name: x
nodes: {ns1: {}, ns2: {}, ns3: {}, ns4: {}}
links:
  - endpoints: [ns1:vp1, ns2:vp2]
    addresses: [192.168.1.1/24, 192.168.1.2/24]
  - endpoints: [ns1:vp1, ns3:vp3]
    addresses: [192.168.1.1/24, 192.168.1.3/24]
  - endpoints: [ns1:vp1, ns4:vp4]
    addresses: [192.168.1.1/24, 192.168.1.4/24]
    mtu: 99999999
"""
    with pytest.raises(ValidationError) as caught:
        lab_from_text(text)
    found = {(i.line, i.path, i.message) for i in caught.value.issues}
    assert found == {
        (6, "links[1].endpoints[0]", "interface ns1:vp1 is already used by links[0]"),
        (7, "links[1].addresses[0]", "address 192.168.1.1 is already given to ns1:vp1 "
                                     "(an address belongs to one interface in the whole lab)"),
        (8, "links[2].endpoints[0]", "interface ns1:vp1 is already used by links[0]"),
        (9, "links[2].addresses[0]", "address 192.168.1.1 is already given to ns1:vp1 "
                                     "(an address belongs to one interface in the whole lab)"),
        (10, "links[2].mtu", "mtu must be a whole number from 68 to 65535, not 99999999"),
    }


ROUTED = """\
name: t
nodes:
  a:
    routes: [%s]
  b: {}
  c: {}
links:
  - endpoints: [a:e0, b:e0]
    addresses: [[10.0.0.1/24, "fd00:1::1/64"], [10.0.0.2/24, "fd00:1::2/64"]]
  - endpoints: [a:e1, c:e0]
    addresses: [10.1.0.1/24, 10.1.0.2/24]
"""


@pytest.mark.parametrize("route", [
    "10.9.0.0/16 via 10.0.0.2", "10.9.0.0/16 via 10.0.0.2 dev e0", "10.9.0.0/16 via 10.1.0.254 dev e1",
    "fd00:9::/64 via fd00:1::2", "fd00:9::/64 via fd00:1::ffff dev e0", "10.99.0.0/24 dev lo", "10.9.0.0/16 dev e1",
])
def test_routes_whose_gateway_is_on_link(route: str) -> None:
    lab_from_text(ROUTED % f'"{route}"')


@pytest.mark.parametrize("route, message", [
    ("10.9.0.0/16 via 10.1.0.2 dev e0", "gateway 10.1.0.2 is not on e0; the kernel would refuse the route"),
    ("10.9.0.0/16 via 10.2.0.2", "gateway 10.2.0.2 is not on any subnet of this node; the kernel would refuse the route"),
    ("10.9.0.0/16 via 10.0.0.1", "gateway 10.0.0.1 is not on any subnet of this node; the kernel would refuse the "
                                 "route"),  # a's own address
    ("fd00:9::/64 via fd00:2::2", "gateway fd00:2::2 is not on any subnet of this node; the kernel would refuse the "
                                  "route"),
    ("fd00:9::/64 via fd00:1::2 dev e1", "gateway fd00:1::2 is not on e1; the kernel would refuse the route"),
    ("10.9.0.0/16 dev e7", "dev e7 is not an interface of this node (it has: e0, e1)"),
    ("10.9.0.0/16", "a route needs 'via GATEWAY' or 'dev IFNAME'"),
])
def test_routes_the_kernel_would_refuse(route: str, message: str) -> None:
    assert one_error(ROUTED % f'"{route}"') == f"lab.yaml:4: nodes.a.routes[0]: {message}"


def test_a_gateway_on_a_network_interface_is_checked_only_there() -> None:
    """A network member's address is chosen by IPAM later: any gateway may be on it,
    but not on the node's other, known, interfaces."""
    lab = ROUTED + "networks:\n  lan: {members: {a: {}}}\n"
    lab_from_text(lab % '"10.9.0.0/16 via 172.30.0.1 dev eth0", "10.8.0.0/16 via 172.30.0.1"')
    assert one_error(lab % '"10.9.0.0/16 via 172.30.0.1 dev e1"') == \
        "lab.yaml:4: nodes.a.routes[0]: gateway 172.30.0.1 is not on e1; the kernel would refuse the route"


def test_a_missing_dev_lists_at_most_ten_interfaces() -> None:
    links = "".join(f"  - endpoints: [a:e{i}, b:e{i}]\n" for i in range(12))
    text = f"name: t\nnodes: {{a: {{routes: [\"10.9.0.0/16 dev x\"]}}, b: {{}}}}\nlinks:\n{links}"
    assert one_error(text) == ("lab.yaml:2: nodes.a.routes[0]: dev x is not an interface of this node (it has: e0, e1, "
                               "e2, e3, e4, e5, e6, e7, e8, e9, … (12 in all))")
    assert one_error("name: t\nnodes: {a: {routes: [\"10.9.0.0/16 dev x\"]}}\n") == \
        "lab.yaml:2: nodes.a.routes[0]: dev x is not an interface of this node (it has: none)"


P2P = "name: t\nnodes:\n  a: {routes: [%s]}\n  b: {routes: [%s]}\nlinks:\n  - endpoints: [a:p0, b:p0]\n" \
      "    addresses: [%s, %s]\n"


@pytest.mark.parametrize("routes_a, routes_b, addr_a, addr_b", [
    ('"10.0.0.2/32 dev p0"', '"10.0.0.1/32 dev p0"', "10.0.0.1/32", "10.0.0.2/32"),
    ('"default dev p0"', '"10.0.0.0/24 dev p0"', "10.0.0.1/32", "10.0.0.2/32"),
    ('"fd00::2/128 dev p0"', '"::/0 dev p0"', "fd00::1/128", "fd00::2/128"),
])
def test_point_to_point_ends_that_route_each_other_on_the_link(routes_a: str, routes_b: str, addr_a: str,
                                                               addr_b: str) -> None:
    lab_from_text(P2P % (routes_a, routes_b, addr_a, addr_b))


@pytest.mark.parametrize("routes_a, routes_b", [
    ('"10.0.0.2/32 dev p0"', ""),  # one way only
    ('"10.0.0.2/32 dev p0"', '"10.0.0.9/32 dev p0"'),  # b routes another address
    ('"fd00::/64 dev p0"', '"fd00::/64 dev p0"'),  # an IPv6 route does not reach an IPv4 end
])
def test_point_to_point_ends_that_do_not_route_each_other(routes_a: str, routes_b: str) -> None:
    text = (P2P % (routes_a, routes_b, "10.0.0.1/32", "10.0.0.2/32")).replace(
        "b: {routes: []}", "b: {}")
    message = one_error(text)
    assert message == ("lab.yaml:7: links[0].addresses: the ends share no IPv4 subnet: a:p0 has 10.0.0.1/32, b:p0 has "
                       "10.0.0.2/32; neither reaches the other directly")


def test_a_point_to_point_route_through_a_gateway_is_not_on_link() -> None:
    text = P2P % ('"10.0.0.2/32 dev p0"', '"10.0.0.1/32 via 10.0.0.9 dev p0"', "10.0.0.1/32", "10.0.0.2/32")
    assert errors(text) == [
        "lab.yaml:4: nodes.b.routes[0]: gateway 10.0.0.9 is not on p0; the kernel would refuse the route",
        "lab.yaml:7: links[0].addresses: the ends share no IPv4 subnet: a:p0 has 10.0.0.1/32, b:p0 has 10.0.0.2/32; "
        "neither reaches the other directly"]


def test_point_to_point_routes_on_another_interface_do_not_count() -> None:
    text = P2P % ('"10.0.0.2/32 dev p0"', '"10.0.0.1/32 dev q0"', "10.0.0.1/32", "10.0.0.2/32") + \
        "  - endpoints: [b:q0, a:q0]\n"
    assert "the ends share no IPv4 subnet" in one_error(text)


@pytest.mark.parametrize("a, b", [("10.0.0.1/24", "10.1.0.2/24"), ("10.0.0.1/16", "11.0.0.2/16"),
                                  ("10.0.0.1/30", "10.0.0.5/30")])
def test_ends_differing_in_any_octet_share_no_subnet(a: str, b: str) -> None:
    assert "the ends share no IPv4 subnet" in one_error(LINK % (a, b))


@pytest.mark.parametrize("mtu, addresses, ok", [
    (68, "[10.0.0.1/24, 10.0.0.2/24]", True), (65535, "[10.0.0.1/24, 10.0.0.2/24]", True),
    (67, "[10.0.0.1/24, 10.0.0.2/24]", False), (65536, "[10.0.0.1/24, 10.0.0.2/24]", False),
    (1279, "[10.0.0.1/24, 10.0.0.2/24]", True),  # IPv4 only: below IPv6's minimum is fine
    (1280, "[fd00::1/64, fd00::2/64]", True), (1279, "[fd00::1/64, fd00::2/64]", False),
])
def test_mtu_bounds(mtu: int, addresses: str, ok: bool) -> None:
    text = f"name: t\nnodes: {{a: {{}}, b: {{}}}}\nlinks:\n  - endpoints: [a:e0, b:e0]\n    mtu: {mtu}\n" \
           f"    addresses: {addresses}\n"
    if ok:
        assert lab_from_text(text).links[0].mtu == mtu
    else:
        assert one_error(text).startswith("lab.yaml:5: links[0].mtu: mtu ")


def test_link_state_down_and_up() -> None:
    text = "name: t\nnodes: {a: {}, b: {}}\nlinks:\n  - {endpoints: [a:e0, b:e0], state: %s}\n"
    assert lab_from_text(text % "down").links[0].up is False
    assert lab_from_text(text % "up").links[0].up is True


def test_node_level_mistakes_with_their_paths() -> None:
    text = """\
name: t
prefix: yes please
nodes:
  "10": {}
  host: {run: ["sleep 1"]}
  a:
    sysctls: {net.ipv4.ip_forward: [1], net.ipv4.conf.all.rp_filter: ""}
    ready: ["tcp:80"]
links: {a: b}
"""
    assert errors(text) == [
        "lab.yaml:2: prefix: must be true or false, not a string",
        "lab.yaml:4: nodes.10: node name '10' is read as an IPv4 address by resolvers (ping 10 goes to 0.0.0.10, not "
        "the node); add a letter, e.g. 'n10'",
        "lab.yaml:5: nodes.host.run: services run in lab nodes, not in the host namespace",
        "lab.yaml:7: nodes.a.sysctls.net.ipv4.conf.all.rp_filter: sysctl value must be a number or a string, not a "
        "string",
        "lab.yaml:7: nodes.a.sysctls.net.ipv4.ip_forward: sysctl value must be a number or a string, not a list",
        "lab.yaml:8: nodes.a.ready: readiness checks wait for the node's `run:` services, and it has none",
        "lab.yaml:9: links: must be a list of links, not a mapping",
    ]
    assert errors("name: t\nnodes:\n  '08': {}\n") == [
        "lab.yaml:3: nodes.08: node name '08' is read as an IPv4 address by resolvers (ping 08 finds nothing, not the "
        "node); add a letter, e.g. 'n08'"]


@pytest.mark.parametrize("name, problem", [
    ("", "interface name is empty"),
    (".", "'.' cannot name an interface"),
    ("..", "'..' cannot name an interface"),
    ("a/b", "interface name 'a/b' contains '/', which the kernel refuses"),
    ("a:b", "interface name 'a:b' contains ':', which the kernel refuses"),
    ("a b", "interface name 'a b' contains ' ', which the kernel refuses"),
    ("lo", "'lo' is the loopback interface every node already has"),
    ("a" * 16, f"interface name '{'a' * 16}' is 16 bytes; the kernel allows at most 15"),
    ("éééééééé", "interface name 'éééééééé' is 16 bytes; the kernel allows at most 15"),  # bytes, not characters
    (7, "interface name int 7 is not a string"),
])
def test_interface_names_the_kernel_refuses(name: object, problem: str) -> None:
    from vethlab.topology.naming import ifname_problem

    assert ifname_problem(name) == problem


@pytest.mark.parametrize("name", ["a" * 15, "eth0", "vp1", "e-1_x.y", "...", "lo0", "XX0"])
def test_interface_names_the_kernel_takes(name: str) -> None:
    from vethlab.topology.naming import ifname_problem

    assert ifname_problem(name) is None


def test_services_and_readiness_checks_with_their_bounds_and_paths() -> None:
    base = "name: t\nnodes:\n  a:\n    run: %s\n    ready: %s\n"
    spec = lab_from_text(base % ('[{cmd: "sleep 1"}, {cmd: [sleep, "2"], oneshot: true}]', "[tcp:1, tcp:65535]"))
    assert spec.nodes["a"].run == (("sleep", "1"), ("sleep", "2")) and spec.nodes["a"].oneshot == (1,)
    assert spec.nodes["a"].ready == (("tcp:1",), ("tcp:65535",))
    assert errors(base % ('["sleep 1", {cmd: ""}]', "[tcp:0, tcp:65536]")) == [
        "lab.yaml:4: nodes.a.run[1].cmd: empty command",
        "lab.yaml:5: nodes.a.ready[0]: 'tcp:0': expected tcp:PORT with PORT in 1..65535",
        "lab.yaml:5: nodes.a.ready[1]: 'tcp:65536': expected tcp:PORT with PORT in 1..65535"]
    assert errors(base % ("sleep 1", "tcp:80")) == [
        "lab.yaml:4: nodes.a.run: must be a list of commands, not a string",
        "lab.yaml:5: nodes.a.ready: must be a list of checks (tcp:PORT or a command), not a string"]


def test_names_in_messages_are_quoted_and_short_whatever_their_size() -> None:
    """A hostile name cannot flood the terminal: it is shown escaped and cut at 40 characters."""
    from vethlab.errors import UsageError
    from vethlab.topology.naming import check_lab, netns_problem, node_problem

    assert node_problem("x" * 1000 + "!") == ("node name 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx... must start with a "
                                              "letter or digit and use only letters, digits, '-' and '_' (at most 63)")
    assert node_problem("x" * 37 + "!") == f"node name '{'x' * 37}!' must start with a letter or digit and use only " \
                                          "letters, digits, '-' and '_' (at most 63)"  # 40 characters: shown whole
    assert netns_problem(5) == "namespace name int 5 is not a node name or LAB-NODE"
    assert check_lab("lab") == "lab"
    with pytest.raises(UsageError, match=r"^--lab: lab name 'a b' must match \[a-z\]\[a-z0-9-\]\{0,11\}$"):
        check_lab("a b")


def test_shape_mistakes_of_a_file_each_at_its_path() -> None:
    assert errors("") == ["lab.yaml: the file is empty; it needs at least 'name' and 'nodes'"]
    assert errors("name: t\n") == ["lab.yaml:1: 'nodes' is required"]
    assert errors("nodes: {}\n") == ["lab.yaml:1: 'name' is required"]
    assert errors("name: t\nnodes: [a]\n") == ["lab.yaml:2: nodes: must be a mapping (node name: settings), not a list"]
    assert lab_from_text("name: t\nnodes:\n").nodes == {}  # `nodes:` with nothing under it: a lab of no nodes
    text = """\
name: t
nodes:
  a: {routes: 5, exec: 5, sysctls: [1]}
  b: {routes: ["nonsense", "10.9.0.0/16 via 10.99.0.1"]}
links:
  - addresses: [10.0.0.1/24, 10.0.0.2/24]
  - endpoints: [a:e0]
  - {endpoints: [a:e1, b:e1], addresses: [10.0.1.1/24]}
  - {endpoints: [a:e2, b:e2], a: 5, b: {rate: fast}}
"""
    assert errors(text) == [
        "lab.yaml:3: nodes.a.exec: must be a list of commands, not a number",
        "lab.yaml:3: nodes.a.routes: must be a list of routes, not a number",
        "lab.yaml:3: nodes.a.sysctls: must be a mapping (sysctl: value), not a list",
        "lab.yaml:4: nodes.b.routes[0]: destination 'nonsense' is not a network: 'nonsense' does not appear to be an "
        "IPv4 or IPv6 network",
        "lab.yaml:4: nodes.b.routes[1]: gateway 10.99.0.1 is not on any subnet of this node; the kernel would refuse "
        "the route",  # reported although the route before it is wrong: every problem at once
        "lab.yaml:6: links[0]: 'endpoints' is required: [NODE:IFNAME, NODE:IFNAME]",
        "lab.yaml:7: links[1].endpoints: must be a list of exactly two NODE:IFNAME",
        "lab.yaml:8: links[2].addresses: must be a list of two entries, one per end (an address, a list of addresses, "
        "or null)",
        "lab.yaml:9: links[3].a: must be a mapping (rate/delay/jitter/loss for this end), not a number",
        "lab.yaml:9: links[3].b.rate: 'fast' is not a rate such as 100mbit, 1gbit or 500kbps",
    ]


def test_routes_through_a_network_s_addresses_and_its_bridge() -> None:
    """The host reaches a network through its bridge (named or not); a member with a
    static address has that address on its interface, one without has IPAM's."""
    text = """\
name: t
nodes:
  host: {routes: [%s]}
  web: {routes: [%s]}
  db: {routes: ["10.8.0.0/16 via 172.30.0.1"]}
networks:
  lan: {bridge: vlbr-lan, subnet: 172.30.0.0/24, members: {web: {ip: 172.30.0.10}, db: {}}}
"""
    lab_from_text(text % ('"10.50.0.0/16 via 172.30.0.10", "10.51.0.0/16 dev vlbr-lan"', '"10.9.0.0/16 via 172.30.0.1"'))
    assert errors(text % ('"10.51.0.0/16 dev lan"', '"10.9.0.0/16 via 10.99.0.1 dev eth0"')) == [
        "lab.yaml:3: nodes.host.routes[0]: dev lan is not an interface of this node (it has: vlbr-lan)",
        "lab.yaml:4: nodes.web.routes[0]: gateway 10.99.0.1 is not on eth0; the kernel would refuse the route"]


def test_a_point_to_point_link_does_not_end_the_subnet_check_of_the_links_after_it() -> None:
    text = P2P % ('"10.0.0.2/32 dev p0"', '"10.0.0.1/32 dev p0"', "10.0.0.1/32", "10.0.0.2/32") + \
        "  - endpoints: [a:q0, b:q0]\n    addresses: [10.1.0.1/24, 10.2.0.2/24]\n"
    assert errors(text) == ["lab.yaml:9: links[1].addresses: the ends share no IPv4 subnet: a:q0 has 10.1.0.1/24, "
                            "b:q0 has 10.2.0.2/24; neither reaches the other directly"]
