"""The malformed-file corpus (tests/data/bad) and a fuzzer of the loader+validator.

Each corpus file starts with `# expect: LINE: fragment`: validating it must fail
with an issue at that line whose message contains the fragment.  The fuzzer
feeds arbitrary text and arbitrary YAML-shaped data: the only outcomes allowed
are a LabSpec or a ValidationError whose every issue names the file."""

from __future__ import annotations

import glob
import os
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vethlab.errors import ValidationError
from vethlab.topology import lab_from_text, load_lab

CORPUS = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "data", "bad", "*.yaml")))


def test_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 60


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: os.path.basename(p)[:-5])
def test_corpus_file(path: str) -> None:
    with open(path) as fh:
        header = fh.readline()
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
