"""Every shell command the documentation shows runs.

The rules a page follows (docs/README.md, "Writing docs"):

* A fenced block whose language is `sh`, `bash`, `shell` or `console` is run,
  in page order, by `bash -euo pipefail`, unless its info string also says
  `no-run` (```` ```sh no-run ````): a block that needs a real NIC, Docker, a
  reboot or the machine's own settings.
* A `yaml` block whose first line is `# NAME.yaml` is written to NAME.yaml first,
  so the commands after it can use it, as a reader who copies it would.
* Commands run in a fresh working directory that holds a link to the
  repository's `examples/`, with `.venv/bin` first on PATH (`vethlab`, `python3`).
* A page leaves no lab behind: a reader who follows it to the end has a clean
  machine again.

Each page runs in its own sandbox (this directory's conftest), so its nodes and
subnets never meet another page's.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHELLS = {"sh", "bash", "shell", "console"}
FENCE = re.compile(r"^```[ \t]*([^\n`]*)\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
FILE_HEADER = re.compile(r"^#\s*([A-Za-z0-9_.-]+\.ya?ml)\s*$")


@dataclass(frozen=True)
class Block:
    line: int  # of the opening fence, for messages
    kind: str  # "run", "file", "skip"
    text: str
    name: str = ""  # the file a "file" block writes


def blocks(path: Path) -> list[Block]:
    text = path.read_text()
    out = []
    for m in FENCE.finditer(text):
        info = m.group(1).split()
        lang = info[0].lower() if info else ""
        line = text.count("\n", 0, m.start()) + 1
        body = m.group(2)
        if lang in SHELLS:
            out.append(Block(line, "skip" if "no-run" in info[1:] else "run", body))
        elif lang in ("yaml", "yml"):
            first = body.split("\n", 1)[0]
            header = FILE_HEADER.match(first)
            if header:
                out.append(Block(line, "file", body, header.group(1)))
    return out


def pages() -> list[Path]:
    candidates = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    return [p for p in candidates if any(b.kind == "run" for b in blocks(p))]


def _env() -> dict[str, str]:
    venv_bin = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": f"{venv_bin}:{os.environ.get('PATH', '/usr/bin:/bin')}"}


def _labs(cwd: Path, env: dict[str, str]) -> list[str]:
    out = subprocess.run(["vethlab", "ls", "--json"], cwd=cwd, env=env, capture_output=True, text=True,
                         check=True, timeout=60).stdout
    return [lab["name"] for lab in json.loads(out)["labs"]]


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_page_commands_run(page: Path, tmp_path: Path) -> None:
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    env = _env()
    where = page.relative_to(ROOT)
    try:
        for block in blocks(page):
            if block.kind == "file":
                (tmp_path / block.name).write_text(block.text)
            elif block.kind == "run":
                # Output goes to a file, not a pipe: a process a block leaves in the
                # background would hold a pipe open and hang the run until the timeout.
                with tempfile.TemporaryFile("w+") as out:
                    result = subprocess.run(["bash", "-euo", "pipefail", "-c", block.text], cwd=tmp_path, env=env,
                                            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                            timeout=300, check=False)
                    out.seek(0)
                    output = out.read()
                assert result.returncode == 0, (
                    f"{where}:{block.line}: the block exited {result.returncode}\n--- block\n{block.text}"
                    f"--- output\n{output}")
        assert _labs(tmp_path, env) == [], f"{where} leaves labs behind; end it with `vethlab down`"
    finally:
        subprocess.run(["vethlab", "clean", "--all"], cwd=tmp_path, env=env, capture_output=True, timeout=120,
                       check=False)


def test_the_pages_that_teach_commands_have_runnable_blocks() -> None:
    """Guards the extractor and the marking: a typo in the fence (or everything
    marked no-run) would otherwise turn this whole check into a no-op."""
    runnable = {str(p.relative_to(ROOT)) for p in pages()}
    for page in ("README.md", "docs/tutorial.md", "docs/tutorial.zh.md", "docs/pytest-plugin.md",
                 "docs/troubleshooting.md", "docs/migrating/docker.md", "docs/migrating/mininet.md",
                 "docs/migrating/containerlab.md"):
        assert page in runnable, f"{page} has no runnable ```sh block"


def test_extractor_reads_the_marking_rules(tmp_path: Path) -> None:
    page = tmp_path / "p.md"
    page.write_text("text\n```sh\necho a\n```\n```sh no-run\nreboot\n```\n```yaml\n# x.yaml\nname: x\n```\n"
                    "```yaml\nname: y\n```\n```text\nout\n```\n")
    got = [(b.kind, b.line, b.name) for b in blocks(page)]
    assert got == [("run", 2, ""), ("skip", 5, ""), ("file", 8, "x.yaml")]
