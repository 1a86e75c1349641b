from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _sandboxed(vethlab_sandbox: None) -> None:
    """Every test in this directory runs in fresh network + mount namespaces."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/kernel/" in str(item.fspath):
            item.add_marker(pytest.mark.kernel)
