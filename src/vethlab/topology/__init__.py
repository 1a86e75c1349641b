"""Topology files: load (with line numbers), validate, and the resulting LabSpec.

The loader (PyYAML) and the validator are imported when a file is read, not when
the package is: commands such as `exec` only need the schema's names.  Even the
schema is imported on first use (PEP 562): the state store checks names with
topology.naming on every `exec`, which must not pay ~10 ms for dataclasses.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: its import costs the CNI plugin ~3 ms per run (mypy knows the name)

if TYPE_CHECKING:
    from typing import Any

    from .schema import Endpoint, LabSpec, LinkSpec, NodeSpec, RouteSpec

#: the reserved node name for the namespace vethlab runs in: schema.HOST, also here
#: so that `down` (reconcile/observe.py) does not load the schema for one string
HOST = "host"

__all__ = ["HOST", "Endpoint", "LabSpec", "LinkSpec", "NodeSpec", "RouteSpec", "load_lab", "lab_from_dict",
           "lab_from_text"]
_SCHEMA = {"Endpoint", "LabSpec", "LinkSpec", "NodeSpec", "RouteSpec"}


def __getattr__(name: str) -> Any:
    if name in _SCHEMA:
        from . import schema

        value = getattr(schema, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'vethlab.topology' has no attribute {name!r}")


def load_lab(path: str) -> LabSpec:
    """Read, parse and validate a topology file (ValidationError on any problem).
    Pure: no cache (state/speccache.load_lab is this with one, for the lab's fronts)."""
    from .files import read
    from .loader import load_bytes
    from .validate import parse_document

    return parse_document(load_bytes(read(path), path))


def lab_from_text(text: str, file: str = "<string>") -> LabSpec:
    from .loader import loads
    from .validate import parse_document

    return parse_document(loads(text, file))


def lab_from_dict(data: dict[str, Any], file: str = "<dict>") -> LabSpec:
    """Validate a topology given as Python data (no line numbers to report)."""
    from .loader import Document
    from .validate import parse_document

    return parse_document(Document(file=file, data=data))
