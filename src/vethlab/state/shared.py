"""Settings of the host namespace that several labs may need at once.

IP forwarding is switched on by the first lab that needs it and restored to its
original value only when the last such lab goes down.  The ledger
(STATE/.shared.json: key -> original value and the labs holding it) is updated
under its own lock, so labs going up and down in parallel agree.  Both files are
opened relative to the state root's descriptor, never through a symlink
(state/fs.py)."""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable

from . import fs
from .store import open_root, state_root

DATA, LOCK, TMP = ".shared.json", ".shared.lock", ".shared.json.tmp"


def _read(root: int) -> dict[str, dict[str, object]]:
    path = os.path.join(state_root(), DATA)
    try:
        fd = fs.open_file(root, DATA, path, os.O_RDONLY, "the shared-settings ledger")
    except FileNotFoundError:
        return {}
    try:
        with os.fdopen(fd, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _update(change: Callable[[dict[str, dict[str, object]]], None]) -> None:
    with open_root(create=True) as root:
        assert root is not None
        fd = fs.open_file(root, LOCK, os.path.join(state_root(), LOCK), os.O_RDWR | os.O_CREAT,
                          "the shared-settings lock")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            data = _read(root)
            had = bool(data)
            try:
                change(data)
            except BaseException:
                if not had:  # abandoned with no ledger: leave no lock file either, as an emptied one does
                    fs.unlink(root, LOCK)
                raise
            if data:
                tmp = fs.open_scratch(root, TMP, os.path.join(state_root(), TMP))
                with os.fdopen(tmp, "w", encoding="utf-8") as fh:
                    json.dump(data, fh)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(TMP, DATA, src_dir_fd=root, dst_dir_fd=root)
            else:
                for name in (DATA, LOCK):
                    fs.unlink(root, name)
        finally:
            os.close(fd)


def hold(lab: str, key: str, read: Callable[[], str | None], write: Callable[[str], None], value: str) -> None:
    """Lab `lab` needs sysctl `key` = value in the host namespace."""

    def change(data: dict[str, dict[str, object]]) -> None:
        entry = data.get(key)
        if entry is None:
            original = read()
            entry = data[key] = {"original": original, "labs": []}
        labs = entry["labs"]
        assert isinstance(labs, list)
        if lab not in labs:
            labs.append(lab)
        write(value)

    _update(change)


def release(lab: str, write: Callable[[str, str], None], first: Callable[[], None] | None = None) -> None:
    """Lab `lab` no longer needs anything: restore each key it was the last holder of.
    `first` runs under the same lock before the ledger is changed (the kernel's copy
    of it, vethlab.reconcile.forwarding, changes in the same turn)."""

    def change(data: dict[str, dict[str, object]]) -> None:
        if first is not None:
            first()
        for key in list(data):
            labs = data[key]["labs"]
            assert isinstance(labs, list)
            if lab in labs:
                labs.remove(lab)
                if not labs:
                    original = data.pop(key)["original"]
                    if isinstance(original, str):
                        write(key, original)

    _update(change)


def held_by(lab: str) -> list[str]:
    with open_root(create=False) as root:
        data = _read(root) if root is not None else {}
    return [key for key, entry in data.items()
            if isinstance(entry, dict) and isinstance(labs := entry.get("labs"), list) and lab in labs]


def under_lock(action: Callable[[], None]) -> None:
    """Run `action` under the ledger's lock, the ledger unchanged: for the kernel's copy
    of it (vethlab.reconcile.forwarding), which must change in step with this one."""
    _update(lambda _data: action())
