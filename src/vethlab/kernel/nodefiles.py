"""/etc/netns/NS/{hosts,resolv.conf}: what `ip netns exec NS` bind-mounts over /etc.

hosts = the host's own /etc/hosts (localhost and the machine's name, which
programs such as `python3 -m http.server` look up before listening) followed by
one line per lab node.  resolv.conf = the host's, without loopback name servers
(unreachable from a node, as Docker also filters them): with none left, the
resolver falls back to 127.0.0.1 inside the node and fails at once instead of
waiting out a 10 s timeout when `getent hosts NAME` asks for IPv6 first.

/etc/netns/NODE is the lab's only when the marker file /etc/netns/.vethlab-owner.NODE
names the lab and that very directory (device, inode, generation), written before the
directory gets its name.  An administrator's directory of the same name (say with
their own resolv.conf) is a conflict, found by the planner through `owners()`, and
never overwritten or removed.  A directory an older vethlab wrote (its files only,
with our header, no marker) is adopted: it survives reboots in /etc, and refusing it
would strand every lab built before the upgrade.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import ipaddress
import itertools
import os
import shutil
import struct
from collections.abc import Iterable

from ..errors import ConflictError
from ..ownership import LEGACY_NODE_DIR, NODE_DIR_MARKER, TEMP_PREFIX, temp_prefix_of
from .libc import rename_noreplace

ETC_NETNS = "/etc/netns"
HEADER = "# written by vethlab; removed by `vethlab down`\n"
DIGEST_PREFIX = "# vethlab digest: "
#: what vethlab writes into a node's directory; nothing else there is removed
OUR_FILES = ("hosts", "resolv.conf")
_LEGACY_FILES = {"hosts", "resolv.conf", ".hosts.tmp", ".resolv.conf.tmp"}


def node_dir(ns: str) -> str:
    return f"{ETC_NETNS}/{ns}"


def read_digest(ns: str) -> str | None:
    """The digest line of the node's hosts file, or None if it has no file of ours."""
    try:
        with open(os.path.join(node_dir(ns), "hosts"), encoding="utf-8") as fh:
            for line in fh:
                if line.startswith(DIGEST_PREFIX):
                    return line[len(DIGEST_PREFIX):].strip()
    except OSError:
        return None
    return None


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError:
        return ""


def hosts_content(entries: list[tuple[str, str]], digest: str) -> str:
    base = _read("/etc/hosts")
    if base and not base.endswith("\n"):
        base += "\n"
    if "localhost" not in base:
        base += "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    lines = "".join(f"{addr}\t{name}\n" for addr, name in entries)
    return base + HEADER + f"{DIGEST_PREFIX}{digest}\n" + lines


def resolv_content() -> str:
    kept = []
    for line in _read("/etc/resolv.conf").splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver":
            try:
                if ipaddress.ip_address(words[1].split("%")[0]).is_loopback:
                    continue
            except ValueError:
                continue
        kept.append(line)
    return HEADER + "\n".join(kept) + "\n"


def _marker_path(ns: str) -> str:
    return f"{ETC_NETNS}/{NODE_DIR_MARKER}{ns}"


def _read_marker(ns: str) -> tuple[str, str] | None:
    """(marker, "DEV:INODE:GENERATION") of the marker file of /etc/netns/NS, or None."""
    try:
        fd = os.open(_marker_path(ns), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        words = os.read(fd, 300).decode("utf-8", "replace").split()
    finally:
        os.close(fd)
    return (words[0], words[1]) if len(words) == 2 else None


# FS_IOC_GETVERSION = _IOR('v', 1, long): the inode's generation number
_LONG = struct.calcsize("l")
_GETVERSION = 0x80000000 | (_LONG << 16) | (ord("v") << 8) | 1


def _identity(path: str) -> str | None:
    """DEV:INODE:GENERATION of the directory at `path`; None when nothing is there, ""
    when something else is (a symlink, a file).  The inode number alone is not enough:
    ext4 hands a freed inode number to the next directory made (measured: three
    mkdir/rmdir in a row got the same number), with a new generation each time.
    Where the ioctl is missing (tmpfs: ENOTTY; its inode numbers only grow) it is 0."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError:
        return ""
    try:
        st = os.fstat(fd)
        try:
            generation = struct.unpack("l", fcntl.ioctl(fd, _GETVERSION, bytes(_LONG)))[0]
        except OSError:
            generation = 0
    finally:
        os.close(fd)
    return f"{st.st_dev}:{st.st_ino}:{generation}"


def _owner(ns: str) -> str | None:
    """None: /etc/netns/NS does not exist; else the marker of the lab that made it, or
    "" for one vethlab did not make (no marker, a marker written for another directory
    of that name since removed, a symlink, a plain file)."""
    identity = _identity(node_dir(ns))
    if not identity:
        return identity
    mark = _read_marker(ns)
    if mark is None or mark[1] != identity:
        return LEGACY_NODE_DIR if _legacy(node_dir(ns)) else ""
    return mark[0]


def _legacy(directory: str) -> bool:
    """Written by a vethlab from before the markers: its files only, its header in them."""
    try:
        names = set(os.listdir(directory))
        if not names or not names <= _LEGACY_FILES or "resolv.conf" not in names:
            return False
        fd = os.open(os.path.join(directory, "resolv.conf"), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    with os.fdopen(fd, "rb") as fh:
        return fh.read(len(HEADER)) == HEADER.encode()


def owners(namespaces: Iterable[str] | None = None) -> dict[str, str]:
    """For the entries of /etc/netns named in `namespaces` (None: all): the marker each
    holds, "" for one vethlab did not make.  One listdir, then one read per entry found."""
    try:
        present = os.listdir(ETC_NETNS)
    except OSError:
        return {}
    wanted = None if namespaces is None else set(namespaces)
    return {name: _owner(name) or "" for name in present
            if not name.startswith(".") and (wanted is None or name in wanted)}


def temps(namespaces: Iterable[str] | None = None) -> list[tuple[str | None, str]]:
    """(marker, entry) of what labs left in /etc/netns besides their directories:
    temporary files and directories of a run killed while writing or removing (marker
    None: their name says whose, ownership.lab_of_temp), and markers whose directory
    is gone, with the marker they hold — those of `namespaces` (None: all; a marker
    is read to know its lab, so `up` passes none: it overwrites its own nodes' stale
    markers anyway)."""
    try:
        present = os.listdir(ETC_NETNS)
    except OSError:
        return []
    out: list[tuple[str | None, str]] = [(None, name) for name in present if name.startswith(TEMP_PREFIX)]
    wanted = None if namespaces is None else {NODE_DIR_MARKER + ns for ns in namespaces}
    for name in present:
        if name.startswith(NODE_DIR_MARKER) and (wanted is None or name in wanted):
            ns = name[len(NODE_DIR_MARKER):]
            mark = _read_marker(ns)
            if mark is not None and _owner(ns) != mark[0]:
                out.append((mark[0], name))
    return out


def remove_temp(name: str) -> None:
    """Remove one entry `temps()` listed (checked again: never a live directory's marker)."""
    if "/" in name:
        return  # one entry of /etc/netns, never a path
    path = os.path.join(ETC_NETNS, name)
    if name.startswith(NODE_DIR_MARKER):
        ns = name[len(NODE_DIR_MARKER):]
        mark = _read_marker(ns)
        if mark is not None and _owner(ns) == mark[0]:
            return
    elif not name.startswith(TEMP_PREFIX):
        return
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _rename_noreplace(source: str, target: str) -> None:
    """rename(2) that fails with EEXIST instead of replacing `target` (os.rename would
    silently replace an empty directory of the same name)."""
    try:
        rename_noreplace(source, target)
        return
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOSYS):
            raise
    if os.path.lexists(target):  # a file system without RENAME_NOREPLACE: check, then rename
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), target)
    os.rename(source, target)


def _foreign(ns: str, owner: str) -> ConflictError:
    what = f"is marked as another lab's ({owner})" if owner else "is not vethlab's"
    return ConflictError(f"/etc/netns/{ns} already exists and {what}; vethlab writes a node's hosts and "
                         "resolv.conf there and does not take over a directory it did not make")


def write_files(namespaces: list[str], entries: list[tuple[str, str]], marker: str, digest: str) -> None:
    """Write hosts and resolv.conf for many nodes; every hosts file carries `digest`
    (the caller's fingerprint of the entries: model/hosts.py), which `read_digest`
    gives back, so a re-run compares one line per node instead of N.  Every node's files have the same
    content, so each is written once and hard-linked into every node's directory
    (then renamed over the old file: atomic per node).  1000 nodes cost 2000 links,
    not 20 MB of writes.

    A node's directory is born whole: made under a temporary name with the files
    inside, its marker (`.vethlab-owner.NODE`, naming the lab and the directory's
    inode) written, then renamed into place without replacing anything, so
    /etc/netns/NODE is never there unmarked.  A directory another lab's marker
    names, or none, is refused (ConflictError).  Temporary names start with
    `temp_prefix(LAB)`, so a killed run's are found."""
    if not namespaces:
        return
    import tempfile  # here: `down` never writes node files (~1 ms to import)

    prefix = temp_prefix_of(marker)
    os.makedirs(ETC_NETNS, mode=0o755, exist_ok=True)
    sources = {}
    contents = {"hosts": hosts_content(entries, digest).encode(), "resolv.conf": resolv_content().encode()}
    try:
        for name, content in contents.items():
            fd, tmp = tempfile.mkstemp(prefix=prefix, dir=ETC_NETNS)
            sources[name] = tmp
            with os.fdopen(fd, "wb") as fh:
                fh.write(content)
            os.chmod(tmp, 0o644)
        holding: dict[str, set[tuple[int, int]]] = {}  # per name: (device, inode) of files found to hold it
        for ns in namespaces:
            owner = _owner(ns)
            if owner is None:
                _create_dir(ns, marker, sources, prefix)
                continue
            if owner == LEGACY_NODE_DIR:
                _adopt(ns, marker, prefix)
            elif owner != marker:
                raise _foreign(ns, owner)
            for name, source in sources.items():
                # hosts changed (that is why the node is written); resolv.conf mostly not, and a
                # read costs a fifth of a link and a rename (measured on ext4: 1.4 vs 7 us)
                if name == "hosts" or not _holds(f"{node_dir(ns)}/{name}", contents[name],
                                                 holding.setdefault(name, set())):
                    _put(source, f"{node_dir(ns)}/{name}", f"{source}.{name}")
    finally:
        for source in sources.values():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(source)


def _put(source: str, target: str, staged: str) -> None:
    """A hard link of `source` renamed over `target`: the node sees the old file or
    the new one, never a part.  `staged` lies beside the node's directory, not in
    it: `ip netns exec` would bind it.  Its name is the source's, a fresh mkstemp
    name, so it is there only when a run was killed between link and rename."""
    try:
        os.link(source, staged)
    except FileExistsError:
        os.unlink(staged)
        os.link(source, staged)
    os.replace(staged, target)


def _holds(path: str, content: bytes, holding: set[tuple[int, int]] | None = None) -> bool:
    """The file at `path` is a regular file of ours, mode 0644, with exactly `content`.

    `holding`: (device, inode) of files this call found to hold `content` before, in
    this same write.  Every node's resolv.conf is a hard link of one file, so after
    the first node's is read, the others' are one lstat each (the same inode is the
    same bytes); a file replaced since (another inode) is read in full."""
    if holding:
        try:
            st = os.lstat(path)
        except OSError:
            return False
        if (st.st_dev, st.st_ino) in holding:
            return True
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        if st.st_size != len(content) or st.st_mode & 0o170777 != 0o100644 or st.st_uid != os.geteuid():
            return False
        if os.read(fd, len(content) + 1) != content:
            return False
        if holding is not None:
            holding.add((st.st_dev, st.st_ino))
        return True
    finally:
        os.close(fd)


_serial = itertools.count()


def _scratch(prefix: str) -> str:
    """A new temporary name in /etc/netns: PREFIX PID.N (tempfile's random names cost
    more than the file operations for a 1000-node lab; a clash with a dead run's
    leftover of the same pid fails with EEXIST, and the caller's O_EXCL/mkdir sees it)."""
    return f"{ETC_NETNS}/{prefix}{os.getpid()}.{next(_serial)}"


def _write_marker(ns: str, marker: str, directory: str, prefix: str) -> None:
    """Write /etc/netns/.vethlab-owner.NS for `directory` (atomic: staged, renamed)."""
    staged = _scratch(prefix)
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        os.fchmod(fd, 0o644)
        os.write(fd, f"{marker} {_identity(directory)}\n".encode())
    finally:
        os.close(fd)
    os.replace(staged, _marker_path(ns))


def _create_dir(ns: str, marker: str, sources: dict[str, str], prefix: str) -> None:
    tmp = _scratch(prefix)
    os.mkdir(tmp, 0o755)
    marked = False
    try:
        os.chmod(tmp, 0o755)  # whatever the umask
        for name, source in sources.items():
            os.link(source, f"{tmp}/{name}")
        _write_marker(ns, marker, tmp, prefix)  # only debris can be there: the directory does not exist
        marked = True
        try:
            _rename_noreplace(tmp, node_dir(ns))
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                raise _foreign(ns, "") from None
            raise
    except BaseException:
        if marked:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(_marker_path(ns))
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _adopt(ns: str, marker: str, prefix: str) -> None:
    """Mark a directory an older vethlab wrote as this lab's."""
    for name in _LEGACY_FILES - set(OUR_FILES):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{node_dir(ns)}/{name}")
    _write_marker(ns, marker, node_dir(ns), prefix)


def remove_files(ns: str, marker: str) -> None:
    """Remove /etc/netns/NS if `marker`'s lab made it: only the files vethlab wrote,
    then the directory, then its marker.  A directory of someone else is left alone;
    one to which the admin added files keeps them and, its marker gone, is theirs.

    Killed half-way, what is left is still found: an emptied directory keeps its
    marker (bound to its inode), and a marker without its directory is debris that
    `temps()` lists — and removed here too: a run killed between the directory's
    rmdir and its marker's unlink may have left the namespace alive (a removal that
    failed, or files removed before it), and the next `down` then finds the node by
    its namespace and reads no debris of it.  With the namespace gone (`down`
    removes a node's files after the umounts, netns.delete_many), it reads the
    node's entries as for any node of the lab not found alive."""
    owner = _owner(ns)
    if owner is None:
        mark = _read_marker(ns)
        if mark is not None and mark[0] == marker:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(_marker_path(ns))
        return
    if owner != marker and owner != LEGACY_NODE_DIR:
        return
    directory = node_dir(ns)
    for name in OUR_FILES if owner == marker else _LEGACY_FILES:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{directory}/{name}")
    try:
        os.rmdir(directory)
    except FileNotFoundError:
        pass
    except OSError as exc:
        if exc.errno != errno.ENOTEMPTY:
            raise
    with contextlib.suppress(FileNotFoundError):
        os.unlink(_marker_path(ns))
