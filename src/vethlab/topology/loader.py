"""YAML to plain data, remembering the line of every value.

PyYAML's composer already gives every node a start mark; we walk the node tree
once, building dicts/lists/scalars and a map from field path to line, so the
validator can say `lab.yaml:14: links[2].endpoints[1]: …`.  The C loader is used
when present (a 1000-node file parses in milliseconds).  Duplicate keys, which
YAML silently lets win, are reported as errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from ..errors import Issue, ValidationError

try:
    _Loader: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - libyaml missing
    _Loader = yaml.SafeLoader

Path = tuple[str | int, ...]
_STR = "tag:yaml.org,2002:str"


def format_path(path: Path) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


@dataclass
class Document:
    """A parsed topology file: its data, the line of each path, and load problems."""

    file: str
    data: Any
    lines: dict[Path, int] = field(default_factory=dict)
    issues: list[Issue] = field(default_factory=list)

    def line(self, path: Path) -> int | None:
        """The line of `path`, or of its nearest ancestor that has one."""
        while True:
            if path in self.lines:
                return self.lines[path]
            if not path:
                return None
            path = path[:-1]

    def issue(self, path: Path, message: str) -> Issue:
        return Issue(self.file, self.line(path), format_path(path), message)


class _Builder(_Loader):  # type: ignore[misc]
    pass


def loads(text: str, file: str = "<string>") -> Document:
    """Parse YAML text.  Raises ValidationError (exit 2) on a syntax error."""
    try:
        loader = _Builder(text)
        try:
            root = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or str(exc)
        raise ValidationError([Issue(file, line, "", f"YAML syntax error: {problem}")]) from None
    except yaml.YAMLError as exc:
        raise ValidationError([Issue(file, None, "", f"YAML error: {exc}")]) from None
    doc = Document(file=file, data=None)
    if root is None:
        return doc
    constructor = yaml.constructor.SafeConstructor()
    doc.data = _build(root, (), doc, constructor)
    return doc


def load(path: str) -> Document:
    """Read and parse a topology file; a missing or unreadable file is exit 2."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise ValidationError([Issue(path, None, "", f"cannot read file: {exc.strerror}")]) from None
    except UnicodeDecodeError:
        raise ValidationError([Issue(path, None, "", "file is not UTF-8 text")]) from None
    return loads(text, path)


def _build(node: yaml.Node, path: Path, doc: Document, constructor: Any) -> Any:
    doc.lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                doc.issues.append(Issue(doc.file, key_node.start_mark.line + 1, format_path(path), "keys must be plain names"))
                continue
            if key_node.tag == "tag:yaml.org,2002:merge":
                doc.issues.append(Issue(doc.file, key_node.start_mark.line + 1, format_path(path), "YAML merge keys (<<) are not supported"))
                continue
            key = constructor.construct_object(key_node)
            if not isinstance(key, (str, int, float, bool)) or key is None:
                key = str(key)
            key = str(key) if not isinstance(key, str) else key
            child: Path = path + (key,)
            if key in out:
                doc.issues.append(Issue(doc.file, key_node.start_mark.line + 1, format_path(child), "duplicate key"))
                continue
            out[key] = _build(value_node, child, doc, constructor)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, path + (i,), doc, constructor) for i, item in enumerate(node.value)]
    if node.tag == _STR:  # the resolver has typed every scalar already; strings need no constructor
        return node.value
    try:
        return constructor.construct_object(node, deep=True)
    except yaml.YAMLError as exc:
        doc.issues.append(Issue(doc.file, node.start_mark.line + 1, format_path(path), f"bad value: {exc}"))
        return None
