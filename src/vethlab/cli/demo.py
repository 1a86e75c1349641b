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
import time

DOCKER = """\
name: docker
nodes:
  internet: {}                  # stands in for the world outside the host
  web:
    run: ["python3 -m http.server 80 --directory /run/vethlab-demo-www"]
  client: {}
links:
  - endpoints: [host:uplink0, internet:eth0]    # the host's "uplink" to the internet
    addresses: [203.0.113.1/24, 203.0.113.2/24]
networks:
  lan:                          # docker0: a bridge in the host, NAT out of the uplink
    nat: true
    members:
      web: {publish: ["8080:80/tcp"]}           # docker run -p 8080:80
      client: {}
"""

FETCH = "import urllib.request, sys; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode().strip())"
LISTEN = ('import socket; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); '
          's.bind(("0.0.0.0", 9000)); s.listen(); c, a = s.accept(); print("internet saw a connection from", a[0])')
CONNECT = 'import socket; socket.create_connection(("203.0.113.2", 9000), 2)'

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


def shown(argv: list[str]) -> str:
    """argv as a command a reader can paste: quoted, and `python3` for this interpreter."""
    import shlex

    return shlex.join(["python3" if a == sys.executable else a for a in argv])


def run(argv: list[str], expect: int | None = 0, show: str | None = None) -> int:
    """Run and show a step; `expect` is its exit status (None: any, -1: any failure)."""
    shown_text = show or globals()["shown"](argv)
    print(f"{_DIM}${_RESET} {shown_text}", flush=True)
    result = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    out = result.stdout.rstrip()
    if out:
        print(textwrap.indent(out, "  "), flush=True)
    if (expect == -1 and result.returncode == 0) or (expect not in (None, -1) and result.returncode != expect):
        raise SystemExit(f"demo step failed (exit {result.returncode}, expected {expect}): {shown_text}")
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
    act_two()
    say("Done. Try it yourself: vethlab sandbox -- bash, then vethlab up a file of your own.")
    return 0


def act_two() -> None:
    say("""Act two: how Docker joins containers to the host's network. Each container is a namespace whose
        veth pair has one end (eth0) inside and the other on a bridge in the host — Docker's docker0. The
        bridge has the gateway address; NAT (masquerade) takes the containers out through the host's
        uplink; a published port (-p 8080:80) is a DNAT rule. Here the "internet" is one more namespace
        behind the host's uplink, and web runs a real HTTP server:""")
    os.makedirs("/run/vethlab-demo-www", exist_ok=True)
    with open("/run/vethlab-demo-www/index.html", "w") as fh:
        fh.write("hello from the web container\n")
    with open("docker.yaml", "w") as fh:
        fh.write(DOCKER)
    print(textwrap.indent(DOCKER, "  "))
    vethlab("up", "docker.yaml")
    say("The bridge and the host ends of the veth pairs, all in the host; the gateway is the bridge's address. "
        "vb.docker.lan is this lab's docker0 (named vb.LAB.NETWORK, or `bridge:` in the file); the host ends "
        "are named vl + a short hash, as Docker names them veth + a hash; each container's end is its eth0:")
    run(["ip", "-br", "addr", "show", "type", "bridge"])
    run(["bridge", "link"])
    say("Inside a container: eth0, an address from the network's subnet, a default route via the gateway:")
    run(["ip", "netns", "exec", "client", "ip", "-br", "addr"])
    run(["ip", "netns", "exec", "client", "ip", "route"])
    say("Containers find each other by name, like on a Docker network:")
    vethlab("exec", "client", "--", "ping", "-c", "1", "web")
    say("The firewall vethlab wrote — one nftables table of its own, nobody else's touched. Its chains: "
        "postrouting masquerades what leaves the subnet (NAT out) and hairpin traffic; prerouting and output "
        "DNAT the published port (from outside, and from the host itself); forward isolates networks. The "
        "empty chain holds no rules on purpose: its name is vethlab's mark of ownership and a digest of the "
        "ruleset, so a re-run `up` knows from one read that the table is its own and current:")
    run(["nft", "list", "table", "inet", "vethlab_docker"])
    say("The internet fetches the published port on the host's address; DNAT sends it to web:80.")
    _wait_http("internet", "http://203.0.113.1:8080/")
    run(["ip", "netns", "exec", "internet", sys.executable, "-c", FETCH, "http://203.0.113.1:8080/"])
    say("And a container goes out through NAT: the internet sees the host's uplink address, not 172.30.x.")
    listener = ["ip", "netns", "exec", "internet", sys.executable, "-c", LISTEN]
    print(f"{_DIM}${_RESET} {shown(listener)} &", flush=True)
    server = subprocess.Popen(listener, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for _ in range(50):  # until it listens
            if subprocess.run(["ip", "netns", "exec", "internet", "ss", "-Hltn", "sport = :9000"],
                              capture_output=True, text=True).stdout.strip():
                break
            time.sleep(0.05)
        run(["ip", "netns", "exec", "client", sys.executable, "-c", CONNECT])
        out, _ = server.communicate(timeout=5)
        print(textwrap.indent(out.rstrip(), "  "), flush=True)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    vethlab("down", "docker.yaml")
    run(["nft", "list", "tables"], show="nft list tables   # vethlab's table is gone too")


def _wait_http(node: str, url: str) -> None:
    for _ in range(50):
        result = subprocess.run(["ip", "netns", "exec", node, sys.executable, "-c", FETCH, url],
                                capture_output=True, text=True)
        if result.returncode == 0:
            return
        time.sleep(0.1)


if __name__ == "__main__":
    raise SystemExit(main())
