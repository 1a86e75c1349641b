"""The builder API (topology/builder.py): a lab built in code is the file's lab.

Every test compares what the builder makes with what the same topology makes as
YAML text or as a dict — whole specs, whole compiled states, whole lists of
issues — so a key the builder spells or nests differently from the file shows
up as a difference, not as a count that happens to match."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import pytest

from vethlab import Lab
from vethlab.errors import UsageError, ValidationError
from vethlab.model import ipam
from vethlab.model.desired import compile_lab
from vethlab.topology import lab_from_dict, lab_from_text
from vethlab.topology.builder import LabBuilder
from vethlab.topology.machines import MACHINE_KEYS
from vethlab.topology.networks import MEMBER_KEYS, NETWORK_KEYS
from vethlab.topology.schema import (
    Endpoint,
    LabSpec,
    LinkSpec,
    MemberSpec,
    NetworkSpec,
    NodeSpec,
    PublishSpec,
    RouteSpec,
)
from vethlab.topology.shaping import Shaping
from vethlab.topology.validate import LINK_KEYS, NODE_KEYS, TOP_KEYS

# Every key of the file, each at least once; values of each shape the file allows
EVERY_KEY = """\
name: every
prefix: true
nodes:
  host:
    sysctls: {net.ipv4.conf.all.forwarding: 1}
    routes: ["10.50.0.0/16 via 10.0.9.2"]
  r1:
    sysctls: {net.ipv4.ip_forward: true, net.ipv6.conf.all.forwarding: "1", net.ipv6.conf.all.disable_ipv6: false}
    routes: ["default via 10.0.0.2", "10.9.0.0/16 via 10.0.0.2 dev e0 metric 20", "10.0.5.2/32 dev p0"]
    exec: ["ip addr add 10.99.0.1/32 dev lo", [ip, link, set, lo, up]]
    run: ["python3 -m http.server 8000", [sleep, "1000"], {cmd: "true", oneshot: true}]
    ready: ["tcp:8000", "test -e /proc"]
  r2: {}
  web:
    routes: ["10.0.5.1/32 dev p0"]
  db: {}
links:
  - endpoints: [r1:e0, r2:e0]
    addresses: [10.0.0.1/30, [10.0.0.2/30, "fd00::2/64"]]
  - endpoints: [host:vh0, r2:e1]
    addresses: [10.0.9.1/30, 10.0.9.2/30]
  - endpoints: [r1:p0, web:p0]
    addresses: [10.0.5.1/32, 10.0.5.2/32]
    mtu: 9000
    state: down
    rate: 100mbit
    delay: 5ms
    jitter: 1ms
    loss: 0.1%
    a: {rate: 10mbit}
    b: {delay: 1ms, loss: "2%"}
  - endpoints: [r2:e9, db:e9]
    addresses: [null, 10.0.7.2/24]
networks:
  lan:
    host: host
    bridge: vlbr-lan
    subnet: 172.30.0.0/24
    subnet6: fd00:30::/64
    gateway: true
    nat: true
    isolated: false
    mtu: 1400
    members:
      web: {ip: 172.30.0.10, ip6: "fd00:30::10", ifname: eth0, publish: ["8080:80/tcp", "127.0.0.1:8053:53/udp"]}
      db: {}
  back:
    host: r2
    internal: true
    members: {db: {}, web: {ifname: b0}}
  uplinked:
    uplinks: [enp7s0]
    members: {r1: {}}
  phys:
    driver: macvlan
    parent: enp8s0
    subnet: 10.99.0.0/24
    members: {db: {ip: 10.99.0.60}}
"""

EVERY_KEY_DICT: dict[str, Any] = {
    "name": "every",
    "prefix": True,
    "nodes": {
        "host": {"sysctls": {"net.ipv4.conf.all.forwarding": 1}, "routes": ["10.50.0.0/16 via 10.0.9.2"]},
        "r1": {"sysctls": {"net.ipv4.ip_forward": True, "net.ipv6.conf.all.forwarding": "1",
                           "net.ipv6.conf.all.disable_ipv6": False},
               "routes": ["default via 10.0.0.2", "10.9.0.0/16 via 10.0.0.2 dev e0 metric 20", "10.0.5.2/32 dev p0"],
               "exec": ["ip addr add 10.99.0.1/32 dev lo", ["ip", "link", "set", "lo", "up"]],
               "run": ["python3 -m http.server 8000", ["sleep", "1000"], {"cmd": "true", "oneshot": True}],
               "ready": ["tcp:8000", "test -e /proc"]},
        "r2": {},
        "web": {"routes": ["10.0.5.1/32 dev p0"]},
        "db": {},
    },
    "links": [
        {"endpoints": ["r1:e0", "r2:e0"], "addresses": ["10.0.0.1/30", ["10.0.0.2/30", "fd00::2/64"]]},
        {"endpoints": ["host:vh0", "r2:e1"], "addresses": ["10.0.9.1/30", "10.0.9.2/30"]},
        {"endpoints": ["r1:p0", "web:p0"], "addresses": ["10.0.5.1/32", "10.0.5.2/32"], "mtu": 9000,
         "state": "down", "rate": "100mbit", "delay": "5ms", "jitter": "1ms", "loss": "0.1%",
         "a": {"rate": "10mbit"}, "b": {"delay": "1ms", "loss": "2%"}},
        {"endpoints": ["r2:e9", "db:e9"], "addresses": [None, "10.0.7.2/24"]},
    ],
    "networks": {
        "lan": {"host": "host", "bridge": "vlbr-lan", "subnet": "172.30.0.0/24", "subnet6": "fd00:30::/64",
                "gateway": True, "nat": True, "isolated": False, "mtu": 1400,
                "members": {"web": {"ip": "172.30.0.10", "ip6": "fd00:30::10", "ifname": "eth0",
                                    "publish": ["8080:80/tcp", "127.0.0.1:8053:53/udp"]},
                            "db": {}}},
        "back": {"host": "r2", "internal": True, "members": {"db": {}, "web": {"ifname": "b0"}}},
        "uplinked": {"uplinks": ["enp7s0"], "members": {"r1": {}}},
        "phys": {"driver": "macvlan", "parent": "enp8s0", "subnet": "10.99.0.0/24",
                 "members": {"db": {"ip": "10.99.0.60"}}},
    },
}


def every_key_built() -> LabBuilder:
    """The same lab, a call per object, in the order a script would write it."""
    lab = LabBuilder("every", prefix=True)
    lab.add_node("host", sysctls={"net.ipv4.conf.all.forwarding": 1}, routes=["10.50.0.0/16 via 10.0.9.2"])
    r1 = lab.add_node("r1", sysctls={"net.ipv4.ip_forward": True, "net.ipv6.conf.all.forwarding": "1",
                                     "net.ipv6.conf.all.disable_ipv6": False},
                      routes=["default via 10.0.0.2", "10.9.0.0/16 via 10.0.0.2 dev e0 metric 20",
                              "10.0.5.2/32 dev p0"],
                      exec=["ip addr add 10.99.0.1/32 dev lo", ("ip", "link", "set", "lo", "up")],
                      run=["python3 -m http.server 8000", ["sleep", "1000"], {"cmd": "true", "oneshot": True}],
                      ready=["tcp:8000", "test -e /proc"])
    r2 = lab.add_node("r2")
    lab.add_node("web", routes=("10.0.5.1/32 dev p0",))
    lab.add_node("db")
    lab.add_link(f"{r1}:e0", f"{r2}:e0", addresses=["10.0.0.1/30", ("10.0.0.2/30", "fd00::2/64")])
    lab.add_link("host:vh0", "r2:e1", addresses=("10.0.9.1/30", "10.0.9.2/30"))
    lab.add_link("r1:p0", "web:p0", addresses=["10.0.5.1/32", "10.0.5.2/32"], mtu=9000, state="down",
                 rate="100mbit", delay="5ms", jitter="1ms", loss="0.1%",
                 shaping_a={"rate": "10mbit"}, shaping_b={"delay": "1ms", "loss": "2%"})
    lab.add_link("r2:e9", "db:e9", addresses=[None, "10.0.7.2/24"])
    lab.add_network("lan", host="host", bridge="vlbr-lan", subnet="172.30.0.0/24", subnet6="fd00:30::/64",
                    gateway=True, nat=True, isolated=False, mtu=1400)
    lab.add_member("lan", "web", ip="172.30.0.10", ip6="fd00:30::10", ifname="eth0",
                   publish=["8080:80/tcp", "127.0.0.1:8053:53/udp"])
    lab.add_member("lan", "db")
    lab.add_network("back", host="r2", internal=True, members=["db"])
    lab.add_member("back", "web", ifname="b0")
    lab.add_network("uplinked", uplinks=["enp7s0"], members={"r1": {}})
    lab.add_network("phys", driver="macvlan", parent="enp8s0", subnet="10.99.0.0/24",
                    members={"db": {"ip": "10.99.0.60"}})
    return lab


def route(text: str, dst: str, via: str | None = None, dev: str | None = None, metric: int | None = None) -> RouteSpec:
    return RouteSpec(dst=dst, via=via, dev=dev, metric=metric, text=text)


#: what EVERY_KEY means, written out by hand (and checked against the file line by line):
#: the validator's whole output, so a field it drops, defaults wrongly or misplaces shows
EVERY_KEY_SPEC = LabSpec(
    name="every", prefix=True, file="every.yaml",
    nodes={
        "host": NodeSpec("host", sysctls=(("net.ipv4.conf.all.forwarding", "1"),),
                         routes=(route("10.50.0.0/16 via 10.0.9.2", "10.50.0.0/16", "10.0.9.2"),), line=5),
        "r1": NodeSpec("r1", sysctls=(("net.ipv4.ip_forward", "1"), ("net.ipv6.conf.all.forwarding", "1"),
                                      ("net.ipv6.conf.all.disable_ipv6", "0")),
                       routes=(route("default via 10.0.0.2", "0.0.0.0/0", "10.0.0.2"),
                               route("10.9.0.0/16 via 10.0.0.2 dev e0 metric 20", "10.9.0.0/16", "10.0.0.2", "e0", 20),
                               route("10.0.5.2/32 dev p0", "10.0.5.2/32", dev="p0")),
                       exec=(("ip", "addr", "add", "10.99.0.1/32", "dev", "lo"), ("ip", "link", "set", "lo", "up")),
                       run=(("python3", "-m", "http.server", "8000"), ("sleep", "1000"), ("true",)), line=8,
                       oneshot=(2,), ready=(("tcp:8000",), ("test", "-e", "/proc"))),
        "r2": NodeSpec("r2", line=13),
        "web": NodeSpec("web", routes=(route("10.0.5.1/32 dev p0", "10.0.5.1/32", dev="p0"),), line=15),
        "db": NodeSpec("db", line=16),
    },
    links=(
        LinkSpec(Endpoint("r1", "e0"), Endpoint("r2", "e0"), ("10.0.0.1/30",), ("10.0.0.2/30", "fd00::2/64"), line=18),
        LinkSpec(Endpoint("host", "vh0"), Endpoint("r2", "e1"), ("10.0.9.1/30",), ("10.0.9.2/30",), line=20),
        LinkSpec(Endpoint("r1", "p0"), Endpoint("web", "p0"), ("10.0.5.1/32",), ("10.0.5.2/32",), mtu=9000, up=False,
                 line=22, shaping_a=Shaping(rate=10_000_000, delay=5000, jitter=1000, loss=0.1),
                 shaping_b=Shaping(rate=100_000_000, delay=1000, jitter=1000, loss=2.0)),
        LinkSpec(Endpoint("r2", "e9"), Endpoint("db", "e9"), (), ("10.0.7.2/24",), line=32),
    ),
    networks=(
        NetworkSpec("lan", host="host", bridge="vlbr-lan", subnet="172.30.0.0/24", subnet6="fd00:30::/64",
                    gateway=True, nat=True, isolated=False, mtu=1400, line=36, members=(
                        MemberSpec("web", ip="172.30.0.10", ip6="fd00:30::10", ifname="eth0",
                                   publish=(PublishSpec(8080, 80, "tcp"), PublishSpec(8053, 53, "udp", "127.0.0.1"))),
                        MemberSpec("db", ifname="eth0"))),
        NetworkSpec("back", host="r2", gateway=False, internal=True, line=48,
                    members=(MemberSpec("db", ifname="eth1"), MemberSpec("web", ifname="b0"))),
        NetworkSpec("uplinked", gateway=False, uplinks=("enp7s0",), line=52, members=(MemberSpec("r1", ifname="eth0"),)),
        NetworkSpec("phys", driver="macvlan", parent="enp8s0", subnet="10.99.0.0/24", gateway=False, line=55,
                    members=(MemberSpec("db", ip="10.99.0.60", ifname="eth2"),)),
    ))


def test_the_file_with_every_key_means_exactly_this() -> None:
    assert lab_from_text(EVERY_KEY, "every.yaml") == EVERY_KEY_SPEC


def unlined(spec: LabSpec) -> LabSpec:
    """The spec without where it came from (file name, line numbers): what it means."""
    return dataclasses.replace(
        spec, file=None,
        nodes={name: node._replace(line=None) for name, node in spec.nodes.items()},
        links=tuple(link._replace(line=None) for link in spec.links),
        networks=tuple(net._replace(line=None) for net in spec.networks),
        machines=tuple(machine._replace(line=None) if hasattr(machine, "line") else machine
                       for machine in spec.machines))


def test_the_same_lab_three_ways_is_the_same_spec_and_the_same_compiled_state() -> None:
    from_text = lab_from_text(EVERY_KEY, "every.yaml")
    from_dict = lab_from_dict(EVERY_KEY_DICT)
    built = every_key_built().build()
    assert from_text.links[2].line == 22 and built.links[2].line is None  # the YAML spec does carry lines
    assert built.file == "<builder>"
    assert unlined(built) == unlined(from_text)
    assert unlined(built) == unlined(from_dict)
    assert built == dataclasses.replace(from_dict, file="<builder>")  # lines: None on both

    def compiled(spec: LabSpec) -> Any:
        return compile_lab(spec, ipam.allocate(spec))

    assert compiled(unlined(built)) == compiled(unlined(from_text))


def test_to_dict_is_the_dict_of_the_file() -> None:
    assert every_key_built().to_dict() == EVERY_KEY_DICT


def test_every_key_of_the_file_has_its_argument() -> None:
    """When a topology key is added to the validator, the builder must grow the
    argument that writes it (or this fails): a key reachable only through a dict
    would make the builder a second-class way to write a lab."""

    def keys(method: Any, renamed: dict[str, str] | None = None) -> set[str]:
        params = inspect.signature(method).parameters.values()
        names = {p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}
        return {(renamed or {}).get(name, name) for name in names}

    assert keys(LabBuilder.add_node) == NODE_KEYS
    assert keys(LabBuilder.add_link, {"shaping_a": "a", "shaping_b": "b"}) | {"endpoints"} == LINK_KEYS
    assert keys(LabBuilder.add_network) == NETWORK_KEYS
    assert keys(LabBuilder.add_member) == MEMBER_KEYS
    assert keys(LabBuilder.add_machine) == MACHINE_KEYS
    assert set(inspect.signature(LabBuilder).parameters) - {"file"} | {"nodes", "links", "networks",
                                                                      "machines"} == TOP_KEYS


BAD_YAML = """\
name: bad
nodes:
  a:
    sysctls: {kernel.panic: 1}
    routes: ["10.9.0.0/16 via 192.0.2.1", "nonsense"]
    run: [{cmd: "sleep 1", oneshot: "yes"}]
  b: {}
links:
  - endpoints: [a:e0, c:e0]
    addresses: [10.0.0.1/24, 10.0.0.300/24]
    mtu: 10
    rate: fast
  - endpoints: [a:this-name-is-too-long, b:e0]
    state: sideways
networks:
  lan:
    subnet: 10.0.0.0/24
    nat: true
    internal: true
    members:
      a: {ip: 10.1.0.5, publish: ["99999:80"]}
"""


def test_bad_arguments_give_the_file_s_messages_at_the_same_field_paths() -> None:
    with pytest.raises(ValidationError) as from_file:
        lab_from_text(BAD_YAML, "bad.yaml")
    lab = Lab.new("bad")
    lab.add_node("a", sysctls={"kernel.panic": 1}, routes=["10.9.0.0/16 via 192.0.2.1", "nonsense"],
                 run=[{"cmd": "sleep 1", "oneshot": "yes"}])
    lab.add_node("b")
    lab.add_link("a:e0", "c:e0", addresses=["10.0.0.1/24", "10.0.0.300/24"], mtu=10, rate="fast")
    lab.add_link("a:this-name-is-too-long", "b:e0", state="sideways")  # type: ignore[arg-type]
    lab.add_network("lan", subnet="10.0.0.0/24", nat=True, internal=True)
    lab.add_member("lan", "a", ip="10.1.0.5", publish=["99999:80"])
    with pytest.raises(ValidationError) as from_code:
        lab.spec  # noqa: B018 - validating is the point
    assert [str(issue) for issue in from_file.value.issues] == [  # every mistake, at once, at its line and path
        "bad.yaml:4: nodes.a.sysctls.kernel.panic: 'kernel.panic' is not a per-namespace sysctl (only net.* keys can "
        "be set in a node)",
        "bad.yaml:5: nodes.a.routes[0]: gateway 192.0.2.1 is not on any subnet of this node; the kernel would refuse "
        "the route",
        "bad.yaml:5: nodes.a.routes[1]: destination 'nonsense' is not a network: 'nonsense' does not appear to be an "
        "IPv4 or IPv6 network",
        "bad.yaml:6: nodes.a.run[0].oneshot: must be true or false, not a string",
        "bad.yaml:9: links[0].endpoints[1]: node 'c' is not defined under 'nodes'",
        "bad.yaml:10: links[0].addresses[1]: '10.0.0.300/24' is not a valid address: '10.0.0.300/24' does not appear "
        "to be an IPv4 or IPv6 interface",
        "bad.yaml:11: links[0].mtu: mtu must be a whole number from 68 to 65535, not 10",
        "bad.yaml:12: links[0].rate: 'fast' is not a rate such as 100mbit, 1gbit or 500kbps",
        "bad.yaml:13: links[1].endpoints[0]: interface name 'this-name-is-too-long' is 21 bytes; the kernel allows at "
        "most 15",
        "bad.yaml:14: links[1].state: state must be 'up' or 'down', not 'sideways'",
        "bad.yaml:18: networks.lan.nat: an internal network has no NAT (no way out); drop one of them",
        "bad.yaml:18: networks.lan.nat: nat needs gateway: true (members route out through the bridge's address)",
        "bad.yaml:21: networks.lan.members.a.ip: 10.1.0.5 is outside the network's subnet 10.0.0.0/24",
        "bad.yaml:21: networks.lan.members.a.publish[0]: port 99999 is out of range (1-65535) in '99999:80'",
    ]
    wanted = sorted((issue.path, issue.message) for issue in from_file.value.issues)
    assert sorted((issue.path, issue.message) for issue in from_code.value.issues) == wanted
    assert {(issue.file, issue.line) for issue in from_code.value.issues} == {("<builder>", None)}
    assert str(from_code.value).splitlines()[0].startswith("<builder>: ")


def test_a_name_given_twice_is_the_file_s_duplicate_key_and_the_first_stays() -> None:
    with pytest.raises(ValidationError) as from_file:
        lab_from_text("name: d\nnodes:\n  a: {}\n  a: {routes: [x]}\nnetworks:\n  n:\n    members: {a: {}}\n"
                      "  n: {}\n", "d.yaml")
    lab = LabBuilder("d")
    lab.add_node("a")
    lab.add_node("a", routes=["x"])  # dropped, as YAML's second `a:` is: no route error beside it
    lab.add_network("n", members=["a"])
    lab.add_network("n")
    with pytest.raises(ValidationError) as from_code:
        lab.build()
    assert sorted((i.path, i.message) for i in from_code.value.issues) == \
        sorted((i.path, i.message) for i in from_file.value.issues) == [("networks.n", "duplicate key"),
                                                                          ("nodes.a", "duplicate key")]
    lab = LabBuilder("d")
    lab.add_node("a")
    lab.add_network("n", members=["a"])
    lab.add_member("n", "a", ip="10.0.0.9")
    with pytest.raises(ValidationError, match=r"^<builder>: networks\.n\.members\.a: duplicate key$"):
        lab.build()


def test_a_member_of_a_network_not_added_yet_is_reported_with_the_rest() -> None:
    lab = LabBuilder("m")
    lab.add_node("a")
    lab.add_member("lan", "a")
    lab.add_link("a:e0", "a:e0")
    with pytest.raises(ValidationError) as info:
        lab.build()
    assert [str(i) for i in info.value.issues] == [
        "<builder>: links[0].endpoints[1]: both ends are the same interface a:e0",
        "<builder>: links[0].endpoints[1]: interface a:e0 is already used by links[0]",
        "<builder>: networks.lan: network 'lan' is not defined: add_network it before add_member"]


def test_the_lab_name_is_checked_at_once_with_the_file_s_message() -> None:
    with pytest.raises(ValidationError) as from_file:
        lab_from_text("name: Bad Name\nnodes: {}\n", "n.yaml")
    with pytest.raises(ValidationError) as from_code:
        Lab.new("Bad Name")
    assert [(i.path, i.message) for i in from_code.value.issues] == \
        [(i.path, i.message) for i in from_file.value.issues] == \
        [("name", "lab name 'Bad Name' must match [a-z][a-z0-9-]{0,11}")]


def test_the_spec_follows_each_change_and_a_lab_from_a_file_cannot_be_built_on() -> None:
    lab = Lab.new("grow", prefix=True)
    assert lab.name == "grow" and lab.spec == LabSpec(name="grow", nodes={}, prefix=True, file="<builder>")
    lab.add_node("a")
    first = lab.spec
    assert first is not None and list(first.nodes) == ["a"]
    assert lab.spec is first  # validated once, not on every look
    lab.add_node("b")
    lab.add_link("a:e0", "b:e0", addresses=["10.0.0.1/24", "10.0.0.2/24"])
    assert lab.spec == lab_from_dict(lab.to_dict(), "<builder>")
    assert lab.nodes() == {"a": "grow-a", "b": "grow-b"}
    with pytest.raises(UsageError, match="Lab.new"):
        Lab.from_dict({"name": "f", "nodes": {}}).add_node("a")
    with pytest.raises(UsageError, match="Lab.new"):
        Lab.existing("f").add_link("a:e0", "b:e0")


def test_to_dict_is_a_copy_and_arguments_are_copied_too() -> None:
    routes = ["10.9.0.0/16 via 10.0.0.2"]
    lab = LabBuilder("c")
    lab.add_node("a", routes=routes)
    routes.append("nonsense")  # the caller's list changes afterwards: the lab does not
    lab.to_dict()["nodes"]["a"]["routes"].append("nonsense")
    assert lab.to_dict()["nodes"]["a"] == {"routes": ["10.9.0.0/16 via 10.0.0.2"]}


def test_the_chain_example_written_out_as_yaml_is_the_same_lab() -> None:
    """examples/python/chain.py --yaml: to_dict() dumped as YAML is a topology file
    that means exactly the lab the builder made."""
    import importlib.util
    from pathlib import Path

    import yaml

    path = Path(__file__).resolve().parents[2] / "examples" / "python" / "chain.py"
    module_spec = importlib.util.spec_from_file_location("chain_example", path)
    assert module_spec is not None and module_spec.loader is not None
    chain = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(chain)
    lab = chain.build(4)
    spec = lab.spec
    assert [link.a for link in spec.links] == [("a", "right"), ("r1", "right"), ("r2", "right"), ("r3", "right"),
                                               ("r4", "right")]
    assert unlined(lab_from_text(yaml.safe_dump(lab.to_dict(), sort_keys=False), "chain.yaml")) == unlined(spec)


SPANNING_YAML = """\
name: span
machines:
  m1: {address: 10.200.0.1}
  m2: {address: 10.200.0.2, mtu: 9000}
nodes:
  a: {machine: m1, hostname: alpha, files: {/etc/motd: hi}, private: [/run/x], mounts: {/srv: /srv}}
  b: {machine: m2}
links:
  - endpoints: [a:e0, b:e0]
    addresses: [10.0.0.1/30, 10.0.0.2/30]
    vni: 4242
    carrier: true
networks:
  lan: {subnet: 10.9.0.0/24, machine: m2, vni: 77, members: {a: {}, b: {}}}
"""


def test_machines_and_views_built_in_code_equal_the_file() -> None:
    """The keys of labs across machines and of node views, written with the builder,
    give the file's spec exactly."""
    built = LabBuilder("span")
    built.add_machine("m1", address="10.200.0.1")
    built.add_machine("m2", address="10.200.0.2", mtu=9000)
    built.add_node("a", machine="m1", hostname="alpha", files={"/etc/motd": "hi"}, private=["/run/x"],
                   mounts={"/srv": "/srv"})
    built.add_node("b", machine="m2")
    built.add_link("a:e0", "b:e0", addresses=["10.0.0.1/30", "10.0.0.2/30"], vni=4242, carrier=True)
    built.add_network("lan", subnet="10.9.0.0/24", machine="m2", vni=77, members=["a", "b"])
    from_file = lab_from_text(SPANNING_YAML, "<builder>")
    assert unlined(built.build()) == unlined(from_file)
