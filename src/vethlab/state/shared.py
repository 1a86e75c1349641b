"""Settings of the host namespace that several labs may need at once.

IP forwarding is switched on by the first lab that needs it and restored to its
original value only when the last such lab goes down.  The ledger
(STATE/.shared.json: key -> original value and the labs holding it) is updated
under its own lock, so labs going up and down in parallel agree."""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable

from .store import state_root


def _paths() -> tuple[str, str]:
    root = state_root()
    return os.path.join(root, ".shared.json"), os.path.join(root, ".shared.lock")


def _update(change: Callable[[dict[str, dict[str, object]]], None]) -> None:
    data_path, lock_path = _paths()
    os.makedirs(state_root(), mode=0o700, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            with open(data_path, encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, ValueError):
            data = {}
        change(data)
        if data:
            tmp = data_path + ".tmp"
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(data, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, data_path)
        else:
            for path in (data_path, lock_path):
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
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


def release(lab: str, write: Callable[[str, str], None]) -> None:
    """Lab `lab` no longer needs anything: restore each key it was the last holder of."""

    def change(data: dict[str, dict[str, object]]) -> None:
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
    data_path, _ = _paths()
    try:
        with open(data_path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return []
    return [key for key, entry in data.items() if lab in entry.get("labs", [])]


def under_lock(action: Callable[[], None]) -> None:
    """Run `action` under the ledger's lock, the ledger unchanged: for the kernel's copy
    of it (vethlab.forwarding), which must change in step with this one."""
    _update(lambda _data: action())
