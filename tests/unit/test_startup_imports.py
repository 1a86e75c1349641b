"""What a command imports: each `vethlab` process pays for its imports, and the
quick commands must not load YAML, the validator or the reconciler they never use.
Checked on the modules a real process holds after main() returns."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from helpers import fresh_python, modules_after
from vethlab.cli.main import build_parser

#: what planning and building need, and quick commands must not load
HEAVY = ["yaml", "vethlab.lab", "vethlab.topology.loader", "vethlab.topology.validate", "vethlab.reconcile.planner",
         "vethlab.reconcile.executor", "vethlab.model.desired", "vethlab.kernel.rtnl", "rich"]




@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["up", "--help"], ["down", "--help"]])
def test_help_loads_nothing_heavy(argv: list[str]) -> None:
    assert modules_after(*argv) & set(HEAVY) == set()


def test_ls_loads_nothing_heavy(tmp_path) -> None:
    assert modules_after("ls", env={"VETHLAB_STATE_DIR": str(tmp_path)}) & set(HEAVY) == set()


def test_validate_of_a_cached_file_loads_no_yaml(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vethlab.state import store

    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    monkeypatch.setenv("VETHLAB_STATE_DIR", str(state))
    store.save(store.LabState("t", complete=True))  # files are kept for labs that exist
    path = tmp_path / "lab.yaml"
    path.write_text("name: t\nnodes: {a: {}, b: {}}\nlinks: [{endpoints: [a:e0, b:e0]}]\n")
    env = {"VETHLAB_STATE_DIR": str(state)}
    first = modules_after("validate", str(path), env=env)
    assert {"vethlab.topology.loader", "vethlab.topology.validate"} <= first  # a miss: parsed and validated
    assert "yaml" not in first  # by the quick path (topology/quickyaml.py): plain YAML needs no PyYAML
    again = modules_after("validate", str(path), env=env)
    assert again & {"yaml", "vethlab.topology.loader", "vethlab.topology.validate"} == set()


def test_only_the_chosen_command_is_built_and_it_parses_as_the_whole_parser_does() -> None:
    whole = build_parser()
    cases = [["up", "lab.yaml", "--refresh", "--wait", "3"], ["down", "--lab", "x", "--json"],
             ["exec", "n1", "--", "ip", "-j", "a"], ["link", "set", "a:e0", "--rate", "1mbit"],
             ["status", "--lab", "x"], ["sandbox", "--", "true"], ["logs", "n1", "-n", "5"]]
    for argv in cases:
        narrow = build_parser(argv[0])
        sub = next(a for a in narrow._actions if a.dest == "command")
        assert list(sub.choices) == [argv[0]]  # type: ignore[attr-defined]
        a, b = vars(narrow.parse_args(argv)), vars(whole.parse_args(argv))
        assert a.pop("handler").__qualname__ == b.pop("handler").__qualname__
        assert a == b, argv
    # not a command: the whole parser, so that its error lists every command
    assert len(next(a for a in build_parser("nope")._actions if a.dest == "command").choices) > 20  # type: ignore[attr-defined]


def test_the_package_names_the_host_node_as_the_schema_does() -> None:
    from vethlab import topology
    from vethlab.topology import schema

    assert topology.HOST == schema.HOST == "host"


def test_the_lifecycle_commands_load_the_topology_cache_only_when_they_read_a_file() -> None:
    """`down` (cli/lifecycle.py) reads no topology through the cache: importing the
    commands must not load it, nor hashlib (OpenSSL, ~2 ms) with it."""

    probe = ("import sys, vethlab.cli.lifecycle; "
             "print(sorted({'vethlab.state.speccache', 'hashlib'} & set(sys.modules)))")
    out = fresh_python(probe)
    assert out.strip() == "[]"


def _process(code: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


#: a process that runs the `vethlab` entry point (cli.main.run) as the script does; a
#: module-level object says whether the interpreter tore it down at exit
ENTRY = ("import sys\n"
         "class Canary:\n"
         "    def __del__(self): sys.stderr.write('torn down\\n')\n"
         "canary = Canary()\n"
         "sys.argv = ['vethlab', *sys.argv[1:]]\n"
         "from vethlab.cli.main import run\n"
         "run()\n")


def test_a_command_ends_without_tearing_the_interpreter_down_and_says_all_it_had_to(tmp_path) -> None:
    """cli.main.run ends the process at once when nothing is left to do at exit (the
    interpreter's teardown was ~8 ms of every command): same status, all the
    output, which a pipe holds in a buffer until then."""
    path = tmp_path / "lab.yaml"
    path.write_text("name: t\nnodes: {a: {}, b: {}}\nlinks: [{endpoints: [a:e0, b:e0]}]\n")
    env = {"VETHLAB_STATE_DIR": str(tmp_path / "state")}
    ok = _process(ENTRY, "validate", str(path), "--json", env=env)
    assert (ok.returncode, json.loads(ok.stdout)["valid"], ok.stderr) == (0, True, "")
    bad = _process(ENTRY, "validate", str(tmp_path / "none.yaml"), env=env)
    assert (bad.returncode, bad.stdout, bad.stderr) == (2, "", f"vethlab: no topology file {tmp_path}/none.yaml\n")
    usage = _process(ENTRY, "--version")  # argparse's SystemExit: the usual exit
    assert (usage.returncode, usage.stdout, usage.stderr) == (0, "vethlab 0.1.0\n", "torn down\n")


def test_a_command_exits_as_usual_when_something_waits_for_the_exit(tmp_path) -> None:
    """An atexit callback (coverage's, say) or a profiler (`python -m cProfile -o`,
    which writes its file after the script) gets the interpreter's usual exit."""
    path = tmp_path / "lab.yaml"
    path.write_text("name: t\nnodes: {a: {}}\n")
    env = {"VETHLAB_STATE_DIR": str(tmp_path / "state")}
    hooked = _process("import atexit, sys; atexit.register(lambda: sys.stderr.write('atexit ran\\n'))\n" + ENTRY,
                      "validate", str(path), env=env)
    assert (hooked.returncode, hooked.stderr) == (0, "atexit ran\ntorn down\n")
    profiled = subprocess.run([sys.executable, "-m", "cProfile", "-o", str(tmp_path / "p.prof"), "-m", "vethlab",
                               "validate", str(path)], capture_output=True, text=True, timeout=60,
                              env={**os.environ, **env})
    assert profiled.returncode == 0 and (tmp_path / "p.prof").stat().st_size > 0
