"""vethlab: virtual networks of namespaces, veth pairs and bridges on one Linux kernel.

    from vethlab import Lab
    with Lab.load("lab.yaml") as lab:
        lab.node("ns1").exec(["ping", "-c1", "192.168.1.2"])
"""

from __future__ import annotations

from .errors import CommandFailed, ConflictError, KernelError, LockTimeout, UsageError, ValidationError, VethlabError
from .lab import Lab, Node

__version__ = "0.1.0"
__all__ = ["Lab", "Node", "VethlabError", "UsageError", "ValidationError", "ConflictError", "KernelError",
           "CommandFailed", "LockTimeout", "__version__"]
