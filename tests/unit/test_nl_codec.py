"""vethlab's rtnetlink codec (kernel/nl.py) against an independent one: pyroute2's.

Every message vethlab builds must be byte-for-byte what pyroute2 encodes for the
same request and decode, through pyroute2, to the fields meant; every message
pyroute2 encodes the way the kernel answers must parse to the same values through
ours.  A wrong attribute number, layout or padding in either direction fails here.
The decoders are then fuzzed: random and corrupted bytes end in a result or a
DecodeError - no other exception, no endless loop.  Last, the socket's logic
(requests in flight, interrupted dumps, silence) against a scripted fake kernel."""

from __future__ import annotations

import copy
import signal
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from vethlab.errors import KernelError
from vethlab.kernel import nl

V4 = socket.inet_pton(socket.AF_INET, "10.1.2.3")
V4_GW = socket.inet_pton(socket.AF_INET, "10.1.2.1")
V6 = socket.inet_pton(socket.AF_INET6, "fd00:1::5")
V6_GW = socket.inet_pton(socket.AF_INET6, "fe80::1")
FLAGS = nl.F_REQUEST | nl.F_ACK | nl.F_CREATE | nl.F_EXCL


def ours(kind: int, body: bytes, flags: int = FLAGS, seq: int = 7) -> bytes:
    return struct.pack("=IHHII", 16 + len(body), kind, flags, seq, 0) + body


def theirs(cls: type, kind: int, fields: dict[str, Any], attrs: list[tuple[str, Any]], flags: int = FLAGS,
           seq: int = 7) -> bytes:
    """pyroute2's encoding of the same request."""
    msg = cls()
    msg["header"]["type"] = kind
    msg["header"]["flags"] = flags
    msg["header"]["sequence_number"] = seq
    for key, value in fields.items():
        msg[key] = value
    msg["attrs"] = copy.deepcopy(attrs)  # encode() rewrites what it is given
    msg.encode()
    return bytes(msg.data)


def decoded(cls: type, data: bytes) -> Any:
    msg = cls(data)
    msg.decode()
    return msg


# -- what we send, against pyroute2's encoding ------------------------------------------------
def peer(name: str, index: int, attrs: list[tuple[str, Any]]) -> dict[str, Any]:
    return {"attrs": [("IFLA_IFNAME", name), *attrs], "index": index}


ENCODINGS: list[tuple[str, int, bytes, type, dict[str, Any], list[tuple[str, Any]]]] = [
    ("veth, both ends into namespaces, mtu", nl.RTM_NEWLINK,
     nl.veth_body("eth0", "vl1234", 5, 6, ns_fd=10, peer_ns_fd=11, mtu=1400), ifinfmsg, {"index": 5},
     [("IFLA_IFNAME", "eth0"), ("IFLA_NET_NS_FD", 10), ("IFLA_MTU", 1400),
      ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "veth"), ("IFLA_INFO_DATA", {"attrs": [
          ("VETH_INFO_PEER", peer("vl1234", 6, [("IFLA_NET_NS_FD", 11), ("IFLA_MTU", 1400)]))]})]})]),
    ("veth in the current namespace", nl.RTM_NEWLINK, nl.veth_body("a", "b"), ifinfmsg, {},
     [("IFLA_IFNAME", "a"), ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "veth"), ("IFLA_INFO_DATA", {
         "attrs": [("VETH_INFO_PEER", peer("b", 0, []))]})]})]),
    ("set up, mtu, alias, master", nl.RTM_NEWLINK, nl.setlink_body(9, up=True, mtu=9000, alias="vethlab:x", master=4),
     ifinfmsg, {"index": 9, "flags": 1, "change": 1},
     [("IFLA_MASTER", 4), ("IFLA_MTU", 9000), ("IFLA_IFALIAS", "vethlab:x")]),
    ("set down", nl.RTM_NEWLINK, nl.setlink_body(9, up=False), ifinfmsg, {"index": 9, "flags": 0, "change": 1}, []),
    ("mark by name, release from master, move", nl.RTM_NEWLINK,
     nl.setlink_body(0, alias="m", name="br0", master=0, ns_fd=12), ifinfmsg, {},
     [("IFLA_IFNAME", "br0"), ("IFLA_NET_NS_FD", 12), ("IFLA_MASTER", 0), ("IFLA_IFALIAS", "m")]),
    ("bridge", nl.RTM_NEWLINK, nl.bridge_body("vb.lab.lan", mtu=1450), ifinfmsg, {},
     [("IFLA_IFNAME", "vb.lab.lan"), ("IFLA_MTU", 1450),
      ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "bridge")]})]),
    ("macvlan", nl.RTM_NEWLINK, nl.macvlan_body("mv0", 3, 8, 1300), ifinfmsg, {},
     [("IFLA_IFNAME", "mv0"), ("IFLA_LINK", 3), ("IFLA_NET_NS_FD", 8), ("IFLA_MTU", 1300),
      ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "macvlan"),
                                   ("IFLA_INFO_DATA", {"attrs": [("IFLA_MACVLAN_MODE", "bridge")]})]})]),
    ("address v4", nl.RTM_NEWADDR, nl.addr_body(3, V4, 24), ifaddrmsg,
     {"family": socket.AF_INET, "prefixlen": 24, "flags": 0x80, "index": 3},
     [("IFA_LOCAL", "10.1.2.3"), ("IFA_ADDRESS", "10.1.2.3"), ("IFA_FLAGS", 0x80)]),
    ("address v6, no DAD", nl.RTM_NEWADDR, nl.addr_body(4, V6, 64, nodad=True), ifaddrmsg,
     {"family": socket.AF_INET6, "prefixlen": 64, "flags": 0x82, "index": 4},
     [("IFA_LOCAL", "fd00:1::5"), ("IFA_ADDRESS", "fd00:1::5"), ("IFA_FLAGS", 0x82)]),
    ("route v4 via a gateway, metric, source", nl.RTM_NEWROUTE,
     nl.route_body(socket.inet_pton(socket.AF_INET, "10.9.0.0"), 16, V4_GW, 5, 20, V4, 99), rtmsg,
     {"family": socket.AF_INET, "dst_len": 16, "table": 254, "proto": 99, "scope": 0, "type": 1},
     [("RTA_DST", "10.9.0.0"), ("RTA_GATEWAY", "10.1.2.1"), ("RTA_OIF", 5), ("RTA_PRIORITY", 20),
      ("RTA_PREFSRC", "10.1.2.3"), ("RTA_TABLE", 254)]),
    ("route v4 on a link", nl.RTM_NEWROUTE,
     nl.route_body(socket.inet_pton(socket.AF_INET, "10.9.0.0"), 24, None, 5, None, None, 99), rtmsg,
     {"family": socket.AF_INET, "dst_len": 24, "table": 254, "proto": 99, "scope": 253, "type": 1},
     [("RTA_DST", "10.9.0.0"), ("RTA_OIF", 5), ("RTA_TABLE", 254)]),
    ("default route v6 via a link-local gateway", nl.RTM_NEWROUTE,
     nl.route_body(bytes(16), 0, V6_GW, 7, 1024, V6, 99), rtmsg,
     {"family": socket.AF_INET6, "dst_len": 0, "table": 254, "proto": 99, "scope": 0, "type": 1},
     [("RTA_GATEWAY", "fe80::1"), ("RTA_OIF", 7), ("RTA_PRIORITY", 1024), ("RTA_PREFSRC", "fd00:1::5"),
      ("RTA_TABLE", 254)]),
    ("route in a table above 255", nl.RTM_NEWROUTE,
     nl.route_body(socket.inet_pton(socket.AF_INET6, "fd00:2::"), 64, None, 2, None, None, 99, table=1000), rtmsg,
     {"family": socket.AF_INET6, "dst_len": 64, "table": 252, "proto": 99, "scope": 253, "type": 1},
     [("RTA_DST", "fd00:2::"), ("RTA_OIF", 2), ("RTA_TABLE", 1000)]),
    ("delete a link", nl.RTM_DELLINK, nl.ifinfo(42), ifinfmsg, {"index": 42}, []),
]


@pytest.mark.parametrize(("name", "kind", "body", "cls", "fields", "attrs"), ENCODINGS, ids=[e[0] for e in ENCODINGS])
def test_encoding_is_pyroute2s(name, kind, body, cls, fields, attrs):
    mine = ours(kind, body)
    assert mine == theirs(cls, kind, fields, attrs), name
    # and pyroute2 reads back every field we meant (the byte check's independent twin)
    msg = decoded(cls, mine)
    for key, value in fields.items():
        assert msg[key] == value, key
    assert [(n, _plain(v)) for n, v in msg["attrs"]] == [(n, _plain(v)) for n, v in attrs]


def _plain(value: Any) -> Any:
    """A decoded (nested) attribute as plain data, comparable with the expected one."""
    if hasattr(value, "get") and "attrs" in value:
        out = {"attrs": [(n, _plain(v)) for n, v in value["attrs"]]}
        if "index" in value and value["index"]:
            out["index"] = value["index"]
        return out
    return value


# -- what the kernel answers (encoded by pyroute2), through our parsers ---------------------
def test_parse_link_of_pyroute2s_encoding():
    stats = {"rx_packets": 1, "tx_packets": 2, "rx_bytes": 3, "tx_bytes": 4, "rx_errors": 5, "tx_errors": 6,
             "rx_dropped": 7, "tx_dropped": 8, "multicast": 9, "collisions": 10}
    data = theirs(ifinfmsg, nl.RTM_NEWLINK, {"index": 17, "flags": 0x11043, "family": 0, "ifi_type": 1},
                  [("IFLA_IFNAME", "eth0"), ("IFLA_MTU", 1450), ("IFLA_LINK", 23), ("IFLA_MASTER", 4),
                   ("IFLA_OPERSTATE", "LOWERLAYERDOWN"), ("IFLA_CARRIER", 1), ("IFLA_IFALIAS", "vethlab:lab"),
                   ("IFLA_STATS64", stats), ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "veth")]})],
                  flags=nl.F_MULTI)
    link = nl.parse_link(memoryview(data))
    assert link == nl.Link(index=17, flags=0x11043, ifname="eth0", kind="veth", alias="vethlab:lab", mtu=1450,
                           operstate="LOWERLAYERDOWN", carrier=True, link=23, master=4,
                           stats={k: v for k, v in stats.items() if k in nl._STATS})
    link.stats = {}
    assert nl.parse_link(memoryview(data), stats=False) == link  # the same record but for its counters


def test_parse_link_of_a_kernel_sized_message_reads_past_what_it_skips():
    """What the kernel really sends for a bridge port: ~45 attributes, most of them
    never read (addresses, queue counts, IFLA_AF_SPEC, slave data) and interleaved
    with those read - skipping them must land on every attribute vethlab reads."""
    unread = [("IFLA_ADDRESS", "02:00:00:00:00:01"), ("IFLA_BROADCAST", "ff:ff:ff:ff:ff:ff"),
              ("IFLA_TXQLEN", 1000), ("IFLA_LINKMODE", 0), ("IFLA_GROUP", 0), ("IFLA_PROMISCUITY", 1),
              ("IFLA_NUM_TX_QUEUES", 1), ("IFLA_NUM_RX_QUEUES", 1), ("IFLA_GSO_MAX_SEGS", 65535),
              ("IFLA_GSO_MAX_SIZE", 65536), ("IFLA_CARRIER_CHANGES", 2), ("IFLA_PROTO_DOWN", 0),
              ("IFLA_CARRIER_UP_COUNT", 1), ("IFLA_CARRIER_DOWN_COUNT", 1), ("IFLA_MIN_MTU", 68),
              ("IFLA_MAX_MTU", 65535), ("IFLA_LINK_NETNSID", 3), ("IFLA_QDISC", "noqueue"),
              ("IFLA_AF_SPEC", {"attrs": [("AF_INET", {"attrs": [("IFLA_INET_CONF", {"forwarding": 1})]})]})]
    read = [("IFLA_IFNAME", "vl1234567ab"), ("IFLA_MTU", 1500), ("IFLA_LINK", 2), ("IFLA_MASTER", 9),
            ("IFLA_OPERSTATE", "UP"), ("IFLA_CARRIER", 1), ("IFLA_IFALIAS", "vethlab:star"),
            ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "veth"), ("IFLA_INFO_SLAVE_KIND", "bridge")]})]
    mixed = []
    for i, attr in enumerate(unread):  # interleaved: one read after each skipped, while they last
        mixed += [attr] + read[i:i + 1]
    data = theirs(ifinfmsg, nl.RTM_NEWLINK, {"index": 1048577, "flags": 0x11043}, mixed, flags=nl.F_MULTI)
    assert len(nl.attrs(data, 32, len(data))) == len(mixed)
    assert nl.parse_link(memoryview(data)) == nl.Link(
        index=1048577, flags=0x11043, ifname="vl1234567ab", kind="veth", alias="vethlab:star", mtu=1500,
        operstate="UP", carrier=True, link=2, master=9, stats={})
    only_read = theirs(ifinfmsg, nl.RTM_NEWLINK, {"index": 1048577, "flags": 0x11043}, read, flags=nl.F_MULTI)
    assert nl.parse_link(memoryview(data)) == nl.parse_link(memoryview(only_read))
    # NLA_F_NESTED (0x8000) on IFLA_LINKINFO, as kernels set it on nests added with nla_nest_start()
    nested = bytearray(data)
    offset = 32
    while offset < len(data):
        size, kind = struct.unpack_from("=HH", data, offset)
        if kind == nl.IFLA_LINKINFO:
            struct.pack_into("=HH", nested, offset, size, kind | 0x8000)
        offset += (size + 3) & ~3
    assert bytes(nested) != data
    assert nl.parse_link(memoryview(bytes(nested))) == nl.parse_link(memoryview(data))


def test_parse_link_without_optional_attributes():
    data = theirs(ifinfmsg, nl.RTM_NEWLINK, {"index": 1, "flags": 0}, [("IFLA_IFNAME", "lo")])
    link = nl.parse_link(memoryview(data))
    assert (link.ifname, link.kind, link.alias, link.mtu, link.operstate, link.carrier, link.link, link.master,
            link.stats) == ("lo", None, None, 0, "UNKNOWN", False, None, None, {})


@pytest.mark.parametrize(("family", "text", "raw", "prefix"), [
    (socket.AF_INET, "192.0.2.7", socket.inet_pton(socket.AF_INET, "192.0.2.7"), 28),
    (socket.AF_INET6, "2001:db8::7", socket.inet_pton(socket.AF_INET6, "2001:db8::7"), 64)])
def test_parse_addr_of_pyroute2s_encoding(family, text, raw, prefix):
    data = theirs(ifaddrmsg, nl.RTM_NEWADDR, {"family": family, "prefixlen": prefix, "index": 12},
                  [("IFA_ADDRESS", text), ("IFA_LOCAL", text), ("IFA_LABEL", "eth0")])
    assert nl.parse_addr(memoryview(data)) == (12, family, raw, prefix)
    only_address = theirs(ifaddrmsg, nl.RTM_NEWADDR, {"family": family, "prefixlen": prefix, "index": 12},
                          [("IFA_ADDRESS", text)])  # IPv6 answers carry no IFA_LOCAL
    assert nl.parse_addr(memoryview(only_address)) == (12, family, raw, prefix)


@pytest.mark.parametrize(("family", "dst", "dst_len", "gw", "src"), [
    (socket.AF_INET, "10.9.0.0", 16, "10.1.2.1", "10.1.2.3"),
    (socket.AF_INET6, "fd00:9::", 48, "fe80::1", "fd00:1::5")])
def test_parse_route_of_pyroute2s_encoding(family, dst, dst_len, gw, src):
    data = theirs(rtmsg, nl.RTM_NEWROUTE, {"family": family, "dst_len": dst_len, "table": 254, "proto": 99,
                                           "scope": 0, "type": 1},
                  [("RTA_TABLE", 254), ("RTA_DST", dst), ("RTA_GATEWAY", gw), ("RTA_OIF", 6),
                   ("RTA_PRIORITY", 30), ("RTA_PREFSRC", src)])
    assert nl.parse_route(memoryview(data)) == nl.RouteMsg(
        family, socket.inet_pton(family, dst), dst_len, 254, 99, 1, socket.inet_pton(family, gw), 6, 30,
        socket.inet_pton(family, src))


@pytest.mark.parametrize(("table", "rtype", "real"), [(254, 1, 254), (255, 2, 255), (252, 1, 1000), (254, 5, 254)])
def test_route_kind_is_the_header_of_pyroute2s_encoding(table, rtype, real):
    data = theirs(rtmsg, nl.RTM_NEWROUTE, {"family": socket.AF_INET6, "dst_len": 64, "table": table, "proto": 2,
                                           "type": rtype}, [("RTA_TABLE", real), ("RTA_DST", "fe80::"), ("RTA_OIF", 7)])
    assert nl.route_kind(memoryview(data)) == (table, rtype)
    assert (nl.parse_route(memoryview(data)).table, nl.parse_route(memoryview(data)).type) == (real, rtype)


def test_parse_default_route_and_big_table():
    data = theirs(rtmsg, nl.RTM_NEWROUTE, {"family": socket.AF_INET, "dst_len": 0, "table": 252, "proto": 4,
                                           "type": 1}, [("RTA_TABLE", 1000), ("RTA_OIF", 2)])
    route = nl.parse_route(memoryview(data))
    assert (route.dst, route.dst_len, route.table, route.gateway, route.oif, route.priority, route.prefsrc) == \
        (bytes(4), 0, 1000, None, 2, None, None)


def test_messages_splits_a_datagram_as_pyroute2_encodes_it():
    a = theirs(ifinfmsg, nl.RTM_NEWLINK, {"index": 1}, [("IFLA_IFNAME", "lo")], flags=nl.F_MULTI, seq=3)
    b = theirs(ifinfmsg, nl.RTM_NEWLINK, {"index": 2}, [("IFLA_IFNAME", "eth0")], flags=nl.F_MULTI, seq=3)
    done = struct.pack("=IHHIIi", 20, nl.NLMSG_DONE, nl.F_MULTI, 3, 0, 0)
    out = nl.messages(a + b + done)
    assert [(kind, flags, seq, bytes(msg)) for kind, flags, seq, msg in out] == [
        (nl.RTM_NEWLINK, nl.F_MULTI, 3, a), (nl.RTM_NEWLINK, nl.F_MULTI, 3, b), (nl.NLMSG_DONE, nl.F_MULTI, 3, done)]


# -- the fuzzer ------------------------------------------------------------------------------
@contextmanager
def no_endless_loop(seconds: float = 2.0) -> Iterator[None]:
    """Fail (instead of hanging the suite) if the decoders spin: they take
    microseconds on a few hundred bytes, so seconds mean an endless loop."""
    def alarm(_signum: int, _frame: object) -> None:
        raise AssertionError(f"a decoder ran for more than {seconds} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


PARSERS: list[Callable[[memoryview], object]] = [nl.parse_link, nl.parse_addr, nl.parse_route, nl.route_kind]
VALID = [ours(kind, body) for _, kind, body, *_ in ENCODINGS] + [
    theirs(ifinfmsg, nl.RTM_NEWLINK, {"index": 3}, [("IFLA_IFNAME", "x"), ("IFLA_OPERSTATE", "UP"),
                                                    ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "veth")]})])]


# no shrinking: a spinning example costs the whole alarm each time it is retried
FUZZ_PHASES = [Phase.explicit, Phase.reuse, Phase.generate]


def decode_everything(data: bytes) -> None:
    """Every decoder on `data`: a result or DecodeError, nothing else."""
    try:
        nl.messages(data)
    except nl.DecodeError:
        pass
    for parse in PARSERS:
        try:
            parse(memoryview(data))
        except nl.DecodeError:
            pass
    try:
        every = nl.attrs(data, 0, len(data))
    except nl.DecodeError:
        every = None
    # picked() is attrs() restricted to the numbers asked for: the same attributes, the same errors
    wanted = frozenset(range(0, 64, 3))
    try:
        some = nl.picked(data, 0, len(data), wanted)
    except nl.DecodeError:
        some = None
    assert (some is None) == (every is None)
    if every is not None and some is not None:
        assert {k: bytes(v) for k, v in some.items()} == {k: bytes(v) for k, v in every.items() if k in wanted}


@st.composite
def corrupted(draw: st.DrawFn) -> bytes:
    """A valid message with bytes flipped, cut, inserted, or a length field rewritten."""
    data = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "cut", "insert", "length"]))
        if action == "flip" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
        elif action == "cut":
            data = data[:draw(st.integers(0, len(data)))]
        elif action == "insert":
            i = draw(st.integers(0, len(data)))
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif len(data) >= 2:
            i = draw(st.integers(0, len(data) - 2))  # a length field anywhere: header or attribute
            data[i:i + 2] = struct.pack("=H", draw(st.sampled_from([0, 1, 3, 4, 5, 0xFFFF, len(data), len(data) + 4])))
    return bytes(data)


@st.composite
def forged(draw: st.DrawFn) -> bytes:
    """A header of any type and length, a fixed part, then attributes whose length
    fields lie (0-3, past the end, ...): what plain random bytes almost never hit."""
    body = draw(st.binary(min_size=0, max_size=16))
    for _ in range(draw(st.integers(0, 6))):
        payload = draw(st.binary(max_size=24))
        size = draw(st.one_of(st.just(4 + len(payload)), st.integers(0, 5), st.integers(0, 0xFFFF)))
        body += struct.pack("=HH", size, draw(st.integers(0, 0xFFFF))) + payload
    length = draw(st.one_of(st.just(16 + len(body)), st.integers(0, 0xFFFFFFFF)))
    kind = draw(st.sampled_from([nl.RTM_NEWLINK, nl.RTM_NEWADDR, nl.RTM_NEWROUTE, nl.NLMSG_ERROR, nl.NLMSG_DONE]))
    return struct.pack("=IHHII", length, kind, 0, 1, 0) + body


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow], phases=FUZZ_PHASES)
@given(st.one_of(st.binary(max_size=300), forged()))
def test_fuzz_random_bytes(data):
    with no_endless_loop():
        decode_everything(data)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow], phases=FUZZ_PHASES)
@given(corrupted())
def test_fuzz_corrupted_messages(data):
    with no_endless_loop():
        decode_everything(data)


def test_truncated_attribute_is_a_decode_error():
    good = ours(nl.RTM_NEWLINK, nl.bridge_body("br0"))
    with pytest.raises(nl.DecodeError, match="overruns"):
        nl.parse_link(memoryview(good[:-3]))
    with pytest.raises(nl.DecodeError, match="shorter than"):
        nl.parse_addr(memoryview(good[:20]))
    with pytest.raises(nl.DecodeError, match="message length"):
        nl.messages(good[:-1])


def test_address_of_the_wrong_size_is_a_decode_error():
    body = struct.pack("=BBBBI", socket.AF_INET, 24, 0, 0, 3) + nl.attr(nl.IFA_LOCAL, V6)
    with pytest.raises(nl.DecodeError, match="IFA_LOCAL of 16 bytes"):
        nl.parse_addr(memoryview(ours(nl.RTM_NEWADDR, body)))


# -- the socket against a scripted fake kernel ------------------------------------------------
class FakeKernel:
    """The far end of a datagram socketpair standing in for the kernel: answers each
    message of each send() through `answer`, one datagram per answer (as the kernel
    queues one skb per ack), and records how many messages every send() held."""

    def __init__(self, sock: nl.NlSocket, answer: Callable[[int, int, int, bytes], list[bytes]]) -> None:
        ours_end, self.end = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        for end in (ours_end, self.end):
            end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
            end.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        sock.sock.close()
        sock.sock = ours_end
        self.answer = answer
        self.sends: list[int] = []
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while True:
            try:
                data = self.end.recv(1 << 20)
            except OSError:
                return
            if not data:
                return
            parts = nl.messages(data)
            self.sends.append(len(parts))
            for kind, flags, seq, msg in parts:
                for reply in self.answer(kind, flags, seq, bytes(msg)):
                    self.end.send(reply)

    def close(self) -> None:
        self.end.close()


def ack(seq: int, code: int = 0) -> bytes:
    return struct.pack("=IHHIIi", 20 + 16, nl.NLMSG_ERROR, 0, seq, 0, -code) + struct.pack("=IHHII", 16, 0, 0, seq, 0)


def test_requests_in_flight_are_bounded_and_groups_kept_whole():
    sock = nl.NlSocket(timeout=5)
    kernel = FakeKernel(sock, lambda kind, flags, seq, msg: [ack(seq)])
    try:
        sock.max_inflight = 10
        for i in range(95):
            sock.queue(nl.RTM_NEWLINK, 0, nl.setlink_body(i + 1, up=True), f"set {i} up")
            if i % 7 == 0:
                sock.queue_together([(nl.RTM_NEWLINK, 0, nl.setlink_body(0, alias="m", name=f"x{i}"), "a"),
                                     (nl.RTM_NEWLINK, 0, nl.setlink_body(0, alias="m", name=f"y{i}"), "b"),
                                     (nl.RTM_NEWLINK, 0, nl.setlink_body(0, alias="m", name=f"z{i}"), "c")])
        assert sock.flush() == []
        assert sum(kernel.sends) == 95 + 14 * 3
        assert max(kernel.sends) <= 10
    finally:
        kernel.close()
        sock.close()


def test_failures_are_reported_by_name():
    sock = nl.NlSocket(timeout=5)
    kernel = FakeKernel(sock, lambda kind, flags, seq, msg: [ack(seq, 19 if seq % 3 == 0 else 0)])  # ENODEV
    try:
        for i in range(9):
            sock.queue(nl.RTM_DELLINK, 0, nl.ifinfo(i + 1), f"delete link {i + 1}", (19,) if i == 2 else ())  # tolerated: not a failure
        assert [(e.code, e.what) for e in sock.flush()] == [(19, "delete link 6"), (19, "delete link 9")]
    finally:
        kernel.close()
        sock.close()


def dump_answers(interrupted: Callable[[], bool]) -> Callable[[int, int, int, bytes], list[bytes]]:
    def answer(kind: int, flags: int, seq: int, msg: bytes) -> list[bytes]:
        mark = nl.F_MULTI | (nl.F_DUMP_INTR if interrupted() else 0)
        links = [theirs(ifinfmsg, nl.RTM_NEWLINK, {"index": i}, [("IFLA_IFNAME", f"if{i}")], flags=mark, seq=seq)
                 for i in (1, 2)]
        return [b"".join(links), struct.pack("=IHHIIi", 20, nl.NLMSG_DONE, mark, seq, 0, 0)]
    return answer


def test_interrupted_dump_is_redone():
    sock = nl.NlSocket(timeout=5)
    calls = iter([True, True, False])
    kernel = FakeKernel(sock, dump_answers(lambda: next(calls)))
    try:
        names = [nl.parse_link(m).ifname for m in sock.dump(nl.RTM_GETLINK, nl.ifinfo(), "list interfaces")]
        assert names == ["if1", "if2"]
        assert kernel.sends == [1, 1, 1]
    finally:
        kernel.close()
        sock.close()


@pytest.mark.parametrize(("retries", "patience"), [(4, 60.0), (10**6, 0.3)], ids=["tries", "time"])
def test_always_interrupted_dump_gives_up_with_a_kernel_error(monkeypatch, retries, patience):
    """Bounded both ways: by the number of redos and by the time spent redoing."""
    monkeypatch.setattr(nl, "DUMP_RETRIES", retries)
    monkeypatch.setattr(nl, "DUMP_PATIENCE", patience)
    sock = nl.NlSocket(timeout=5)
    kernel = FakeKernel(sock, dump_answers(lambda: True))
    try:
        with pytest.raises(KernelError, match="cannot list interfaces: .* interrupted by changes"):
            sock.dump(nl.RTM_GETLINK, nl.ifinfo(), "list interfaces")
        assert 2 <= len(kernel.sends) <= min(retries, 100)
    finally:
        kernel.close()
        sock.close()


def test_silent_kernel_is_a_kernel_error():
    sock = nl.NlSocket(timeout=0.2)
    kernel = FakeKernel(sock, lambda kind, flags, seq, msg: [])
    try:
        sock.queue(nl.RTM_NEWLINK, 0, nl.setlink_body(1, up=True), "set lo up in n1")
        with pytest.raises(KernelError, match=r"no answer from the kernel within 0.2 s for set lo up in n1"):
            sock.flush()
    finally:
        kernel.close()
        sock.close()


def test_garbage_from_the_kernel_is_a_kernel_error():
    sock = nl.NlSocket(timeout=5)
    kernel = FakeKernel(sock, lambda kind, flags, seq, msg: [struct.pack("=IHHII", 400, nl.NLMSG_ERROR, 0, seq, 0)])
    try:
        with pytest.raises(KernelError, match="undecodable answer from the kernel to look up eth0"):
            sock.get(nl.RTM_GETLINK, nl.ifinfo(), "look up eth0")
    finally:
        kernel.close()
        sock.close()


def test_watch_skips_messages_it_cannot_read() -> None:
    """A corrupt or foreign-family event is skipped, the rest of the batch still read
    (a traceback would end `vethlab watch` and the live page's stream)."""
    import struct

    from vethlab.kernel import events
    from vethlab.kernel.api import LinkEvent

    bad = struct.pack("=IHHII", 20, nl.RTM_NEWLINK, 0, 0, 0) + b"\0" * 4  # too short for an ifinfomsg
    good = struct.pack("=IHHII", 16 + 16, nl.RTM_NEWLINK, 0, 0, 0) + nl.ifinfo(7, nl.IFF_UP)
    good += nl.attr_str(nl.IFLA_IFNAME, "e0")
    good = struct.pack("=I", len(good)) + good[4:]
    seen = events.parse("a", memoryview(bad + good))
    assert [(e.node, e.link.ifname, e.deleted) for e in seen if isinstance(e, LinkEvent)] == [("a", "e0", False)]
    assert len(seen) == 1


def test_one_request_on_an_idle_socket_answers_its_own_ack():
    """request() on an idle socket skips flush()'s bookkeeping: its ack is the one it
    waits for (a stray answer of another sequence number before it is passed over), a
    refusal is a NetlinkError naming the request, a tolerated code is no error."""
    stray: list[int] = []

    def answer(kind: int, flags: int, seq: int, msg: bytes) -> list[bytes]:
        code = 17 if kind == nl.RTM_NEWLINK and seq == 2 else 19 if kind == nl.RTM_DELLINK else 0  # EEXIST, ENODEV
        stray.append(seq)
        return [ack(seq + 1000), ack(seq, code)]

    sock = nl.NlSocket(timeout=5)
    kernel = FakeKernel(sock, answer)
    try:
        sock.request(nl.RTM_NEWLINK, 0, nl.setlink_body(1, up=True), "set lo up")
        with pytest.raises(nl.NetlinkError) as refused:
            sock.request(nl.RTM_NEWLINK, nl.F_CREATE | nl.F_EXCL, nl.bridge_body("br0"), "create bridge br0")
        assert (refused.value.code, refused.value.what) == (17, "create bridge br0")
        sock.request(nl.RTM_DELLINK, 0, nl.ifinfo(7), "delete link 7", (19,))
        assert kernel.sends == [1, 1, 1] and stray == [1, 2, 3]
    finally:
        kernel.close()
        sock.close()


def test_one_request_whose_ack_an_overrun_swallowed_is_sent_again_as_done_twice():
    """The kernel carried the request out (a send() is handled whole) but its ack was
    dropped: request() sends it once more, and "already exists" then means the first
    copy made it -- as flush() does after an overrun."""
    sock = nl.NlSocket(timeout=5)
    kernel = FakeKernel(sock, lambda kind, flags, seq, msg: [ack(seq, 17 if seq > 1 else 0)])
    real = sock._recv
    dropped = []

    def recv(what, wait=True):  # the first answer is lost to a full receive buffer
        if not dropped:
            dropped.append(real(what, wait))
            sock._unclean = True
            raise nl._Overrun
        return real(what, wait)

    sock._recv = recv
    try:
        sock.request(nl.RTM_NEWLINK, nl.F_CREATE | nl.F_EXCL, nl.bridge_body("br0"), "create bridge br0")
        assert kernel.sends == [1, 1] and not sock._unclean
    finally:
        kernel.close()
        sock.close()
