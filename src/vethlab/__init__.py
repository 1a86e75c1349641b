"""vethlab: virtual networks of namespaces, veth pairs and bridges on one Linux kernel.

    from vethlab import Lab
    with Lab.load("lab.yaml") as lab:
        lab.node("ns1").exec(["ping", "-c1", "192.168.1.2"])

The names below are imported on first use (PEP 562): `vethlab exec NODE -- CMD`
must start about as fast as a bare interpreter, so the package itself loads
nothing it does not need.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: importing typing costs the CNI plugin ~3 ms per run (mypy knows the name)

__version__ = "0.1.0"
__all__ = ["Lab", "Node", "VethlabError", "UsageError", "ValidationError", "ConflictError", "KernelError",
           "CommandFailed", "LockTimeout", "__version__"]

_WHERE = {"Lab": "lab", "Node": "lab", "VethlabError": "errors", "UsageError": "errors",
          "ValidationError": "errors", "ConflictError": "errors", "KernelError": "errors",
          "CommandFailed": "errors", "LockTimeout": "errors"}

if TYPE_CHECKING:
    from typing import Any

    from .errors import (
        CommandFailed,
        ConflictError,
        KernelError,
        LockTimeout,
        UsageError,
        ValidationError,
        VethlabError,
    )
    from .lab import Lab, Node


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'vethlab' has no attribute {name!r}")
