"""Split a command string into words exactly as `shlex.split` does, in linear time.

`shlex.split` grows each word one character at a time through an attribute
(`self.token += c`), which CPython cannot do in place: a 1 MB word took 20 s to
split (measured; quadratic).  This splitter matches whole runs with one regular
expression instead, and is checked against `shlex.split` on random inputs
(tests/unit/test_hostile_files.py).  The rules it reproduces (POSIX mode,
whitespace_split, no comments):

- words are separated by runs of space, tab, CR, LF;
- '…' keeps everything literally; "…" keeps everything but `\\"` and `\\\\`, which
  lose their backslash; outside quotes `\\x` is x;
- quotes join with their neighbours into one word, and `''` alone is an empty word;
- an unclosed quote is "No closing quotation", a trailing backslash "No escaped character".
"""

from __future__ import annotations

import re

_PART = re.compile(r"""
    (?P<space>[ \t\r\n]+)
  | (?P<bare>[^ \t\r\n'"\\]+)
  | '(?P<single>[^']*)'
  | "(?P<double>[^"\\]*(?:\\[\s\S][^"\\]*)*)"
  | \\(?P<escaped>[\s\S])
""", re.VERBOSE)
_IN_DOUBLE = re.compile(r'\\([\s\S])')


def _unescape_double(match: re.Match[str]) -> str:
    char = match.group(1)
    return char if char in '"\\' else match.group(0)


def split(text: str) -> list[str]:
    """shlex.split(text), linear in len(text); ValueError with shlex's messages."""
    words: list[str] = []
    current: list[str] = []
    in_word = False
    pos, end = 0, len(text)
    while pos < end:
        m = _PART.match(text, pos)
        if m is None:  # an opening quote without its closing one, or a final lone backslash
            if text[pos] == "\\":
                raise ValueError("No escaped character")
            if text[pos] == '"' and re.fullmatch(r'"[^"\\]*(?:\\[\s\S][^"\\]*)*\\', text[pos:]):
                raise ValueError("No escaped character")
            raise ValueError("No closing quotation")
        kind = m.lastgroup
        if kind == "space":
            if in_word:
                words.append("".join(current))
                current, in_word = [], False
        else:
            in_word = True
            if kind == "double":
                current.append(_IN_DOUBLE.sub(_unescape_double, m.group("double")))
            else:
                current.append(m.group(kind or ""))
        pos = m.end()
    if in_word:
        words.append("".join(current))
    return words
