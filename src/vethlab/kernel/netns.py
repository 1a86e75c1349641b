"""Named network namespaces, made the way iproute2 makes them, without forking.

`ip netns add NAME` does: make /run/netns a shared mount point, unshare(CLONE_NEWNET),
bind-mount /proc/self/ns/net onto /run/netns/NAME.  pyroute2's `netns.create`
forks a helper per namespace (~10 ms each); here a short-lived worker thread does
the unshare, so the interpreter's main thread never changes namespace (a network
namespace belongs to a thread, not to the process) and a namespace costs ~1 ms.

Everything a caller needs to do *inside* a namespace right after creating it
(open a netlink socket, mark it, write sysctls) runs in that same thread, through
the `inside` callback, before the namespace becomes visible under /run/netns.  A
crash in between leaves nothing: an unmounted namespace dies with its last thread.
"""

from __future__ import annotations

import errno
import fcntl
import os

from . import libc
from .libc import CLONE_NEWNET, MNT_DETACH, MS_BIND, MS_REC, MS_SHARED, is_nsfs, mount, umount, unshare

NETNS_RUN_DIR = "/run/netns"

TYPE_CHECKING = False  # typing is not imported at run time: the CNI plugin's start-up (cni/main.py)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import TypeVar

    T = TypeVar("T")


def setns(fd: int) -> None:
    """Move the *calling thread* into the network namespace `fd` refers to."""
    libc.setns(fd, CLONE_NEWNET)


def unshare_net() -> None:
    """Give the *calling thread* a new, empty network namespace."""
    unshare(CLONE_NEWNET, "unshare(CLONE_NEWNET)")


def ns_path(name: str) -> str:
    """/run/netns/NAME.  Callers pass names checked by topology.naming (or read from
    this directory); a name that is not one path component is a bug, refused here
    as the last line of defence rather than unmounted and unlinked elsewhere."""
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"{name!r} cannot name a namespace file under {NETNS_RUN_DIR}")
    return os.path.join(NETNS_RUN_DIR, name)


def list_names() -> list[str]:
    """Namespace names under /run/netns (dot-files are vethlab's birth markers)."""
    try:
        return sorted(n for n in os.listdir(NETNS_RUN_DIR) if not n.startswith("."))
    except FileNotFoundError:
        return []


def list_hidden() -> list[str]:
    try:
        return sorted(n for n in os.listdir(NETNS_RUN_DIR) if n.startswith("."))
    except FileNotFoundError:
        return []


def same_file(a: str, b: str) -> bool:
    """Are two names under /run/netns links to one (unmounted) file?"""
    try:
        sa, sb = os.lstat(ns_path(a)), os.lstat(ns_path(b))
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def exists(name: str) -> bool:
    return os.path.lexists(ns_path(name))


def is_mounted(name: str) -> bool:
    """A live namespace file is an nsfs bind mount; a dead one (after a reboot on a
    disk-backed /run) is a plain empty file on which `ip netns exec` gives EINVAL."""
    try:
        fd = os.open(ns_path(name), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return is_nsfs(fd)
    finally:
        os.close(fd)


def mounted_names() -> set[str]:
    """Names under /run/netns that are mount points: the live namespaces, from one
    read of /proc/self/mountinfo (1000 checks in ~2 ms instead of 1000 opens)."""
    prefix = NETNS_RUN_DIR + "/"
    out = set()
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            target = line.split(" ", 5)[4]
            if target.startswith(prefix):
                out.add(target[len(prefix):].replace("\\040", " "))
    return out


#: ioctl(2) on an nsfs fd: a new fd for the user namespace that owns it (linux/nsfs.h,
#: _IO(0xb7, 0x1))
NS_GET_USERNS = 0xB701


def same_user_namespace(name: str) -> bool:
    """Is namespace NAME owned by the user namespace vethlab runs in?

    Every namespace vethlab makes is.  One an unprivileged user made inside a user
    namespace of their own, then attached under /run/netns by an administrator
    (`ip netns attach`), is not: its owner was root there and could set any lo alias,
    including vethlab's marker, so the marker alone would let them borrow vethlab's
    power to delete a namespace and kill its processes."""
    try:
        fd = open_ns(name)
    except OSError:
        return False
    try:
        user_fd = fcntl.ioctl(fd, NS_GET_USERNS)
    except OSError:
        return False
    finally:
        os.close(fd)
    try:
        theirs = os.fstat(user_fd)
    finally:
        os.close(user_fd)
    ours = os.stat("/proc/self/ns/user")
    return (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino)


def open_ns(name: str) -> int:
    """Open a namespace read-only; never creates one (unlike pyroute2's default)."""
    return os.open(ns_path(name), os.O_RDONLY | os.O_CLOEXEC)


def _ensure_run_dir() -> None:
    """Make /run/netns a shared mount point, as iproute2 does, so that a delete here
    propagates into mount namespaces (`ip netns exec`) that hold a copy of the mount."""
    os.makedirs(NETNS_RUN_DIR, mode=0o755, exist_ok=True)
    try:
        mount("none", NETNS_RUN_DIR, None, MS_SHARED | MS_REC)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        mount(NETNS_RUN_DIR, NETNS_RUN_DIR, None, MS_BIND | MS_REC)
        mount("none", NETNS_RUN_DIR, None, MS_SHARED | MS_REC)


def run_in_thread(fn: Callable[[], T]) -> T:
    """Run `fn` in a fresh thread and return its result (or raise its error).  Used
    for every setns/unshare so the namespace change dies with the thread."""
    import threading  # here: the CNI plugin uses setns alone, and threading costs it ~2 ms to import

    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=target, name="vethlab-netns")
    worker.start()
    worker.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


_NEW_FILE = os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC


def create_many(names: Iterable[str], inside: Callable[[str], T],
                tag: Callable[[str], str] | None = None) -> dict[str, T]:
    """Create each named namespace, call `inside(name)` from within it, then publish
    it under /run/netns.  Returns what `inside` returned, per name.

    With `tag`, the file is first created as /run/netns/TAG(name) and hard-linked
    to its name, and the tag removed once the namespace is mounted: a crash at any
    step leaves either nothing, or a dead file whose twin tag says whose it is.

    Raises FileExistsError if a name is taken; namespaces created before an error
    are returned through the exception's `created` list."""
    names = list(names)
    _ensure_run_dir()
    results: dict[str, T] = {}

    def work() -> dict[str, T]:
        for name in names:
            path = ns_path(name)
            marker = ns_path(tag(name)) if tag else None
            if marker:
                try:
                    fd = os.open(marker, _NEW_FILE, 0o444)
                except FileExistsError:  # a crashed run's: this run's now
                    _unlink_quiet(marker)
                    fd = os.open(marker, _NEW_FILE, 0o444)
                os.close(fd)
                try:
                    os.link(marker, path)
                except BaseException:
                    _unlink_quiet(marker)
                    raise
            else:
                os.close(os.open(path, _NEW_FILE, 0o444))
            try:
                unshare_net()
                results[name] = inside(name)
                mount("/proc/thread-self/ns/net", path, "none", MS_BIND)
            except BaseException:
                _unlink_quiet(path)
                if marker:
                    _unlink_quiet(marker)
                raise
            if marker:
                _unlink_quiet(marker)
        return results

    try:
        return run_in_thread(work)
    except BaseException as exc:
        exc.created = list(results)  # type: ignore[attr-defined]
        raise


def delete(name: str) -> None:
    """Unmount and remove /run/netns/NAME.  The kernel destroys the namespace (and
    the interfaces in it) once no process holds it any more."""
    path = ns_path(name)
    try:
        umount(path, MNT_DETACH)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOENT):
            raise
    _unlink_quiet(path)


# Deleting many namespaces: umount2(MNT_DETACH) + unlink of each /run/netns file.
# Each umount waits for an expedited RCU grace period after dropping the mount lock.
# With the other CPU idle that takes microseconds and one thread is fastest; when it
# is busy (the kernel already destroying the first namespaces, other work, hypervisor
# steal) each takes ~0.3-9 ms, and only waits asked for at the same time share one.
# Measured 2026-12-02 in a sandbox (2-vCPU VM, kernel 6.18, load 3-4), in-process
# after `vethlab up`, interleaved, medians of 5 (min-max), chain of 1000 / star of
# 1000 / star of 200 namespaces, each with its /etc/netns files:
#   16 threads, each a node's files then its umount (before):
#                               0.158 (0.11-0.17) / 0.313 (0.21-0.38) / 56 (42-66) ms
#   serial umounts, 16 threads once a probe finds them slow, files beside in one
#   thread (this code):         0.154 (0.09-0.18) / 0.227 (0.20-0.43) / 17 (16-107) ms
#   the same, files after:      0.228 / 0.291 / 22 ms
#   16 umount threads, files after: 0.224 / 0.188 / 19 ms
#   serial umounts, files beside, no switch: 0.157 (0.10-1.67) / 0.82 (0.52-1.18) s
#   2 / 4 umount threads, files beside: chain 0.175 / 0.51 s, star 0.79 / 0.52 s
#   `ip -b` of `netns del`, then the files: 0.285 / 0.708 / 22 ms
# Again at load 1-2 (chain of 1000 / star of 200, medians of 5 (min-max)): before
# 0.147 (0.12-0.24) s / 31 (23-34) ms; this code 0.088 (0.04-0.17) s / 15 (9-18) ms;
# this code's umounts with the files after them 0.102 s / 20 ms, before them
# 0.138 s / 18 ms; serial umounts, files after: 0.283 (0.03-0.51) s / 19 (6-165) ms.
# The probe found umounts slow in 38 runs of 39 and stayed serial once (200 in
# 8 ms); measured the same morning on a quieter machine, serial umounts took 22-48
# ms for 1000 namespaces where 16 threads took 0.13-0.24 s (threads contending for
# the GIL and the mount lock cost more than they share).  File work inside the
# umounting threads is what cost the 200-star.  2 or 4 threads share too few waits.
# Measured again with the machine otherwise idle (the fresh-clone benchmark's
# conditions), in-process after `vethlab up` of a chain of 1000, 4 rounds
# interleaved: files beside the umounts 59-102 ms -- the file thread keeps the other
# CPU busy, each grace period waits for it, the probe finds umounts slow and starts
# threads -- against 17-22 ms with the files after the umounts (the umounts alone
# 11-14 ms, serial: the probe never switched).  So the files now come after.
DELETE_THREADS = 16
#: umounts timed together before deciding, and the mean time per umount (s) above
#: which more threads are started: fast ones take 9-60 us, slow ones 0.3-9 ms
SLOW_PROBE = 16
SLOW_UMOUNT = 200e-6


def delete_many(names: list[str], after: Callable[[str], None] | None = None) -> dict[str, Exception]:
    """`delete` for many namespaces at once; then `after(name)` for each (the node's
    /etc/netns files), once every umount is done: file work running at the same time
    keeps the other CPU busy, and every umount's expedited grace period waits for it
    (see above).  Returns the failures by name, of either; every namespace is deleted
    whatever `after` does with its name, and every name is given to `after` whatever
    its umount did.  The umounts go one after another and spread to DELETE_THREADS
    threads when they prove slow (see above).

    A run killed in between leaves either the namespace alive (found by its marker)
    or the node's files without a live namespace (found by theirs)."""
    import threading
    import time
    from collections import deque

    errors: dict[str, Exception] = {}
    side: dict[str, Exception] = {}

    def files() -> None:
        for name in names:
            try:
                after(name)  # type: ignore[misc]  # only called with `after`
            except Exception as exc:  # reported, never the end of the other names
                side[name] = exc

    queue = deque(names)

    def umounts(limit: int | None = None) -> None:
        """Delete names taken off the queue until it is empty (or `limit` are done)."""
        done = 0
        while limit is None or done < limit:
            try:
                name = queue.popleft()  # atomic: threads take each name once
            except IndexError:
                return
            done += 1
            try:
                delete(name)
            except Exception as exc:  # one name's failure is reported, the others go on
                errors[name] = exc  # one key per name: no two threads write the same

    helpers: list[threading.Thread] = []
    try:
        while queue and not helpers:
            started = time.monotonic()
            umounts(SLOW_PROBE)
            if len(queue) > SLOW_PROBE and time.monotonic() - started > SLOW_PROBE * SLOW_UMOUNT:
                for _ in range(DELETE_THREADS - 1):
                    helper = threading.Thread(target=umounts, name="vethlab-netns-del")
                    try:
                        helper.start()
                    except RuntimeError:  # no thread to be had: the ones there do the rest
                        break
                    helpers.append(helper)
                if not helpers:
                    break
        umounts()
    finally:
        for helper in helpers:
            helper.join()
        if after is not None:
            files()
    for name, exc in side.items():
        errors.setdefault(name, exc)
    return errors


def _unlink_quiet(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def call_inside(name: str, fn: Callable[[], T]) -> T:
    """Run `fn` in a thread that has entered namespace NAME (read-only open)."""
    fd = open_ns(name)

    def work() -> T:
        try:
            setns(fd)
        finally:
            os.close(fd)
        return fn()

    return run_in_thread(work)


def call_inside_many(names: Iterable[str], fn: Callable[[str], T]) -> dict[str, T]:
    """Like `call_inside` for many namespaces, in one thread (one setns each)."""
    names = list(names)

    def work() -> dict[str, T]:
        out: dict[str, T] = {}
        for name in names:
            fd = open_ns(name)
            try:
                setns(fd)
            finally:
                os.close(fd)
            out[name] = fn(name)
        return out

    return run_in_thread(work)
