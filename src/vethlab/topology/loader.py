"""YAML to plain data, remembering the line of every value, and refusing hostile files.

Two parsers give the same Document (data, the line of every path, the issues):
topology/quickyaml.py reads the plain block-and-flow YAML big generated labs are
written in (a 1000-link chain in a third of the time, and without importing
PyYAML), and gives up — it never reports anything — on whatever else it meets;
topology/yamlevents.py then reads the file with libyaml's events, and is what
refuses hostile files.  Either way a file is refused (exit 2, with the line) when:

- larger than MAX_FILE_BYTES, or holding a character YAML forbids (control
  characters, NUL, lone surrogates) or bytes that are not UTF-8 (a UTF-8 byte
  order mark is fine: YAML allows it, and Windows editors write it);
- nested deeper than MAX_DEPTH (the deepest real path, networks.N.members.M.publish[i],
  is 6 levels);
- more than MAX_VALUES values, or more than MAX_ALIAS_VALUES of them made by
  expanding aliases (an alias to a node that contains it is refused outright);
- a scalar longer than MAX_SCALAR_CHARS, or a number longer than MAX_NUMBER_CHARS
  (Python refuses int() of more than 4300 digits; `0x…` and `1:2:3…` are not
  limited there but cost quadratic time).

Keys are kept as written: YAML 1.1 reads `true:`, `on:`, `null:`, `0x10:` or
`1_0:` as a boolean, null or number, and the old loader silently renamed them
(`true` became node `True`, `0x10` became `16`); a name is text, so the text is
the key.  Tags other than the core ones (`!!str`, `!!int`, …) are refused with
their line, merge keys (`<<`) too, and duplicate keys, which YAML lets the last
one win, are errors.
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import Issue, ValidationError
from .files import MAX_FILE_BYTES, read

Path = tuple[str | int, ...]

#: Limits of a topology file.  A 2000-node, 5000-link lab is 0.45 MB and 38 600
#: values, so each limit is far above real use.  MAX_VALUES bounds time and memory:
#: a file that stops at it costs ~0.5 s of CPU and ~100 MB peak RSS (measured; 1M
#: values took 4-6 s and 250 MB, so not 1M).  MAX_ALIAS_VALUES bounds what a few
#: bytes may ask for; MAX_DEPTH also bounds each path tuple, hence memory per value.
MAX_DEPTH = 16
MAX_VALUES = 200_000
MAX_ALIAS_VALUES = 100_000
MAX_SCALAR_CHARS = 64 * 1024
MAX_NUMBER_CHARS = 100
#: problems reported per file; the rest are counted.  A 200 000-value list of wrong
#: things took 3 s just to describe, line by line (measured), and nobody reads that far.
MAX_ISSUES = 1000
#: what YAML 1.1 allows in a stream (libyaml's reader check), as a class to search for its
#: complement; compiled for the first file that is not ASCII (2 ms of every start-up before)
_BAD_CHAR_CLASS = "[^\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
#: the same, for ASCII text: the control characters but tab, LF and CR, and DEL
_BAD_ASCII = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def format_path(path: Path) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


class Document:
    """A parsed topology file: its data, the line of each path, and load problems.
    (A plain class: a dataclass here made `validate` import dataclasses, ~5 ms.)"""

    __slots__ = ("file", "data", "lines", "issues", "dropped")

    def __init__(self, file: str, data: Any, lines: dict[Path, int] | None = None,
                 issues: list[Issue] | None = None, dropped: int = 0) -> None:
        self.file = file
        self.data = data
        self.lines: dict[Path, int] = {} if lines is None else lines
        self.issues: list[Issue] = [] if issues is None else issues
        self.dropped = dropped  # problems found beyond MAX_ISSUES

    def __repr__(self) -> str:
        return f"Document(file={self.file!r}, data={self.data!r}, lines={self.lines!r}, issues={self.issues!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Document) and (self.file, self.data, self.lines, self.issues, self.dropped) == \
            (other.file, other.data, other.lines, other.issues, other.dropped)

    __hash__ = None  # type: ignore[assignment]  # mutable, as the dataclass was

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


def loads(text: str, file: str = "<string>") -> Document:
    """Parse YAML text.  Raises ValidationError (exit 2) on a syntax error or a hostile file."""
    if len(text) > MAX_FILE_BYTES:
        raise ValidationError([Issue(file, _line_at(text, MAX_FILE_BYTES), "", _too_big())])
    bad = (_BAD_ASCII if text.isascii() else re.compile(_BAD_CHAR_CLASS)).search(text)
    if bad:
        line = _line_at(text, bad.start())
        column = bad.start() - max(text.rfind("\n", 0, bad.start()), text.rfind("\r", 0, bad.start()))
        what = "control character" if ord(bad.group()) < 0xA0 else "character"
        raise ValidationError([Issue(file, line, "", f"{what} U+{ord(bad.group()):04X} at column {column} is not "
                                                     "allowed in a YAML file")])
    from .quickyaml import parse

    doc = parse(text, file)
    if doc is not None:
        return doc
    from .yamlevents import build

    return build(text, file)


def load(path: str) -> Document:
    """Read and parse a topology file; a missing, unreadable, oversized or non-UTF-8 file is exit 2."""
    return load_bytes(read(path), path)


def load_bytes(raw: bytes, path: str) -> Document:
    """Parse the bytes files.read returned; an oversized or non-UTF-8 file is exit 2."""
    if len(raw) > MAX_FILE_BYTES:
        raise ValidationError([Issue(path, _line_at(raw, MAX_FILE_BYTES), "", _too_big())])
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ValidationError([Issue(path, 1, "", "the file is UTF-16 or UTF-32 text; save it as UTF-8")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = _line_at(raw, exc.start)
        column = exc.start - max(raw.rfind(b"\n", 0, exc.start), raw.rfind(b"\r", 0, exc.start))
        raise ValidationError([Issue(path, line, "", f"byte 0x{raw[exc.start]:02x} at column {column} is not "
                                                     "UTF-8 text; topology files are read as UTF-8")]) from None
    return loads(text, path)


def _line_at(text: Any, pos: int) -> int:
    """The line of offset `pos` in str or bytes, counting LF, CR LF and lone CR as libyaml does."""
    nl, cr, crlf = ("\n", "\r", "\r\n") if isinstance(text, str) else (b"\n", b"\r", b"\r\n")
    return int(text.count(nl, 0, pos) + text.count(cr, 0, pos) - text.count(crlf, 0, pos)) + 1


def _too_big() -> str:
    return f"the file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB, the most a topology file may be"
