"""The malformed-file corpus (tests/data/bad) and a fuzzer of the loader+validator.

Each corpus file starts with `# expect: LINE: fragment`: validating it must fail
with an issue at that line whose message contains the fragment.  The fuzzer
feeds arbitrary text and arbitrary YAML-shaped data: the only outcomes allowed
are a LabSpec or a ValidationError whose every issue names the file."""

from __future__ import annotations

import glob
import os
import re
import resource

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vethlab.errors import ValidationError
from vethlab.topology import lab_from_text, load_lab, loader


@pytest.fixture(scope="module", autouse=True)
def _bounded_memory():
    """These files are loaded in this process: should an alias bomb expand again, it
    fails here as MemoryError (at 2 GiB more than now) instead of taking the machine."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/status") as fh:
        size = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmSize:"))
    limit = size + (2 << 30)
    resource.setrlimit(resource.RLIMIT_AS, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard))
    yield
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


CORPUS = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "data", "bad", "*.yaml")))


def test_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 60


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: os.path.basename(p)[:-5])
def test_corpus_file(path: str) -> None:
    with open(path, "rb") as fh:  # some files are not UTF-8, or end lines with CR, on purpose
        header = fh.read(4096).decode("utf-8", "replace").splitlines()[0]
    m = re.match(r"# expect: (\d*): (.*)", header)
    assert m, f"{path} has no expect header"
    line, fragment = m.group(1), m.group(2)
    with pytest.raises(ValidationError) as info:
        load_lab(path)
    issues = info.value.issues
    assert all(i.file == path for i in issues)
    matching = [i for i in issues if fragment in i.message]
    assert matching, [str(i) for i in issues]
    if line:
        assert any(i.line == int(line) for i in matching), [str(i) for i in issues]
        assert str(matching[0]).startswith(f"{path}:{matching[0].line}: ")


# -- fuzzing --------------------------------------------------------------------------------------
def check(text: str) -> None:
    try:
        lab_from_text(text, "fuzz.yaml")
    except ValidationError as exc:
        assert exc.issues and all(str(i).startswith("fuzz.yaml") for i in exc.issues)


FUZZ_CASES = {"count": 0}
scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 70000), st.text(max_size=20),
                    st.sampled_from(["10.0.0.1/24", "fd00::1/64", "a:e0", "b:e0", "host:vh", "up", "down",
                                     "default via 10.0.0.1", "net.ipv4.ip_forward", "1500", "a", "b"]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.sampled_from(
                                                           ["name", "nodes", "links", "endpoints", "addresses",
                                                            "mtu", "state", "sysctls", "routes", "exec", "a", "b",
                                                            "prefix", "x"]), inner, max_size=4)), max_leaves=20)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_fuzz_raw_text(text: str) -> None:
    FUZZ_CASES["count"] += 1
    check(text)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.fixed_dictionaries({"name": st.one_of(st.just("t"), scalars),
                              "nodes": st.one_of(st.dictionaries(st.sampled_from(["a", "b", "host", "-x"]), values,
                                                                 max_size=3), values),
                              "links": st.one_of(st.lists(st.dictionaries(
                                  st.sampled_from(["endpoints", "addresses", "mtu", "state", "rate"]), values,
                                  max_size=4), max_size=3), values)}))
def test_fuzz_structured(data: dict) -> None:
    import yaml

    FUZZ_CASES["count"] += 1
    check(yaml.safe_dump(data))


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(["name: t\n", "nodes:\n", "  a: {}\n", "  b:\n", "    exec: [ls]\n", "links:\n",
                                 "  - endpoints: [a:e0, b:e0]\n", "    addresses: [10.0.0.1/24, 10.0.0.2/24]\n",
                                 "    mtu: 9000\n", "  -\n", ": :\n", "    routes: [\"default via 10.0.0.1\"]\n",
                                 "\t\n", "  [\n", "'\n", "&a x\n", "*a\n"]), max_size=12))
def test_fuzz_line_soup(lines: list[str]) -> None:
    FUZZ_CASES["count"] += 1
    check("".join(lines))


# -- anchors and aliases ---------------------------------------------------------------------------
ALIAS_SOUP = ["name: t\n", "nodes:\n", "  a: &n {}\n", "  b: *n\n", "x: &a [1, 2, 3]\n", "y: &b [*a, *a, *a, *a]\n",
              "z: &c [*b, *b, *b, *b, *b]\n", "w: [*c, *c, *c, *c, *c, *c]\n", "links: *c\n", "links: &l [*l]\n",
              "  - *a\n", "  - &e {endpoints: [a:e0, b:e0]}\n", "  - *e\n", "  <<: *n\n", "  *n : x\n", "&a\n",
              "*a\n", "*zz\n", "  ? [k]\n", "  : v\n", "v: !!python/object:os.system {}\n", "u: !!binary aGk=\n",
              "[[[[[[[[[[[[[[[[[[\n", "]]]]]]]]]]]]]]]]]]\n", "---\n", "true: 1\n", "  0x10: {}\n", "  ~: {}\n"]


@settings(max_examples=800, deadline=None)
@given(st.lists(st.sampled_from(ALIAS_SOUP), max_size=14))
def test_fuzz_alias_soup(lines: list[str]) -> None:
    FUZZ_CASES["count"] += 1
    check("".join(lines))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=8), st.integers(0, 3))
def test_fuzz_alias_bombs_stay_within_the_budget(fanouts: list[int], where: int) -> None:
    """Anchors of random fan-out, each level aliasing the one below: the loader either
    builds the data, never more than MAX_VALUES values, or refuses with a line.
    (Validating what it builds is test_fuzz_alias_soup's job: here it would be slow.)"""
    FUZZ_CASES["count"] += 1
    lines = ["name: t", "nodes: {a: {}}", "l0: &a0 [x, y]"]
    lines += [f"l{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * n) + "]" for i, n in enumerate(fanouts, 1)]
    top = len(fanouts)
    lines.append([f"links: *a{top}", f"nodes2: {{k: *a{top}}}", "x: [*a0]", "y: &r [*r]"][where])
    text = "\n".join(lines) + "\n"
    saved = loader.MAX_VALUES, loader.MAX_ALIAS_VALUES
    loader.MAX_VALUES, loader.MAX_ALIAS_VALUES = 20_000, 10_000  # the same logic, 10x less to build
    try:
        doc = loader.loads(text, "fuzz.yaml")
    except ValidationError as exc:
        assert exc.issues and all(str(i).startswith("fuzz.yaml:") for i in exc.issues)
        return
    finally:
        loader.MAX_VALUES, loader.MAX_ALIAS_VALUES = saved
    assert len(doc.lines) <= 20_000
