"""Testing a client/server program across a rate-limited link with vethlab's
pytest plugin (installed with vethlab; nothing to configure).

Each test asks the `vethlab_lab` fixture for a lab: the fixture moves the test
into its own throw-away network + mount namespace, builds the lab, and removes
it afterwards, so tests cannot see each other's nodes and nothing reaches the
machine's own network.  Where namespaces cannot be made (not root, and not
inside `vethlab sandbox`), the fixture skips the test instead of failing it.

Run:  sudo python3 -m pytest examples/pytest -q
  or: vethlab sandbox -- python3 -m pytest examples/pytest -q   (rootless too)
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from typing import Any

from transfer import payload

from vethlab import Lab

PROGRAM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "transfer.py")
PORT = 9000
RATE_BITS = 8_000_000  # the link's rate: 8 mbit/s, 1 MB per second


def lab(rate: str | None = "8mbit") -> dict[str, Any]:
    """Server and client on one veth pair, the server started as a lab service."""
    link: dict[str, Any] = {"endpoints": ["client:eth0", "server:eth0"],
                            "addresses": ["10.0.0.1/24", "10.0.0.2/24"]}
    if rate:
        link["rate"] = rate  # tc tbf on both ends' egress
    return {
        "name": "xfer",
        "nodes": {
            "server": {"run": [[sys.executable, PROGRAM, "serve", str(PORT)]]},
            "client": {},
        },
        "links": [link],
    }


def built_lab() -> Lab:
    """The same lab built in code (docs/python.md), a call per node and link."""
    built = Lab.new("xfer")
    built.add_node("server", run=[[sys.executable, PROGRAM, "serve", str(PORT)]])
    built.add_node("client")
    built.add_link("client:eth0", "server:eth0", addresses=["10.0.0.1/24", "10.0.0.2/24"], rate="8mbit")
    return built


def fetch(the_lab: Any, n: int, port: int = PORT) -> Any:
    return the_lab.node("client").exec([sys.executable, PROGRAM, "fetch", "10.0.0.2", str(port), str(n)],
                                       capture_output=True, text=True, timeout=60)


def test_download_arrives_whole(vethlab_lab: Any) -> None:
    result = fetch(vethlab_lab(lab()), 300_000)
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout)
    assert got["bytes"] == 300_000
    assert got["sha256"] == hashlib.sha256(payload(300_000)).hexdigest()


def test_the_link_rate_bounds_the_transfer(vethlab_lab: Any) -> None:
    # A lower bound only: 1 MB cannot cross an 8 mbit/s link in much under a
    # second, however loaded the machine (tbf lets through ~10 ms of burst).  An
    # upper bound would fail on a slow machine for reasons that are not the program's.
    n = 1_000_000
    result = fetch(vethlab_lab(lab()), n)
    assert result.returncode == 0, result.stderr
    seconds = json.loads(result.stdout)["seconds"]
    assert seconds >= 0.5 * n * 8 / RATE_BITS


def test_client_says_why_when_nothing_listens(vethlab_lab: Any) -> None:
    result = fetch(vethlab_lab(lab(rate=None)), 10, port=PORT + 1)
    assert result.returncode == 1
    assert "cannot fetch from 10.0.0.2:9001" in result.stderr


def test_a_lab_built_in_code_is_the_same_lab(vethlab_lab: Any) -> None:
    the_lab = vethlab_lab(built_lab())  # up now, down after the test
    assert the_lab.to_dict() == lab()
    result = fetch(the_lab, 100_000)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["bytes"] == 100_000
