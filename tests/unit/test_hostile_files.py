"""Hostile and odd topology files: alias bombs, recursion, deep nesting, huge files,
scalars and numbers, bytes YAML forbids, keys YAML 1.1 retypes, foreign tags, and
validation passes that were quadratic.

Each file is run through `vethlab validate` in a separate process under resource
limits: 1 GiB of address space (the billion-laughs file took 3.6 GB before the fix)
and CPU_SECONDS of CPU, generous next to what the fixed code needs (well under a
second) but far below what the unfixed code took (20 s to minutes), so a blow-up
fails the test as a crash or a kill instead of a slow pass.  No wall-clock
assertion: the machine is shared.  Every refusal must be exit 2 with FILE:LINE:.
"""

from __future__ import annotations

import json
import os
import resource
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from vethlab.errors import ValidationError
from vethlab.topology import lab_from_text, loader, yamlevents

MEMORY = 1 << 30
CPU_SECONDS = 10


def _limits() -> None:  # runs in the child, before exec
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))
    resource.setrlimit(resource.RLIMIT_CPU, (CPU_SECONDS, CPU_SECONDS))


def validate(path: str) -> subprocess.CompletedProcess[str]:
    """`vethlab validate PATH` as a user runs it, but bounded in memory and CPU."""
    return subprocess.run([sys.executable, "-m", "vethlab", "validate", path], capture_output=True, text=True,
                          errors="replace", preexec_fn=_limits, timeout=120, check=False)


def refused(path: str, line: int | None, fragment: str) -> list[str]:
    """Assert exit 2 with an issue at `line` (None: any) whose text has `fragment`."""
    r = validate(path)
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr[-2000:]
    issues = r.stderr.splitlines()
    prefix = f"{path}:{line}: " if line is not None else f"{path}:"
    assert any(i.startswith(prefix) and fragment in i for i in issues), issues[:20]
    return issues


def write(tmp_path: Path, text: str | bytes, name: str = "lab.yaml") -> str:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return str(path)


HEAD = "name: t\nnodes: {a: {}, b: {}}\n"  # two lines: the hostile part starts on line 3


# -- aliases ------------------------------------------------------------------------------------
def billion_laughs() -> str:
    """The classic: 9 levels of 9 aliases, 10^9 values from 448 bytes."""
    lines = [HEAD.rstrip("\n"), 'x0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"x{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    return "\n".join(lines + ["links: *a8"]) + "\n"


def test_billion_laughs_is_refused_at_the_alias_that_crosses_the_budget(tmp_path: Path) -> None:
    # sizes of a0..a4: 10, 91, 820, 7381, 66430 values; aliases before x5 add 74718,
    # the first *a4 on line 8 (x5) would make it 141148 > 100000
    refused(write(tmp_path, billion_laughs()), 8, "alias bomb")


@pytest.mark.parametrize("text, line", [
    (HEAD + "links: &l [*l]\n", 3),
    (HEAD + "links: &l\n  - endpoints: *l\n", 4),
    (HEAD + "x: &m {a: {b: *m}}\n", 3),
], ids=["list", "block", "mapping"])
def test_an_alias_inside_its_own_anchor_is_refused(tmp_path: Path, text: str, line: int) -> None:
    refused(write(tmp_path, text), line, "recursive")


def test_aliases_within_the_budget_still_work() -> None:
    spec = lab_from_text(textwrap.dedent("""\
        name: t
        nodes:
          a: &plain {sysctls: {net.ipv4.ip_forward: 1}}
          b: *plain
        links:
          - &l {endpoints: [a:e0, b:e0], addresses: [10.0.0.1/24, 10.0.0.2/24], rate: 10mbit}
        """))
    assert spec.nodes["b"].sysctls == spec.nodes["a"].sysctls == (("net.ipv4.ip_forward", "1"),)


def test_an_error_inside_an_alias_has_the_anchors_line() -> None:
    with pytest.raises(ValidationError) as info:
        lab_from_text("name: t\nx: &s {sysctls: {kernel.panic: 1}}\nnodes:\n  a: *s\n", "f.yaml")
    assert [str(i) for i in info.value.issues] == [
        "f.yaml:2: nodes.a.sysctls.kernel.panic: 'kernel.panic' is not a per-namespace sysctl "
        "(only net.* keys can be set in a node)",
        "f.yaml:2: x: unknown key 'x'"]


# -- size and shape -----------------------------------------------------------------------------
@pytest.mark.parametrize("depth", [17, 1000, 100_000])
def test_deep_flow_nesting_is_refused(tmp_path: Path, depth: int) -> None:
    # 17: our limit (16); 1000: libyaml 0.2.6's own; 100 000: either, never a stack overflow
    refused(write(tmp_path, HEAD + "links: " + "[" * depth + "]" * depth + "\n"), 3, "nesting")


def test_deep_block_nesting_is_refused(tmp_path: Path) -> None:
    text = HEAD + "links:\n" + "".join("  " * i + "- k:\n" for i in range(1, 20))
    refused(write(tmp_path, text), 11, "nesting is deeper than 16 levels")


def test_deep_nesting_is_refused_by_the_pure_python_parser_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without libyaml there is no parser limit at all: ours must hold alone."""
    monkeypatch.setattr(yamlevents, "_Loader", yaml.SafeLoader)
    with pytest.raises(ValidationError) as info:
        loader.loads(HEAD + "links: " + "[" * 100_000 + "\n", "f.yaml")
    assert str(info.value) == "f.yaml:3: nesting is deeper than 16 levels"


def test_a_file_over_the_size_limit_is_refused_with_the_line_that_crosses_it(tmp_path: Path) -> None:
    filler = "# " + "x" * 1_000_000 + "\n"  # 17 of these: line 20 crosses 16 MiB
    refused(write(tmp_path, HEAD + filler * 17), 19, "larger than 16 MiB")


def test_more_values_than_the_limit_are_refused(tmp_path: Path) -> None:
    refused(write(tmp_path, HEAD + "links: [" + "1," * 250_000 + "]\n"), 3, "more than 200000 values")


def test_a_huge_scalar_is_refused(tmp_path: Path) -> None:
    text = HEAD.replace("{a: {}, b: {}}", "{a: {exec: [\"echo " + "x" * 1_000_000 + "\"]}}")
    refused(write(tmp_path, text), 2, "characters is too long")


def test_long_commands_split_in_linear_time(tmp_path: Path) -> None:
    """shlex.split was quadratic in a word's length (a 1 MB word: 20 s); 200 words of
    64 000 characters took it ~16 s of CPU, over the limit: now well within."""
    word = "x" * 64_000
    text = "name: t\nnodes:\n  a:\n    exec:\n" + f"      - echo {word}\n" * 200
    r = validate(write(tmp_path, text))
    assert r.returncode == 0, (r.returncode, r.stderr[-500:])


# -- numbers ------------------------------------------------------------------------------------
LINK = HEAD + "links:\n  - endpoints: [a:e0, b:e0]\n    addresses: [10.0.0.1/24, 10.0.0.2/24]\n"


@pytest.mark.parametrize("text, line, fragment", [
    (LINK + "    mtu: " + "9" * 5000 + "\n", 6, "a number of 5000 characters is too long"),
    (LINK + "    mtu: 0x" + "f" * 5000 + "\n", 6, "too long"),  # hex: no int() digit limit, still refused
    (LINK + "    mtu: " + "1:" * 3000 + "1\n", 6, "too long"),  # sexagesimal: quadratic to convert
    (LINK + "    rate: " + "9" * 400 + "mbit\n", 6, "is not a rate"),  # float() -> inf -> int(inf)
    (LINK + "    delay: " + "9" * 400 + "ms\n", 6, "is not a time"),
    ("name: t\nnodes:\n  a: {routes: [\"10.0.0.0/8 dev lo metric " + "9" * 5000 + "\"]}\n", 3, "metric"),
    ("name: t\nnodes:\n  a: {routes: [\"10.0.0.0/8 dev lo metric ²\"]}\n", 3, "metric '²'"),  # isdigit, not int
    ("name: t\nnodes: {a: {}}\nnetworks:\n  lan:\n    members:\n      a: {publish: [\"" + "9" * 5000 + ":80\"]}\n",
     6, "is not [HOSTIP:]HOSTPORT:PORT"),
    (LINK.replace("10.0.0.1/24", "١٠.0.0.1/24") + "networks:\n  lan: {subnet: 172.30.0.0/24}\n", 5,
     "is not a valid address"),  # Arabic digits passed the fast IPv4 path
    (LINK.replace("10.0.0.1/24", '"10.0.0.1/24\\n"') + "networks:\n  lan: {subnet: 172.30.0.0/24}\n", 5,
     "is not a valid address"),  # so did a final newline
    ("name: t\nnodes:\n  a: {exec: [!!int \"\"]}\n", 3, "is not a valid int"),
], ids=["mtu-5000-digits", "mtu-hex", "mtu-sexagesimal", "rate-inf", "delay-inf", "metric-5000-digits",
        "metric-superscript", "publish-5000-digits", "address-arabic-digits", "address-newline", "empty-int"])
def test_numbers_that_crashed_are_exit_2(tmp_path: Path, text: str, line: int, fragment: str) -> None:
    refused(write(tmp_path, text), line, fragment)


# -- characters and encodings -------------------------------------------------------------------
@pytest.mark.parametrize("data, line, fragment", [
    (b"name: t\nnodes:\n  a: {}\n  b\x01: {}\n", 4, "control character U+0001 at column 4"),
    (b"name: t\nnodes:\n  a: {}\n  b\x00: {}\n", 4, "control character U+0000"),
    (b"name: t\nnodes:\n  a: {}\n  b: {exec: [\"\x1b[31m\"]}\n", 4, "U+001B"),
    (b"name: t\r\nnodes:\r\n  a: {}\r\n  b\x7f: {}\r\n", 4, "U+007F"),
    (b"name: t\rnodes:\r  a: {}\r  b\x01: {}\r", 4, "U+0001"),  # old Mac line ends count as lines
    (b"name: t\nnodes:\n  a: {}\n  b\xff: {}\n", 4, "byte 0xff at column 4 is not UTF-8"),
    (b"name: t\nnodes:\n  caf\xe9: {}\n", 3, "byte 0xe9"),  # Latin-1
    (b"name: t\nnodes:\n  a: {}\n  \xed\xa0\x80: {}\n", 4, "byte 0xed"),  # an encoded surrogate
    ("name: t\nnodes: {a: {}}\n".encode("utf-16"), 1, "UTF-16"),
], ids=["soh", "nul", "escape", "del-crlf", "cr", "byte-ff", "latin1", "surrogate", "utf16"])
def test_bytes_yaml_forbids_are_refused_with_their_line(tmp_path: Path, data: bytes, line: int,
                                                         fragment: str) -> None:
    refused(write(tmp_path, data), line, fragment)


def test_a_utf8_byte_order_mark_is_fine(tmp_path: Path) -> None:
    assert validate(write(tmp_path, b"\xef\xbb\xbfname: t\nnodes: {a: {}}\n")).returncode == 0


def test_a_lone_surrogate_in_text_is_refused() -> None:
    with pytest.raises(ValidationError) as info:
        lab_from_text("name: t\nnodes:\n  a\ud800: {}\n", "f.yaml")
    assert str(info.value) == "f.yaml:3: character U+D800 at column 4 is not allowed in a YAML file"


# -- keys and tags ------------------------------------------------------------------------------
def test_keys_are_kept_as_written() -> None:
    """YAML 1.1 reads these as true, 16, 10, null, a date, 1.0: they were renamed
    (`true:` became node `True`); a name is text."""
    spec = lab_from_text("name: t\nnodes:\n  true: {}\n  on: {}\n  1_0: {}\n  null: {}\n"
                         "  2001-01-01: {}\n  Yes: {}\n")
    assert list(spec.nodes) == ["true", "on", "1_0", "null", "2001-01-01", "Yes"]
    # numbers are refused as node names (resolvers read them as addresses), named as written
    with pytest.raises(ValidationError) as info:
        lab_from_text("name: t\nnodes:\n  0x10: {}\n  017: {}\n  '16': {}\n", "f.yaml")
    assert [line.split(": node name")[0] for line in str(info.value).splitlines()] == [
        "f.yaml:3: nodes.0x10", "f.yaml:4: nodes.017", "f.yaml:5: nodes.16"]


@pytest.mark.parametrize("text, line, fragment", [
    ("name: t\nnodes: {a: {}}\ntrue: 1\n", 3, "unknown key 'true'"),
    ("name: t\nnodes:\n  a: {}\n  ~: {}\n", 4, "node name '~'"),
    ("name: t\nnodes:\n  a: {}\n  ? [x]\n  : {}\n", 4, "keys must be plain names"),
    ("name: t\nnodes:\n  a: &k {}\n  *k : {}\n", 4, "keys must be plain names"),
    ("name: t\nnodes:\n  !!int 1: {}\n", 3, "keys must be plain names"),
    ("name: t\nnodes:\n  a: {}\n  \"a\": {}\n", 4, "duplicate key"),
    ("name: t\nnodes:\n  a: !!python/object:os.system {}\n", 3, "YAML tag !!python/object:os.system"),
    ("name: t\nnodes:\n  a: {exec: [!!python/name:os.system x]}\n", 3, "YAML tag !!python/name:os.system"),
    ("name: t\nnodes:\n  a: {exec: [!!binary aGVsbG8=]}\n", 3, "YAML tag !!binary"),
    ("name: t\nnodes:\n  a: {exec: !!set {x: null}}\n", 3, "YAML tag !!set"),
    ("name: t\nnodes:\n  a: {exec: [!local x]}\n", 3, "YAML tag !local"),
    ("name: t\nnodes:\n  a: {}\nlinks: !!omap [x: 1]\n", 4, "YAML tag !!omap"),
    ("name: t\nnodes: {a: {}}\n---\nname: u\n", 3, "one YAML document"),
], ids=["true-top", "null-node", "complex-key", "alias-key", "tagged-key", "quoted-duplicate", "python-object",
        "python-name", "binary", "set", "local-tag", "omap", "two-documents"])
def test_odd_keys_and_tags_are_refused_with_their_line(tmp_path: Path, text: str, line: int, fragment: str) -> None:
    refused(write(tmp_path, text), line, fragment)


# -- validation stays linear --------------------------------------------------------------------
def many_networks_over_many_links() -> str:
    """10 000 host links and 2 000 networks in host: every network was checked against
    every link address (20M overlap tests, a minute); now one sort."""
    lines = ["name: t", "nodes: {a: {}}", "links:"]
    lines += [f"  - {{endpoints: [host:h{i}, a:e{i}], addresses: [10.{i >> 8}.{i & 255}.1/30, "
              f"10.{i >> 8}.{i & 255}.2/30]}}" for i in range(10_000)]
    lines += ["networks:"] + [f"  n{i}: {{subnet: 172.{16 + (i >> 8)}.{i & 255}.0/24}}" for i in range(2000)]
    return "\n".join(lines) + "\n"


def many_routes_over_many_interfaces() -> str:
    """10 000 interfaces and 10 000 routes on one node: each route scanned every interface."""
    lines = ["name: t", "nodes:", "  b: {}", "  a:", "    routes:"]
    lines += [f"      - 172.{16 + (i >> 8)}.{i & 255}.0/24 via 10.39.15.2" for i in range(10_000)]
    lines += ["links:"] + [f"  - {{endpoints: [a:e{i}, b:e{i}], addresses: [10.{i >> 8}.{i & 255}.1/24, "
                           f"10.{i >> 8}.{i & 255}.2/24]}}" for i in range(10_000)]
    return "\n".join(lines) + "\n"


def many_addresses_on_one_link() -> str:
    """30 000 addresses per end, no two sharing a subnet: a pairwise check is 900 million pairs."""
    a = ", ".join(f"10.{i >> 8 & 255}.{i & 255}.1/32" for i in range(30_000))
    b = ", ".join(f"11.{i >> 8 & 255}.{i & 255}.1/32" for i in range(30_000))
    return f"name: t\nnodes: {{a: {{}}, b: {{}}}}\nlinks:\n  - endpoints: [a:e0, b:e0]\n    addresses: [[{a}], [{b}]]\n"


@pytest.mark.parametrize("make, expect", [
    (many_networks_over_many_links, 0),
    (many_routes_over_many_interfaces, 0),
    (many_addresses_on_one_link, 2),
], ids=["networks-x-links", "routes-x-interfaces", "addresses-x-addresses"])
def test_validation_is_linear(tmp_path: Path, make, expect: int) -> None:
    r = validate(write(tmp_path, make()))
    assert r.returncode == expect, (r.returncode, r.stderr[-1000:])
    if expect:
        assert "share no IPv4 subnet" in r.stderr and "and 29997 more" in r.stderr


def test_a_file_of_errors_lists_the_first_thousand(tmp_path: Path) -> None:
    path = write(tmp_path, HEAD + "links: [" + "x, " * 5000 + "]\n")
    issues = refused(path, 3, "must be a mapping")
    assert len(issues) == 1001 and issues[0] == f"{path}: 4000 more problems are not shown (the first 1000 are)"


def test_overlap_sweep_matches_the_pairwise_definition() -> None:
    """_first_overlaps (sort and sweep) against the old pairwise loop, on random blocks."""
    import ipaddress
    import random

    from vethlab.topology.networks import _first_overlaps

    rng = random.Random(5)
    for _ in range(2000):
        entries = []
        for _ in range(rng.randint(1, 10)):
            version = rng.choice([4, 4, 6])
            width = 32 if version == 4 else 128
            plen = rng.choice([rng.randint(0, 4), rng.randint(width - 4, width)])
            value = rng.getrandbits(2) << (width - 2) if rng.random() < 0.5 else rng.getrandbits(width)
            entries.append((rng.choice("ab"), version, value >> (width - plen) << (width - plen), plen, "",
                            ("n", "subnet") if rng.random() < 0.6 else None))

        def net(e: tuple) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
            return (ipaddress.IPv4Network if e[1] == 4 else ipaddress.IPv6Network)((e[2], e[3]))

        expected = {}
        for i, e in enumerate(entries):
            if e[5] is not None:
                for j, o in enumerate(entries[:i]):
                    if o[:2] == e[:2] and net(e).overlaps(net(o)):
                        expected[i] = j
                        break
        assert _first_overlaps(entries) == expected, entries


def test_route_index_matches_the_interface_scan() -> None:
    """_Reach (subnets indexed) against the old scan of every interface, on random nodes."""
    import ipaddress
    import random

    from vethlab.topology.routes import parse_route
    from vethlab.topology.validate import _Reach, _route_problem

    def scan(via: str, dev: str | None, ifaces: list[tuple[str, tuple[str, ...]]]) -> bool:
        gateway = ipaddress.ip_address(via)
        for name, addrs in ifaces:
            if dev in (None, name):
                if "*" in addrs:
                    return True
                for text in addrs:
                    iface = ipaddress.ip_interface(text)
                    if iface.version == gateway.version and gateway in iface.network and gateway != iface.ip:
                        return True
        return False

    rng = random.Random(3)
    for _ in range(5000):
        ifaces = []
        for k in range(rng.randint(0, 4)):
            addrs = tuple(rng.choice([f"10.0.{rng.randint(0, 3)}.{rng.randint(1, 6)}/{rng.choice([8, 24, 30, 31, 32])}",
                                      f"fd00:{rng.randint(0, 2)}::{rng.randint(1, 6)}/{rng.choice([48, 64, 127, 128])}"])
                          for _ in range(rng.randint(0, 3)))
            ifaces.append((f"e{k}", ("*",) if rng.random() < 0.1 else addrs))
        via = rng.choice([f"10.0.{rng.randint(0, 3)}.{rng.randint(1, 6)}", f"fd00:{rng.randint(0, 2)}::{rng.randint(1, 6)}"])
        dev = rng.choice([None, "e0", "e1"])
        route = parse_route(("default" if ":" not in via else "::/0") + f" via {via}" + (f" dev {dev}" if dev else ""))
        if dev is not None and dev not in {name for name, _ in ifaces}:
            continue
        assert (_route_problem(route, _Reach(ifaces)) is None) == scan(via, dev, ifaces), (ifaces, via, dev)


# -- the splitter -------------------------------------------------------------------------------
@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab $#é'\"\\ \t\r\n\x0b")), max_size=16))
def test_split_matches_shlex(text: str) -> None:
    from vethlab.topology.words import split

    try:
        expected: list[str] | str = shlex.split(text)
    except ValueError as exc:
        expected = str(exc)
    try:
        got: list[str] | str = split(text)
    except ValueError as exc:
        got = str(exc)
    assert got == expected


# -- `vethlab up` refuses the same files, builds nothing ----------------------------------------
UP_CHECK = """
import json, os, subprocess, sys
out = {}
for path in sys.argv[1:]:
    r = subprocess.run([sys.executable, "-m", "vethlab", "up", path], capture_output=True, text=True, errors="replace")
    out[path] = [r.returncode, r.stderr.splitlines()[:1]]
links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout.splitlines()
out["built"] = [sorted(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else [], len(links)]
print(json.dumps(out))
"""


def test_up_refuses_hostile_files_with_exit_2_and_builds_nothing(tmp_path: Path) -> None:
    files = {
        "laughs": (billion_laughs(), 8), "recursive": (HEAD + "links: &l [*l]\n", 3),
        "deep": (HEAD + "links: " + "[" * 1000 + "]" * 1000 + "\n", 3),
        "mtu": (LINK + "    mtu: " + "9" * 5000 + "\n", 6), "tag": ("name: t\nnodes:\n  a: !!python/object:x {}\n", 3),
        "control": ("name: t\nnodes:\n  a\x01: {}\n", 3),
        "huge": (HEAD + ("# " + "x" * 1_000_000 + "\n") * 17, 19),
    }
    paths = {name: write(tmp_path, text, f"{name}.yaml") for name, (text, _) in files.items()}
    r = subprocess.run([sys.executable, "-m", "vethlab", "sandbox", "--", sys.executable, "-c", UP_CHECK,
                        *paths.values()], capture_output=True, text=True, preexec_fn=_limits, timeout=300,
                       check=False, env={**os.environ})
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    for name, (_, line) in files.items():
        status, first = out[paths[name]]
        assert status == 2 and first and first[0].startswith(f"{paths[name]}:{line}: "), (name, status, first)
    assert out["built"] == [[], 1], out["built"]  # no namespace, only lo


def test_a_16_mib_one_line_list_is_refused_at_the_value_limit(tmp_path: Path) -> None:
    """The quick path (topology/quickyaml.py) lists a flow line's tokens at once: a
    line of 8 million values would take gigabytes there.  It leaves long lines to
    libyaml's path, which counts as it goes and stops at the limit."""
    refused(write(tmp_path, HEAD + "links: [" + "1, " * 5_500_000 + "]\n"), 3, "more than 200000 values")
