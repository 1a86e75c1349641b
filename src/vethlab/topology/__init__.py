"""Topology files: load (with line numbers), validate, and the resulting LabSpec."""

from __future__ import annotations

from typing import Any

from .loader import Document, load, loads
from .schema import HOST, Endpoint, LabSpec, LinkSpec, NodeSpec, RouteSpec
from .validate import parse_document

__all__ = ["HOST", "Endpoint", "LabSpec", "LinkSpec", "NodeSpec", "RouteSpec", "load_lab", "lab_from_dict", "lab_from_text"]


def load_lab(path: str) -> LabSpec:
    """Read, parse and validate a topology file (ValidationError on any problem)."""
    return parse_document(load(path))


def lab_from_text(text: str, file: str = "<string>") -> LabSpec:
    return parse_document(loads(text, file))


def lab_from_dict(data: dict[str, Any], file: str = "<dict>") -> LabSpec:
    """Validate a topology given as Python data (no line numbers to report)."""
    return parse_document(Document(file=file, data=data))
