"""Unit tests start from a cold address cache."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _cold_address_cache() -> Iterator[None]:
    """topology/checker.py parses each address text once per process (an lru_cache).  A test
    must parse its own: a cache warmed by an earlier test — or by the process that a
    mutation run forks its workers from — hides a broken parser behind right answers."""
    from vethlab.topology import checker

    checker.parse_interface.cache_clear()
    yield
