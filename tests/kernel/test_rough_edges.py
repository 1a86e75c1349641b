"""What a newcomer tripped on: nothing to ping is not a pass, status in natural order,
counts in words, and the API's exec returning the output."""

from __future__ import annotations

from helpers import vethlab
from vethlab import Lab

NO_ADDRESSES = """\
name: bare
nodes: {a: {}, b: {}}
links:
  - endpoints: [a:e0, b:e0]
"""

MANY = """\
name: many
nodes: {h1: {}, h2: {}, h10: {}}
links:
  - endpoints: [h1:e10, h10:e1]
    addresses: [10.0.0.1/24, 10.0.0.2/24]
  - endpoints: [h1:e2, h2:e1]
    addresses: [10.0.1.1/24, 10.0.1.2/24]
"""


def test_pingall_with_nothing_to_ping_fails_and_says_why(tmp_path) -> None:
    lab = tmp_path / "bare.yaml"
    lab.write_text(NO_ADDRESSES)
    vethlab("up", str(lab), check=True)
    result = vethlab("pingall")
    assert result.returncode == 1
    assert "nothing to ping" in result.stderr


def test_status_in_natural_order_and_counts_in_words(tmp_path) -> None:
    lab = tmp_path / "many.yaml"
    lab.write_text(MANY)
    up = vethlab("up", str(lab), check=True)
    assert " 3 nodes," in up.stdout and "node," not in up.stdout.replace("3 nodes,", "")
    rows = [line.split()[:2] for line in vethlab("status", check=True).stdout.splitlines()[2:] if line.strip()]
    assert rows == [["h1", "e2"], ["h1", "e10"], ["h2", "e1"], ["h10", "e1"]]
    assert "3 nodes, 2 links: valid" in vethlab("validate", str(lab), check=True).stdout
    plan = vethlab("plan", str(lab), check=True).stdout
    assert "no changes" in plan


def test_api_exec_returns_the_output(tmp_path) -> None:
    lab = Lab.from_dict({"name": "api", "nodes": {"a": {}, "b": {}},
                         "links": [{"endpoints": ["a:e0", "b:e0"], "addresses": ["10.1.0.1/24", "10.1.0.2/24"]}]})
    with lab:
        result = lab.node("a").exec(["ip", "-br", "addr", "show", "e0"])
        assert result.returncode == 0 and "10.1.0.1/24" in result.stdout
        raw = lab.node("a").exec(["echo", "hi"], text=False)
        assert raw.stdout == b"hi\n"
        passed = lab.node("a").exec(["true"], capture_output=False)
        assert passed.stdout is None


def test_a_300_member_network_fits_without_a_subnet(tmp_path) -> None:
    """Docker fits 300 containers on one network; so does an automatic subnet (a /23)."""
    import json
    import subprocess

    members = ", ".join(f"h{i}: {{}}" for i in range(300))
    lab = tmp_path / "big.yaml"
    lab.write_text(f"name: big\nnodes: {{{members}}}\nnetworks:\n  lan:\n    members: {{{members}}}\n")
    vethlab("up", str(lab), check=True)
    bridge = json.loads(subprocess.run(["ip", "-j", "addr", "show", "vb.big.lan"], capture_output=True, text=True,
                                       check=True).stdout)[0]
    assert [(a["local"], a["prefixlen"]) for a in bridge["addr_info"] if a["family"] == "inet"] == \
        [("172.30.0.1", 23)]
    last = subprocess.run(["ip", "-n", "h299", "-j", "addr", "show", "eth0"], capture_output=True, text=True,
                          check=True).stdout
    assert '"172.30.1.45"' in last  # .2 … .255, then .256 - 256 = 1.0 … : the 300th member is 172.30.1.45
    assert vethlab("exec", "h299", "--", "ping", "-c1", "-W2", "172.30.0.1").returncode == 0
    vethlab("down", str(lab), check=True)
