"""The command line without the kernel: usage, validation output, exit codes."""

from __future__ import annotations

import json

from helpers import SEED, vethlab


def test_validate_ok_and_json(write) -> None:
    path = write(SEED)
    r = vethlab("validate", path)
    assert r.returncode == 0 and "valid" in r.stdout
    assert json.loads(vethlab("validate", path, "--json").stdout)["valid"] is True


def test_validate_reports_every_error_with_line_and_exit_2(write) -> None:
    path = write("name: t\nnodes:\n  a: {bogus: 1}\nlinks:\n  - endpoints: [a:e0, z:e0]\n")
    r = vethlab("validate", path)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert lines == [f"{path}:3: nodes.a.bogus: unknown key 'bogus'",
                     f"{path}:5: links[0].endpoints[1]: node 'z' is not defined under 'nodes'"]
    assert r.stdout == ""


def test_up_with_bad_file_is_exit_2_before_anything(write) -> None:
    r = vethlab("up", write("name: t\nnodes: {a: {}\n"))
    assert r.returncode == 2 and "YAML syntax error" in r.stderr and "Traceback" not in r.stderr


def test_missing_file_is_exit_2(tmp_path) -> None:
    r = vethlab("validate", str(tmp_path / "nope.yaml"))
    assert r.returncode == 2 and "no topology file" in r.stderr


def test_usage_errors_are_exit_2() -> None:
    assert vethlab("frobnicate").returncode == 2
    assert vethlab().returncode == 2
    assert vethlab("link", "sideways", "a:b").returncode == 2
    assert vethlab("exec", "--lab", "nolab", "n1").returncode == 2


def test_unknown_lab_is_exit_2(tmp_path) -> None:
    env = {"VETHLAB_STATE_DIR": str(tmp_path)}
    r = vethlab("exec", "ghost", "--", "true", env=env)
    assert r.returncode == 2 and "no lab has a node named ghost" in r.stderr
    assert vethlab("status", env=env).returncode == 2


def test_help_and_version() -> None:
    assert vethlab("--help").returncode == 0
    assert vethlab("--version").stdout.startswith("vethlab ")
