"""store.load skips the shape check only for bytes this process has already found
well-shaped; every load still returns a state of its own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vethlab.errors import StateDamaged
from vethlab.state import shape, store


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VETHLAB_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setattr(store, "_CHECKED", {})
    return tmp_path / "state"


def test_same_bytes_are_checked_once_and_each_load_is_its_own(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = store.LabState("memo", nodes={"a": "a"}, links=[["a", "e0", "b", "e0"]], complete=True)
    store.save(state)
    checks: list[str | None] = []
    real = store.check
    monkeypatch.setattr(store, "check", lambda data, lab=None: (checks.append(lab), real(data, lab))[1])
    first, second = store.load("memo"), store.load("memo")
    assert first is not None and second is not None and checks == ["memo"]
    assert vars(first) == vars(second) == vars(state)
    first.nodes["z"] = "z"
    first.links[0][0] = "changed"
    assert second.nodes == {"a": "a"} and second.links == [["a", "e0", "b", "e0"]]  # nothing shared
    second.complete = False
    store.save(second)  # new bytes: checked again
    assert store.load("memo").complete is False and checks == ["memo", "memo"]  # type: ignore[union-attr]


def test_damage_after_a_good_read_is_still_found(root: Path) -> None:
    store.save(store.LabState("memo", nodes={"a": "a"}))
    assert store.load("memo") is not None
    path = root / "memo" / store.STATE_FILE
    data = json.loads(path.read_text())
    data["nodes"] = {"a": "../../etc"}
    path.write_text(json.dumps(data))
    with pytest.raises(StateDamaged):
        store.load("memo")
    with pytest.raises(shape.ShapeError):
        shape.check(data, "memo")
