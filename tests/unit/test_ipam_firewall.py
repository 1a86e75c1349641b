"""IPAM and the firewall ruleset: pure functions, no kernel."""

from __future__ import annotations

import pytest

from vethlab.errors import ConflictError
from vethlab.model import firewall
from vethlab.model.desired import compile_lab
from vethlab.model.ipam import Allocation, allocate
from vethlab.topology import lab_from_text

LAB = """\
name: t
nodes: {a: {}, b: {}, c: {}}
networks:
  one: {nat: true, members: {a: {publish: ["8080:80"]}, b: {}}}
  two: {subnet: 10.20.0.0/24, subnet6: "fd00:20::/64", members: {a: {}, c: {ip: 10.20.0.50}}}
"""


def test_pool_and_static_and_gateway() -> None:
    alloc = allocate(lab_from_text(LAB))
    assert alloc.subnet == {"one": "172.30.0.0/24", "two": "10.20.0.0/24"}
    assert alloc.gateway == {"one": "172.30.0.1/24", "two": "10.20.0.1/24"}
    assert alloc.address["one"] == {"a": "172.30.0.2/24", "b": "172.30.0.3/24"}
    assert alloc.address["two"] == {"a": "10.20.0.2/24", "c": "10.20.0.50/24"}
    assert alloc.address6["two"] == {"a": "fd00:20::2/64", "c": "fd00:20::3/64"} and alloc.gateway6["two"] == "fd00:20::1/64"


def test_previous_choices_are_kept() -> None:
    first = allocate(lab_from_text(LAB))
    grown = LAB.replace("members: {a: {publish: [\"8080:80\"]}, b: {}}", "members: {z: {}, a: {publish: [\"8080:80\"]}, b: {}}")
    grown = grown.replace("nodes: {a: {}, b: {}, c: {}}", "nodes: {a: {}, b: {}, c: {}, z: {}}")
    second = allocate(lab_from_text(grown), Allocation.previous(first.to_json()))
    assert second.address["one"]["a"] == first.address["one"]["a"]
    assert second.address["one"]["b"] == first.address["one"]["b"]
    assert second.address["one"]["z"] == "172.30.0.4/24"


def test_addresses_of_joined_containers_are_held() -> None:
    """A container joined to the lab (CNI plugin) holds its address: members added
    later skip it, members there before keep theirs, a static ip on it is refused."""
    first = allocate(lab_from_text(LAB))
    held = {"one": {"172.30.0.4": "container web1", "172.30.0.5": "container web2"}}
    grown = LAB.replace("b: {}}}", "b: {}, z: {}, y: {}}}").replace("c: {}}", "c: {}, z: {}, y: {}}")
    second = allocate(lab_from_text(grown), Allocation.previous(first.to_json()), held=held)
    assert second.address["one"] == {"a": "172.30.0.2/24", "b": "172.30.0.3/24", "z": "172.30.0.6/24",
                                     "y": "172.30.0.7/24"}
    assert allocate(lab_from_text(grown), Allocation.previous(first.to_json()), held=held) == second
    static = LAB.replace("c: {ip: 10.20.0.50}", "c: {ip: 10.20.0.9}")
    with pytest.raises(ConflictError, match=r"member c's ip 10.20.0.9 is held by container web9"):
        allocate(lab_from_text(static), held={"two": {"10.20.0.9": "container web9"}})


def test_pool_skips_taken_subnets() -> None:
    taken = {"host": [("172.30.0.0/24", "lab x"), ("172.30.1.0/25", "interface eth9")]}
    assert allocate(lab_from_text(LAB), taken=taken).subnet["one"] == "172.30.2.0/24"


def test_explicit_subnet_overlapping_host_is_a_conflict() -> None:
    with pytest.raises(ConflictError, match="subnet 10.20.0.0/24 overlaps 10.0.0.0/8 of interface eth0"):
        allocate(lab_from_text(LAB), taken={"host": [("10.0.0.0/8", "interface eth0")]})


def test_pool_exhaustion() -> None:
    taken = {"host": [("172.30.0.0/16", "someone")]}
    with pytest.raises(ConflictError, match="no free /24 left"):
        allocate(lab_from_text(LAB), taken=taken)


def test_compile_default_routes_and_ports() -> None:
    spec = lab_from_text(LAB)
    desired = compile_lab(spec, allocate(spec))
    routes = {(r.dst, r.via) for r in desired.nodes["a"].routes}
    assert routes == {("0.0.0.0/0", "172.30.0.1"), ("::/0", "fd00:20::1")}, "first network with a gateway wins"
    bridge = desired.interfaces[("host", "vb.t.one")]
    assert bridge.kind == "bridge" and bridge.addresses == ("172.30.0.1/24",)
    member = desired.interfaces[("a", "eth0")]
    assert member.peer and desired.interfaces[member.peer].master == "vb.t.one"
    assert desired.interfaces[("a", "eth1")].addresses == ("10.20.0.2/24", "fd00:20::2/64")
    assert desired.forwarding["host"] == ("net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding")


def _text(rule: list[dict]) -> str:
    """One rule of the JSON ruleset in words close to nft's: compared whole, not counted."""
    def side(value: object) -> str:
        if isinstance(value, dict):
            (kind, body), = value.items()
            if kind == "payload":
                return f"{body['protocol']} {body['field']}"
            if kind in ("meta", "ct"):
                return f"{kind} {body['key']}"
            if kind == "fib":
                return f"fib {' '.join(body['flags'])} {body['result']}"
            if kind == "prefix":
                return f"{body['addr']}/{body['len']}"
        return str(value)

    words = []
    for expr in rule:
        (kind, body), = expr.items()
        if kind == "match":
            words.append(f"{side(body['left'])} {body['op']} {side(body['right'])}")
        elif kind == "dnat":
            words.append(f"dnat {body['family']} to {body['addr']}:{body['port']}")
        else:
            words.append(kind)
    return "; ".join(words)


def test_firewall_rules() -> None:
    spec = lab_from_text(LAB + "  vault: {internal: true, members: {b: {}}}\n")
    desired = compile_lab(spec, allocate(spec))
    chains = {name: [_text(rule) for rule in rules] for name, rules in firewall.rules(desired.firewalls["host"]).items()}
    dnat = ("meta nfproto == ipv4; fib daddr type == local; meta l4proto == tcp; th dport == 8080; "
            "dnat ip to 172.30.0.2:80")
    drop = "meta iifname == {}; meta oifname == {}; drop"
    assert chains == {
        "postrouting": [
            "ip saddr == 172.30.0.0/24; meta oifname != vb.t.one; masquerade",  # NAT out of the subnet
            "meta oifname == vb.t.one; ct status in dnat; ip saddr == 172.30.0.0/24; masquerade",  # hairpin
            "meta oifname == vb.t.one; ct status in dnat; ip saddr == 127.0.0.0/8; masquerade",  # from the host
        ],
        "prerouting": [dnat],  # published, from outside
        "output": [dnat],  # published, from the host itself
        "forward": [
            "meta iifname == vb.t.vault; meta oifname != vb.t.vault; drop",  # internal: no way out
            "meta oifname == vb.t.vault; meta iifname != vb.t.vault; drop",
            *[drop.format(a, b) for a, b in (("vb.t.one", "vb.t.two"), ("vb.t.one", "vb.t.vault"),
                                              ("vb.t.two", "vb.t.one"), ("vb.t.two", "vb.t.vault"),
                                              ("vb.t.vault", "vb.t.one"), ("vb.t.vault", "vb.t.two"))],
        ],
    }
    batch = firewall.batch("t", desired.firewalls["host"], replace=True)["nftables"]
    assert batch[0] == {"add": {"table": {"family": "inet", "name": "vethlab_t"}}}
    assert batch[1] == {"delete": {"table": {"family": "inet", "name": "vethlab_t"}}}


def test_isolated_false_allows_traffic_between_two_open_networks() -> None:
    spec = lab_from_text("name: t\nnodes: {a: {}, b: {}}\nnetworks:\n  x: {isolated: false, members: {a: {}}}\n"
                         "  y: {isolated: false, members: {b: {}}}\n")
    desired = compile_lab(spec, allocate(spec))
    assert firewall.rules(desired.firewalls["host"])["forward"] == []


def test_table_names_map_back_to_labs() -> None:
    assert firewall.table_name("my-lab") == "vethlab_my_lab"
    assert firewall.lab_of_table("vethlab_my_lab") == "my-lab"
    assert firewall.lab_of_table("nat") is None


def _big(members: int, gateway: bool = True) -> str:
    nodes = ", ".join(f"h{i}: {{}}" for i in range(members))
    listed = ", ".join(f"h{i}: {{}}" for i in range(members))
    return f"name: big\nnodes: {{{nodes}}}\nnetworks:\n  lan:\n    gateway: {str(gateway).lower()}\n" \
           f"    members: {{{listed}}}\n"


def test_automatic_subnet_is_sized_to_the_members() -> None:
    """A 300-member network fits as it would on Docker (a /23), every address unique."""
    spec = lab_from_text(_big(300))
    alloc = allocate(spec)
    assert alloc.subnet["lan"] == "172.30.0.0/23"
    addresses = list(alloc.address["lan"].values())
    assert len(set(addresses)) == 300 and alloc.gateway["lan"] == "172.30.0.1/23"
    assert allocate(lab_from_text(_big(253))).subnet["lan"] == "172.30.0.0/24"  # .2 to .254, .1 the gateway
    assert allocate(lab_from_text(_big(254))).subnet["lan"] == "172.30.0.0/23"


def test_a_kept_subnet_too_small_for_more_members_is_replaced() -> None:
    previous = Allocation(subnet={"lan": "172.30.5.0/24"})
    assert allocate(lab_from_text(_big(10)), previous).subnet["lan"] == "172.30.5.0/24"
    assert allocate(lab_from_text(_big(300)), previous).subnet["lan"] == "172.30.0.0/23"


def test_more_members_than_the_pool_holds_says_how_to_fix() -> None:
    from vethlab.model.ipam import needed_prefix

    spec = lab_from_text(_big(300))
    assert needed_prefix(spec.networks[0]) == 23
    big = spec.networks[0]._replace(members=big_members(70_000, spec))
    assert needed_prefix(big) == 15
    with pytest.raises(ConflictError, match=r"give the network a subnet of its own \(e.g. `subnet: 10.64.0.0/15`\)"):
        allocate(spec.__class__(name="big", nodes=spec.nodes, networks=(big,)))


def big_members(count: int, spec) -> tuple:
    member = spec.networks[0].members[0]
    return tuple(member._replace(node=f"h{i}") for i in range(count))


def test_a_network_without_gateway_gives_its_first_address_to_a_member() -> None:
    """gateway: false (a plain switch, the Mininet way) reserves nothing: .1 is a member's,
    and no gateway is recorded for the bridge to carry."""
    spec = lab_from_text("name: t\nnodes: {a: {}, b: {}}\nnetworks:\n"
                         "  s1: {subnet: 10.0.0.0/24, gateway: false, members: {a: {}, b: {}}}\n")
    alloc = allocate(spec)
    assert alloc.address["s1"] == {"a": "10.0.0.1/24", "b": "10.0.0.2/24"}
    assert alloc.gateway == {} and alloc.gateway6 == {}


def test_static_members_listed_first_do_not_stop_the_others_getting_addresses() -> None:
    spec = lab_from_text("name: t\nnodes: {a: {}, b: {}, c: {}}\nnetworks:\n"
                         "  n: {subnet: 10.0.0.0/24, members: {c: {ip: 10.0.0.2}, a: {}, b: {}}}\n")
    first = allocate(spec)
    assert first.address["n"] == {"c": "10.0.0.2/24", "a": "10.0.0.3/24", "b": "10.0.0.4/24"}
    again = allocate(spec, Allocation.previous(first.to_json()))
    assert again.address == first.address


def test_earlier_choices_no_longer_valid_are_replaced() -> None:
    """An address kept from the state must still be in the subnet, not taken by a
    static member, and not the subnet's network or broadcast address; otherwise two
    members would share an address, or one would sit outside its subnet."""
    spec = lab_from_text("name: t\nnodes: {a: {}, b: {}, c: {}, d: {}}\nnetworks:\n"
                         "  n: {subnet: 10.0.0.0/25, members: {a: {}, b: {}, c: {ip: 10.0.0.9}, d: {}}}\n")
    previous = Allocation(address={"n": {"a": "10.0.0.130/24",  # outside the subnet now (it was a /24)
                                         "b": "10.0.0.9/24",  # c's static address now
                                         "d": "10.0.0.127/24"}})  # the /25's broadcast address
    assert allocate(spec, previous).address["n"] == {"a": "10.0.0.2/25", "b": "10.0.0.3/25", "c": "10.0.0.9/25",
                                                     "d": "10.0.0.4/25"}
    network = Allocation(address={"n": {"a": "10.0.0.0/25", "b": "10.0.0.5/25"}})  # the network address, a free one
    assert allocate(spec, network).address["n"] == {"a": "10.0.0.2/25", "b": "10.0.0.5/25", "c": "10.0.0.9/25",
                                                    "d": "10.0.0.3/25"}


def test_the_state_keeps_every_choice_ipam_reads_back() -> None:
    alloc = allocate(lab_from_text(LAB))
    back = Allocation.previous(alloc.to_json())
    assert (back.subnet, back.subnet6, back.address, back.address6) == \
        (alloc.subnet, alloc.subnet6, alloc.address, alloc.address6)
    assert Allocation.previous(None) == Allocation()


def test_two_automatic_subnets_and_a_fixed_one_later_in_the_file_never_overlap() -> None:
    spec = lab_from_text("name: t\nnodes: {a: {}, b: {}, c: {}, r: {}}\nnetworks:\n"
                         "  one: {members: {a: {}}}\n  two: {members: {b: {}}}\n"
                         "  fixed: {subnet: 172.30.0.0/24, members: {c: {}}}\n"
                         "  elsewhere: {host: r, subnet: 172.30.1.0/24, members: {a: {}}}\n")
    # `elsewhere` lives in node r's own namespace: it does not take 172.30.1.0/24 from the host
    assert allocate(spec).subnet == {"one": "172.30.1.0/24", "two": "172.30.2.0/24", "fixed": "172.30.0.0/24",
                                     "elsewhere": "172.30.1.0/24"}


def test_real_lan_networks_are_not_checked_against_the_host_but_later_ones_are() -> None:
    """macvlan and uplinked bridges join a LAN the host may be on: their subnet may
    overlap the host's; a bridge network after them still may not."""
    taken = {"host": [("192.168.7.10/24", "interface eth0"), ("192.168.8.10/24", "interface eth1"),
                      ("10.50.0.7/16", "interface eth2")]}  # the host's addresses, host bits set
    lan = ("name: t\nnodes: {a: {}, b: {}}\nnetworks:\n"
           "  phys: {driver: macvlan, parent: eth0, subnet: 192.168.7.0/24, members: {a: {}}}\n"
           "  up: {uplinks: [eth1], subnet: 192.168.8.0/24, members: {b: {}}}\n")
    assert allocate(lab_from_text(lan), taken=taken).subnet == {"phys": "192.168.7.0/24", "up": "192.168.8.0/24"}
    clash = lan + "  br: {subnet: 10.50.0.0/24, members: {a: {}}}\n"
    with pytest.raises(ConflictError, match="network br: subnet 10.50.0.0/24 overlaps 10.50.0.0/16 of interface eth2"):
        allocate(lab_from_text(clash), taken=taken)


def test_without_a_gateway_253_members_fit_a_24_and_254_do_not() -> None:
    from vethlab.model.ipam import needed_prefix

    assert needed_prefix(lab_from_text(_big(254, gateway=False)).networks[0]) == 24  # .1 to .254
    assert needed_prefix(lab_from_text(_big(255, gateway=False)).networks[0]) == 23
    assert needed_prefix(lab_from_text(_big(254)).networks[0]) == 23  # the gateway takes .1


def test_every_published_form_and_ipv6_in_the_ruleset() -> None:
    """Publishing on a host address, on the loopback only, and over IPv6: each in the
    chains it belongs to (a 127.0.0.1 publish is reachable from the host only, so it
    has no prerouting rule), compared whole."""
    spec = lab_from_text("name: t\nnodes: {a: {}}\nnetworks:\n"
                         "  one: {subnet: 172.30.0.0/24, subnet6: \"fd00:30::/64\", members: {a: {publish: "
                         "[\"8080:80\", \"10.1.2.3:8443:443/tcp\", \"127.0.0.1:5353:53/udp\"]}}}\n")
    desired = compile_lab(spec, allocate(spec))
    chains = {name: [_text(rule) for rule in rules] for name, rules in firewall.rules(desired.firewalls["host"]).items()}
    v4 = "meta nfproto == ipv4; fib daddr type == local; meta l4proto == tcp; th dport == 8080; dnat ip to 172.30.0.2:80"
    v6 = ("meta nfproto == ipv6; fib daddr type == local; meta l4proto == tcp; th dport == 8080; "
          "dnat ip6 to fd00:30::2:80")
    on_address = "ip daddr == 10.1.2.3; meta l4proto == tcp; th dport == 8443; dnat ip to 172.30.0.2:443"
    on_loopback = "ip daddr == 127.0.0.1; meta l4proto == udp; th dport == 5353; dnat ip to 172.30.0.2:53"
    assert chains == {
        "postrouting": [
            "meta oifname == vb.t.one; ct status in dnat; ip saddr == 172.30.0.0/24; masquerade",
            "meta oifname == vb.t.one; ct status in dnat; ip saddr == 127.0.0.0/8; masquerade",
            "meta oifname == vb.t.one; ct status in dnat; ip6 saddr == fd00:30::/64; masquerade",
        ],
        "prerouting": [v4, v6, on_address],
        "output": [v4, v6, on_address, on_loopback],
        "forward": [],
    }


def test_an_isolated_network_is_cut_off_from_an_open_one_both_ways() -> None:
    spec = lab_from_text("name: t\nnodes: {a: {}, b: {}}\nnetworks:\n  x: {members: {a: {}}}\n"
                         "  y: {isolated: false, members: {b: {}}}\n")
    desired = compile_lab(spec, allocate(spec))
    assert [_text(rule) for rule in firewall.rules(desired.firewalls["host"])["forward"]] == [
        "meta iifname == vb.t.x; meta oifname == vb.t.y; drop", "meta iifname == vb.t.y; meta oifname == vb.t.x; drop"]


def test_the_nft_batch_whole_and_its_digest() -> None:
    """The batch nft runs, whole: one table, the marker chain, the digest chain, each
    base chain at its hook with policy accept, then its rules.  `create` when the
    table is new (it fails if a table of that name appeared meanwhile)."""
    spec = lab_from_text("name: t\nnodes: {a: {}}\nnetworks:\n  one: {nat: true, subnet: 172.30.0.0/24, "
                         "members: {a: {}}}\n")
    networks = compile_lab(spec, allocate(spec)).firewalls["host"]
    table = {"family": "inet", "name": "vethlab_t"}
    masq = [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}},
                       "right": {"prefix": {"addr": "172.30.0.0", "len": 24}}}},
            {"match": {"op": "!=", "left": {"meta": {"key": "oifname"}}, "right": "vb.t.one"}},
            {"masquerade": None}]

    def chain(name: str, kind: str, hook: str, prio: int) -> dict[str, object]:
        return {"add": {"chain": {"family": "inet", "table": "vethlab_t", "name": name, "type": kind, "hook": hook,
                                  "prio": prio, "policy": "accept"}}}

    body = [
        {"add": {"chain": {"family": "inet", "table": "vethlab_t", "name": "owner-vethlab-t"}}},
        {"add": {"chain": {"family": "inet", "table": "vethlab_t", "name": "v-" + firewall.digest(networks)}}},
        chain("postrouting", "nat", "postrouting", 100),
        {"add": {"rule": {"family": "inet", "table": "vethlab_t", "chain": "postrouting", "expr": masq}}},
        chain("prerouting", "nat", "prerouting", -100),
        chain("output", "nat", "output", -100),
        chain("forward", "filter", "forward", 0),
    ]
    assert firewall.batch("t", networks, replace=False) == {"nftables": [{"create": {"table": table}}, *body]}
    assert firewall.batch("t", networks, replace=True) == {
        "nftables": [{"add": {"table": table}}, {"delete": {"table": table}}, {"add": {"table": table}}, *body]}
    # the digest names the ruleset: the same rules, the same digest; other rules, another one
    assert firewall.digest(networks) == firewall.digest(compile_lab(spec, allocate(spec)).firewalls["host"])
    assert firewall.digest(networks) != firewall.digest([networks[0]._replace(nat=False)])


def test_earlier_choices_are_kept_for_ipv6_and_behind_a_static_member() -> None:
    spec = lab_from_text("name: t\nnodes: {a: {}, b: {}, c: {}}\nnetworks:\n  n: {subnet: 10.0.0.0/24, "
                         "subnet6: \"fd00::/64\", members: {c: {ip: 10.0.0.2}, a: {}, b: {}}}\n")
    previous = Allocation(address={"n": {"a": "10.0.0.9/24", "b": "10.0.0.8/24"}},
                          address6={"n": {"a": "fd00::9/64", "b": "fd00::8/64", "c": "fd00::7/64"}})
    alloc = allocate(spec, previous)
    assert alloc.address["n"] == {"c": "10.0.0.2/24", "a": "10.0.0.9/24", "b": "10.0.0.8/24"}
    assert alloc.address6["n"] == {"c": "fd00::7/64", "a": "fd00::9/64", "b": "fd00::8/64"}


def test_a_full_subnet_says_which_member_and_how_to_fix() -> None:
    spec = lab_from_text("name: t\nnodes: {a: {}, b: {}}\nnetworks:\n  n: {subnet: 10.0.0.0/30, members: {a: {}, b: {}}}\n")
    with pytest.raises(ConflictError) as err:
        allocate(spec)
    assert str(err.value) == ("network n: subnet 10.0.0.0/30 has no free address left for b (2 members); give the "
                              "network a larger subnet (`subnet:` with a shorter prefix, e.g. /16)")
