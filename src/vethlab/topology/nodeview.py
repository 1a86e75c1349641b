"""`hostname:`, `files:`, `private:` and `mounts:` of a node: its own view of the
machine (kernel/nodefs.py), checked completely before anything is touched.

Every path a node sees differently is absolute and written plainly (no `..`, no
`.`, no `//`, no trailing `/`), so one path names one place and a file cannot
climb out of the directory it is written into.  Paths vethlab itself needs in
every node are refused: /proc, /sys, /dev, /run/netns and /etc/netns (and their
parents: a private /etc would hide /etc/netns), and /etc/hosts and
/etc/resolv.conf, which vethlab writes for every node (/etc/netns/NODE).
"""

from __future__ import annotations

import os
import re
import stat
from typing import TYPE_CHECKING, Any

from .loader import Path
from .schema import FileSpec, MountSpec, PrivateSpec

if TYPE_CHECKING:  # a typing.Protocol here cost every first read ~0.5 ms to create
    from .checker import Checker

VIEW_KEYS = ("hostname", "files", "private", "mounts")
#: what every node needs to see as the host has it
RESERVED = ("/proc", "/sys", "/dev", "/run/netns", "/etc/netns")
#: files vethlab writes for every node (ip netns exec binds them over /etc)
WRITTEN = ("/etc/hosts", "/etc/resolv.conf")
HOSTNAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,62}[A-Za-z0-9])?")
MODE = re.compile(r"0?[0-7]{3,4}")
#: the most a `files:` item may hold (the topology file itself is capped at 8 MiB)
MAX_FILE = 1 << 20
PATH_MAX = 4095
#: the highest user or group id (2^32-1 means "leave as it is" to chown)
MAX_ID = (1 << 32) - 2
FILE_KEYS = {"content", "source", "mode"}
PRIVATE_KEYS = {"path", "copy", "owner", "mode"}


def path_problem(value: Any) -> str | None:
    """Why `value` cannot be a path in a node, or None."""
    if not isinstance(value, str):
        return "must be an absolute path (a string)"
    if not value.startswith("/"):
        return f"{value!r} must be an absolute path"
    if "\0" in value or "\n" in value:
        return "a path cannot hold NUL or newline characters"
    if len(value) > PATH_MAX:
        return f"a path is at most {PATH_MAX} characters"
    if value == "/":
        return "the node's whole file system cannot be replaced; name a directory"
    parts = value.split("/")[1:]
    if any(part in ("", ".", "..") for part in parts):
        return f"{value!r} must be written plainly: no '..', '.', '//' or trailing '/'"
    for reserved in RESERVED:
        if _within(value, reserved) or _within(reserved, value):
            return (f"{value} would hide {reserved}, which every node needs as the host has it"
                    if _within(reserved, value) and value != reserved else f"{value} is the host's in every node")
    return None


def _within(path: str, directory: str) -> bool:
    """Is `path` `directory` or below it?"""
    return path == directory or path.startswith(directory + "/")


def parse(c: Checker, spec: dict[str, Any], path: Path, name: str) -> tuple[
        str | None, tuple[FileSpec, ...], tuple[PrivateSpec, ...], tuple[MountSpec, ...]]:
    """(hostname, files, private, mounts) of one node; problems go to `c`."""
    files = _files(c, spec.get("files"), path + ("files",))
    private, where = _private(c, spec.get("private"), path + ("private",))
    mounts = _mounts(c, spec.get("mounts"), path + ("mounts",))
    hostname: str | None = None
    if "hostname" in spec:
        raw = spec["hostname"]
        if not isinstance(raw, str) or not HOSTNAME.fullmatch(raw):
            c.err(path + ("hostname",), "must be a host name: letters, digits, '-' and '.', at most 64, starting "
                                        "and ending with a letter or digit")
        else:
            hostname = raw
    if hostname is None and (files or private or mounts):
        hostname = name
    _check_overlaps(c, path, files, private, where, mounts)
    return hostname, files, private, mounts


def _mode(c: Checker, raw: Any, path: Path) -> int | None:
    if isinstance(raw, str) and MODE.fullmatch(raw):
        return int(raw, 8)
    c.err(path, "must be an octal mode in quotes, such as \"0644\" (unquoted, YAML reads 0644 as the number 420)")
    return None


def _mapping(c: Checker, raw: Any, path: Path, expected: str) -> dict[Any, Any]:
    """`raw` as a mapping: absent is empty; anything else is reported ("must be
    {expected}") and read as empty."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        c.err(path, f"must be {expected}")
        return {}
    return raw


def _files(c: Checker, raw: Any, path: Path) -> tuple[FileSpec, ...]:
    out = []
    for target, value in _mapping(c, raw, path, "a mapping of node path: content (or {source: FILE})").items():
        ipath = path + (str(target),)
        problem = path_problem(target)
        if problem is None and target in WRITTEN:
            problem = f"vethlab writes the node's {target} itself (from /etc/netns/NODE): it cannot be a file of yours"
        if problem:
            c.err(ipath, problem)
            continue
        mode, content, source = 0o644, None, None
        if isinstance(value, str) and value.startswith("@"):  # SPEC §2: "@F" is file F next to the lab file
            source, content = _read_source(c, value[1:], ipath)
            if content is None:
                continue
        elif isinstance(value, str):
            content = value.encode()
        elif isinstance(value, dict):
            for key in value:
                if key not in FILE_KEYS:
                    c.err(ipath + (str(key),), f"unknown key (a file has: {', '.join(sorted(FILE_KEYS))})")
            if ("content" in value) == ("source" in value):
                c.err(ipath, "give exactly one of `content` (the text) and `source` (a file next to the topology file)")
                continue
            if "mode" in value:
                mode = _mode(c, value["mode"], ipath + ("mode",)) or mode
            if "content" in value:
                if not isinstance(value["content"], str):
                    c.err(ipath + ("content",), "must be text")
                    continue
                content = value["content"].encode()
            else:
                source, content = _read_source(c, value["source"], ipath + ("source",))
                if content is None:
                    continue
        else:
            c.err(ipath, "must be the file's content (text), or a mapping with `content` or `source`")
            continue
        if len(content) > MAX_FILE:
            c.err(ipath, f"a file is at most {MAX_FILE // 1024} KiB")
            continue
        out.append(FileSpec(target, content, mode, source))
    return tuple(out)


def _read_source(c: Checker, raw: Any, path: Path) -> tuple[str | None, bytes | None]:
    """A `source:` file's content, read now (a bad one is exit 2 with its line, not a
    failure half-way through `up`).  Relative to the topology file's directory."""
    if not isinstance(raw, str) or not raw or "\0" in raw:
        c.err(path, "must be the name of a file (relative to the topology file's directory)")
        return None, None
    base = os.path.dirname(os.path.abspath(c.doc.file)) if not c.doc.file.startswith("<") else os.getcwd()
    full = os.path.normpath(os.path.join(base, raw))
    try:
        # O_NONBLOCK: a FIFO (or a device) named here would otherwise block validation forever
        fd = os.open(full, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        c.err(path, f"cannot read {full}: {exc.strerror}")
        return None, None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            c.err(path, f"{full} is not a regular file")
            return None, None
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(MAX_FILE + 1)
    except OSError as exc:
        c.err(path, f"cannot read {full}: {exc.strerror}")
        return None, None
    finally:
        os.close(fd)
    return full, data


def _owner(c: Checker, raw: Any, path: Path) -> tuple[int, int] | None:
    """`user[:group]`, names or numbers, looked up in this machine's user database."""
    import grp
    import pwd

    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = str(raw)
    if not isinstance(raw, str) or not raw or raw.count(":") > 1:
        c.err(path, "must be USER or USER:GROUP (names or numbers)")
        return None
    user, _, group = raw.partition(":")
    for word in (user, group):
        if word.isdigit() and int(word) > MAX_ID:  # chown would fail half-way through `up` (or, at 2^32-1, do nothing)
            c.err(path, f"{word} is not a user or group id (0 to {MAX_ID})")
            return None
    try:
        entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
        uid, gid = entry.pw_uid, entry.pw_gid
    except (KeyError, OverflowError):
        if not user.isdigit():
            c.err(path, f"no user {user!r} on this machine")
            return None
        uid, gid = int(user), int(user)
    if group:
        try:
            gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
        except KeyError:
            c.err(path, f"no group {group!r} on this machine")
            return None
    return uid, gid


def _private(c: Checker, raw: Any, path: Path) -> tuple[tuple[PrivateSpec, ...], tuple[int, ...]]:
    """The private directories, and the index in the file of each."""
    if raw is None:
        return (), ()
    if not isinstance(raw, list):
        c.err(path, "must be a list of directories (paths, or {path:, copy:, owner:, mode:})")
        return (), ()
    out, where = [], []
    for i, item in enumerate(raw):
        ipath = path + (i,)
        copy, owner, mode = False, None, None
        if isinstance(item, dict):
            for key in item:
                if key not in PRIVATE_KEYS:
                    c.err(ipath + (str(key),), f"unknown key (a private directory has: "
                                               f"{', '.join(sorted(PRIVATE_KEYS))})")
            copy = item.get("copy", False)
            if not isinstance(copy, bool):
                c.err(ipath + ("copy",), "must be true or false")
                copy = False
            if "owner" in item:
                owner = _owner(c, item["owner"], ipath + ("owner",))
            if "mode" in item:
                mode = _mode(c, item["mode"], ipath + ("mode",))
            if "path" not in item:
                c.err(ipath, "a private directory given as a mapping needs `path`")
                continue
            item, ipath = item["path"], ipath + ("path",)
        problem = path_problem(item)
        if problem:
            c.err(ipath, problem)
            continue
        out.append(PrivateSpec(item, copy, owner, mode))
        where.append(i)
    return tuple(out), tuple(where)


def _mounts(c: Checker, raw: Any, path: Path) -> tuple[MountSpec, ...]:
    """`mounts: {HOST_PATH: NODE_PATH}`, read-only; `NODE_PATH:rw` lets the node write."""
    out = []
    for source, value in _mapping(c, raw, path,
                                  "a mapping of host path: node path (NODE_PATH:rw to let the node write)").items():
        ipath = path + (str(source),)
        words = value.split(":") if isinstance(value, str) else []
        if len(words) not in (1, 2) or (len(words) == 2 and words[1] not in ("ro", "rw")):
            c.err(ipath, "must be the node path, or NODE_PATH:rw to let the node write (read-only unless asked)")
            continue
        source, target = str(source), words[0]
        problem = path_problem(target)
        if problem:
            c.err(ipath, f"node path: {problem}")
            continue
        if not source.startswith("/") or os.path.normpath(source) != source:
            c.err(ipath, f"host path {source!r} must be absolute and written plainly")
            continue
        if not os.path.exists(source):
            c.err(ipath, f"host path {source} does not exist")
            continue
        out.append(MountSpec(source, target, len(words) == 2 and words[1] == "rw"))
    return tuple(out)


def _check_overlaps(c: Checker, path: Path, files: tuple[FileSpec, ...], private: tuple[PrivateSpec, ...],
                    where_private: tuple[int, ...], mounts: tuple[MountSpec, ...]) -> None:
    """One path, one meaning: no path given twice, nothing placed inside a host
    directory mounted into the node (it would be the host's), no file below a file."""
    places: list[tuple[Path, str, str]] = (
        [(path + ("private", i), p.path, "private") for i, p in zip(where_private, private, strict=True)]
        + [(path + ("mounts", m.source), m.target, "mounts") for m in mounts]
        + [(path + ("files", f.path), f.path, "files") for f in files])
    seen: dict[str, str] = {}
    for where, item, key in places:
        if item in seen:
            c.err(where, f"{item} is given twice (also in {seen[item]})")
        seen.setdefault(item, key)
    for mount in mounts:
        for where, inner, _key in places:
            if inner != mount.target and _within(inner, mount.target):
                c.err(where, f"{inner} is inside {mount.target}, which is mounted from the host: put it "
                             "elsewhere, or make the directory private instead")
    for file in files:
        for where, inner, _key in places:
            if inner != file.path and _within(inner, file.path):
                c.err(where, f"{inner} would be inside the file {file.path}")
    for where, item, key in places:
        if not any(item != p.path and _within(item, p.path) for p in private):  # else: made in the private copy
            directory = key == "private" or (key == "mounts" and os.path.isdir(
                next(m.source for m in mounts if m.target == item)))
            problem = host_problem(item, directory)
            if problem:
                c.err(where, problem)


def host_problem(target: str, directory: bool) -> str | None:
    """Why a node path outside the node's private directories cannot be a mount point
    on this machine, or None.  A missing one is made inside the node only
    (kernel/nodepoints.py), on an overlay of the nearest directory the machine has:
    that cannot be / (an overlay there would hide every mount), and nothing on the
    way may be a file."""
    what = "directory" if directory else "file"
    if os.path.exists(target):
        if os.path.isdir(target) != directory:
            return f"{target} is a {'file' if directory else 'directory'} on this machine, not a {what}"
        return None
    if os.path.lexists(target):
        return f"{target} is a symbolic link to nothing on this machine"
    base = target
    while True:
        base = os.path.dirname(base)
        if os.path.isdir(base):
            break
        if os.path.lexists(base):
            return f"{base} is not a directory on this machine: {target} cannot be made below it"
    if os.path.realpath(base) == "/":
        top = "/" + target.split("/")[1]
        return (f"{top} does not exist on this machine: a missing path is made inside the node on an overlay "
                f"of the nearest directory that exists, never of / (create {top} on the machine, or name a "
                "path below an existing directory)")
    return None
