"""Unit tests start from a cold address cache; `state_root` gives a test its own state directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _cold_address_cache() -> Iterator[None]:
    """topology/checker.py parses each address text once per process (an lru_cache).  A test
    must parse its own: a cache warmed by an earlier test — or by the process that a
    mutation run forks its workers from — hides a broken parser behind right answers."""
    from vethlab.topology import checker

    checker.parse_interface.cache_clear()
    yield


@pytest.fixture
def state_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A private, empty VETHLAB_STATE_DIR (mode 0700, as vethlab makes it)."""
    root = tmp_path / "state"
    root.mkdir(mode=0o700)
    monkeypatch.setenv("VETHLAB_STATE_DIR", str(root))
    return str(root)
