"""The quick path (topology/quickyaml.py) against libyaml's (topology/yamlevents.py).

The quick path may give up on any file; when it does not, what it builds must be
exactly what libyaml's path builds: the same data with the same types (repr, so
True is not 1), the same line for every path, and no issue at all (a file with a
problem is always libyaml's path's to report).  Files are generated in and around
the subset: block and flow styles, indentations, sequences at their key's column,
comments, the YAML 1.1 words and numbers, and then damaged a character or a line
at a time.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vethlab.errors import ValidationError
from vethlab.topology import loader, quickyaml, yamlevents

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import topologies  # noqa: E402  (bench/topologies.py: the benchmark's labs)

#: scalars in and around the subset: words and numbers YAML 1.1 types, text that
#: only looks like them, characters the subset refuses
SCALARS = ["n0", "n0:r", "e0", "10.0.0.1/30", "10.0.0.2", "10.0.0.0", "1.2", "1.2.3", "fd00::1/64", "fd00::1",
           "yes", "Yes", "no", "NO", "on", "Off", "true", "False", "null", "Null", "NULL", "~", "y", "n",
           "0", "7", "1500", "017", "0x1f", "0o17", "0b101", "1_000", "-1", "+1", "1e5", "1.0e+5", ".inf",
           ".nan", ".5", "1:30", "12:30:45", "2001-12-14", "2001-12-14 21:59:43.10", "123456789012345678",
           "1234567890123456789", "a b", "a  b", "ip route add", "default via 10.0.0.1", "x/y", "/etc/hosts",
           "a=b", "=", "<<", "a#b", "a #b", "a:", "a: b", "'q'", '"q"', "@x", "a,b", "a]", "tcp:80", "1:2:3",
           "_x", "9lives", "nullx", "yesno", "0.0.0.0/0", "a-b", "-", "--", "a.b.c", "1.2.3.4.5", "ümlaut", ""]
KEYS = ["a", "b", "name", "nodes", "links", "n0", "n1", "true", "on", "null", "1", "0x10", "1_0", "a b", "<<",
        "x:y", "k", "a"]


def _scalar() -> st.SearchStrategy[str]:
    return st.sampled_from(SCALARS + [""] * 6)  # often empty: `KEY:` then a sibling is null, not a parent


_values = st.recursive(
    _scalar(),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.sampled_from(KEYS), inner, max_size=4)),
    max_leaves=12,
)


def _flow(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    return str(value)


def _block(value: Any, indent: int, step: int, draw: Any, out: list[str]) -> None:
    """`value` (a dict or list) in block style at column `indent`."""
    pad = " " * indent
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for k, v in items:
        head = f"{pad}{k}:" if isinstance(value, dict) else f"{pad}-"
        if draw(st.integers(0, 6)) == 0:
            out.append(draw(st.sampled_from(["", " " * indent + "# note", "#", "   "])))
        if isinstance(v, (dict, list)) and v and draw(st.booleans()):
            if isinstance(value, list) and isinstance(v, dict) and draw(st.booleans()):
                # `- KEY: VALUE` and the rest of the mapping at the key's column
                inner: list[str] = []
                _block(v, indent + 2, step, draw, inner)
                out.append(f"{pad}- " + inner[0][indent + 2:])
                out.extend(inner[1:])
                continue
            out.append(head)
            same = isinstance(value, dict) and isinstance(v, list) and draw(st.booleans())
            _block(v, indent if same else indent + step, step, draw, out)
        else:
            comment = draw(st.sampled_from(["", "", " # c", "  #c"]))
            out.append(f"{head} {_flow(v)}{comment}")


@st.composite
def documents(draw: Any) -> str:
    data = draw(st.dictionaries(st.sampled_from(KEYS), _values, min_size=1, max_size=5))
    out: list[str] = []
    if draw(st.booleans()):
        out.append("# a lab")
    _block(data, 0, draw(st.integers(1, 4)), draw, out)
    text = "\n".join(out) + draw(st.sampled_from(["\n", "", "\n\n", "\n# end\n"]))
    # then, sometimes, a little damage
    for _ in range(draw(st.integers(0, 2))):
        if not text:
            break
        at = draw(st.integers(0, len(text) - 1))
        what = draw(st.sampled_from([" ", "", "-", ":", "\n", "#", "[", "}", ",", "  ", "\t"]))
        text = text[:at] + what + text[at + draw(st.integers(0, 1)):]
    return text


def same_as_libyaml(text: str) -> bool:
    """Assert the quick path gives up on `text` or builds what libyaml's path does;
    True when it took the file."""
    quick = quickyaml.parse(text, "f.yaml")
    if quick is None:
        return False
    try:
        full = yamlevents.build(text, "f.yaml")
    except Exception as exc:  # noqa: BLE001  (ValidationError: libyaml refuses what the quick path took)
        raise AssertionError(f"the quick path took a file libyaml's refuses: {exc}\n{text}") from None
    assert full.issues == [], (full.issues, text)
    assert repr(quick.data) == repr(full.data), text
    assert quick.lines == full.lines, text
    return True


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents())
def test_the_quick_path_builds_what_libyaml_builds_or_gives_up(text: str) -> None:
    same_as_libyaml(text)


def test_the_benchmark_labs_take_the_quick_path_and_match() -> None:
    for kind in topologies.KINDS:
        text, _ = topologies.build(kind, 50)
        for variant in (text, topologies.edit_one_link(text), text + "# bench copy 3 17\n"):
            assert same_as_libyaml(variant), variant[:200]


def test_hand_written_shapes_match() -> None:
    """Block mappings in sequences, sequences at their key's column, comments."""
    texts = [
        "name: x\nnodes:\n  a: {}\n  b:\n    routes: [default via 10.0.0.1]\nlinks:\n"
        "- endpoints: [a:e0, b:e0]  # the link\n  addresses: [10.0.0.1/24, 10.0.0.2/24]\n  mtu: 1400\n"
        "- endpoints: [a:e1, b:e1]\nprefix: no\n",
        "name: x\nnodes:\n    a:\n        exec:\n        - ip link\n        -   ip addr\n    b: {sysctls: {net.ipv4.ip_forward: 1}}\n",
        "name: x\nnodes:\n  a: {k: [ ], j: [x , y ,z], l: d e ,m: 7}\n  b: [ 1, on , n0:r]\n  c: [ ]\n  d: { }\n",
        "name: x\nnodes:\n  a: {k: [], j: [x, y, z], l: d e, m: 7}\n  b: [1, on, n0:r]\n  c: []\n  d: {}\n",
        "# top\n\nname: x   # lab\nprefix: yes\nnodes: {a: {}, b: {}}\nnetworks:\n  lan:\n    nat: on\n    subnet: 10.1.0.0/16\n"
        "    members:\n      a: {ip: 10.1.0.2}\n      b:\n        publish: [8080:80/tcp]\n",
    ]
    for text in texts:
        assert same_as_libyaml(text), text


def test_what_the_quick_path_leaves_to_libyaml() -> None:
    """Each of these is valid YAML outside the subset (or a file with a problem):
    the quick path gives up, so the loader's answer is libyaml's, issues and all."""
    gives_up = [
        "name: x\nnodes:\n",  # an empty value: null, from libyaml
        "name: 'x'\n",  # quotes
        "name: &a x\nb: *a\n",  # anchors and aliases
        "name: !!str 10\n",  # tags
        "name: |\n  x\n",  # block scalars
        "---\nname: x\n",  # document markers
        "name: x\nname: y\n",  # duplicate keys: an issue
        "name: x\n  y\n",  # a plain scalar over two lines
        "name: [a,\n  b]\n",  # a flow collection over two lines
        "name:\tx\n",  # tabs
        "name: x\r\n",  # CR LF
        "name: 0x10\n",  # a number the quick path does not read
        "name: 1.5\n",
        "a: b\n c: d\n",  # indentation libyaml refuses
        "links: " + "[" * 20 + "]" * 20 + "\n",  # deeper than the limit
        "a:\n  - x\n  b: y\n",
        "a:\nb: c\n",  # `a` is null, not b's parent
        "a: {k: 1, k: 2}\n",  # a duplicate key in a flow mapping: an issue
        "a: {k: 1; j: 2}\n",
        "a: {k: [1, 2]x, j: 2}\n",
        "a:\n  b: 1\n  b: 2\n",
    ]
    for text in gives_up:
        assert quickyaml.parse(text, "f.yaml") is None, text


def test_the_loader_honours_lowered_limits_on_the_quick_path(monkeypatch: Any) -> None:
    """The limits are read when a file is parsed: a file over them goes to libyaml's
    path, which refuses it with the line."""
    monkeypatch.setattr(loader, "MAX_VALUES", 50)
    text, _ = topologies.build("chain", 50)
    assert quickyaml.parse(text, "f.yaml") is None


def test_an_ascii_file_is_checked_for_the_characters_yaml_forbids_as_any_file_is() -> None:
    """ASCII text is searched with a small class (the full one costs 2 ms to compile):
    it must refuse exactly the ASCII characters the full class refuses."""
    import re

    import pytest

    from vethlab.errors import ValidationError

    full = re.compile(loader._BAD_CHAR_CLASS)
    for code in range(128):
        text = f"name: x{chr(code)}y\n"
        if full.search(text):
            with pytest.raises(ValidationError, match="at column 8 is not allowed"):
                loader.loads(text, "f.yaml")
        else:
            try:
                loader.loads(text, "f.yaml")
            except ValidationError as exc:
                assert "is not allowed in a YAML file" not in str(exc)


def test_files_of_very_long_or_very_many_lines_are_left_to_libyaml() -> None:
    """The quick path splits lines and lists a flow line's tokens at once; the
    libyaml path counts values as it goes: huge lines and line counts go there."""
    assert quickyaml.parse("name: [" + "1, " * 30_000 + "1]\n", "f.yaml") is None
    assert quickyaml.parse("name: x\n" + "#\n" * (quickyaml.MAX_LINES + 1), "f.yaml") is None
    assert quickyaml.parse("name: x\n" + "#\n" * 1000, "f.yaml") is not None


@pytest.mark.parametrize("text", [
    "name: x\n" + "k" * 1025 + ": 1\n",                      # a block key
    "name: x\nsysctls:\n  - " + "k" * 1030 + ": 1\n",        # `- KEY:`
    "name: x\nk: {" + "a" * 1030 + ": b}\n",                 # a flat flow mapping's key
    "name: x\nk: {a: [b], " + "a" * 1030 + ": [c, d]}\n",    # the general flow loop's
    "name: x\nk: {a" + " " * 1030 + ": b}\n",                # libyaml counts up to the colon
])
def test_a_key_libyaml_finds_too_long_is_left_to_it(text: str) -> None:
    """libyaml refuses a key running over 1024 characters to its `:` (a syntax error:
    exit 2); the quick path must not take such a file (a review found it did)."""
    assert quickyaml.parse(text, "f.yaml") is None
    with pytest.raises(ValidationError):
        loader.loads(text, "f.yaml")


_flat_values = st.one_of(st.sampled_from(SCALARS), st.lists(st.sampled_from(SCALARS), max_size=4))


@st.composite
def flat_lines(draw: Any) -> str:
    """`{k: v, k: [a, b]}` as YAML writers write it, sometimes slightly off."""
    text = _flow(draw(st.dictionaries(st.sampled_from(KEYS), _flat_values, min_size=1, max_size=4)))
    if draw(st.booleans()):
        at = draw(st.integers(0, len(text) - 1))
        what = draw(st.sampled_from([" ", "", ",", ":", "[", "]", "{", "}", ", ", "  "]))
        text = text[:at] + what + text[at + draw(st.integers(0, 1)):]
    return text


@settings(max_examples=1500, deadline=None)
@given(flat_lines())
def test_the_flat_flow_mapping_path_reads_what_the_token_loop_reads(line: str) -> None:
    """Reader.flat, the one-regex path of most lines of a big lab, builds what the
    general token loop builds (data, lines, count) or leaves the line to it."""
    text = f"name: x\nnodes:\n  a: {line}\n  b:\n  - {line}\n"
    quick = quickyaml._Reader()
    slow = quickyaml._Reader()
    slow.flat = lambda rest, path, number: None  # type: ignore[method-assign]
    try:
        got: Any = quick.read(text)
    except quickyaml._GiveUp:
        got = None
    try:
        want: Any = slow.read(text)
    except quickyaml._GiveUp:
        want = None
    assert repr(got) == repr(want), line
    if want is not None:
        assert (quick.lines, quick.count) == (slow.lines, slow.count), line


def test_the_flat_path_leaves_near_misses_to_the_token_loop() -> None:
    reader = quickyaml._Reader()
    for line in ["{a: [b,c]}", "{a: [b, c] }", "{a:  b}", "{a: b,c: d}", "{a: [ b]}", "{a: {b: c}}", "{a: [b, [c]]}",
                 "{a: b, }", "{a: 'b'}", "{a: b}x", "{a: [b, c], d: e"]:
        assert reader.flat(line, (), 1) is None, line
    assert reader.flat("{endpoints: [n0:r, n1:l], addresses: [10.0.0.1/30, 10.0.0.2/30]}", ("l",), 3) == \
        {"endpoints": ["n0:r", "n1:l"], "addresses": ["10.0.0.1/30", "10.0.0.2/30"]}
    assert reader.lines == {("l",): 3, ("l", "endpoints"): 3, ("l", "endpoints", 0): 3, ("l", "endpoints", 1): 3,
                            ("l", "addresses"): 3, ("l", "addresses", 0): 3, ("l", "addresses", 1): 3}
    assert reader.count == 9
