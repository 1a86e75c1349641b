"""Simulated machines (`vethlab sandbox --machines`, `--on`): each its own network and
mount namespace on a shared underlay; all gone when the sandbox ends."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from helpers import vethlab
from vethlab.kernel import machines


@pytest.fixture
def three() -> Iterator[list[machines.Machine]]:
    made = machines.start(["m1", "m2", "m3"])
    yield made
    machines.stop(made)


def on(machine: machines.Machine, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(machines.on_command(machine, list(argv)), capture_output=True, text=True, timeout=60)


def _addresses(machine: machines.Machine) -> dict[str, list[str]]:
    out = json.loads(on(machine, "ip", "-j", "addr", "show").stdout)
    return {i["ifname"]: sorted(f"{a['local']}/{a['prefixlen']}" for a in i["addr_info"] if a.get("scope") == "global")
            for i in out}


def test_each_machine_has_its_own_network_on_the_underlay(three: list[machines.Machine]) -> None:
    assert [_addresses(m) for m in three] == [
        {"lo": [], "eth0": [f"10.200.0.{n}/24", f"fd00:200::{n}/64"]} for n in (1, 2, 3)]
    assert [(m.name, m.address, m.address6, m.dev) for m in three] == [
        ("m1", "10.200.0.1", "fd00:200::1", "eth0"), ("m2", "10.200.0.2", "fd00:200::2", "eth0"),
        ("m3", "10.200.0.3", "fd00:200::3", "eth0")]
    for src, dst in (("m1", "10.200.0.3"), ("m3", "fd00:200::2"), ("m2", "10.200.0.254")):
        r = on(next(m for m in three if m.name == src), "ping", "-c1", "-W2", dst)
        assert r.returncode == 0, r.stdout + r.stderr


def test_each_machine_has_its_own_run_netns_etc_netns_and_state(three: list[machines.Machine]) -> None:
    m1, m2, _ = three
    made = on(m1, "sh", "-c", "ip netns add x && mkdir /etc/netns/x && echo $VETHLAB_STATE_DIR $VETHLAB_MACHINE "
              "&& ls /run/netns /etc/netns")
    assert made.returncode == 0, made.stderr
    assert made.stdout.split() == ["/run/vethlab", "m1", "/etc/netns:", "x", "/run/netns:", "x"]
    assert on(m2, "sh", "-c", "ls /run/netns /etc/netns; ls -d /run/vethlab").stdout.split() == [
        "/etc/netns:", "/run/netns:", "/run/vethlab"]
    assert os.listdir("/run/netns") == [] and os.listdir("/etc/netns") == []


def test_cwd_is_kept_and_an_unknown_machine_is_exit_2(three: list[machines.Machine], tmp_path: object) -> None:
    r = subprocess.run(machines.on_command(three[0], ["pwd"]), capture_output=True, text=True, cwd=str(tmp_path))
    assert r.stdout.strip() == str(tmp_path)
    env = dict(os.environ, **{machines.ENV: machines.export(three)})
    r = subprocess.run([sys.executable, "-m", "vethlab", "sandbox", "--on", "m9", "--", "true"], capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "the machines here are m1, m2, m3" in r.stderr


def test_machines_vanish_when_stopped() -> None:
    made = machines.start(["m1", "m2"])
    on(made[0], "ip", "netns", "add", "inner")
    machines.stop(made)
    links = json.loads(subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True).stdout)
    assert sorted(link["ifname"] for link in links) == ["lo", "vlunder"]


def test_cli_sandbox_with_machines_and_on() -> None:
    v = f"{sys.executable} -m vethlab"
    script = ("echo $VETHLAB_MACHINES | tr , '\\n' | cut -d= -f1; "
              f"{v} sandbox --on m2 -- ip -4 -br addr show eth0 | awk '{{print $3}}'; "
              f"{v} sandbox --on m2 -- {v} sandbox --on m1 -- ping -c1 -W2 10.200.0.2 >/dev/null && echo OK")
    r = vethlab("sandbox", "--machines", "m1,m2", "--", "sh", "-c", script)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["m1", "m2", "10.200.0.2/24", "OK"]


@pytest.mark.parametrize("bad", ["M1", "m1,m1", ",", "a_b"])
def test_cli_refuses_bad_machine_names(bad: str) -> None:
    r = vethlab("sandbox", "--machines", bad, "--", "true")
    assert r.returncode == 2 and "vethlab: error:" in r.stderr
