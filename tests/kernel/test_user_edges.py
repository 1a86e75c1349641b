"""What a demanding new user broke by using vethlab as a network engineer would:
odd but valid files, edits and re-runs, kills, wrong arguments."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import vethlab

ODD_RATE = """\
name: odd
nodes: {a: {}, b: {}}
links:
  - endpoints: [a:e0, b:e0]
    addresses: [10.0.0.1/24, 10.0.0.2/24]
    rate: 8kbit
  - endpoints: [a:e1, b:e1]
    rate: {rate}
"""


@pytest.mark.parametrize("rate", ["100bit", "5tbit"])
def test_rate_tc_cannot_carry_is_bad_input_before_anything_is_built(tmp_path: Path, rate: str) -> None:
    """It was exit 1 after building, with "'I' format requires 0 <= number <= 4294967295"."""
    lab = tmp_path / "odd.yaml"
    lab.write_text(ODD_RATE.replace("{rate}", rate))
    result = vethlab("up", str(lab))
    assert result.returncode == 2, result.stderr
    assert f"{lab}:8: links[1].rate: rate '{rate}' is out of range" in result.stderr
    assert "format requires" not in result.stderr
    assert vethlab("ls").stdout.strip() == "no labs"


def test_link_set_rate_tc_cannot_carry_is_usage_error(tmp_path: Path) -> None:
    lab = tmp_path / "odd.yaml"
    lab.write_text(ODD_RATE.replace("{rate}", "1mbit"))
    vethlab("up", str(lab), check=True)
    result = vethlab("link", "set", "a:e0", "--rate", "1bit")
    assert result.returncode == 2, result.stderr
    assert "--rate: rate '1bit' is out of range" in result.stderr
    assert "format requires" not in result.stderr


SEED = """\
name: seed
nodes: {ns1: {run: ["sleep 1000"]}, ns2: {}}
links:
  - endpoints: [ns1:vp1, ns2:vp2]
    addresses: [192.168.1.1/24, 192.168.1.2/24]
"""

WRONG_NUMBERS = [
    ("web", "--port", "99999"),                 # was: internal error: OverflowError (exit 1)
    ("web", "--port", "-1"),
    ("perf", "ns1", "ns2", "--time", "0"),      # was: never returned
    ("perf", "ns1", "ns2", "--time", "-1"),
    ("ping", "ns1", "ns2", "-c", "0"),          # was: ping's own complaint, exit 1
    ("capture", "-c", "-1", "ns1:vp1", "icmp"),  # was: tcpdump's own complaint, exit 1
    ("link", "flap", "ns1:vp1", "--count", "-3"),  # was: nothing done, exit 0
    ("link", "flap", "ns1:vp1", "--count", "0"),
    ("logs", "ns1", "-n", "-3"),                # was: nothing printed, exit 0
    ("watch", "--count", "0"),
    ("ls", "--wait", "-1"),
    ("status", "--wait", "nan"),
]


@pytest.mark.parametrize("argv", WRONG_NUMBERS, ids=[" ".join(a) for a in WRONG_NUMBERS])
def test_numbers_out_of_range_are_usage_errors(tmp_path: Path, argv: tuple[str, ...]) -> None:
    lab = tmp_path / "seed.yaml"
    lab.write_text(SEED)
    vethlab("up", str(lab), check=True)
    result = vethlab(*argv, timeout=60)
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "out of range" in result.stderr and "internal error" not in result.stderr


def test_perf_for_less_than_a_second_returns(tmp_path: Path) -> None:
    """iperf3 reads `-t 0.5` as 0, "no limit": perf hung for its 30 s timeout."""
    lab = tmp_path / "seed.yaml"
    lab.write_text(SEED)
    vethlab("up", str(lab), check=True)
    result = vethlab("perf", "ns1", "ns2", "--time", "0.5", "--json", timeout=25)
    assert result.returncode == 0, result.stderr


MOVE_BEFORE = """\
name: mv
nodes: {c: {}, r: {routes: ["10.9.0.0/16 via 10.0.0.1 dev e0"]}}
links:
  - endpoints: [c:e0, r:e0]
    addresses: [10.0.0.1/24, 10.0.0.2/24]
networks:
  lan: {members: {c: {}}}
  lan2: {subnet: 172.31.9.0/24}
"""

MOVE_AFTER = """\
name: mv
nodes: {c: {}, r: {}}
networks:
  lan: {}
  lan2: {subnet: 172.31.9.0/24, members: {c: {}, r: {}}}
"""


def _routes(node: str) -> list[str]:
    out = vethlab("exec", node, "--", "ip", "route", check=True).stdout
    return sorted(line.strip() for line in out.splitlines())


def test_member_moved_to_another_network_and_link_with_dev_route_removed(tmp_path: Path) -> None:
    """Removing a route whose interface this run already deleted failed `up`
    ("interface eth0 not found in namespace c") and rolled the edit back."""
    lab = tmp_path / "mv.yaml"
    lab.write_text(MOVE_BEFORE)
    vethlab("up", str(lab), check=True)
    lab.write_text(MOVE_AFTER)
    vethlab("up", str(lab), check=True)
    assert vethlab("plan", str(lab), "--refresh", check=True).stdout.strip() == "lab mv: no changes"
    assert _routes("c") == ["172.31.9.0/24 dev eth0 proto kernel scope link src 172.31.9.2",
                            "default via 172.31.9.1 dev eth0 proto 118"]
    assert _routes("r") == ["172.31.9.0/24 dev eth0 proto kernel scope link src 172.31.9.3",
                            "default via 172.31.9.1 dev eth0 proto 118"]
    vethlab("exec", "c", "--", "ping", "-c1", "-W2", "r", check=True)
    lab.write_text(MOVE_BEFORE)  # and back again
    vethlab("up", str(lab), check=True)
    assert vethlab("plan", str(lab), "--refresh", check=True).stdout.strip() == "lab mv: no changes"
    assert "10.9.0.0/16 via 10.0.0.1 dev e0 proto 118" in _routes("r")


ONESHOT = """\
name: once
nodes:
  a:
    run:
      - sleep 1000
      - {cmd: "sh -c 'echo ran >> DIR/runs'", oneshot: true}
    ready: ["test -e DIR/ready"]
"""


def test_oneshot_that_finished_is_not_rerun_after_up_is_killed_during_the_watch(tmp_path: Path) -> None:
    """README: 'A one-shot that finished is not run again while its node lives',
    'even after a kill -9 of up'."""
    import os
    import signal
    import subprocess
    import sys
    import time

    lab = tmp_path / "once.yaml"
    lab.write_text(ONESHOT.replace("DIR", str(tmp_path)))
    runs = tmp_path / "runs"
    up = subprocess.Popen([sys.executable, "-m", "vethlab", "up", str(lab)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):  # the one-shot has run: up now waits for `ready` (until DIR/ready exists)
        if runs.exists() and runs.read_text():
            break
        time.sleep(0.05)
    assert up.poll() is None, "up returned before it could be killed during its watch"
    os.kill(up.pid, signal.SIGKILL)
    up.wait()
    (tmp_path / "ready").touch()
    vethlab("up", str(lab), check=True)
    assert runs.read_text() == "ran\n"


POINT_TO_POINT = """\
name: p2p
nodes:
  a: {routes: ["10.0.0.2/32 dev e0", "fd00::2/128 dev e0"]}
  b: {routes: ["10.0.0.1/32 dev e0", "fd00::1/128 dev e0"]}
links:
  - endpoints: [a:e0, b:e0]
    addresses: [[10.0.0.1/32, "fd00::1/128"], [10.0.0.2/32, "fd00::2/128"]]
"""


def test_point_to_point_slash_32_with_routes_to_each_other_is_valid_and_works(tmp_path: Path) -> None:
    """The 'ends share no subnet' check refused /32 (/128) ends although each node
    routes the other's address out of the link: the routers' and Calico's design."""
    lab = tmp_path / "p2p.yaml"
    lab.write_text(POINT_TO_POINT)
    vethlab("up", str(lab), check=True)
    vethlab("exec", "a", "--", "ping", "-c1", "-W2", "10.0.0.2", check=True)
    vethlab("exec", "b", "--", "ping", "-c1", "-W2", "fd00::1", check=True)
    assert vethlab("plan", str(lab), "--refresh", check=True).stdout.strip() == "lab p2p: no changes"


def test_point_to_point_with_a_route_on_one_side_only_is_still_refused(tmp_path: Path) -> None:
    lab = tmp_path / "p2p.yaml"
    lab.write_text(POINT_TO_POINT.replace('"10.0.0.1/32 dev e0", ', ""))
    result = vethlab("validate", str(lab))
    assert result.returncode == 2
    assert f"{lab}:7: links[0].addresses: the ends share no IPv4 subnet" in result.stderr
    assert "IPv6" not in result.stderr


NUMERIC_NODES = """\
name: num
nodes: {"10": {}, "08": {}, h: {}}
links:
  - endpoints: ["10:e0", "h:e0"]
    addresses: [10.0.0.1/24, 10.0.0.2/24]
  - endpoints: ["08:e0", "h:e1"]
    addresses: [10.0.1.1/24, 10.0.1.2/24]
"""


def test_node_names_resolvers_read_as_addresses_are_refused(tmp_path: Path) -> None:
    """A node "10" was up'd, but inside the lab `ping 10` went to 0.0.0.10: resolvers
    parse numbers (inet_aton) before reading the hosts file vethlab writes."""
    lab = tmp_path / "num.yaml"
    lab.write_text(NUMERIC_NODES)
    result = vethlab("up", str(lab))
    assert result.returncode == 2, result.stderr
    assert sorted(result.stderr.splitlines()) == [
        f"{lab}:2: nodes.08: node name '08' is read as an IPv4 address by resolvers (ping 08 finds nothing, "
        "not the node); add a letter, e.g. 'n08'",
        f"{lab}:2: nodes.10: node name '10' is read as an IPv4 address by resolvers (ping 10 goes to 0.0.0.10, "
        "not the node); add a letter, e.g. 'n10'"]


def test_node_names_starting_with_digits_resolve_to_the_node(tmp_path: Path) -> None:
    """"1a" and "0x1g" are no numbers to resolvers: they resolve by the hosts file."""
    lab = tmp_path / "num.yaml"
    lab.write_text(NUMERIC_NODES.replace('"10', '"1a').replace('"08', '"0x1g'))
    vethlab("up", str(lab), check=True)
    assert vethlab("exec", "h", "--", "getent", "hosts", "0x1g", check=True).stdout.split() == ["10.0.1.1", "0x1g"]
    assert vethlab("exec", "h", "--", "getent", "hosts", "1a", check=True).stdout.split() == ["10.0.0.1", "1a"]


FAILING_SERVICE = """\
name: dfail
nodes:
  dd:
    run: ["sh -c 'sleep 1000 & exit 1'"]
"""


def test_a_failed_service_is_named_as_it_can_be_run_again(tmp_path: Path) -> None:
    """The message said `sh -c sleep 1000 & exit 1`: pasted into a shell, a different
    command; `vethlab logs` and the file quote it."""
    lab = tmp_path / "dfail.yaml"
    lab.write_text(FAILING_SERVICE)
    result = vethlab("up", str(lab))
    assert result.returncode == 1
    assert "node dd: service `sh -c 'sleep 1000 & exit 1'` exited with status 1 during `up`" in result.stderr


SLOW_CHECK = """\
name: slow
nodes:
  ss:
    run: ["sleep 1000"]
    ready: ["sleep 3"]
"""


def test_a_readiness_check_slower_than_the_wait_is_not_ready(tmp_path: Path) -> None:
    """Each check run was bounded by 5 s whatever the wait: a check that takes 3 s
    passed under VETHLAB_READY_TIMEOUT=1 (and N hanging checks waited N x 5 s)."""
    lab = tmp_path / "slow.yaml"
    lab.write_text(SLOW_CHECK)
    result = vethlab("up", str(lab), env={"VETHLAB_READY_TIMEOUT": "1"})
    assert result.returncode == 1, result.stdout
    assert "node ss: not ready after 1 s: `sleep 3` did not exit 0" in result.stderr
