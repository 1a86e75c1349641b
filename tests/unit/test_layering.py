"""bench/imports.py: the package layering and the kernel boundary hold on src/, and
a reach-past (a layer above the kernel importing a kernel implementation module)
is found in every spelling."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "imports.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_imports", BENCH)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_source_tree_passes_the_check() -> None:
    done = subprocess.run([sys.executable, str(BENCH), "--check"], capture_output=True, text=True)
    assert (done.returncode, done.stderr) == (0, "")
    assert "past the kernel boundary" in done.stdout and done.stdout.rstrip().endswith(": 0")


def test_reach_pasts_are_found_in_every_spelling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    imports = _load()
    root = tmp_path / "vethlab"
    for name in ("kernel/__init__.py", "kernel/api.py", "kernel/rtnl.py", "kernel/process.py", "drivers/__init__.py",
                 "cli/__init__.py"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("")
    (root / "drivers" / "a.py").write_text(
        "from ..kernel.api import Kernel\nfrom ..kernel import open_kernel\n"  # the boundary: allowed
        "from ..kernel import rtnl\n"
        "def f():\n    from ..kernel.process import run_in_node\n    import vethlab.kernel.process\n")
    (root / "lab.py").write_text("from vethlab.kernel.rtnl import NetlinkKernel\n")
    (root / "cli" / "run.py").write_text("from ..kernel.process import exec_in_node\n")  # a front: may
    monkeypatch.setattr(imports, "ROOT", root)
    assert imports.reach_pasts() == [("drivers/a.py", "kernel.process"), ("drivers/a.py", "kernel.rtnl"),
                                     ("lab.py", "kernel.rtnl")]


def test_yaml_is_imported_only_by_the_libyaml_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A first read of a plain file needs no PyYAML (~10 ms): only topology/yamlevents.py
    may import it, and an import anywhere else, in any spelling, is found."""
    imports = _load()
    assert imports.confined_imports() == []
    root = tmp_path / "vethlab"
    (root / "topology").mkdir(parents=True)
    (root / "topology" / "yamlevents.py").write_text("import yaml\n")
    (root / "topology" / "loader.py").write_text("def f():\n    from yaml import CSafeLoader\n")
    (root / "lab.py").write_text("import yaml.constructor\nfrom .topology import yamlevents\n")
    monkeypatch.setattr(imports, "ROOT", root)
    assert imports.confined_imports() == [("lab.py", "yaml"), ("topology/loader.py", "yaml")]
