"""The progress line: on a terminal, for big labs, never with --json or into a pipe."""

from __future__ import annotations

import io

import pytest

from vethlab.reconcile import progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_only_big_labs_on_a_terminal_without_json() -> None:
    tty, pipe = Terminal(), io.StringIO()
    assert progress.wanted(1000, False, tty)
    assert not progress.wanted(999, False, tty)
    assert not progress.wanted(1000, True, tty)
    assert not progress.wanted(5000, False, pipe)


def test_reports_phase_and_counts_then_erases_the_line() -> None:
    tty = Terminal()
    with progress.showing("vethlab up big", True, tty):
        progress.report("veth pairs", 2001, 9000, "changes", force=True)
        progress.report("waiting for links to come up", 10, 2000, "up", force=True)
    out = tty.getvalue()
    assert "\r\x1b[Kvethlab up big: veth pairs, 2001/9000 changes" in out
    assert "vethlab up big: waiting for links to come up, 10/2000 up" in out
    assert out.endswith("\r\x1b[K")


def test_nothing_when_off_or_outside() -> None:
    tty = Terminal()
    progress.report("namespaces", 1, 2, force=True)  # no meter on: a no-op
    with progress.showing("vethlab down big", False, tty):
        progress.report("deleting namespaces", 1, 2, force=True)
    assert tty.getvalue() == ""


def test_redraws_at_most_ten_times_a_second(monkeypatch: pytest.MonkeyPatch) -> None:
    tty = Terminal()
    with progress.showing("x", True, tty):
        for i in range(1000):
            progress.report("deleting namespaces", i, 1000)
    assert tty.getvalue().count("\r\x1b[K") <= 3  # first draw, maybe one tick, the erase
