"""The host side of nodes' views (kernel/nodefs.py): private directories' backing
directories, files written into them, and mount points.

Everything under a backing directory is the node's to change while it runs, so
nothing here follows a symlink below it: each directory on the way is opened
with O_NOFOLLOW from the backing directory down, and a file is written to a
temporary name and renamed over the old one (a rename replaces a link, never
follows it).  A node that replaced /etc/frr/frr.conf by a link to /etc/shadow on
the host does not get /etc/shadow overwritten by the next `up`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _walk(base: str, parts: list[str], create: bool) -> int:
    """A descriptor of base/parts..., walked without following a symlink anywhere
    below `base`; missing directories made (0755) when `create`."""
    fd = os.open(base, DIR_FLAGS)
    try:
        for part in parts:
            if part in ("", ".", ".."):
                raise OSError(errno.EINVAL, f"bad path component {part!r}")
            try:
                nfd = os.open(part, DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                os.mkdir(part, 0o755, dir_fd=fd)
                nfd = os.open(part, DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise OSError(exc.errno, f"{part} in {base} is not a directory (a symlink?): refused") from None
                raise
            os.close(fd)
            fd = nfd
        return fd
    except BaseException:
        os.close(fd)
        raise


def check_way(base: str, relative: str) -> None:
    """Raise as `write_file` would if a directory on the way to base/relative is not
    one (a symlink the node planted): asked of every file before any is written, so
    a refused one leaves the node's other files as they were.  Missing directories
    are fine (they are made)."""
    try:
        os.close(_walk(base, [p for p in relative.split("/") if p][:-1], create=False))
    except FileNotFoundError:
        pass  # the walk goes down from `base`: every directory above the missing one was sound


def write_file(base: str, relative: str, content: bytes, mode: int, owner: tuple[int, int] | None = None) -> None:
    """Write base/relative atomically (a temporary file renamed over it), never
    through a symlink: every directory on the way is opened with O_NOFOLLOW and the
    rename replaces a link rather than following it."""
    parts = [p for p in relative.split("/") if p]
    dirfd = _walk(base, parts[:-1], create=True)
    name = parts[-1]
    tmp = f".vethlab-tmp.{name}.{os.getpid()}"
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=dirfd)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dirfd)
        try:
            _fill(fd, content, mode, owner)
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=dirfd, dst_dir_fd=dirfd)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=dirfd)
        raise
    finally:
        os.close(dirfd)


def overwrite_file(path: str, content: bytes, mode: int, owner: tuple[int, int] | None = None) -> None:
    """Write a backing file in place (its inode may be bind-mounted into a node: a
    rename would leave the node the old one); made 0600 first, then given its mode."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, f"{path} is not a regular file")
        os.ftruncate(fd, 0)
        _fill(fd, content, mode, owner)
    finally:
        os.close(fd)


def _fill(fd: int, content: bytes, mode: int, owner: tuple[int, int] | None) -> None:
    """An empty file's content, then its mode and (if given) owner."""
    os.write(fd, content)
    os.fchmod(fd, mode)
    if owner is not None:
        _fchown(fd, owner)


def _fchown(fd: int, owner: tuple[int, int]) -> None:
    try:
        os.fchown(fd, *owner)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise


def make_mount_point(base: str, relative: str, directory: bool) -> None:
    """An empty directory or file base/relative to mount on (inside a private
    directory's backing, or on the host when `base` is "/"), made if missing,
    without following symlinks below `base`."""
    parts = [p for p in relative.split("/") if p]
    if not parts:
        return
    dirfd = _walk(base, parts[:-1], create=True)
    try:
        try:
            st = os.stat(parts[-1], dir_fd=dirfd, follow_symlinks=False)
        except FileNotFoundError:
            if directory:
                os.mkdir(parts[-1], 0o755, dir_fd=dirfd)
            else:
                os.close(os.open(parts[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                                 0o644, dir_fd=dirfd))
            return
        if stat.S_ISDIR(st.st_mode) != directory:
            raise OSError(errno.EEXIST, f"{relative} exists and is not a {'directory' if directory else 'file'}")
    finally:
        os.close(dirfd)


def prepare_private(backing: str, host_dir: str, copy: bool, owner: tuple[int, int] | None,
                    mode: int | None) -> None:
    """A private directory's backing directory: made once (its content then lives as
    long as the lab), seeded with a copy of the host's directory when `copy` (owners
    and modes kept), given the owner and mode asked for — by default those of the
    host's directory, when there is one."""
    try:
        os.mkdir(backing, 0o700)
    except FileExistsError:
        st = os.lstat(backing)
        if not stat.S_ISDIR(st.st_mode):
            raise OSError(errno.EEXIST, f"{backing} is not a directory") from None
        return  # made by an earlier run: the node's content stays
    try:
        like: os.stat_result | None = os.stat(host_dir)
    except OSError:
        like = None
    if like is not None and not stat.S_ISDIR(like.st_mode):
        like = None
    if copy and like is not None:
        shutil.copytree(host_dir, backing, symlinks=True, dirs_exist_ok=True, copy_function=_copy_entry)
        for top, dirs, files in os.walk(backing):
            for name in dirs + files:
                path = os.path.join(top, name)
                source = os.path.join(host_dir, os.path.relpath(path, backing))
                with contextlib.suppress(OSError):
                    st = os.lstat(source)
                    _chown(path, (st.st_uid, st.st_gid), follow=False)
    os.chmod(backing, mode if mode is not None else (stat.S_IMODE(like.st_mode) if like else 0o755))
    if owner is None and like is not None:
        owner = (like.st_uid, like.st_gid)
    if owner is not None:
        _chown(backing, owner)


def _copy_entry(source: str, target: str) -> None:
    """One entry of a seeded private directory: a regular file copied, a FIFO made
    anew; a socket or device node is left out (a daemon running on the host keeps
    its sockets in /run/DAEMON: copying one fails, and the node's own daemon makes
    its own).  Without this, `copy: true` of such a directory failed the whole `up`."""
    st = os.lstat(source)
    if stat.S_ISREG(st.st_mode):
        shutil.copy2(source, target, follow_symlinks=False)
    elif stat.S_ISFIFO(st.st_mode):
        os.mkfifo(target, stat.S_IMODE(st.st_mode))


def _chown(path: str, owner: tuple[int, int], follow: bool = True) -> None:
    """chown, except to an id this user namespace does not map (EINVAL: a rootless
    sandbox sees the host's frr user as the overflow id): then the node's root keeps it."""
    try:
        os.chown(path, *owner, follow_symlinks=follow)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
