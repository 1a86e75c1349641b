"""Where nodes' views are pinned (STATE/.nodes/NETNS/{mnt,uts}), and the words that
enter one: all that `vethlab exec` needs to ask of every node, so it imports
nothing but `os` (a node without a view must cost nothing; kernel/nodefs.py,
which makes views, costs ~8 ms to import)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
VIEWS_DIR = ".nodes"
KINDS = ("mnt", "uts")


def state_root() -> str:
    """The state directory (store.state_root, without importing the store)."""
    return os.path.abspath(os.environ.get("VETHLAB_STATE_DIR") or "/run/vethlab")


def views_root() -> str:
    return os.path.join(state_root(), VIEWS_DIR)


def pin_dir(ns: str) -> str:
    """STATE/.nodes/NETNS.  `ns` is a checked namespace name; anything that is not one
    path component is refused here as the last line of defence."""
    if not ns or "/" in ns or ns.startswith("."):
        raise ValueError(f"{ns!r} cannot name a node view under {views_root()}")
    return os.path.join(views_root(), ns)


def _nsfs_dev() -> int:
    return os.stat("/proc/self/ns/mnt").st_dev


def has_view(ns: str | None) -> bool:
    """Does the node of namespace `ns` have a live view?  Two stats (one when it has
    none): `exec` asks this of every node."""
    if ns is None:
        return False
    try:
        st = os.stat(os.path.join(views_root(), ns, "mnt"))
    except (OSError, ValueError):
        return False
    return st.st_dev == _nsfs_dev()


def enter_argv(ns: str | None) -> list[str]:
    """The nsenter(1) words that put a command into the node's view ([] without one).
    `--wd=.` keeps the caller's working directory (setns to a mount namespace would
    otherwise move it to /), as `ip netns exec` keeps it."""
    if not has_view(ns):
        return []
    assert ns is not None
    import shutil

    nsenter = shutil.which("nsenter") or "/usr/bin/nsenter"
    pins = pin_dir(ns)
    return [nsenter, f"--mount={pins}/mnt", f"--uts={pins}/uts", "--wd=.", "--"]


def call_in_view(ns: str, fn: Callable[[], T]) -> T:
    """Run `fn` in a thread that has entered the node's mount and UTS namespaces, in
    the caller's working directory (as `nsenter --wd=.`): how `exec` looks up a
    command the node may have and the host not.  ctypes (kernel/libc.py) and
    threading (netns.run_in_thread) are imported here, for nodes with a view only."""
    from .libc import CLONE_FS, CLONE_NEWNS, CLONE_NEWUTS, setns, unshare
    from .netns import run_in_thread

    fds = [os.open(os.path.join(pin_dir(ns), kind), os.O_RDONLY | os.O_CLOEXEC) for kind in KINDS]
    fds.append(os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))

    def work() -> T:
        try:
            unshare(CLONE_FS, "unshare(CLONE_FS)")  # a thread sharing its fs cannot setns(mnt)
            for nsfd, flag in zip(fds, (CLONE_NEWNS, CLONE_NEWUTS), strict=False):
                setns(nsfd, flag)
            os.fchdir(fds[-1])  # setns(mnt) moved it to the root
        finally:
            for nsfd in fds:
                os.close(nsfd)
        return fn()

    return run_in_thread(work)
