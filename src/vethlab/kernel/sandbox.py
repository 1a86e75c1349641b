"""Throw-away network + mount (+ pid, + user when not root) namespaces.

`vethlab sandbox -- CMD` runs CMD where every lab it builds vanishes with it:

* a private network namespace (lo up, nothing else: no route to the real host);
* a private mount namespace with a fresh tmpfs on /run (so /run/netns and the
  default state dir /run/vethlab start empty and die with the sandbox) and on
  /etc/netns (made by an overlay on /etc when the directory does not exist and we
  may not create it, as for `nobody`);
* a private pid namespace whose init is the tiny reaper below: when CMD exits,
  the kernel kills every process left in the sandbox (services, stray pings);
* when not root, a user namespace mapping the caller to root in it (rootless).

`enter_private()` does the same for the *calling process* (no pid namespace):
the pytest plugin uses it to give each test a fresh sandbox in-process.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import struct
import sys

from ..errors import ConflictError
from .libc import CLONE_NEWNET, CLONE_NEWNS, MNT_DETACH, MS_PRIVATE, MS_REC, mount, umount, unshare

ENV_FLAG = "VETHLAB_SANDBOX"
STATE_DIR = "/run/vethlab"


def _tmpfs(target: str) -> None:
    mount("vethlab-sandbox", target, "tmpfs", 0, "mode=755")


def lo_up() -> None:
    """`ip link set lo up` without spawning ip or importing netlink."""
    SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        req = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(sock, SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | IFF_UP))


def _prepare_mounts() -> None:
    """Inside fresh namespaces: the private /run, /etc/netns and the state dir."""
    mount("none", "/", None, MS_REC | MS_PRIVATE)
    _tmpfs("/run")
    for sub in ("netns", "vethlab", "lock"):
        os.makedirs(os.path.join("/run", sub), exist_ok=True)
    os.chmod(STATE_DIR, 0o700)
    if not os.path.isdir("/etc/netns"):
        # Not even an empty directory is left on the real host: a writable overlay
        # on /etc (allowed in a user namespace too) gives the sandbox its own.
        scratch = "/run/.vethlab-etc"
        os.makedirs(scratch + "/upper")
        os.makedirs(scratch + "/work")
        mount("overlay", "/etc", "overlay", 0, f"lowerdir=/etc,upperdir={scratch}/upper,workdir={scratch}/work")
        os.makedirs("/etc/netns", exist_ok=True)
    _tmpfs("/etc/netns")
    os.environ[ENV_FLAG] = "1"
    os.environ["VETHLAB_STATE_DIR"] = STATE_DIR


_entered: list[str] = []  # mounts made by enter_private() in this process, newest last


def enter_private() -> None:
    """Move the calling (single-threaded) process into new network and mount
    namespaces prepared as a sandbox.  Needs root (or an enclosing sandbox).

    Called again (the next test), it first drops the previous call's mounts in the
    new mount namespace, so mounts do not pile up test after test; the previous
    namespaces die once nothing uses them."""
    unshare(CLONE_NEWNET | CLONE_NEWNS)
    while _entered:
        with contextlib.suppress(OSError):
            umount(_entered.pop(), MNT_DETACH)
    etc_was_dir = os.path.isdir("/etc/netns")
    _prepare_mounts()
    _entered.extend(["/run"] + ([] if etc_was_dir else ["/etc"]) + ["/etc/netns"])
    lo_up()


def command(argv: list[str], machines: list[str] | None = None, mtu: int | None = None) -> list[str]:
    """The unshare(1) command line that runs argv in a new sandbox (with simulated
    machines when `machines` names some: see kernel/machines.py)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        raise ConflictError("the `unshare` command (util-linux) is not installed")
    cmd = [unshare, "--net", "--mount", "--propagation", "private", "--pid", "--fork", "--kill-child"]
    if os.geteuid() != 0:
        cmd += ["--user", "--map-root-user"]
    extra = ["--machines", ",".join(machines)] if machines else []
    extra += ["--mtu", str(mtu)] if machines and mtu else []
    return cmd + ["--", sys.executable, "-m", "vethlab.kernel.sandbox", *extra, "--", *argv]


def run(argv: list[str], machines: list[str] | None = None, mtu: int | None = None) -> int:
    """Run argv in a new sandbox; return its exit status."""
    import subprocess

    if not argv:
        argv = [os.environ.get("SHELL", "/bin/sh")]
    try:
        return subprocess.call(command(argv, machines, mtu))
    except KeyboardInterrupt:
        return 130


def _init(argv: list[str], machines: list[str] | None = None, mtu: int = 1500) -> int:
    """pid 1 of the sandbox: set up mounts (and simulated machines), run argv,
    forward signals, reap."""
    try:
        mount("proc", "/proc", "proc", 0)  # this pid namespace's view
    except OSError:
        pass
    _prepare_mounts()
    lo_up()
    if machines:
        from . import machines as simulated

        made = simulated.start(machines, mtu)
        os.environ[simulated.ENV] = simulated.export(made)
        if sys.stderr.isatty():
            print(simulated.describe(made), file=sys.stderr)
    pid = os.fork()
    if pid == 0:
        try:
            os.execvp(argv[0], argv)
        except OSError as exc:
            print(f"vethlab sandbox: cannot run {argv[0]}: {exc.strerror}", file=sys.stderr)
            os._exit(127)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, lambda s, _f: os.kill(pid, s))
    while True:
        try:
            done, status = os.wait()
        except ChildProcessError:
            return 0
        except InterruptedError:
            continue
        if done == pid:
            return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


if __name__ == "__main__":
    args = sys.argv[1:]
    names: list[str] | None = None
    underlay_mtu = 1500
    while args and args[0] in ("--machines", "--mtu") and len(args) > 1:
        if args[0] == "--machines":
            names = args[1].split(",")
        else:
            underlay_mtu = int(args[1])
        args = args[2:]
    if args and args[0] == "--":
        args = args[1:]
    sys.exit(_init(args, names, underlay_mtu))
