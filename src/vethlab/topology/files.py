"""Reading a topology file's bytes, bounded: shared by the loader and the cache,
and importing no YAML (a cache hit never needs PyYAML)."""

from __future__ import annotations

from ..errors import Issue, ValidationError

#: the largest topology file (loader.py explains the limits)
MAX_FILE_BYTES = 16 * 1024 * 1024


def read(path: str) -> bytes:
    """The bytes of a topology file (at most one byte over the limit, which the
    loader then refuses with the line that crosses it); a missing or unreadable
    file is exit 2."""
    try:
        with open(path, "rb") as fh:
            return fh.read(MAX_FILE_BYTES + 1)  # never more: /dev/zero or a 10 GB file stop here
    except OSError as exc:
        raise ValidationError([Issue(path, None, "", f"cannot read file: {exc.strerror}")]) from None
