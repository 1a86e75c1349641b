"""A lab across machines: validation of machines/machine/vni, and the pure
placement every machine computes identically (model/placement.py)."""

from __future__ import annotations

import textwrap

import pytest

from vethlab.errors import ValidationError
from vethlab.model import placement
from vethlab.topology import lab_from_text
from vethlab.topology.schema import MachineSpec

THREE = """\
name: chain
machines:
  m1: {address: 10.200.0.1}
  m2: {address: 10.200.0.2, dev: eth0}
  m3: {address: 10.200.0.3, mtu: 9000}
nodes:
  a: {machine: m1}
  b: {machine: m2, sysctls: {net.ipv4.ip_forward: 1}}
  c: {machine: m3}
  d: {machine: m1}
links:
  - endpoints: [a:e0, b:e0]
    addresses: [10.0.1.1/24, 10.0.1.2/24]
  - endpoints: [b:e1, c:e0]
    addresses: [10.0.2.1/24, 10.0.2.2/24]
    vni: 77
  - endpoints: [a:e9, d:e9]
    addresses: [10.0.9.1/24, 10.0.9.2/24]
networks:
  lan:
    subnet: 172.31.0.0/24
    members: {a: {}, b: {}, c: {}}
"""


def spec(text: str = THREE):  # type: ignore[no-untyped-def]
    return lab_from_text(textwrap.dedent(text), "lab.yaml")


def errors(text: str) -> list[str]:
    with pytest.raises(ValidationError) as info:
        spec(text)
    return [str(i) for i in info.value.issues]


def test_machines_nodes_and_vnis_are_read() -> None:
    s = spec()
    assert s.machines == (MachineSpec("m1", "10.200.0.1", None, None, 3), MachineSpec("m2", "10.200.0.2", "eth0", None, 4),
                          MachineSpec("m3", "10.200.0.3", None, 9000, 5))
    assert {n: node.machine for n, node in s.nodes.items()} == {"a": "m1", "b": "m2", "c": "m3", "d": "m1"}
    assert [link.vni for link in s.links] == [None, 77, None]
    assert s.networks[0].machine == "m1"  # default gateway: the first machine with a member


def test_without_machines_nothing_changes() -> None:
    s = spec("name: t\nnodes: {a: {}, b: {}}\nlinks: [{endpoints: [a:e0, b:e0]}]\n")
    assert s.machines == () and s.nodes["a"].machine is None


def test_every_problem_at_once_with_its_line() -> None:
    found = errors("""\
        name: x
        machines:
          m1: {address: 10.200.0.1}
          m2: {address: 10.200.0.2, mtu: 100}
          m3: {address: fd00::3}
        nodes:
          a: {machine: m1}
          b: {machine: m2}
          c: {machine: m9}
          d: {}
        links:
          - endpoints: [a:e0, b:e0]
            vni: 42
          - endpoints: [a:e1, b:e1]
            vni: 42
          - endpoints: [a:e2, host:x]
          - endpoints: [a:e4, b:e4]
            mtu: 1500
        networks:
          lan: {members: {a: {}, b: {}}}
        """)
    assert found == [
        "lab.yaml:4: machines.m2.mtu: underlay mtu 100 is too small for VXLAN's 50-byte overhead (links across "
        "machines would get 50, below the minimum 68)",
        "lab.yaml:5: machines.m3.address: fd00::3 is IPv6 but machine m1's address is not: the machines of a lab "
        "speak one IP version on the underlay",
        "lab.yaml:9: nodes.c.machine: unknown machine 'm9' (machines: m1, m2, m3)",
        "lab.yaml:10: nodes.d: node d needs 'machine:' (the lab declares machines: m1, m2, m3)",
        "lab.yaml:15: links[1].vni: VNI 42 is already used by links[0]",
        "lab.yaml:16: links[2].endpoints: a link to host is ambiguous in a lab across machines (host is a different "
        "namespace on each); give the node a link to a node instead",
        "lab.yaml:18: links[3].mtu: mtu 1500 does not fit the underlay: machines m1 and m2 leave 1450 bytes after "
        "VXLAN's 50-byte overhead (raise their 'mtu:' or lower this)",
        "lab.yaml:20: networks.lan: a network across machines (m1, m2) needs an explicit 'subnet': an automatic one "
        "would be chosen by each machine against its own host, and they could differ",
    ]


def test_ipv6_underlay_has_a_70_byte_overhead() -> None:
    found = errors("""\
        name: x
        machines:
          m1: {address: "fd00:200::1"}
          m2: {address: "fd00:200::2"}
        nodes: {a: {machine: m1}, b: {machine: m2}}
        links:
          - {endpoints: [a:e0, b:e0], mtu: 1440}
        """)
    assert found == ["lab.yaml:7: links[0].mtu: mtu 1440 does not fit the underlay: machines m1 and m2 leave 1430 "
                     "bytes after VXLAN's 70-byte overhead (raise their 'mtu:' or lower this)"]


def test_a_spanning_network_vni_clash_and_a_vni_on_a_local_network() -> None:
    found = errors("""\
        name: x
        machines: {m1: {address: 10.200.0.1}, m2: {address: 10.200.0.2}}
        nodes: {a: {machine: m1}, b: {machine: m2}, c: {machine: m2}}
        links:
          - {endpoints: [a:e0, b:e0], vni: 5}
        networks:
          lan: {subnet: 172.31.0.0/24, vni: 5, members: {a: {}, b: {}}}
          local: {vni: 6, members: {b: {}, c: {}}}
        """)
    assert found == ["lab.yaml:7: networks.lan.vni: VNI 5 is already used by links[0]",
                     "lab.yaml:8: networks.local.vni: vni is for a network with members on several machines"]


def test_derived_vni_is_a_documented_pure_function() -> None:
    import hashlib

    digest = hashlib.sha256(b"chain/link/a:e0/b:e0").digest()
    assert placement.derived_vni("chain", "link/a:e0/b:e0") == 4096 + int.from_bytes(digest[:8], "big") % (
        (1 << 24) - 4096)
    table = placement.vnis(spec())
    assert table == {"link/a:e0/b:e0": placement.derived_vni("chain", "link/a:e0/b:e0"), "link/b:e1/c:e0": 77,
                     "network/lan": placement.derived_vni("chain", "network/lan")}
    assert all(4096 <= v < 1 << 24 for k, v in table.items() if k != "link/b:e1/c:e0")


def test_vnis_ignore_link_order_and_direction() -> None:
    flipped = THREE.replace("[a:e0, b:e0]", "[b:e0, a:e0]").replace("[10.0.1.1/24, 10.0.1.2/24]",
                                                                     "[10.0.1.2/24, 10.0.1.1/24]")
    assert placement.vnis(spec(flipped)) == placement.vnis(spec())


def test_derived_vnis_that_meet_take_the_next_free_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(placement, "derived_vni", lambda lab, key: 77)  # every derived value meets the explicit 77
    assert placement.vnis(spec()) == {"link/b:e1/c:e0": 77, "link/a:e0/b:e0": 78, "network/lan": 79}


def test_each_machine_computes_its_part() -> None:
    s = spec()
    vni = placement.vnis(s)
    m1, m2, m3 = (placement.part(s, m) for m in ("m1", "m2", "m3"))
    assert m1.nodes == {"host", "a", "d"} and m2.nodes == {"host", "b"} and m3.nodes == {"host", "c"}
    assert m1.cross == (placement.CrossEnd("a", "e0", ("10.0.1.1/24",), True, vni["link/a:e0/b:e0"], 1450,
                                           "10.200.0.1", "10.200.0.2", None, "m2", "b", "e0"),)
    assert m2.cross == (
        placement.CrossEnd("b", "e0", ("10.0.1.2/24",), True, vni["link/a:e0/b:e0"], 1450, "10.200.0.2",
                           "10.200.0.1", "eth0", "m1", "a", "e0"),
        placement.CrossEnd("b", "e1", ("10.0.2.1/24",), True, 77, 1450, "10.200.0.2", "10.200.0.3", "eth0", "m3",
                           "c", "e0"))
    assert m3.cross[0].mtu == 1450 and m3.cross[0].peer == "m2/b:e1"  # the smaller underlay decides
    port = placement.port_ifname("chain", "lan")
    assert len(port) <= 15
    assert m1.ports == (placement.NetworkPort("lan", port, vni["network/lan"], 1450, "10.200.0.1",
                                              ("10.200.0.2", "10.200.0.3"), None, True),)
    assert m3.ports == (placement.NetworkPort("lan", port, vni["network/lan"], 1450, "10.200.0.3",
                                              ("10.200.0.1", "10.200.0.2"), None, False),)
    assert m1.remote_nodes == {"b": "m2", "c": "m3"}


def test_link_mtu_is_kept_when_the_underlay_allows_it() -> None:
    s = spec(THREE.replace("m1: {address: 10.200.0.1}", "m1: {address: 10.200.0.1, mtu: 9000}")
             .replace("m2: {address: 10.200.0.2, dev: eth0}", "m2: {address: 10.200.0.2, mtu: 9000}"))
    assert placement.part(s, "m1").cross[0].mtu == 1500


def test_the_machine_is_recognised_by_its_underlay_address() -> None:
    s = spec()
    assert placement.recognise(s, {"127.0.0.1", "10.200.0.3"}) == "m3"
    assert placement.recognise(s, {"192.0.2.1"}) is None


def test_a_link_with_carrier_is_a_veth_bridged_to_the_tunnel_in_the_machine() -> None:
    from vethlab.model.desired import DesiredInterface, DesiredVeth, Vxlan, compile_lab

    s = spec(THREE.replace("    addresses: [10.0.1.1/24, 10.0.1.2/24]\n",
                           "    addresses: [10.0.1.1/24, 10.0.1.2/24]\n    carrier: true\n"))
    assert [link.carrier for link in s.links] == [True, False, False]
    mine = placement.localize(compile_lab(s), s, "m1")
    port, bridge, tunnel = placement.stitch_names("chain", "a", "e0")
    vni = placement.vnis(s)["link/a:e0/b:e0"]
    assert {k: v for k, v in mine.interfaces.items() if k[1] in ("e0", port, bridge, tunnel)} == {
        ("a", "e0"): DesiredInterface("a", "e0", ("host", port), 1450, True, ("10.0.1.1/24",)),
        ("host", port): DesiredInterface("host", port, ("a", "e0"), 1450, True, (), master=bridge),
        ("host", bridge): DesiredInterface("host", bridge, None, 1450, True, (), kind="bridge"),
        ("host", tunnel): DesiredInterface("host", tunnel, None, 1450, True, (), kind="vxlan", master=bridge,
                                           vxlan=Vxlan(vni, "10.200.0.1", "10.200.0.2", None, 4789)),
    }
    assert DesiredVeth(("a", "e0"), ("host", port)) in mine.veths
    assert errors(THREE.replace("    addresses: [10.0.9.1/24, 10.0.9.2/24]\n",
                                "    addresses: [10.0.9.1/24, 10.0.9.2/24]\n    carrier: true\n")) == [
        "lab.yaml:19: links[2].carrier: carrier is for a link across machines (a veth pair carries it already)"]


def test_an_ipv4_mapped_ipv6_machine_address_is_refused_with_the_ipv4_to_write() -> None:
    found = errors("""\
        name: x
        machines:
          m1: {address: 10.200.0.1}
          m2: {address: "::ffff:10.200.0.2"}
        nodes:
          a: {machine: m1}
          b: {machine: m2}
        links:
          - endpoints: [a:e0, b:e0]
        """)
    assert found == ["lab.yaml:4: machines.m2.address: ::ffff:10.200.0.2 is an IPv4-mapped IPv6 address: write the "
                     "IPv4 address 10.200.0.2 itself"]


def test_vni_and_carrier_on_a_lab_without_machines_are_refused() -> None:
    """A lab on one machine skips the machine checks of its links (the common case,
    fast) unless a link says `vni:` or `carrier:`: those are still refused."""
    head = "name: x\nnodes: {a: {}, b: {}}\nlinks:\n"
    assert errors(head + "  - {endpoints: [a:e0, b:e0], vni: 7}\n") == [
        "lab.yaml:4: links[0].vni: vni needs 'machines:' (a link across machines)"]
    assert errors(head + "  - {endpoints: [a:e0, b:e0], carrier: true}\n") == [
        "lab.yaml:4: links[0].carrier: carrier is for a link across machines (a veth pair carries it already)"]
    assert errors(head + "  - {endpoints: [a:e0, b:e0], carrier: 1}\n") == [
        "lab.yaml:4: links[0].carrier: must be true or false, not a number"]
