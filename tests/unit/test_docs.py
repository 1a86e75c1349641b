"""The documentation cannot drift from the code.

* docs/reference/topology.md and docs/reference/cli.md are what docs/gen.py makes
  from the validator's key tables and the argparse parser *now*: a new command,
  option or key without `.venv/bin/python docs/gen.py` fails here.
* every key the validator accepts is described (no "undocumented" row);
* every relative link in README.md and docs/ points at a file that exists, and
  nothing points outside the repository (a user's clone has no ../shared).
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _gen() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_gen", ROOT / "docs" / "gen.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN = _gen()


@pytest.mark.parametrize("name", ["topology.md", "cli.md"])
def test_generated_reference_is_current(name: str) -> None:
    path = ROOT / "docs" / "reference" / name
    expected = GEN.pages()[path]
    assert path.exists(), f"{path} is missing: run .venv/bin/python docs/gen.py"
    assert path.read_text() == expected, f"{path.relative_to(ROOT)} is stale: run .venv/bin/python docs/gen.py"


def test_every_accepted_key_is_described() -> None:
    assert GEN.undocumented() == []


def test_every_command_and_option_is_on_the_cli_page() -> None:
    """The page is built from the parser; this guards the builder itself (a
    command or option it silently skipped would pass the staleness test)."""
    from vethlab.cli.main import build_parser

    page = (ROOT / "docs" / "reference" / "cli.md").read_text()
    for name, sub in GEN._subparsers(build_parser()).items():
        assert f"### vethlab {name}\n" in page
        for action in sub._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help"):
                    assert flag in page, f"{name} {flag} missing from the CLI reference"


def test_every_key_is_on_the_topology_page() -> None:
    page = (ROOT / "docs" / "reference" / "topology.md").read_text()
    for table, keys in GEN._key_tables().items():
        for key in keys:
            assert f"| `{key}` |" in page, f"{table} key {key} missing from the topology reference"


def _markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize("path", _markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_links_resolve_inside_the_repository(path: Path) -> None:
    text = path.read_text()
    assert "../shared" not in text, f"{path.name} refers to ../shared, which a user's clone does not have"
    for target in LINK.findall(text):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue  # a URL or an anchor on the same page
        file = (path.parent / target.split("#")[0]).resolve()
        assert file.exists(), f"{path.relative_to(ROOT)} links to {target}, which does not exist"
        assert ROOT in file.parents or file == ROOT, f"{path.relative_to(ROOT)} links outside the repository: {target}"


FENCE = re.compile(r"^```[ \t]*([^\n`]*)\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def _commands(path: Path) -> list[list[str]]:
    """The code blocks of a page with comments and trailing blanks removed: what a
    reader types, whatever language the prose and the comments are in."""
    out = []
    for m in FENCE.finditer(path.read_text()):
        lines = [re.sub(r"\s+#(?!!).*$", "", line).rstrip() for line in m.group(2).splitlines()]
        out.append([line for line in lines if line and not line.lstrip().startswith("#")])
    return out


def test_the_translated_tutorial_runs_the_same_commands() -> None:
    """tutorial.zh.md is a translation: its code blocks are the English page's
    (comments may differ), so a fix made to one page cannot be missed in the other."""
    assert _commands(ROOT / "docs" / "tutorial.zh.md") == _commands(ROOT / "docs" / "tutorial.md")


def test_the_plugin_page_quotes_the_example_it_runs() -> None:
    """docs/pytest-plugin.md shows excerpts of examples/pytest/test_transfer.py; the
    kernel tests run that file, so every line the page shows must be in it."""
    source = (ROOT / "examples" / "pytest" / "test_transfer.py").read_text().splitlines()
    page = (ROOT / "docs" / "pytest-plugin.md").read_text()
    shown = [m.group(2) for m in FENCE.finditer(page) if m.group(1).strip() == "python"]
    assert shown, "the page shows no code"
    for block in shown:
        for line in block.splitlines():
            assert not line.strip() or line in source, f"not in test_transfer.py: {line!r}"


def test_the_contract_names_every_command() -> None:
    """docs/spec.md is written by hand; a command added to the parser must get its
    row there too (the generated CLI page covers its options)."""
    from vethlab.cli.main import build_parser

    spec = (ROOT / "docs" / "spec.md").read_text()
    for name in GEN._subparsers(build_parser()):
        assert f"`vethlab {name}" in spec, f"docs/spec.md does not describe `vethlab {name}`"


MININET_TOPOS = """
import json, re, sys
text = open(sys.argv[1]).read()
code = [b for b in re.findall(r"```python\\n(.*?)```", text, re.S) if "def lab_from_topo" in b][0]
ns = {}
exec(code, ns)
from mininet.topo import LinearTopo, SingleSwitchTopo
from mininet.topolib import TreeTopo
print(json.dumps([ns["lab_from_topo"](t, n) for t, n in
                  ((LinearTopo(k=4), "linear"), (SingleSwitchTopo(k=3), "single"), (TreeTopo(depth=2, fanout=2), "tree"))]))
"""


def test_the_mininet_converter_makes_valid_labs() -> None:
    """docs/migrating/mininet.md's lab_from_topo, fed Mininet's own topologies
    (Debian's mininet, for the system interpreter: `./run bench` installs it),
    makes dicts that validate.  Building them is checked by hand: one network each."""
    import json
    import shutil
    import subprocess

    python = shutil.which("python3", path="/usr/bin")
    probe = subprocess.run([python or "false", "-c", "import mininet.topo"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip("Mininet is not installed for /usr/bin/python3")
    out = subprocess.run([str(python), "-c", MININET_TOPOS, str(ROOT / "docs" / "migrating" / "mininet.md")],
                         capture_output=True, text=True, check=True).stdout
    from vethlab.topology import lab_from_dict

    for data in json.loads(out):
        spec = lab_from_dict(data)
        assert len(spec.networks) == 1 and len(spec.networks[0].members) == len(spec.nodes)
