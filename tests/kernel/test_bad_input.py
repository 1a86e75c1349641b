"""Every malformed file through `vethlab up`: exit 2, FILE:LINE, no traceback, nothing built."""

from __future__ import annotations

import glob
import os

import pytest

from helpers import ip_json, vethlab

CORPUS = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "data", "bad", "*.yaml")))


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: os.path.basename(p)[:-5])
def test_up_refuses_bad_file_and_builds_nothing(path: str) -> None:
    r = vethlab("up", path)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
    assert all(line.startswith(path) for line in r.stderr.strip().splitlines()), r.stderr
    assert os.listdir("/run/netns") == []
    assert [link["ifname"] for link in ip_json("link")] == ["lo"]
    assert os.listdir(os.environ["VETHLAB_STATE_DIR"]) == []
