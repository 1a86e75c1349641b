"""Helpers shared by the tests: run the CLI, read the kernel with `ip -j`."""

from __future__ import annotations

import os
import subprocess
import sys

from vethlab.cli.demo import SEED  # the seed lab, as the demo shows it

__all__ = ["SEED", "fresh_python", "ip_json", "star_lab", "vethlab"]


def vethlab(*args: str, input: str | None = None, check: bool | None = None, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user would (a separate process), capturing its output."""
    result = subprocess.run([sys.executable, "-m", "vethlab", *args], capture_output=True, text=True, input=input,
                            timeout=timeout, env={**os.environ, **(env or {})}, check=False)
    if check is True and result.returncode != 0:
        raise AssertionError(f"vethlab {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def fresh_python(code: str) -> str:
    """What `code` prints when run by a fresh interpreter (nothing imported yet: what
    a module loads at import, or makes on the way, is seen whole); fails if it fails."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout


def ip_json(*args: str) -> list[dict]:
    import json

    out = subprocess.run(["ip", "-j", *args], capture_output=True, text=True, check=True).stdout
    return json.loads(out) if out.strip() else []


def star_lab(n: int, exec_last: str | None = None) -> str:
    """A star of n members on one bridge network (10.0.0.0/16), the last one optionally
    running an exec: the teardown tests' lab, on the real kernel and on the fake."""
    lines = ["name: star", "nodes:"]
    lines += [f"  n{i}: {{}}" for i in range(n - 1)]
    lines.append(f"  n{n - 1}: {{exec: [{exec_last!r}]}}" if exec_last else f"  n{n - 1}: {{}}")
    lines += ["networks:", "  lan:", "    subnet: 10.0.0.0/16", "    members:"]
    lines += [f"      n{i}: {{}}" for i in range(n)]
    return "\n".join(lines) + "\n"


#: runs `vethlab ARGS` in this process, then prints the modules it holds (what a command imports)
MODULES_PROBE = """
import json, sys
from vethlab.cli.main import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
sys.stderr.write("\\nMODULES " + json.dumps(sorted(sys.modules)) + "\\n")
"""


def modules_after(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> set[str]:
    """The modules a `vethlab ARGS` process holds when main() returns."""
    import json

    r = subprocess.run([sys.executable, "-c", MODULES_PROBE, *args], capture_output=True, text=True,
                       timeout=timeout, env={**os.environ, **(env or {})})
    line = next(line for line in r.stderr.splitlines() if line.startswith("MODULES "))
    return set(json.loads(line[len("MODULES "):]))
