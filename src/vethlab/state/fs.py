"""The state directory, opened without trusting it.

vethlab runs as root and acts on what its state says (namespaces to delete,
processes to signal, files to write).  So the state root must belong to the
invoking user and not be writable by others, and nothing under it is ever
reached through a symlink: the root is walked from "/" one component at a time
with O_NOFOLLOW (a symlinked component is refused, not resolved), and every
file and directory below is opened relative to its directory's descriptor
(openat, mkdirat, renameat, unlinkat) with O_NOFOLLOW.  A symlink planted as
LAB.lock, .state.json.tmp or logs is then refused, or removed as a link, never
written through.  The checks are cheap: a handful of openat/fstat calls, a few
microseconds on `exec`'s path.
"""

from __future__ import annotations

import errno
import os
import stat

from ..errors import StateError

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC
_NOT_ROOT_ADVICE = "run vethlab as root, or inside `vethlab sandbox` (rootless)"


def _user(uid: int) -> str:
    import pwd

    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


class StateDenied(StateError):
    """Permission denied: the state is there but this user may not read it."""


def _denied(path: str, doing: str) -> StateError:
    advice = _NOT_ROOT_ADVICE if os.geteuid() != 0 else "check its owner and mode"
    return StateDenied(f"cannot {doing} {path}: permission denied — {advice}")


def _symlink(path: str, parent_fd: int, name: str, hint: str = "") -> StateError | None:
    """A StateError if `name` in `parent_fd` is a symlink (or not what we need)."""
    try:
        st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    except OSError:
        return None
    if stat.S_ISLNK(st.st_mode):
        try:
            target = os.readlink(name, dir_fd=parent_fd)
        except OSError:
            target = "?"
        return StateError(f"{path} is a symbolic link (to {target}); vethlab never reaches its state through a "
                          f"symlink: {hint or f'remove it (`rm {path}`)'}")
    return None


def check_owned(fd: int, path: str, what: str) -> os.stat_result:
    """Refuse `fd` unless the invoking user owns it and nobody else may write it."""
    st = os.fstat(fd)
    me = os.geteuid()
    if st.st_uid != me:
        if me != 0:
            advice = _NOT_ROOT_ADVICE + ", or set VETHLAB_STATE_DIR to a directory of your own"
        else:
            advice = (f"if it is root's, `chown root {path}; chmod go-w {path}`; otherwise set "
                      "VETHLAB_STATE_DIR to a directory root owns")
        raise StateError(f"{what} {path} belongs to {_user(st.st_uid)}, not to you ({_user(me)}): its owner could "
                         f"change what vethlab then does as you; {advice}")
    if st.st_mode & 0o022:
        who = "group and others" if st.st_mode & 0o022 == 0o022 else ("others" if st.st_mode & 0o002 else "its group")
        raise StateError(f"{what} {path} is writable by {who} (mode {stat.S_IMODE(st.st_mode):04o}): they could change "
                         f"what vethlab then does; `chmod go-w {path}` (vethlab makes it 0700)")
    return st


def open_root(path: str, create: bool) -> int | None:
    """A descriptor of the state root `path`, walked from "/" without following a
    symlink anywhere; None when it does not exist and `create` is false.  Missing
    directories are made (the root itself 0700).  Every parent must not be writable
    by everyone unless sticky (/tmp is fine: nobody can rename our entry there)."""
    path = os.path.abspath(path)
    parts = [p for p in path.split("/") if p]
    fd = os.open("/", DIR_FLAGS)
    here = ""
    try:
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            here = f"{here}/{part}"
            nfd = _open_dir_at(fd, part, here, create, 0o700 if last else 0o755, "the state directory",
                               f"set VETHLAB_STATE_DIR to the real directory instead of {path}")
            if nfd is None:
                os.close(fd)
                return None
            os.close(fd)
            fd = nfd
            if not last:
                st = os.fstat(fd)
                mode = st.st_mode
                if mode & 0o002 and not mode & stat.S_ISVTX:
                    raise StateError(f"{here}, a parent of the state directory {path}, is writable by everyone "
                                     f"(mode {stat.S_IMODE(mode):04o}) and not sticky: anyone could swap the state "
                                     "directory; set VETHLAB_STATE_DIR elsewhere")
                _check_parent_owner(st, here, path)
        check_owned(fd, path, "the state directory")
        return fd
    except BaseException:
        os.close(fd)
        raise


def _check_parent_owner(st: os.stat_result, here: str, path: str) -> None:
    """Refuse a parent of the state root that another user owns, or that a group
    other than root's may write without the sticky bit: they could rename the state
    directory away (its labs then look gone) or put an older one of yours back.

    An owner not mapped into our user namespace (a rootless sandbox sees the real
    root's "/" as the overflow uid) is outside our reach either way and passes."""
    me = os.geteuid()
    owner_ok = st.st_uid in (0, me) or not _mapped(st.st_uid)
    group_ok = not st.st_mode & 0o020 or st.st_mode & stat.S_ISVTX or st.st_gid == 0 or not _mapped_gid(st.st_gid)
    if owner_ok and group_ok:
        return
    who = f"belongs to {_user(st.st_uid)}" if not owner_ok else f"is writable by group {st.st_gid}"
    raise StateError(f"{here}, a parent of the state directory {path}, {who} (mode {stat.S_IMODE(st.st_mode):04o}): "
                     "they could rename the state directory away or swap in another; set VETHLAB_STATE_DIR to a "
                     "directory whose parents only root or you can change")


def _id_mapped(ident: int, map_file: str) -> bool:
    try:
        with open(map_file, encoding="ascii") as fh:
            ranges = [tuple(int(x) for x in line.split()) for line in fh if line.strip()]
    except OSError:
        return True
    return any(inside <= ident < inside + count for inside, _outside, count in ranges)


def _mapped(uid: int) -> bool:
    return _id_mapped(uid, "/proc/self/uid_map")


def _mapped_gid(gid: int) -> bool:
    return _id_mapped(gid, "/proc/self/gid_map")


def _open_dir_at(parent: int, name: str, path: str, create: bool, mode: int, what: str,
                 hint: str = "") -> int | None:
    for _ in range(2):
        try:
            return os.open(name, DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                return None
            try:
                os.mkdir(name, mode, dir_fd=parent)
            except FileExistsError:
                pass  # made meanwhile: open it (and check it) as found
            except PermissionError:
                raise _denied(path, f"create {what}") from None
        except PermissionError:
            raise _denied(path, f"open {what}") from None
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                link = _symlink(path, parent, name, hint)
                raise link or StateError(f"{path} is not a directory; vethlab needs {what} there: remove it, or set "
                                         "VETHLAB_STATE_DIR elsewhere") from None
            raise
    raise StateError(f"cannot open {what} {path}")


def open_dir(parent: int, name: str, path: str, create: bool, what: str) -> int | None:
    """A checked descriptor of directory `name` under `parent` (made 0700 if
    `create`), never through a symlink; None when missing and not `create`."""
    fd = _open_dir_at(parent, name, path, create, 0o700, what)
    if fd is not None:
        try:
            check_owned(fd, path, what)
        except BaseException:
            os.close(fd)
            raise
    return fd


def read_in_lab(root: int, lab: str, lab_path: str, name: str, what: str) -> int | None:
    """A checked read-only descriptor of file `name` in lab `lab`'s directory under
    the state root `root`; None when the directory or the file is missing."""
    folder = open_dir(root, lab, lab_path, False, f"the state directory of lab {lab}")
    if folder is None:
        return None
    try:
        return open_file(folder, name, os.path.join(lab_path, name), os.O_RDONLY, what)
    except FileNotFoundError:
        return None
    finally:
        os.close(folder)


def open_file(parent: int, name: str, path: str, flags: int, what: str, mode: int = 0o600) -> int:
    """A checked descriptor of regular file `name` under `parent`, never through a
    symlink (ELOOP becomes a StateError saying so).  O_NONBLOCK: a FIFO planted
    there must not hang the open; it is then refused as not a regular file."""
    try:
        fd = os.open(name, flags | FILE_FLAGS | os.O_NONBLOCK, mode, dir_fd=parent)
    except PermissionError:
        raise _denied(path, f"open {what}") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _symlink(path, parent, name) or StateError(f"{path}: {exc.strerror}") from None
        if isinstance(exc, FileNotFoundError):
            raise
        raise StateError(f"cannot open {what} {path}: {exc.strerror}") from None  # ENXIO: a FIFO, ...
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise StateError(f"{path} is not a regular file; vethlab needs {what} there: remove it")
        check_owned(fd, path, what)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_scratch(parent: int, name: str, path: str) -> int:
    """A temp file `name` under `parent`, truncated, for writing before a rename.
    A symlink found there is removed as a link and the file made afresh; it is
    never written through.  Like before, a second writer of the same lab truncates
    the same inode (the lab's lock is what keeps writers apart)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    try:
        return open_file(parent, name, path, flags, "a temporary state file")
    except StateError:
        if _symlink(path, parent, name) is None:
            raise
    unlink(parent, name)
    return open_file(parent, name, path, flags | os.O_EXCL, "a temporary state file")


def remove_tree(parent: int, name: str) -> None:
    """Remove `name` under `parent` and everything below it, never following a
    symlink: a symlink is removed as a link, its target untouched."""
    try:
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        unlink(parent, name)
        return
    fd = os.open(name, DIR_FLAGS, dir_fd=parent)  # ELOOP if swapped for a symlink meanwhile: refuse
    try:
        for entry in os.listdir(fd):
            remove_tree(fd, entry)
    finally:
        os.close(fd)
    try:
        os.rmdir(name, dir_fd=parent)
    except FileNotFoundError:
        pass


def unlink(parent: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=parent)
    except FileNotFoundError:
        pass
