"""The libyaml event loop of topology/loader.py: YAML to plain data, remembering the
line of every value, and refusing hostile files (the limits are loader.py's, read
when a file is parsed).  Imported only for a file the quick path
(topology/quickyaml.py) does not take: PyYAML costs ~10 ms to import.

The parser (libyaml when present) hands us its events; we build dicts, lists and
scalars from them ourselves, in one loop with an explicit stack, and keep a map
from field path to line so the validator can say `lab.yaml:14: links[2].endpoints[1]: …`.
Building from events rather than from PyYAML's node graph is what bounds the
work: PyYAML's graph shares aliased nodes, so walking it expanded a 448-byte
"billion laughs" file into 10^9 values (49 s, 3.6 GB, then MemoryError), walked
`links: &l [*l]` until RecursionError, and a 900-deep `[[[…]]]` (under libyaml
0.2.6's own limit of 1000; older libyaml has none) overflowed Python's stack.
Here every value is counted as it is made, an alias's size is known before it
is copied, and a file is refused (exit 2, with the line) as soon as it crosses
a limit.
"""

from __future__ import annotations

from typing import Any

import yaml

from ..errors import Issue, ValidationError
from . import loader
from .loader import Document, Path, format_path
from .quickyaml import DECIMAL as _DECIMAL
from .quickyaml import IMPLICIT_FIRST as _IMPLICIT_FIRST

try:
    _Loader: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - libyaml missing
    _Loader = yaml.SafeLoader

_RESOLVER: Any = yaml.resolver.Resolver()  # YAML 1.1 implicit types, as the loaders resolve them
_YAML = "tag:yaml.org,2002:"
_STR = _YAML + "str"
#: scalar tags turned into Python values; every other resolved tag (timestamp,
#: merge, value) keeps its text: no field of a topology is a date.
_CONSTRUCTED = {_YAML + "null", _YAML + "bool", _YAML + "int", _YAML + "float"}
_NUMBERS = {_YAML + "int", _YAML + "float"}
#: tags a user may write explicitly (`!!str 10`); anything else (`!!python/object`,
#: `!!binary`, `!local`) is refused with its line
_EXPLICIT_SCALAR = _CONSTRUCTED | {_STR}
_EXPLICIT_CONTAINER = {yaml.MappingStartEvent: _YAML + "map", yaml.SequenceStartEvent: _YAML + "seq"}


def syntax_issue(file: str, exc: yaml.MarkedYAMLError) -> Issue:
    """A YAML syntax error at the line where the reader must look, with a column.

    libyaml notices an unclosed `{` or `[` only at the next token, often on the next
    line; its context mark is where the unclosed collection began (`while parsing a
    flow mapping`), which is where the fix goes.  So: the context's line and column
    when there is one, and the line and column where the parser gave up beside it."""
    problem = exc.problem or str(exc)
    at, where = exc.problem_mark, exc.context_mark
    if where is not None and exc.context and "flow" in exc.context and at is not None \
            and (where.line, where.column) != (at.line, at.column):
        opened = exc.context.replace("while parsing a ", "")
        message = (f"column {where.column + 1}: YAML syntax error: this {opened} is not closed: {problem} "
                   f"(noticed at line {at.line + 1}, column {at.column + 1})")
        return Issue(file, where.line + 1, "", message)
    mark = at or where
    column = f"column {mark.column + 1}: " if mark else ""
    context = f" ({exc.context} that starts at line {where.line + 1})" if where is not None and exc.context \
        and at is not None and where.line != at.line else ""
    return Issue(file, mark.line + 1 if mark else None, "", f"{column}YAML syntax error: {problem}{context}")



class _Refused(Exception):
    """A limit was crossed: stop at once, with the one issue that says which."""


class _Frame:
    """A mapping or sequence being built.  `key` is the pending key of a mapping:
    _NO_KEY while a key is expected, _BAD when the coming value is to be dropped
    (its key was refused), _COMPLEX while a refused non-scalar key is built."""

    __slots__ = ("value", "path", "anchor", "start", "key", "is_map")

    def __init__(self, value: dict[str, Any] | list[Any], path: Path | None, anchor: str | None, start: int) -> None:
        self.value = value
        self.path = path
        self.anchor = anchor
        self.start = start
        self.key: Any = _NO_KEY
        self.is_map = isinstance(value, dict)


_NO_KEY, _BAD, _COMPLEX = object(), object(), object()


class _Builder:
    """One document's worth of events turned into data, lines and issues."""

    def __init__(self, file: str) -> None:
        self.doc = Document(file=file, data=None)
        self.values = 0  # values made so far, aliases expanded
        self.alias_values = 0  # of which by expanding aliases
        # anchor name -> its frame while open (an alias to it is recursive), then (path, value, size)
        self.anchors: dict[str, _Frame | tuple[Path | None, Any, int]] = {}
        self.stack: list[_Frame] = []
        self._plain: dict[str, Any] = {}  # plain scalar text -> its value, resolved once
        self.constructor = yaml.constructor.SafeConstructor()

    def build(self, text: str) -> Document:
        parser = _Loader(text)
        try:
            self._run(parser)
        except _Refused as exc:
            raise ValidationError([*self.doc.issues, exc.args[0]]) from None
        except yaml.MarkedYAMLError as exc:
            raise ValidationError([*self.doc.issues, syntax_issue(self.doc.file, exc)]) from None
        except yaml.YAMLError as exc:
            raise ValidationError([*self.doc.issues, Issue(self.doc.file, None, "", f"YAML error: {exc}")]) from None
        finally:
            parser.dispose()
        return self.doc

    # -- the event loop -----------------------------------------------------------------------
    def _run(self, parser: Any) -> None:
        # the scalar branch is the hot path: it is inlined, and a plain scalar is resolved
        # once per distinct text (2000 nodes, 5000 links: 0.7 s to compose and walk
        # PyYAML's graph before, 0.2-0.4 s now on this shared machine)
        documents = 0
        stack = self.stack
        lines = self.doc.lines
        plain = self._plain
        get_event = parser.get_event
        max_values, max_chars = loader.MAX_VALUES, loader.MAX_SCALAR_CHARS
        while True:
            event = get_event()
            kind = type(event)
            if kind is yaml.ScalarEvent:
                parent = stack[-1] if stack else None
                if parent is None:
                    path: Path | None = ()
                elif parent.is_map:
                    if parent.key is _NO_KEY:
                        text = event.value
                        if event.tag is None and event.anchor is None and text != "<<" \
                                and len(text) <= max_chars and text not in parent.value:
                            # a plain new key, the common case of _key inlined: counted, no line of its own
                            self.values += 1
                            if self.values > max_values:
                                raise _Refused(self._make_issue(event, None,
                                                                f"the file holds more than {max_values} values"))
                            parent.key = text
                        else:
                            self._key(event)
                        continue
                    key = parent.key
                    path = None if parent.path is None or key.__class__ is not str else parent.path + (key,)
                else:
                    path = None if parent.path is None else parent.path + (len(parent.value),)
                self.values += 1
                if self.values > max_values:
                    raise _Refused(self._make_issue(event, path, f"the file holds more than {max_values} values"))
                if path is not None:
                    lines[path] = event.start_mark.line + 1
                if event.tag is None and event.implicit[0] and event.value in plain:
                    value = plain[event.value]
                else:
                    value = self._scalar(event, path)
                if event.anchor is not None:
                    self.anchors[event.anchor] = (path, value, 1)
                if parent is None:
                    self.doc.data = value
                elif not parent.is_map:
                    parent.value.append(value)  # type: ignore[union-attr]
                elif key.__class__ is str:  # _attach's common case, inlined
                    parent.value[key] = value  # type: ignore[call-overload]
                    parent.key = _NO_KEY
                else:
                    self._attach(value)
            elif kind is yaml.MappingStartEvent or kind is yaml.SequenceStartEvent:
                self._start(event, {} if kind is yaml.MappingStartEvent else [])
            elif kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
                frame = stack.pop()
                if frame.anchor is not None and self.anchors.get(frame.anchor) is frame:
                    self.anchors[frame.anchor] = (frame.path, frame.value, self.values - frame.start)
                self._attach(frame.value)
            elif kind is yaml.AliasEvent:
                self._alias(event)
            elif kind is yaml.DocumentStartEvent:
                documents += 1
                if documents > 1:
                    self._issue(event, None, "YAML syntax error: a topology file is one YAML document; a second one "
                                       "starts here")
                    return
            elif kind is yaml.StreamEndEvent:
                return

    def _start(self, event: Any, value: dict[str, Any] | list[Any]) -> None:
        parent = self.stack[-1] if self.stack else None
        if parent is not None and parent.key is _NO_KEY and isinstance(parent.value, dict):
            self._issue(event, parent.path, "keys must be plain names, not a mapping or a list")
            parent.key = _COMPLEX
            path = None
        else:
            path = self._child_path()
        if len(self.stack) >= loader.MAX_DEPTH:
            raise _Refused(self._make_issue(event, None, f"nesting is deeper than {loader.MAX_DEPTH} levels"))
        start = self.values
        self._count(event, path)
        wanted = _EXPLICIT_CONTAINER[type(event)]
        if event.tag not in (None, "!", wanted):
            self._issue(event, path, f"YAML tag {_short(event.tag)} is not supported")
        frame = _Frame(value, path, event.anchor, start)
        if event.anchor is not None:
            self.anchors[event.anchor] = frame
        self.stack.append(frame)

    def _key(self, event: Any) -> None:
        """A scalar in key position: the key is its text as written."""
        parent = self.stack[-1]
        text: str = event.value
        self._count(event, None)
        if event.anchor is not None:
            self.anchors[event.anchor] = (None, text, 1)
        if event.tag not in (None, "!", _STR):
            self._issue(event, parent.path, f"keys must be plain names, not a value tagged {_short(event.tag)}")
            parent.key = _BAD
        elif event.implicit[0] and text == "<<":
            self._issue(event, parent.path, "YAML merge keys (<<) are not supported")
            parent.key = _BAD
        elif len(text) > loader.MAX_SCALAR_CHARS:
            self._issue(event, parent.path, f"a key of {len(text)} characters is too long")
            parent.key = _BAD
        elif text in parent.value:
            self._issue(event, None if parent.path is None else parent.path + (text,), "duplicate key")
            parent.key = _BAD
        else:
            parent.key = text

    def _scalar(self, event: Any, path: Path | None) -> Any:
        text: str = event.value
        if len(text) > loader.MAX_SCALAR_CHARS:
            self._issue(event, path, f"a value of {len(text)} characters is too long (at most {loader.MAX_SCALAR_CHARS})")
            return None
        tag = event.tag
        if tag is None and not event.implicit[0]:
            return text  # quoted or block: a string
        if tag is None and text and text[0] not in _IMPLICIT_FIRST:
            tag = _STR  # no YAML 1.1 type starts with this character: skip the resolver's regexes
        elif tag is None and _DECIMAL.match(text):
            number = self._plain[text] = int(text)
            return number
        elif tag is None or tag == "!":
            tag = _RESOLVER.resolve(yaml.ScalarNode, text, event.implicit)
        elif tag not in _EXPLICIT_SCALAR:
            self._issue(event, path, f"YAML tag {_short(tag)} is not supported")
            return None
        if tag not in _CONSTRUCTED:
            value: Any = text
        elif tag in _NUMBERS and len(text) > loader.MAX_NUMBER_CHARS:
            self._issue(event, path, f"a number of {len(text)} characters is too long")
            return None
        else:
            node = yaml.ScalarNode(tag, text, event.start_mark, event.end_mark)
            try:
                value = self.constructor.yaml_constructors[tag](self.constructor, node)
            except (yaml.YAMLError, ValueError, OverflowError, KeyError, IndexError):
                self._issue(event, path, f"{text!r} is not a valid {_short(tag)[2:]}")
                return None
        if event.tag is None and event.implicit[0]:
            self._plain[text] = value  # immutable: str, int, float, bool or None
        return value

    def _alias(self, event: Any) -> None:
        if self.stack and self.stack[-1].key is _NO_KEY and isinstance(self.stack[-1].value, dict):
            self._issue(event, self.stack[-1].path, "keys must be plain names, not an alias")
            self.stack[-1].key = _BAD
            return
        path = self._child_path()
        target = self.anchors.get(event.anchor)
        if target is None:
            self._issue(event, path, f"YAML syntax error: alias *{event.anchor} refers to no anchor &{event.anchor} "
                                    "before it")
            self._count(event, path)
            self._attach(None)
            return
        if isinstance(target, _Frame):
            raise _Refused(self._make_issue(event, path, f"alias *{event.anchor} is inside the value it refers to "
                                                         "(a recursive structure)"))
        source, value, size = target
        if self.alias_values + size > loader.MAX_ALIAS_VALUES:
            raise _Refused(self._make_issue(
                event, path, f"aliases would add {self.alias_values + size} values by here, more than the "
                             f"{loader.MAX_ALIAS_VALUES} allowed (an alias bomb?)"))
        self.alias_values += size
        self.values += size - 1
        self._count(event, path)
        self._attach(self._copy(value, source, path))

    # -- helpers ------------------------------------------------------------------------------
    def _child_path(self) -> Path | None:
        """The path of the next value: None inside something that will be dropped."""
        if not self.stack:
            return ()
        parent = self.stack[-1]
        if parent.path is None:
            return None
        if isinstance(parent.value, list):
            return parent.path + (len(parent.value),)
        if isinstance(parent.key, str):
            return parent.path + (parent.key,)
        return None

    def _count(self, event: Any, path: Path | None) -> None:
        self.values += 1
        if self.values > loader.MAX_VALUES:
            raise _Refused(self._make_issue(event, path, f"the file holds more than {loader.MAX_VALUES} values"))
        if path is not None:
            self.doc.lines[path] = event.start_mark.line + 1

    def _attach(self, value: Any) -> None:
        if not self.stack:
            self.doc.data = value
            return
        parent = self.stack[-1]
        if isinstance(parent.value, list):
            parent.value.append(value)
        elif parent.key is _COMPLEX:
            parent.key = _BAD
        elif parent.key is _BAD:
            parent.key = _NO_KEY
        else:
            parent.value[parent.key] = value
            parent.key = _NO_KEY

    def _copy(self, value: Any, source: Path | None, target: Path | None) -> Any:
        """A fresh copy of an anchored value for an alias, its lines copied from the anchor's.
        Iterative: an anchor may be nested MAX_DEPTH deep."""
        if not isinstance(value, (dict, list)):
            return value
        lines = self.doc.lines
        top: Any = type(value)()
        todo: list[tuple[Any, Path | None, Path | None, Any]] = [(value, source, target, top)]
        while todo:
            src, spath, tpath, out = todo.pop()
            for k, child in (src.items() if isinstance(src, dict) else enumerate(src)):
                cs = None if spath is None else spath + (k,)
                ct = None if tpath is None else tpath + (k,)
                if cs is not None and ct is not None and cs in lines:
                    lines[ct] = lines[cs]
                new = type(child)() if isinstance(child, (dict, list)) else child
                if isinstance(child, (dict, list)):
                    todo.append((child, cs, ct, new))
                if isinstance(out, dict):
                    out[k] = new
                else:
                    out.append(new)
        return top

    def _make_issue(self, event: Any, path: Path | None, message: str) -> Issue:
        return Issue(self.doc.file, event.start_mark.line + 1, format_path(path or ()), message)

    def _issue(self, event: Any, path: Path | None, message: str) -> None:
        if len(self.doc.issues) < loader.MAX_ISSUES:
            self.doc.issues.append(self._make_issue(event, path, message))
        else:
            self.doc.dropped += 1


def _short(tag: str) -> str:
    return "!!" + tag[len(_YAML):] if tag.startswith(_YAML) else tag


def build(text: str, file: str) -> Document:
    """Parse YAML text checked by loader.loads (size, characters) into a Document;
    ValidationError (exit 2) on a syntax error or a hostile file."""
    return _Builder(file).build(text)
