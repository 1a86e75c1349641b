"""What a lab's own commands read of the containers joined to it (cni/labside.py):
a lab without records reads none and loads none of the plugin; one with records
gets them whole."""

from __future__ import annotations

import json
import os

import pytest
from tests.helpers import fresh_python

from vethlab.cni import labjoin, labside
from vethlab.errors import StateError

RECORD = {"containerID": "c1", "ifname": "eth0", "netns": "/proc/1/ns/net", "node": "box",
          "address": "10.0.0.9/24", "hostVeth": "vlc1", "network": "lan"}


def test_both_sides_name_one_file() -> None:
    assert labside.RECORDS == labjoin.RECORDS


def test_no_records_no_plugin(tmp_path: str) -> None:
    # a first `up` (no lab directory yet) and a lab no runtime joined: nothing, and
    # the plugin's modules stay unloaded (~1.5 ms of every `up`)
    code = ("import os, sys; os.environ['VETHLAB_STATE_DIR'] = {!r}; os.makedirs({!r})\n"
            "from vethlab.cni import labside\n"
            "print(labside.attachments('fresh'), labside.attachments('lab'), labside.held('lab'),\n"
            "      'vethlab.cni.labjoin' in sys.modules)").format(str(tmp_path), os.path.join(str(tmp_path), "lab"))
    assert fresh_python(code).split() == ["{}", "{}", "{}", "False"]


def test_records_are_read_whole(tmp_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VETHLAB_STATE_DIR", str(tmp_path))
    os.makedirs(os.path.join(str(tmp_path), "lab"), mode=0o700)
    with open(os.path.join(str(tmp_path), "lab", labside.RECORDS), "w") as fh:
        json.dump({"attachments": {"c1/eth0": RECORD}}, fh)
    assert labside.attachments("lab") == {"c1/eth0": RECORD}
    assert labside.held("lab") == {"lan": {"10.0.0.9": "container box (joined through vethlab-cni)"}}


def test_anything_in_the_records_place_is_read(tmp_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # a dangling link where the records belong is not "no records": the checked read judges it
    monkeypatch.setenv("VETHLAB_STATE_DIR", str(tmp_path))
    os.makedirs(os.path.join(str(tmp_path), "lab"), mode=0o700)
    os.symlink("/nonexistent/elsewhere", os.path.join(str(tmp_path), "lab", labside.RECORDS))
    with pytest.raises(StateError, match="is a symbolic link"):
        labside.attachments("lab")
