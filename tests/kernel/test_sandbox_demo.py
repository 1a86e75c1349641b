"""The sandbox (root and rootless) and the demo."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from helpers import SEED, vethlab


def _nobody_can_run_python() -> bool:
    if shutil.which("setpriv") is None:
        return False
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c",
                        "import vethlab"], capture_output=True)
    return r.returncode == 0


def test_sandbox_runs_command_and_keeps_its_status() -> None:
    r = vethlab("sandbox", "--", "sh", "-c", "ip -o link | wc -l; ls /run/netns | wc -l; exit 5")
    assert r.returncode == 5
    assert r.stdout.split() == ["1", "0"]


def test_sandbox_contents_vanish_with_it(seed_file: str) -> None:
    script = f"{sys.executable} -m vethlab up {seed_file} >/dev/null && ip netns list"
    r = vethlab("sandbox", "--", "sh", "-c", script)
    assert r.returncode == 0 and "ns1" in r.stdout
    assert os.listdir("/run/netns") == []  # the test's own sandbox never saw it


@pytest.mark.skipif(not _nobody_can_run_python(), reason="user nobody cannot run this interpreter (see NOTES.md)")
def test_rootless_as_nobody() -> None:
    tmp = tempfile.mkdtemp(prefix="vethlab-rootless-")
    try:
        os.chmod(tmp, 0o755)
        path = os.path.join(tmp, "seed.yaml")
        with open(path, "w") as fh:
            fh.write(SEED)
        os.chmod(path, 0o644)
        py = sys.executable
        script = (f"id -u; {py} -m vethlab up {path} >/dev/null && "
                  f"{py} -m vethlab exec ns1 -- ping -c 1 -W 1 192.168.1.2 >/dev/null && echo PING-OK && "
                  f"{py} -m vethlab down {path} >/dev/null && ip netns list | wc -l")
        env = {k: v for k, v in os.environ.items() if k not in ("VETHLAB_STATE_DIR", "VETHLAB_SANDBOX")}
        r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", py, "-m", "vethlab",
                            "sandbox", "--", "sh", "-c", script], capture_output=True, text=True, env=env, cwd=tmp,
                           timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        assert r.stdout.split() == ["0", "PING-OK", "0"], r.stdout + r.stderr
    finally:
        shutil.rmtree(tmp)


def test_demo_exits_zero_and_leaves_nothing() -> None:
    r = vethlab("demo", timeout=180)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr
    for expected in ("vethlab up seed.yaml", "ip netns exec ns1 ip addr show", "192.168.1.2",
                     "NO-CARRIER", "lab seed removed", "no changes", "hello from the web container",
                     "internet saw a connection from 203.0.113.1", "lab docker removed"):
        assert expected in r.stdout
    assert os.listdir("/run/netns") == []


def test_demo_commands_can_be_pasted() -> None:
    """Every `$` line the demo prints is a command a reader can paste as it stands:
    it parses as shell words, names a real program (python3, not the venv's path),
    and each `python3 -c` program compiles on its own (imports included)."""
    import shlex

    r = vethlab("demo", timeout=180)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr
    commands = [line.split("$ ", 1)[1] for line in r.stdout.splitlines() if line.startswith("$ ")]
    assert len(commands) > 20
    for text in commands:
        words = shlex.split(text.split("   #")[0].rstrip(" &"))
        assert words[0] in ("vethlab", "ip", "nft", "bridge", "python3"), text
        assert not any(w.startswith("/") and "python" in w for w in words), text
        for i, word in enumerate(words[:-1]):
            if word == "-c" and words[i - 1] == "python3":
                _assert_self_contained(words[i + 1])


def _assert_self_contained(code: str) -> None:
    """Every name the program reads is imported, assigned or a builtin."""
    import ast
    import builtins

    tree = ast.parse(code)
    defined = set(dir(builtins))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            defined |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            defined.add(node.id)
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    assert used <= defined, f"{code}: {sorted(used - defined)} not imported"
