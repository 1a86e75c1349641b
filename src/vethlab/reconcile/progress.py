"""Progress of long `up` and `down` runs: one line on stderr, redrawn in place.

    vethlab up star: veth pairs, 2001/9000 changes
    vethlab down star: waiting for 1000 interfaces to vanish, 412/1000 gone

Shown only where a person watches (stderr is a terminal), never with --json, and
only for labs of PROGRESS_MIN_NODES nodes or more: a small lab is done before a
line would be worth reading.  The CLI turns a meter on for the length of one
command (`with showing(...)`); the code doing the work reports through `report()`,
which costs one attribute check when no meter is on (the Python API, tests, pipes).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

PROGRESS_MIN_NODES = 1000
REDRAW_EVERY = 0.1  # seconds: a terminal line redrawn 10 times a second reads as live


class Meter:
    """One status line on a terminal."""

    def __init__(self, label: str, stream: TextIO) -> None:
        self.label = label
        self.stream = stream
        self.last_draw = 0.0
        self.last_text = ""
        self.shown = False

    def update(self, what: str, done: int | None = None, total: int | None = None, unit: str = "",
               force: bool = False) -> None:
        text = f"{self.label}: {what}"
        if done is not None and total:
            text += f", {done}/{total}{' ' + unit if unit else ''}"
        now = time.monotonic()
        if text == self.last_text or (not force and now - self.last_draw < REDRAW_EVERY):
            return
        self.last_draw, self.last_text = now, text
        self.stream.write("\r\x1b[K" + text)
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        """Erase the line: the command's own result is what stays on the screen."""
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


_current: Meter | None = None


def report(what: str, done: int | None = None, total: int | None = None, unit: str = "",
           force: bool = False) -> None:
    """Tell the watching person what is being done (a no-op unless a meter is on).
    `force`: draw now, not at the next redraw tick (a new phase starts)."""
    if _current is not None:
        _current.update(what, done, total, unit, force)


def wanted(nodes: int, json_output: bool, stream: TextIO | None = None) -> bool:
    """Should a command on a lab of `nodes` nodes show progress?"""
    stream = stream or sys.stderr
    return not json_output and nodes >= PROGRESS_MIN_NODES and stream.isatty()


@contextmanager
def showing(label: str, on: bool, stream: TextIO | None = None) -> Iterator[None]:
    """Within the block, `report()` draws on `stream` (stderr) if `on`."""
    global _current
    if not on:
        yield
        return
    meter = Meter(label, stream or sys.stderr)
    previous, _current = _current, meter
    try:
        yield
    finally:
        _current = previous
        meter.close()
