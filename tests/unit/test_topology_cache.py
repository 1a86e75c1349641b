"""The topology cache (state/speccache.py): a hit only for identical bytes, the
same spec as a fresh validation, and nothing planted in the cache is believed."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from vethlab.errors import ValidationError
from vethlab.state import speccache as cache
from vethlab.state import store
from vethlab.state.lock import LabLock
from vethlab.state.speccache import load_lab
from vethlab.topology import lab_from_text, loader

RICH = """\
name: rich
prefix: true
nodes:
  a:
    sysctls: {net.ipv4.ip_forward: 1}
    routes: [10.9.0.0/16 via 10.0.0.2 metric 5, "default via 10.0.0.2"]
    exec: [echo hi, [sh, -c, "true"]]
    run: [{cmd: sleep 1000, oneshot: false}, {cmd: "true", oneshot: true}]
    ready: [tcp:80]
  b: {}
  c: {}
  web: {}
links:
  - endpoints: [a:e0, b:e0]
    addresses: [[10.0.0.1/24, fd00::1/64], 10.0.0.2/24]
    mtu: 1400
    state: down
    rate: 10mbit
    b: {rate: 2mbit}
  - {endpoints: [b:e1, c:e1], addresses: [10.1.0.1/30, 10.1.0.2/30], delay: 5ms, loss: 1%}
networks:
  lan:
    subnet: 172.31.5.0/24
    subnet6: fd01::/64
    nat: true
    members:
      web: {ip: 172.31.5.10, publish: ["8080:80", "127.0.0.1:5353:53/udp"]}
      c: {}
  quiet:
    internal: true
    members: {a: {}, b: {}}
"""


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A state root in which lab `rich` exists (entries are kept only for labs that do)."""
    root = tmp_path / "state"
    root.mkdir(mode=0o700)
    monkeypatch.setenv("VETHLAB_STATE_DIR", str(root))
    monkeypatch.delenv("VETHLAB_TOPOLOGY_CACHE", raising=False)
    store.save(store.LabState("rich", complete=True))
    return root


@pytest.fixture
def validations(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Counts files parsed and validated by load_lab (not read from the cache)."""
    seen: list[str] = []
    real = loader.load_bytes

    def counting(raw: bytes, path: str) -> Any:
        seen.append(path)
        return real(raw, path)

    monkeypatch.setattr(loader, "load_bytes", counting)
    return seen


def entries(state: Path, lab: str = "rich") -> list[Path]:
    folder = state / lab
    return sorted(folder.glob(f"{cache.PREFIX}*")) if folder.exists() else []


def write(tmp_path: Path, text: str, name: str = "lab.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_the_same_bytes_are_a_hit_with_the_same_spec(tmp_path: Path, state: Path, validations: list[str]) -> None:
    path = write(tmp_path, RICH)
    first = load_lab(path)
    assert validations == [path] and len(entries(state)) == 1
    again = load_lab(path)
    assert validations == [path]  # not validated again
    assert again == first == lab_from_text(RICH, path)
    assert repr(again) == repr(first)  # types too: 1 is not 1.0, a tuple is not a list
    # the same bytes under another name: a hit, naming the file it was read from
    other = write(tmp_path, RICH, "copy.yaml")
    copy = load_lab(other)
    assert validations == [path] and copy.file == other
    assert copy == lab_from_text(RICH, other)


def test_an_edit_is_validated_again(tmp_path: Path, state: Path, validations: list[str]) -> None:
    path = write(tmp_path, RICH)
    load_lab(path)
    edited = RICH.replace("mtu: 1400", "mtu: 1300")
    write(tmp_path, edited)
    spec = load_lab(path)
    assert validations == [path, path]
    assert spec == lab_from_text(edited, path) and spec.links[0].mtu == 1300
    assert len(entries(state)) == 2
    write(tmp_path, RICH)  # back to the first content: a hit again
    assert load_lab(path) == lab_from_text(RICH, path) and len(validations) == 2


def test_invalid_files_are_never_kept(tmp_path: Path, state: Path, validations: list[str]) -> None:
    path = write(tmp_path, "name: bad\nnodes: {a: {bogus: 1}}\n")
    for _ in range(2):
        with pytest.raises(ValidationError, match="unknown key 'bogus'"):
            load_lab(path)
    assert len(validations) == 2 and entries(state) == []


def test_every_example_survives_the_round_trip_unchanged() -> None:
    examples = Path(__file__).parents[2] / "examples"
    files = sorted(examples.glob("*.yaml"))
    assert files
    for path in files:
        spec = load_lab(str(path))
        back = cache.decode(json.loads(cache.encode(spec)), spec.file)
        assert back == spec and repr(back) == repr(spec), path


def test_rich_spec_survives_the_round_trip_unchanged() -> None:
    spec = lab_from_text(RICH, "x.yaml")
    assert spec.links[0].shaping_a is not None and spec.networks[0].members[0].publish  # the file exercises them
    back = cache.decode(json.loads(cache.encode(spec)), "x.yaml")
    assert back == spec and repr(back) == repr(spec)


def poison(state: Path, tmp_path: Path) -> tuple[str, Path]:
    """A cached entry for lab.yaml (RICH) rewritten with a node `pwned`: believed, it
    would make `up` build what the file does not say."""
    path = write(tmp_path, RICH)
    load_lab(path)
    (entry,) = entries(state)
    evil = lab_from_text(RICH.replace("  b: {}", "  b: {}\n  pwned: {}"))
    entry.write_text(json.dumps({"key": entry.stem[len(cache.PREFIX):], "spec": json.loads(cache.encode(evil))}))
    return path, entry


def test_the_poisoned_entry_is_believed_only_as_the_owner_wrote_it(tmp_path: Path, state: Path) -> None:
    """The check of the checks: as written by its owner, the entry is trusted (so the
    tests below show the owner, mode and link checks are what refuse it)."""
    path, _entry = poison(state, tmp_path)
    assert "pwned" in load_lab(path).nodes


def test_an_entry_about_another_lab_is_ignored(tmp_path: Path, state: Path, validations: list[str]) -> None:
    path, entry = poison(state, tmp_path)
    other = lab_from_text(RICH.replace("name: rich", "name: evil"))
    entry.write_text(json.dumps({"key": entry.stem[len(cache.PREFIX):], "spec": json.loads(cache.encode(other))}))
    assert load_lab(path) == lab_from_text(RICH, path) and len(validations) == 2


def test_only_a_lab_that_exists_keeps_entries_and_they_go_with_it(tmp_path: Path, state: Path,
                                                                 validations: list[str]) -> None:
    path = write(tmp_path, RICH.replace("name: rich", "name: fresh"))
    load_lab(path)
    load_lab(path)
    assert len(validations) == 2 and not (state / "fresh").exists()  # no lab fresh: nothing kept, nothing made
    rich = write(tmp_path, RICH, "rich.yaml")
    load_lab(rich)
    assert len(entries(state)) == 1
    with LabLock("rich") as lock:  # as `down` removes a lab
        store.remove("rich")
        lock.release(remove=True)
    assert sorted(os.listdir(state)) == []  # nothing of the lab is left, its cached files included


def test_while_the_lab_is_locked_nothing_is_written(tmp_path: Path, state: Path) -> None:
    path = write(tmp_path, RICH)
    with LabLock("rich", wait=0.0):
        assert load_lab(path) == lab_from_text(RICH, path)
    assert entries(state) == []


def test_an_entry_owned_by_another_user_is_ignored(tmp_path: Path, state: Path, validations: list[str]) -> None:
    path, entry = poison(state, tmp_path)
    try:
        os.chown(entry, 65534, 65534)
    except OSError:
        pytest.skip("cannot give a file to uid 65534 here")
    spec = load_lab(path)
    assert spec == lab_from_text(RICH, path) and len(validations) == 2


def test_an_entry_writable_by_others_is_ignored(tmp_path: Path, state: Path, validations: list[str]) -> None:
    path, entry = poison(state, tmp_path)
    entry.chmod(0o666)
    assert load_lab(path) == lab_from_text(RICH, path) and len(validations) == 2


def test_a_lab_directory_of_another_user_or_writable_by_others_is_ignored(
        tmp_path: Path, state: Path, validations: list[str]) -> None:
    path, _entry = poison(state, tmp_path)
    folder = state / "rich"
    folder.chmod(0o777)
    assert load_lab(path) == lab_from_text(RICH, path)
    folder.chmod(0o700)
    try:
        os.chown(folder, 65534, 65534)
    except OSError:
        pytest.skip("cannot give a directory to uid 65534 here")
    assert load_lab(path) == lab_from_text(RICH, path) and len(validations) == 3


def test_a_symlinked_entry_is_ignored_and_its_target_untouched(tmp_path: Path, state: Path,
                                                                validations: list[str]) -> None:
    path, entry = poison(state, tmp_path)
    target = tmp_path / "planted.json"
    entry.rename(target)
    before = target.read_bytes()
    entry.symlink_to(target)
    assert load_lab(path) == lab_from_text(RICH, path) and len(validations) == 2
    assert target.read_bytes() == before
    # and the lab's directory itself as a symlink to the planted one
    folder = state / "rich"
    planted = tmp_path / "planted-dir"
    folder.rename(planted)
    (planted / entry.name).unlink()
    (planted / entry.name).write_bytes(before)
    (planted / entry.name).chmod(0o600)
    folder.symlink_to(planted)
    assert load_lab(path) == lab_from_text(RICH, path) and len(validations) == 3
    assert (planted / entry.name).read_bytes() == before


def damaged_entries(key: str, good: Any) -> list[tuple[str, bytes]]:
    """Entries that are ours but wrong: each must read as a miss, never an error."""
    def with_spec(spec: Any, k: str = key) -> bytes:
        return json.dumps({"key": k, "spec": spec}).encode()

    out = [
        ("empty", b""),
        ("truncated", with_spec(good)[:-7]),
        ("not JSON", b"\x00\xff garbage"),
        ("a list", b"[1, 2]"),
        ("no spec", json.dumps({"key": key}).encode()),
        ("another key", with_spec(good, "0" * 64)),
        ("spec too short", with_spec(good[:-1])),
        ("spec too long", with_spec([*good, None])),
        ("deep", b"[" * 100_000 + b"]" * 100_000),
    ]
    def changed(path: tuple[int, ...], value: Any) -> bytes:
        spec = json.loads(json.dumps(good))
        where = spec
        for step in path[:-1]:
            where = where[step]
        where[path[-1]] = value
        return with_spec(spec)

    # the fields, as encode writes them: LabSpec [name, nodes, links, networks, prefix, file, ...]
    out += [
        ("lab name a number", changed((0,), 7)),
        ("nodes a list", changed((1,), [])),
        ("a link with a missing field", changed((2, 0), good[2][0][:-1])),
        ("an endpoint of three parts", changed((2, 0, 0), ["a", "e0", "x"])),
        ("an mtu as text", changed((2, 0, 4), "1400")),
        ("an mtu as true", changed((2, 0, 4), True)),
        ("link state as 1", changed((2, 0, 5), 1)),
        ("an address a number", changed((2, 0, 2, 0), 10)),
        ("a route a string", changed((1, "a", 2), "default")),
        ("a shaping rate as a float", changed((2, 0, 7, 0), 1.5)),
        ("prefix as text", changed((4,), "yes")),
        ("a publish port as null", changed((3, 0, 13, 0, 4, 0, 0), None)),
    ]
    return out


def test_damaged_entries_are_ignored_and_replaced(tmp_path: Path, state: Path, validations: list[str]) -> None:
    path = write(tmp_path, RICH)
    expected = load_lab(path)
    (entry,) = entries(state)
    good = json.loads(entry.read_text())["spec"]
    for what, content in damaged_entries(entry.stem[len(cache.PREFIX):], good):
        entry.write_bytes(content)
        before = len(validations)
        assert load_lab(path) == expected, what
        assert len(validations) == before + 1, what  # validated again...
        assert json.loads(entry.read_text())["spec"] == good, what  # ...and the entry written afresh


def test_a_changed_vethlab_or_environment_is_a_miss(tmp_path: Path, state: Path, validations: list[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, RICH)
    load_lab(path)
    monkeypatch.setattr(cache, "_ENV", b"another vethlab")
    load_lab(path)
    assert len(validations) == 2 and len(entries(state)) == 2


def test_the_cache_never_creates_the_state_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VETHLAB_TOPOLOGY_CACHE", raising=False)
    root = tmp_path / "not-yet"
    monkeypatch.setenv("VETHLAB_STATE_DIR", str(root))
    path = write(tmp_path, RICH)
    assert load_lab(path) == lab_from_text(RICH, path)
    assert not root.exists()


def test_it_can_be_turned_off(tmp_path: Path, state: Path, validations: list[str],
                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VETHLAB_TOPOLOGY_CACHE", "0")
    path = write(tmp_path, RICH)
    load_lab(path)
    load_lab(path)
    assert len(validations) == 2 and entries(state) == []


def test_old_entries_go_first(tmp_path: Path, state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache, "MAX_ENTRIES", 3)
    paths = [write(tmp_path, RICH.replace("mtu: 1400", f"mtu: {1400 + i}"), f"l{i}.yaml") for i in range(5)]
    keys = []
    for i, path in enumerate(paths):
        load_lab(path)
        (newest,) = set(entries(state)) - set(keys)
        os.utime(newest, ns=(i * 10**9, i * 10**9))  # distinct times, oldest first
        keys.append(newest)
    assert entries(state) == sorted(keys[2:])



def test_the_key_covers_the_source_of_the_loader_and_the_validator(monkeypatch: pytest.MonkeyPatch) -> None:
    """An entry is what this vethlab's topology/ made of the bytes: the key hashes
    topology/*.py (it once hashed only state/, so an edited validator read old
    entries as if they were its own)."""
    import builtins

    read: list[str] = []
    real = builtins.open

    def recording(path: Any, *args: Any, **kwargs: Any) -> Any:
        read.append(os.path.relpath(str(path), os.path.dirname(os.path.dirname(cache.__file__))))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(cache, "_ENV", None)
    monkeypatch.setattr(builtins, "open", recording)
    cache._environment()
    assert {"topology/validate.py", "topology/loader.py", "topology/quickyaml.py", "topology/schema.py",
            "state/speccache.py"} <= set(read)
