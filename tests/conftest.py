"""Shared fixtures.  Kernel tests use the `vethlab_sandbox` fixture of vethlab's own
pytest plugin: each runs in fresh network + mount namespaces."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from helpers import SEED


@pytest.fixture
def write(tmp_path: Path):
    """write(text, name='lab.yaml') -> path of a topology file."""

    def _write(text: str, name: str = "lab.yaml") -> str:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return str(path)

    return _write


@pytest.fixture
def seed_file(write) -> str:
    return write(SEED)
