"""Helpers shared by the tests: run the CLI, read the kernel with `ip -j`."""

from __future__ import annotations

import os
import subprocess
import sys

from vethlab.demo import SEED  # the seed lab, as the demo shows it

__all__ = ["SEED", "ip_json", "vethlab"]


def vethlab(*args: str, input: str | None = None, check: bool | None = None, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user would (a separate process), capturing its output."""
    result = subprocess.run([sys.executable, "-m", "vethlab", *args], capture_output=True, text=True, input=input,
                            timeout=timeout, env={**os.environ, **(env or {})}, check=False)
    if check is True and result.returncode != 0:
        raise AssertionError(f"vethlab {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def ip_json(*args: str) -> list[dict]:
    import json

    out = subprocess.run(["ip", "-j", *args], capture_output=True, text=True, check=True).stdout
    return json.loads(out) if out.strip() else []


