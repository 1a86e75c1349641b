"""`vethlab demo`: the seed note, played out in a throw-away sandbox.

Every step prints the command a user would type and its real output, so a
newcomer can repeat it by hand.  Runs inside `vethlab sandbox`, so nothing of it
reaches the machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap

SEED = """\
name: seed
nodes:
  ns1: {}
  ns2: {}
links:
  - endpoints: [ns1:vp1, ns2:vp2]
    addresses: [192.168.1.1/24, 192.168.1.2/24]
"""

_BOLD = "\033[1m" if sys.stdout.isatty() else ""
_DIM = "\033[2m" if sys.stdout.isatty() else ""
_RESET = "\033[0m" if sys.stdout.isatty() else ""


def say(text: str) -> None:
    print(f"\n{_BOLD}{textwrap.fill(' '.join(text.split()), 88)}{_RESET}", flush=True)


def run(argv: list[str], expect: int | None = 0, show: str | None = None) -> int:
    """Run and show a step; `expect` is its exit status (None: any, -1: any failure)."""
    shown = show or " ".join(argv)
    print(f"{_DIM}${_RESET} {shown}", flush=True)
    result = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    out = result.stdout.rstrip()
    if out:
        print(textwrap.indent(out, "  "), flush=True)
    if (expect == -1 and result.returncode == 0) or (expect not in (None, -1) and result.returncode != expect):
        raise SystemExit(f"demo step failed (exit {result.returncode}, expected {expect}): {shown}")
    return result.returncode


def vethlab(*args: str, expect: int | None = 0) -> int:
    return run([sys.executable, "-m", "vethlab", *args], expect=expect, show="vethlab " + " ".join(args))


def main() -> int:
    workdir = tempfile.mkdtemp(prefix="vethlab-demo-", dir="/run")
    seed = os.path.join(workdir, "seed.yaml")
    with open(seed, "w") as fh:
        fh.write(SEED)
    os.chdir(workdir)
    say("""vethlab demo — everything below runs in a throw-away sandbox (private network and mount
        namespaces), so nothing touches this machine's own network.""")
    say("""Act one: the seed note. Two network namespaces, ns1 and ns2, joined by a veth pair — a virtual
        cable whose two ends, vp1 and vp2, are network cards in different namespaces. The whole lab is
        this five-line file:""")
    print(textwrap.indent(SEED, "  "))
    vethlab("up", "seed.yaml")
    say("vethlab did what the seed note does by hand: `ip netns add`, `ip link add vp1 netns ns1 type veth "
        "peer vp2 netns ns2`, addresses, links up. Each namespace sees only its own end:")
    run(["ip", "netns", "exec", "ns1", "ip", "addr", "show"])
    run(["ip", "netns", "exec", "ns2", "ip", "addr", "show"])
    say("A packet sent into vp1 comes out of vp2, so ns1 reaches ns2:")
    vethlab("exec", "ns1", "--", "ping", "-c", "2", "192.168.1.2")
    vethlab("status")
    say("A veth pair is one cable: take one end down and the other loses its carrier "
        "(NO-CARRIER, state DOWN). vp2 is still up and keeps its route, but nothing answers:")
    vethlab("link", "down", "ns1:vp1")
    run(["ip", "-n", "ns2", "link", "show", "vp2"])
    vethlab("exec", "ns2", "--", "ping", "-c", "1", "-W", "1", "192.168.1.1", expect=-1)
    say("Bring it back, and the cable works again:")
    vethlab("link", "up", "ns1:vp1")
    run(["ip", "-n", "ns2", "link", "show", "vp2"])
    vethlab("pingall")
    say("Running `up` again changes nothing — it converges to the file:")
    vethlab("plan", "seed.yaml")
    say("Tear down: namespaces, interfaces, files and state all go.")
    vethlab("down", "seed.yaml")
    run(["ip", "netns", "list"], show="ip netns list   # nothing left")
    say("Done. Try it yourself: vethlab sandbox -- bash, then vethlab up a file of your own.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
