"""The quick path of topology/loader.py: the plain YAML big labs are written in,
read line by line, without PyYAML.

A 1000-node generated lab is 2000 lines like `  n7: {}` and
`  - {endpoints: [n7:r, n8:l], addresses: [10.0.0.29/30, 10.0.0.30/30]}`.  libyaml
reads it in ~16 ms of events (a Python object and two marks per token), and our
event loop (topology/yamlevents.py) takes as long again; importing PyYAML costs
~10 ms more.  Here one regular expression per line takes such a file in about a
third of that.

This is a subset, never a second YAML: it takes a file only when every line is a
comment, blank, or one of `KEY: VALUE`, `KEY:` (a block below), `- VALUE`,
`- KEY: VALUE`, `- KEY:`, indented by spaces, where a VALUE is a plain scalar or a
flow `[...]`/`{...}` of them closed on the same line, and a plain scalar is made
of `A-Za-z0-9_./:@+=-` (and single spaces between words), starts with
`A-Za-z0-9_/` and ends with no `:`.  It gives up (None: libyaml reads the file)
on anything else: quotes, anchors, aliases, tags, block scalars, documents
markers, tabs, multi-line values, an empty value, a duplicate key, any text
whose YAML 1.1 type it cannot tell for sure, a count or depth near the limits,
a line longer than MAX_LINE (1024: libyaml's longest key), more lines than MAX_LINES.
So it never reports a problem: every issue and refusal is libyaml's path's.
What it builds is the same Document, line for line (tests/unit/test_quickyaml.py
compares the two on generated files).
"""

from __future__ import annotations

import re
from typing import Any

from . import loader
from .loader import Document, Path

#: first characters of the YAML 1.1 implicit types (bool, float, int, merge, null,
#: timestamp, value; yaml/resolver.py), and the decimal integers among them
IMPLICIT_FIRST = frozenset("yYnNtTfFoO-+0123456789.<~=")
DECIMAL = re.compile(r"(?:0|[1-9][0-9]{0,17})\Z")
#: the plain words YAML 1.1 resolves (yaml/resolver.py's bool and null, as
#: SafeConstructor builds them); any other word starting with a letter is text
_WORDS: dict[str, Any] = {
    **{w: True for w in ("yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON")},
    **{w: False for w in ("no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF")},
    **{w: None for w in ("null", "Null", "NULL")},
}
_CHUNK = r"[A-Za-z0-9_/][A-Za-z0-9_./:@+=-]*(?<!:)"  # (?<!:): a colon does not end it
_SCALAR = rf"{_CHUNK}(?: +{_CHUNK})*"
#: a block line: indentation, `- ` (then maybe more indentation), `KEY:` and what follows
_LINE = re.compile(rf"( *)(- +)?(?:({_SCALAR}):(?: +|\Z))?(.*)\Z")
_PLAIN = re.compile(rf"{_SCALAR}\Z")
#: a flat flow mapping as YAML writers write it: `{k: v, k: [a, b], k: []}`, values plain
#: scalars or flat sequences of them, one space after each `,` and `:`, none inside brackets
#: (each scalar written once in the pattern, a separator then a lookahead: compiled in
#: a third of the time of the pattern spelled out, which every run pays at import)
_FLAT_SEQ = rf"\[(?:{_SCALAR}(?:, (?!\])|(?=\])))*\]"
_FLAT_MAP = re.compile(rf"\{{(?:{_SCALAR}: (?:{_SCALAR}|{_FLAT_SEQ})(?:, (?!\}})|(?=\}})))+\}}\Z")
#: `KEY: VALUE` in a text _FLAT_MAP matched: (key, scalar value or "", the inside of `[...]`)
_PAIR = re.compile(rf"({_SCALAR}): (?:({_SCALAR})|\[([^\]]*)\])")
#: one token of a flow collection; the last group catches anything else
_TOKEN = re.compile(rf" *(?:({_SCALAR})|([\[\]{{}},])|(: )|(.))")
#: characters that end or break lines for YAML besides \n, a byte order mark, tabs
_ODD = ("\t", "\r", "\x85", "\u2028", "\u2029", "\ufeff")


class _GiveUp(Exception):
    """Not the subset: libyaml reads this file."""


#: longer lines are libyaml's: it refuses a key whose text runs more than 1024
#: characters before its `:` (a syntax error, exit 2), which a line of at most 1024
#: characters cannot hold; and a flow line's tokens are listed at once (findall), so a
#: 16 MiB one-line file must not reach that list.  A big lab's lines are ~80 characters.
MAX_LINE = 1024
#: and so are files of more lines (a 2000-node, 5000-link lab is ~7000): the lines are
#: split at once, and 8 million two-byte lines would be ~500 MB of strings
MAX_LINES = 1_000_000
_UNSURE = object()
#: what a flow collection's reader expects next
_VALUE, _KEY, _COLON, _SEP, _END = object(), object(), object(), object(), object()


def _value(text: str) -> Any:
    """The value YAML 1.1 gives plain scalar `text`, or _UNSURE."""
    first = text[0]
    if first not in IMPLICIT_FIRST:
        return text
    if DECIMAL.match(text):
        return int(text)
    if first.isalpha():  # only bool and null words start with a letter
        return _WORDS.get(text, text)
    if "/" in text:  # no implicit type has a slash
        return text
    if ":" not in text and text.count(".") > 1:  # floats have one dot; times, sexagesimals a colon
        return text
    return _UNSURE


def _words(text: str) -> list[str] | None:
    """The plain scalars of `[a, b, c]` written with one space after each comma, or
    None when `text` is anything else."""
    if text[-1] != "]":
        return None
    if text == "[]":
        return []
    words = text[1:-1].split(", ")
    return words if all(_PLAIN.match(word) for word in words) else None


def _closed(stack: list[tuple[Any, Path]], container: Any, cpath: Path) -> tuple[Any, Path, object]:
    """A flow collection just closed: the one it was in, with what may come next
    (a separator there; the end when it was the outermost)."""
    stack.pop()
    if stack:
        container, cpath = stack[-1]
        return container, cpath, _SEP
    return container, cpath, _END


class _Block:
    """A block mapping or sequence being read: its indentation, and for a mapping
    the key whose value is the block below (`KEY:` then nothing on its line)."""

    __slots__ = ("indent", "value", "path", "pending")

    def __init__(self, indent: int, value: dict[str, Any] | list[Any], path: Path) -> None:
        self.indent = indent
        self.value = value
        self.path = path
        self.pending: str | None = None


class _Reader:
    def __init__(self) -> None:
        self.lines: dict[Path, int] = {}
        self.count = 0
        self.max_values = loader.MAX_VALUES - 1
        self.max_depth = loader.MAX_DEPTH - 1
        self.max_chars = loader.MAX_SCALAR_CHARS

    def counted(self, n: int = 1) -> None:
        self.count += n
        if self.count > self.max_values:
            raise _GiveUp

    def scalar(self, text: str) -> Any:
        if len(text) > self.max_chars:
            raise _GiveUp
        value = _value(text)
        if value is _UNSURE:
            raise _GiveUp
        return value

    def inline(self, rest: str, path: Path, number: int, depth: int) -> Any:
        """A value written on one line: a plain scalar or a flow collection."""
        lines = self.lines
        if rest[0] not in "[{":
            if not _PLAIN.match(rest):
                raise _GiveUp
            self.counted()
            lines[path] = number
            return self.scalar(rest)
        if depth + 2 < self.max_depth:
            flat = self.flat(rest, path, number)
            if flat is not None:
                return flat
        # the general loop: locals only, the common cases first
        count, max_values, max_chars = self.count, self.max_values, self.max_chars
        stack: list[tuple[Any, Path]] = []  # the flow collections open here, with their paths
        container: Any = None
        cpath = path
        key = ""
        top: Any = None
        # what may come next: VALUE (or a closing bracket when `first`), KEY, COLON, SEP, END
        expect = _VALUE
        first = False
        for text, punct, colon, bad in _TOKEN.findall(rest):
            if bad:
                raise _GiveUp
            if expect is _SEP:
                if punct == ",":
                    expect, first = (_KEY if type(container) is dict else _VALUE), False
                    continue
                if punct == ("]" if type(container) is list else "}"):
                    container, cpath, expect = _closed(stack, container, cpath)
                    continue
                raise _GiveUp
            if expect is _KEY:
                if text:
                    if text in container or len(text) > max_chars:
                        raise _GiveUp
                    count += 1
                    key = text
                    expect = _COLON
                    continue
                if punct == "}" and first:
                    container, cpath, expect = _closed(stack, container, cpath)
                    continue
                raise _GiveUp
            if expect is _COLON:
                if not colon:
                    raise _GiveUp
                expect = _VALUE
                continue
            if expect is not _VALUE:  # END: something after the collection closed
                raise _GiveUp
            if punct == "]" and first and type(container) is list:
                container, cpath, expect = _closed(stack, container, cpath)
                continue
            if container is None:
                vpath = path
            elif type(container) is dict:
                vpath = cpath + (key,)
            else:
                vpath = cpath + (len(container),)
            count += 1
            if count > max_values:
                raise _GiveUp
            lines[vpath] = number
            if text:
                value: Any = self.scalar(text)
                expect = _SEP
            elif punct == "[" or punct == "{":
                if depth + len(stack) >= self.max_depth:
                    raise _GiveUp
                value = [] if punct == "[" else {}
                expect, first = (_VALUE if punct == "[" else _KEY), True
            else:
                raise _GiveUp
            if container is None:
                top = value
            elif type(container) is dict:
                container[key] = value
            else:
                container.append(value)
            if not text:
                stack.append((value, vpath))
                container, cpath = value, vpath
        if expect is not _END:
            raise _GiveUp
        self.count = count
        return top

    def flat(self, rest: str, path: Path, number: int) -> Any:
        """The flow collections most lines of a big lab hold, without the token loop,
        when written as YAML writers write them: `{}`, `[a, b]`, `{k: v, k: [a, b]}`
        (values plain scalars or flat sequences of them), one space after each `,`
        and `:`, none inside the brackets.  None: not one of these (the general loop
        reads it)."""
        lines = self.lines
        if rest == "{}" or rest == "[]":
            self.counted()
            lines[path] = number
            return {} if rest == "{}" else []
        if rest[0] == "[":
            words = _words(rest)
            if words is None:
                return None
            self.counted()
            lines[path] = number
            return self.items(words, path, number)
        # one match checks the whole line, so its pairs and words need no check of their own
        if _FLAT_MAP.match(rest) is None:
            return None
        max_chars = self.max_chars
        count = self.count + 1
        lines[path] = number
        mapping: dict[str, Any] = {}
        for key, text, inside in _PAIR.findall(rest):
            if key in mapping or len(key) > max_chars:
                raise _GiveUp
            count += 2
            vpath = path + (key,)
            lines[vpath] = number
            if text:
                mapping[key] = self.scalar(text)
                continue
            items: list[Any] = []
            if inside:
                for i, word in enumerate(inside.split(", ")):
                    if len(word) > max_chars:
                        raise _GiveUp
                    # no implicit type has a slash (addresses, the bulk of a big lab)
                    item = word if word[0] not in IMPLICIT_FIRST or "/" in word else _value(word)
                    if item is _UNSURE:
                        raise _GiveUp
                    lines[vpath + (i,)] = number
                    items.append(item)
                count += len(items)
            mapping[key] = items
        if count > self.max_values:
            raise _GiveUp
        self.count = count
        return mapping

    def items(self, words: list[str], path: Path, number: int) -> list[Any]:
        """The values of a flat flow sequence's words (from _words)."""
        self.counted(len(words))
        lines = self.lines
        out = []
        for i, word in enumerate(words):
            lines[path + (i,)] = number
            out.append(self.scalar(word))
        return out

    def read(self, text: str) -> Any:
        root: _Block | None = None
        blocks: list[_Block] = []
        lines = self.lines
        for number, line in enumerate(text.split("\n"), 1):
            if len(line) > MAX_LINE:
                raise _GiveUp
            hash_at = line.find("#")
            if hash_at >= 0:
                if hash_at and line[hash_at - 1] != " ":
                    raise _GiveUp
                line = line[:hash_at]
            line = line.rstrip(" ")
            if not line:
                continue
            m = _LINE.match(line)
            if m is None:
                raise _GiveUp
            indent_text, dash, key, rest = m.groups()
            indent = len(indent_text)
            if root is None:  # the first line: the top-level mapping, at column 0
                if indent or dash or key is None:
                    raise _GiveUp
                root = _Block(0, {}, ())
                blocks.append(root)
                self.counted()
                lines[()] = number
            else:
                # close the blocks this line is left of
                while blocks[-1].indent > indent:
                    if blocks[-1].pending is not None:
                        raise _GiveUp  # `KEY:` and nothing below it: null, libyaml's business
                    blocks.pop()
                    if not blocks:
                        raise _GiveUp
                top = blocks[-1]
                if top.pending is not None:
                    # the value of `KEY:` above: a block further right, or a sequence at the key's column
                    if not (indent > top.indent or (dash and indent == top.indent)):
                        raise _GiveUp
                    if len(blocks) >= self.max_depth:
                        raise _GiveUp
                    path = top.path + (top.pending,)
                    block = _Block(indent, [] if dash else {}, path)
                    top.value[top.pending] = block.value  # type: ignore[call-overload]
                    top.pending = None
                    self.counted()
                    lines[path] = number
                    blocks.append(block)
                elif type(top.value) is list and not dash and indent == top.indent:
                    blocks.pop()  # a sequence at its key's column ends at the next key
                    if not blocks or blocks[-1].indent != indent:
                        raise _GiveUp
                elif top.indent != indent:
                    raise _GiveUp
            block = blocks[-1]
            if dash:
                if type(block.value) is not list:
                    raise _GiveUp
                path = block.path + (len(block.value),)
                if key is None:  # `- VALUE`
                    if not rest:
                        raise _GiveUp
                    block.value.append(self.inline(rest, path, number, len(blocks)))
                    continue
                # `- KEY: ...`: a mapping starts at the key's column
                if len(blocks) >= self.max_depth:
                    raise _GiveUp
                inner = _Block(indent + len(dash), {}, path)
                block.value.append(inner.value)
                self.counted()
                lines[path] = number
                blocks.append(inner)
                block = inner
            elif key is None or type(block.value) is not dict:
                raise _GiveUp
            mapping: dict[str, Any] = block.value  # type: ignore[assignment]
            if key in mapping or len(key) > self.max_chars:
                raise _GiveUp
            self.counted()
            if rest == "{}" and len(blocks) < self.max_depth:  # `n7: {}`, half the lines of a big lab
                self.counted()
                lines[block.path + (key,)] = number
                mapping[key] = {}
            elif rest:
                mapping[key] = self.inline(rest, block.path + (key,), number, len(blocks))
            else:
                mapping[key] = None  # a placeholder, filled by the block below
                block.pending = key
        if root is None or blocks[-1].pending is not None:
            raise _GiveUp
        return root.value


def parse(text: str, file: str) -> Document | None:
    """The Document of `text` if it is in the subset, else None (read it with libyaml)."""
    if any(odd in text for odd in _ODD) or text.count("\n") > MAX_LINES:
        return None
    reader = _Reader()
    try:
        data = reader.read(text)
    except (_GiveUp, RecursionError):
        return None
    return Document(file=file, data=data, lines=reader.lines)
