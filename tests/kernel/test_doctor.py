"""`vethlab doctor`: probes the kernel for real (in a scratch namespace), reads the
host's firewall and settings, and judges a FILE's needs and clashes."""

from __future__ import annotations

import json
import subprocess

from helpers import SEED, vethlab
from vethlab.kernel import tc


def _doctor(*args: str) -> tuple[int, dict[str, dict]]:
    result = vethlab("doctor", "--json", *args)
    assert result.returncode in (0, 1), result.stderr
    data = json.loads(result.stdout)
    return result.returncode, {c["name"]: c for c in data["checks"]}


def test_features_match_what_the_kernel_does(tmp_path) -> None:
    code, checks = _doctor()
    assert code == 0
    for feature in ("veth", "bridge", "macvlan", "vxlan", "nftables", "tbf"):
        assert checks[feature]["status"] == "ok", checks[feature]
    # netem is judged by the same kernel the shaping code asks: they must agree
    assert (checks["netem"]["status"] == "ok") == tc.supported("netem")
    if checks["netem"]["status"] != "ok":
        assert checks["netem"]["status"] == "warn" and "sch_netem" in checks["netem"]["fix"]
    # the probe's scratch namespace left nothing here
    assert subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout.count("\n") == 1


def test_a_file_that_needs_what_is_missing_fails(tmp_path) -> None:
    lab = tmp_path / "shaped.yaml"
    lab.write_text(SEED.replace("addresses:", "delay: 5ms\n    addresses:"))
    code, checks = _doctor(str(lab))
    assert checks["netem"]["needed"] is True
    assert code == (0 if tc.supported("netem") else 1)


def test_clash_with_a_foreign_namespace_is_named(tmp_path) -> None:
    subprocess.run(["ip", "netns", "add", "ns1"], check=True)
    lab = tmp_path / "seed.yaml"
    lab.write_text(SEED)
    code, checks = _doctor(str(lab))
    assert code == 1
    plan = checks[f"plan {lab}"]
    assert plan["status"] == "FAIL" and "ns1" in plan["detail"]


def test_foreign_forward_drop_is_named_with_a_fix(tmp_path) -> None:
    script = "add table ip filter\nadd chain ip filter FORWARD { type filter hook forward priority 0; policy drop; }\n"
    subprocess.run(["nft", "-f", "-"], input=script, text=True, check=True)
    code, checks = _doctor()
    drop = checks["firewall ip filter FORWARD"]
    assert drop["status"] == "warn" and "policy drop" in drop["detail"]
    assert "iptables -I FORWARD -i BRIDGE -j ACCEPT" in drop["fix"]


def test_dead_namespace_files_are_reported() -> None:
    open("/run/netns/leftover", "w").close()
    _code, checks = _doctor()
    assert checks["/run/netns"]["status"] == "warn" and "leftover" in checks["/run/netns"]["detail"]


def test_table_output() -> None:
    result = vethlab("doctor")
    assert result.returncode == 0, result.stderr
    assert "verdict: ready" in result.stdout and "veth" in result.stdout
