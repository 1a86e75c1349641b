"""The CNI plugin's pure parts: environment, CNI_ARGS, versions, config checks,
results per version, error objects, the launcher, and what start-up imports."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest

from vethlab.cni import main as cni_main
from vethlab.cni.config import NetConf
from vethlab.cni.protocol import CniError, check_version, parse_args, read_env
from vethlab.cni.result import Result

PLUGIN = os.path.join(os.path.dirname(sys.executable), "vethlab-cni")
BASE = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/run/netns/c1", "CNI_IFNAME": "eth0",
        "CNI_PATH": "/usr/lib/cni"}


def code_of(fn, *args) -> int:  # type: ignore[no-untyped-def]
    with pytest.raises(CniError) as info:
        fn(*args)
    return info.value.code


# -- environment -----------------------------------------------------------------------
def test_env_is_read_and_checked() -> None:
    env = read_env({**BASE, "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAME=web;FOO=bar"})
    assert (env.command, env.container_id, env.netns, env.ifname, env.path) == \
        ("ADD", "c1", "/run/netns/c1", "eth0", ["/usr/lib/cni"])
    assert env.args == {"IgnoreUnknown": "1", "K8S_POD_NAME": "web", "FOO": "bar"}


@pytest.mark.parametrize("change", [
    {"CNI_COMMAND": "FROB"}, {"CNI_CONTAINERID": ""}, {"CNI_NETNS": ""}, {"CNI_IFNAME": ""}, {"CNI_PATH": ""},
    {"CNI_CONTAINERID": "../x"}, {"CNI_IFNAME": "eth0/../x"}, {"CNI_IFNAME": "a" * 16}, {"CNI_NETNS": "netns"},
    {"CNI_ARGS": "novalue"},
])
def test_bad_environment_is_code_4(change: dict[str, str]) -> None:
    assert code_of(read_env, {**BASE, **change}) == 4


def test_del_needs_no_namespace_and_version_nothing() -> None:
    assert read_env({**BASE, "CNI_COMMAND": "DEL", "CNI_NETNS": ""}).netns == ""
    assert read_env({"CNI_COMMAND": "VERSION"}).command == "VERSION"


def test_unknown_cni_args_need_ignore_unknown() -> None:
    assert code_of(parse_args, "FOO=bar") == 2
    assert parse_args("IgnoreUnknown=true;FOO=bar") == {"IgnoreUnknown": "true", "FOO": "bar"}
    assert parse_args("K8S_POD_NAME=x;IP=10.0.0.5") == {"K8S_POD_NAME": "x", "IP": "10.0.0.5"}


# -- versions ------------------------------------------------------------------------------
def test_versions() -> None:
    for version in ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"):
        assert check_version(version, "ADD") == version
    assert code_of(check_version, "9.9.9", "ADD") == 1
    assert code_of(check_version, "0.3.1", "CHECK") == 1
    assert code_of(check_version, "1.0.0", "GC") == 1
    assert code_of(check_version, "1.0.0", "STATUS") == 1
    assert code_of(check_version, None, "ADD") == 7


# -- config ----------------------------------------------------------------------------------
GOOD = {"cniVersion": "1.0.0", "name": "net1", "type": "vethlab", "bridge": "vlbr0", "isGateway": True,
        "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.88.0.0/24"}]]}}


def test_config_keys_of_the_bridge_plugin() -> None:
    conf = NetConf({**GOOD, "isDefaultGateway": True, "mtu": 1400, "hairpinMode": True,
                    "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "UDP",
                                                        "hostIP": "127.0.0.1"}]}, "capabilities": {"x": 1}})
    assert (conf.bridge, conf.is_gateway, conf.is_default_gateway, conf.mtu, conf.hairpin) == \
        ("vlbr0", True, True, 1400, True)
    assert [m.to_json() for m in conf.port_mappings] == \
        [{"hostPort": 8080, "containerPort": 80, "protocol": "udp", "hostIP": "127.0.0.1"}]
    assert NetConf({**GOOD, "bridge": ""}).bridge == "cni0"  # the reference plugin's default


@pytest.mark.parametrize("change,code,field", [
    ({"name": "a/b"}, 7, "name"), ({"mtu": "big"}, 7, "mtu"), ({"mtu": 20}, 7, "mtu"),
    ({"isGateway": "yes"}, 7, "isGateway"), ({"ipam": []}, 7, "ipam"), ({"ipam": {"ranges": []}}, 7, "ipam.type"),
    ({"bridge": "x" * 16}, 7, "bridge"), ({"vlan": 100}, 2, "vlan"), ({"macspoofchk": True}, 2, "macspoofchk"),
    ({"runtimeConfig": {"portMappings": [{"hostPort": 0, "containerPort": 80}]}}, 7, "hostPort"),
    ({"runtimeConfig": {"portMappings": [{"hostPort": 80, "containerPort": 80, "protocol": "icmp"}]}}, 7,
     "protocol"),
    ({"runtimeConfig": {"portMappings": [{"hostPort": 80, "containerPort": 80, "hostIP": "::1"}]}}, 2, "hostIP"),
    ({"prevResult": []}, 7, "prevResult"), ({"lab": "pl"}, 7, "network"), ({"lab": "Bad!", "network": "n"}, 7, "lab"),
])
def test_bad_config_names_the_field(change: dict[str, object], code: int, field: str) -> None:
    with pytest.raises(CniError) as info:
        NetConf({**GOOD, **change})
    assert info.value.code == code and field in info.value.details


def test_lab_mode_refuses_keys_the_lab_decides() -> None:
    with pytest.raises(CniError) as info:
        NetConf({"cniVersion": "1.0.0", "name": "x", "type": "vethlab", "lab": "pl", "network": "lan",
                 "ipam": {"type": "host-local"}})
    assert info.value.code == 7 and "ipam" in info.value.details


# -- results -------------------------------------------------------------------------------------
RESULT = Result(interfaces=[{"name": "br"}, {"name": "vc1"}, {"name": "eth0", "sandbox": "/run/netns/c"}],
                ips=[{"address": "10.0.0.2/24", "gateway": "10.0.0.1", "interface": 2},
                     {"address": "fd00::2/64", "interface": 2}],
                routes=[{"dst": "0.0.0.0/0"}])


def test_result_per_version() -> None:
    new = RESULT.to_json("1.1.0")
    assert new["ips"] == [{"interface": 2, "address": "10.0.0.2/24", "gateway": "10.0.0.1"},
                          {"interface": 2, "address": "fd00::2/64"}]
    old = RESULT.to_json("0.4.0")
    assert [ip["version"] for ip in old["ips"]] == ["4", "6"]
    assert new["cniVersion"] == "1.1.0" and new["dns"] == {} and new["routes"] == [{"dst": "0.0.0.0/0"}]
    for doc in (new, old):  # read back in either shape
        again = Result.from_json(doc, "x")
        assert again.ips == RESULT.ips and again.routes == RESULT.routes


def test_result_that_is_not_one_is_code_6() -> None:
    for bad in ([], {"ips": [{"address": "nonsense"}]}, {"routes": [{"gw": "10.0.0.1"}]}):
        assert code_of(Result.from_json, bad, "prevResult") == 6


# -- the entry point ---------------------------------------------------------------------------------
def plugin(env: dict[str, str], stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([PLUGIN], input=stdin, env={"PATH": os.environ.get("PATH", ""), **env},
                          capture_output=True, timeout=30, check=False)


def test_version_as_podman_calls_it() -> None:
    done = plugin({"CNI_COMMAND": "VERSION", "CNI_NETNS": "dummy", "CNI_PATH": "/x"}, b'{"cniVersion":"1.0.0"}')
    assert done.returncode == 0
    assert json.loads(done.stdout) == {"cniVersion": "1.0.0",
                                       "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]}


@pytest.mark.parametrize("env,stdin,code", [
    ({"CNI_COMMAND": "ADD"}, b"{}", 4),
    (BASE, b"{not json", 6),
    (BASE, b"[1, 2]", 6),
    (BASE, json.dumps({**GOOD, "cniVersion": "0.1.0"}).encode(), 1),
    (BASE, json.dumps({**GOOD, "mtu": -1}).encode(), 7),
    ({**BASE, "CNI_ARGS": "FOO=1"}, json.dumps(GOOD).encode(), 2),
])
def test_errors_are_json_on_stdout_and_words_on_stderr(env: dict[str, str], stdin: bytes, code: int) -> None:
    done = plugin(env, stdin)
    assert done.returncode == 1
    error = json.loads(done.stdout)
    assert set(error) == {"cniVersion", "code", "msg", "details"} and error["code"] == code
    assert b"Traceback" not in done.stdout + done.stderr and done.stderr.startswith(b"vethlab-cni: ")


def test_an_unexpected_failure_is_code_199_with_the_traceback_on_stderr(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    def boom(stdin: bytes, environ: object = None) -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(cni_main, "run", boom)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"{}")))
    monkeypatch.setattr(sys, "argv", ["vethlab-cni"])
    monkeypatch.setenv("CNI_COMMAND", "VERSION")
    assert cni_main.main() == 1
    out, err = capsys.readouterr()
    assert json.loads(out) == {"cniVersion": "1.1.0", "code": 199, "msg": "internal error",
                               "details": "ZeroDivisionError: a bug"}
    assert "Traceback" in err and "Traceback" not in out


def test_installed_launcher_starts_without_site_and_imports_only_what_it_needs(tmp_path) -> None:
    done = subprocess.run([PLUGIN, "install", str(tmp_path)], capture_output=True, text=True, check=True)
    launcher = done.stdout.strip()
    assert launcher == str(tmp_path / "vethlab") and os.access(launcher, os.X_OK)
    with open(launcher) as fh:
        shebang, *body = fh.read().splitlines()
    assert shebang.endswith(" -IS")  # one argument: the kernel passes "-I -S" as a single word
    probe = "\n".join(line for line in body if not line.startswith(("from vethlab.cni.main", "sys.exit"))) + \
        "\nimport vethlab.cni.main, vethlab.cni.commands, vethlab.cni.hostlocal\nprint(' '.join(sorted(sys.modules)))"
    modules = set(subprocess.run([shebang[2:].split()[0], "-IS", "-c", probe], capture_output=True, text=True,
                                 check=True).stdout.split())
    assert "site" not in modules
    heavy = {"yaml", "argparse", "aiohttp", "pyroute2", "rich", "typing", "dataclasses", "subprocess", "asyncio",
             "ctypes", "threading", "re", "json", "ipaddress", "socket", "collections", "enum", "hashlib"}
    assert modules & heavy == set()
    answer = plugin({"CNI_COMMAND": "VERSION"}, b"")
    assert answer.returncode == 0
