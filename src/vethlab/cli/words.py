"""Small words of human output: plurals, and the order people expect (h2 before h10)."""

from __future__ import annotations

import re

_NOUNS = {"hosts": "hosts file", "forwarding": "forwarding setting", "exec": "exec command"}
_DIGITS = re.compile(r"(\d+)")


def plural(count: int, noun: str) -> str:
    """`1 link`, `2 links`, `3 addresses`; an action kind becomes its noun first."""
    noun = _NOUNS.get(noun, noun)
    if count == 1:
        return f"{count} {noun}"
    return f"{count} {noun}{'es' if noun.endswith(('s', 'x', 'sh', 'ch')) else 's'}"


def natural_key(text: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that orders the digits in names by value: h1, h2, h10, h100."""
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in _DIGITS.split(text) if part)
