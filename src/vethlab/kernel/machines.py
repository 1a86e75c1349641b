"""Simulated machines: several "computers" inside one sandbox, for multi-machine labs (SPEC §7).

`vethlab sandbox --machines m1,m2,m3 -- CMD` gives CMD, besides the usual
sandbox, one holder process per machine.  Each holder owns a network and a mount
namespace of its own, prepared like a sandbox (private /run with /run/netns and
the state dir /run/vethlab, private /etc/netns), so `vethlab up FILE --machine m2`
run there builds m2's part exactly as it would on a real computer.  The machines
share an underlay, as real ones share a LAN:

    sandbox namespace: bridge `vlunder`   10.200.0.254/24  fd00:200::fe/64
    machine number N (1-based, in the order given):
        eth0 (veth, port `vu-NAME` of vlunder)  10.200.0.N/24  fd00:200::N/64

`vethlab sandbox --on m2 -- CMD` (from CMD, or from inside any machine: it goes by
the VETHLAB_MACHINES variable the sandbox exports, `NAME=PID,…`) runs CMD inside
m2's namespaces, in the same working directory.  Everything is gone when CMD ends:
the holders die with the sandbox's pid namespace, and with them the machines'
namespaces, mounts, node namespaces and VXLAN sockets.

Each holder sets up its own side (it opens a netlink socket in the sandbox
namespace *before* it unshares, then makes the veth pair from inside its new
namespace with the port end sent back out), so nothing has to be coordinated
between processes but one "ready" byte on a pipe.
"""

from __future__ import annotations

import ctypes
import ipaddress
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from typing import NamedTuple

from . import nl

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
ENV = "VETHLAB_MACHINES"  #: NAME=PID,... of the machines of the enclosing sandbox
MACHINE_ENV = "VETHLAB_MACHINE"  #: set inside a simulated machine: its name
BRIDGE = "vlunder"
DEV = "eth0"
SUBNET = ipaddress.ip_network("10.200.0.0/24")
SUBNET6 = ipaddress.ip_network("fd00:200::/64")
MAX_MACHINES = 250
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,11}$")
_libc = ctypes.CDLL(None, use_errno=True)


class Machine(NamedTuple):
    name: str
    pid: int  # the holder: its /proc/PID/ns/{net,mnt} are the machine
    address: str  # underlay IPv4 (no prefix)
    address6: str
    dev: str = DEV


def address_of(number: int) -> tuple[str, str]:
    """(IPv4, IPv6) underlay address of machine `number` (1-based)."""
    return str(SUBNET.network_address + number), str(SUBNET6.network_address + number)


def name_problem(name: str) -> str | None:
    if not _NAME.match(name):
        return f"machine name {name!r} must match [a-z][a-z0-9-]{{0,11}}"
    return None


def parse_names(text: str) -> list[str]:
    """`m1,m2,m3` -> names; ValueError naming the problem."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ValueError("--machines needs at least one name, e.g. m1,m2")
    for name in names:
        problem = name_problem(name)
        if problem:
            raise ValueError(problem)
    if len(set(names)) != len(names):
        raise ValueError("--machines names a machine twice")
    if len(names) > MAX_MACHINES:
        raise ValueError(f"at most {MAX_MACHINES} machines")
    return names


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _link_index(sock: nl.NlSocket, name: str) -> int:
    msg = sock.get(nl.RTM_GETLINK, nl.ifinfo() + nl.attr_str(nl.IFLA_IFNAME, name), f"look up {name}")
    return nl.parse_link(msg).index


def _add_address(sock: nl.NlSocket, index: int, cidr: str, where: str) -> None:
    iface = ipaddress.ip_interface(cidr)
    sock.request(nl.RTM_NEWADDR, nl.F_CREATE | nl.F_EXCL,
                 nl.addr_body(index, iface.ip.packed, iface.network.prefixlen, True), f"add {cidr} in {where}")


def _await_in_use(sock: nl.NlSocket, address: str, where: str, timeout: float = 10.0) -> None:
    """Return once `address` has its local route: the kernel acknowledges an IPv6 address
    added NODAD before addrconf's work item makes it answer neighbour solicitations
    (and under load that item runs late: the first ping to a new machine was lost)."""
    ip = ipaddress.ip_address(address)
    deadline = time.monotonic() + timeout
    while ip.packed not in nl.local_ipv6(sock, f"list IPv6 routes in {where}"):
        if time.monotonic() > deadline:
            raise OSError(f"{ip} in {where} is not in use after {timeout:g} s")
        time.sleep(0.005)


def make_underlay(mtu: int = 1500) -> None:
    """The underlay bridge in the calling namespace, addressed .254 / ::fe, up."""
    sock = nl.NlSocket()
    try:
        index = random.randint(1 << 20, (1 << 30) - 1)
        sock.request(nl.RTM_NEWLINK, nl.F_CREATE | nl.F_EXCL, nl.bridge_body(BRIDGE, mtu, index),
                     f"create bridge {BRIDGE}")
        sock.request(nl.RTM_NEWLINK, 0, nl.setlink_body(index, up=True), f"set {BRIDGE} up")
        _add_address(sock, index, f"{SUBNET.network_address + 254}/{SUBNET.prefixlen}", BRIDGE)
        _add_address(sock, index, f"{SUBNET6.network_address + 0xfe}/{SUBNET6.prefixlen}", BRIDGE)
        _await_in_use(sock, str(SUBNET6.network_address + 0xfe), BRIDGE)
    finally:
        sock.close()


def _hold(name: str, number: int, mtu: int, ready_w: int) -> None:
    """In the forked holder: become the machine, plug into the underlay, report, wait."""
    from .sandbox import _prepare_mounts, lo_up

    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # the machine dies with whoever made it
    outer = nl.NlSocket()  # stays in the sandbox namespace: enslaves our port there
    outer_fd = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    _check(_libc.unshare(CLONE_NEWNET | CLONE_NEWNS), "unshare")
    _prepare_mounts()
    lo_up()
    inner = nl.NlSocket()
    port = f"vu-{name}"
    port_index = random.randint(1 << 20, (1 << 30) - 1)
    inner.request(nl.RTM_NEWLINK, nl.F_CREATE | nl.F_EXCL,
                  nl.veth_body(DEV, port, 2, port_index, None, outer_fd, mtu), f"create {DEV} of {name}")
    bridge = _link_index(outer, BRIDGE)
    outer.request(nl.RTM_NEWLINK, 0, nl.setlink_body(port_index, up=True, master=bridge), f"plug {port}")
    v4, v6 = address_of(number)
    inner.request(nl.RTM_NEWLINK, 0, nl.setlink_body(2, up=True), f"set {DEV} of {name} up")
    _add_address(inner, 2, f"{v4}/{SUBNET.prefixlen}", name)  # after up, as vethlab does: IPv6 joins its
    _add_address(inner, 2, f"{v6}/{SUBNET6.prefixlen}", name)  # groups on a running interface
    _await_in_use(inner, v6, name)  # reported ready only once it answers for it
    for sock in (inner, outer):
        sock.close()
    os.close(outer_fd)
    os.environ[MACHINE_ENV] = name
    os.write(ready_w, b"1")
    os.close(ready_w)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    while True:
        signal.pause()


def start(names: Iterable[str], mtu: int = 1500) -> list[Machine]:
    """Make the underlay and one holder per machine in the calling namespace;
    return once every machine is plugged in and addressed.  The holders are the
    caller's children and die with it (PDEATHSIG), or with `stop()`."""
    names = list(names)
    make_underlay(mtu)
    made: list[Machine] = []
    try:
        for number, name in enumerate(names, start=1):
            read_r, ready_w = os.pipe()
            pid = os.fork()
            if pid == 0:  # pragma: no cover - runs in the child
                os.close(read_r)
                try:
                    _hold(name, number, mtu, ready_w)
                except BaseException as exc:  # noqa: BLE001 - the child must never return into the caller
                    print(f"vethlab sandbox: machine {name}: {exc}", file=sys.stderr)
                os._exit(1)
            os.close(ready_w)
            ok = os.read(read_r, 1) == b"1"
            os.close(read_r)
            v4, v6 = address_of(number)
            made.append(Machine(name, pid, v4, v6))
            if not ok:
                raise OSError(f"machine {name} could not be set up")
    except BaseException:
        stop(made)
        raise
    return made


def stop(machines: Iterable[Machine], wait: float = 5.0) -> None:
    """End the holders; return once their underlay ports are gone (the kernel
    destroys a namespace's devices asynchronously, bounded by `wait`), so a
    caller that goes on sees no leftovers.  A machine held by something else (a
    process entered into it) lives on until that ends."""
    import time

    machines = list(machines)
    for m in machines:
        try:
            os.kill(m.pid, signal.SIGKILL)
            os.waitpid(m.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
    sock = nl.NlSocket()
    try:
        deadline = time.monotonic() + wait
        for m in machines:
            while time.monotonic() < deadline:
                try:
                    _link_index(sock, f"vu-{m.name}")
                except nl.NetlinkError:
                    break
                time.sleep(0.01)
    finally:
        sock.close()


def export(machines: Iterable[Machine]) -> str:
    return ",".join(f"{m.name}={m.pid}" for m in machines)


def registry(env: dict[str, str] | None = None) -> dict[str, int]:
    """NAME -> holder pid, from VETHLAB_MACHINES (empty outside a machine sandbox)."""
    text = (env if env is not None else os.environ).get(ENV, "")
    out: dict[str, int] = {}
    for item in text.split(","):
        name, _, pid = item.partition("=")
        if name and pid.isdigit() and not name_problem(name):
            out[name] = int(pid)
    return out


def enter(name: str, pid: int) -> None:
    """Move the calling single-threaded process into machine `name` (holder `pid`):
    its network and mount namespaces, same working directory."""
    cwd = os.getcwd()
    fds = [os.open(f"/proc/{pid}/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC) for kind in ("net", "mnt")]
    try:
        _check(_libc.setns(fds[0], CLONE_NEWNET), f"enter the network of machine {name}")
        _check(_libc.setns(fds[1], CLONE_NEWNS), f"enter the mounts of machine {name}")
    finally:
        for fd in fds:
            os.close(fd)
    try:
        os.chdir(cwd)  # setns(CLONE_NEWNS) moved us to the root
    except OSError:
        pass
    os.environ[MACHINE_ENV] = name
    os.environ["VETHLAB_STATE_DIR"] = "/run/vethlab"


def exec_on(name: str, argv: list[str], env: dict[str, str] | None = None) -> int:
    """`vethlab sandbox --on NAME -- ARGV`: exec argv inside the machine; returns
    only on failure (an exit status: 2 no such machine, 127 no such command)."""
    known = registry(env)
    if name not in known:
        where = f"the machines here are {', '.join(sorted(known))}" if known else (
            "this is not inside `vethlab sandbox --machines …`")
        print(f"vethlab: no machine {name!r}: {where}", file=sys.stderr)
        return 2
    try:
        enter(name, known[name])
    except OSError as exc:
        print(f"vethlab: cannot enter machine {name}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    if not argv:
        argv = [os.environ.get("SHELL", "/bin/sh")]
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        print(f"vethlab sandbox: cannot run {argv[0]}: {exc.strerror}", file=sys.stderr)
        return 127
    return 1  # pragma: no cover


def on_command(machine: Machine, argv: list[str]) -> list[str]:
    """A command line that runs argv inside `machine` (for tests and scripts that
    hold Machine objects rather than the environment variable)."""
    return [sys.executable, "-m", "vethlab.kernel.machines", f"{machine.name}={machine.pid}", "--", *argv]


def vethlab_on(name: str, address: str, argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run `vethlab ARGV` on another machine: inside the simulated machine `name`
    when this is `vethlab sandbox --machines`, else over OpenSSH to `address`
    (`ssh ADDRESS vethlab …`, batch mode: keys, no password prompt)."""
    known = registry()
    if name in known:
        cmd = on_command(Machine(name, known[name], address, ""), [sys.executable, "-m", "vethlab", *argv])
    else:
        cmd = ["ssh", "-o", "BatchMode=yes", address, "vethlab", *argv]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def describe(machines: Iterable[Machine]) -> str:
    lines = [f"underlay: bridge {BRIDGE} {SUBNET.network_address + 254}/{SUBNET.prefixlen} in the sandbox"]
    lines += [f"machine {m.name}: {m.dev} {m.address}/{SUBNET.prefixlen} {m.address6}/{SUBNET6.prefixlen}"
              for m in machines]
    return "\n".join(lines)


if __name__ == "__main__":
    # python -m vethlab.kernel.machines NAME=PID -- ARGV  (see on_command)
    args = sys.argv[1:]
    target, rest = (args[0], args[2:]) if len(args) >= 2 and args[1] == "--" else ("", [])
    name = target.partition("=")[0]
    sys.exit(exec_on(name, rest, {ENV: target}))
