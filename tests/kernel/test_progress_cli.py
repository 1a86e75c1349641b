"""`vethlab up` and `down` show progress on a terminal for big labs (the threshold is
lowered here so a small lab counts as big), and nothing into a pipe or with --json."""

from __future__ import annotations

import io
import sys

import pytest

from vethlab.cli.main import main
from vethlab.reconcile import progress

LAB = """\
name: prog
nodes: {a: {}, b: {}, c: {}}
networks: {lan: {subnet: 10.9.0.0/24, members: {a: {}, b: {}, c: {}}}}
"""


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def small_is_big(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "PROGRESS_MIN_NODES", 3)
    monkeypatch.setattr(progress, "REDRAW_EVERY", 0.0)


def run(monkeypatch: pytest.MonkeyPatch, stream: io.StringIO, *argv: str) -> str:
    monkeypatch.setattr(sys, "stderr", stream)
    assert main(list(argv)) == 0
    return stream.getvalue()


def test_on_a_terminal(write, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(LAB)
    up = run(monkeypatch, Terminal(), "up", path)
    assert "vethlab up prog: namespaces, 0/" in up and " changes" in up
    assert "vethlab up prog: waiting for links to come up, " in up
    down = run(monkeypatch, Terminal(), "down", path)
    assert "vethlab down prog: deleting 3 namespaces" in down
    assert "vethlab down prog: waiting for 3 interfaces to go with their namespaces" in down
    assert up.endswith("\r\x1b[K") and down.endswith("\r\x1b[K")  # the line is erased at the end


def test_not_into_a_pipe_nor_with_json(write, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(LAB)
    assert run(monkeypatch, io.StringIO(), "up", path) == ""
    assert run(monkeypatch, Terminal(), "down", path, "--json") == ""
    assert run(monkeypatch, Terminal(), "up", path, "--json") == ""
    assert run(monkeypatch, io.StringIO(), "down", path) == ""
