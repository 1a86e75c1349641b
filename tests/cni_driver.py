"""A CNI driver for the tests (Debian has no cnitool): runs a plugin exactly as a
runtime does — found by its `type` in CNI_PATH, a new process per command,
CNI_* in the environment, the config on stdin — and decodes what it answers.

    cni = Cni(bin_dir)
    out = cni.add(conf, "c1", "/run/netns/c1")      # the parsed result
    cni.delete(conf, "c1", "/run/netns/c1", prev=out)
    answer = cni.call("ADD", conf, ...)             # Answer: status, json, stdout, stderr

`add_list` runs a conflist's plugins in order, each given the previous result
as `prevResult` (chained use), as libcni does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

VENV_BIN = os.path.dirname(sys.executable)
REFERENCE_DIR = "/usr/lib/cni"
#: a lab whose bridge network `lan` containers join (join-a-lab mode: docs/cni.md)
JOINABLE_LAB = """\
name: pl
nodes:
  a: {}
  b: {}
networks:
  lan:
    subnet: 172.31.5.0/24
    nat: true
    members: {a: {}, b: {}}
"""


class Answer:
    def __init__(self, status: int, stdout: str, stderr: str) -> None:
        self.status = status
        self.stdout = stdout
        self.stderr = stderr
        try:
            self.json: Any = json.loads(stdout) if stdout.strip() else None
        except ValueError:
            self.json = None

    def __repr__(self) -> str:
        return f"Answer(status={self.status}, stdout={self.stdout[:400]!r}, stderr={self.stderr[-600:]!r})"


class CniFailed(AssertionError):
    pass


def install(bin_dir: str) -> str:
    """A CNI plugin directory: vethlab's launcher as `vethlab` (what `vethlab-cni
    install` writes) and the reference plugins linked in."""
    os.makedirs(bin_dir, exist_ok=True)
    subprocess.run([os.path.join(VENV_BIN, "vethlab-cni"), "install", bin_dir], check=True, capture_output=True)
    if os.path.isdir(REFERENCE_DIR):
        for name in os.listdir(REFERENCE_DIR):
            target = os.path.join(bin_dir, name)
            if not os.path.exists(target):
                os.symlink(os.path.join(REFERENCE_DIR, name), target)
    return bin_dir


class Cni:
    def __init__(self, bin_dir: str, env: dict[str, str] | None = None) -> None:
        self.path = [bin_dir]
        self.env = env or {}

    def plugin(self, kind: str) -> str:
        for directory in self.path:
            candidate = os.path.join(directory, kind)
            if os.access(candidate, os.X_OK):
                return candidate
        raise CniFailed(f"no plugin {kind!r} in {self.path}")

    def call(self, command: str, conf: dict[str, Any] | bytes, container_id: str = "", netns: str = "",
             ifname: str = "eth0", args: str = "", env: dict[str, str] | None = None,
             plugin: str | None = None, timeout: float = 60) -> Answer:
        data = conf if isinstance(conf, bytes) else json.dumps(conf).encode()
        kind = plugin or (json.loads(data).get("type") if not isinstance(conf, dict) else conf.get("type"))
        variables = {**os.environ, **self.env, "CNI_COMMAND": command, "CNI_PATH": ":".join(self.path),
                     **(env or {})}
        for key, value in (("CNI_CONTAINERID", container_id), ("CNI_NETNS", netns), ("CNI_IFNAME", ifname),
                           ("CNI_ARGS", args)):
            if value:
                variables[key] = value
        done = subprocess.run([self.plugin(str(kind))], input=data, env=variables, capture_output=True,
                              timeout=timeout, check=False)
        return Answer(done.returncode, done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace"))

    def _ok(self, answer: Answer, what: str) -> Any:
        if answer.status != 0:
            raise CniFailed(f"{what}: {answer}")
        return answer.json

    def add(self, conf: dict[str, Any], container_id: str, netns: str, ifname: str = "eth0", **kw: Any) -> Any:
        return self._ok(self.call("ADD", conf, container_id, netns, ifname, **kw), f"ADD {container_id}")

    def delete(self, conf: dict[str, Any], container_id: str, netns: str = "", ifname: str = "eth0",
               prev: dict[str, Any] | None = None, **kw: Any) -> None:
        conf = {**conf, **({"prevResult": prev} if prev else {})}
        self._ok(self.call("DEL", conf, container_id, netns, ifname, **kw), f"DEL {container_id}")

    def check(self, conf: dict[str, Any], container_id: str, netns: str, prev: dict[str, Any],
              ifname: str = "eth0", **kw: Any) -> Answer:
        return self.call("CHECK", {**conf, "prevResult": prev}, container_id, netns, ifname, **kw)

    def version(self, conf: dict[str, Any] | bytes, **kw: Any) -> Answer:
        return self.call("VERSION", conf, **kw)

    def status(self, conf: dict[str, Any], **kw: Any) -> Answer:
        return self.call("STATUS", conf, ifname="", **kw)

    def gc(self, conf: dict[str, Any], valid: list[tuple[str, str]], **kw: Any) -> Answer:
        body = {**conf, "cni.dev/valid-attachments": [{"containerID": c, "ifname": i} for c, i in valid]}
        return self.call("GC", body, ifname="", **kw)

    def add_list(self, conflist: dict[str, Any], container_id: str, netns: str, ifname: str = "eth0",
                 runtime_config: dict[str, Any] | None = None) -> Any:
        """Every plugin of a conflist in order, each with the previous result."""
        prev = None
        for plugin in conflist["plugins"]:
            conf = {"cniVersion": conflist["cniVersion"], "name": conflist["name"], **plugin}
            if runtime_config and plugin.get("capabilities"):
                conf["runtimeConfig"] = {k: v for k, v in runtime_config.items() if plugin["capabilities"].get(k)}
            if prev is not None:
                conf["prevResult"] = prev
            prev = self.add(conf, container_id, netns, ifname)
        return prev


def bridge_conf(name: str, bridge: str, subnet: str, data_dir: str, version: str = "1.0.0",
                kind: str = "vethlab", **extra: Any) -> dict[str, Any]:
    """The reference bridge plugin's usual config (Podman's and containerd's defaults look like it)."""
    return {"cniVersion": version, "name": name, "type": kind, "bridge": bridge, "isGateway": True,
            "ipMasq": True, "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]],
                                     "routes": [{"dst": "0.0.0.0/0"}], "dataDir": data_dir}, **extra}


def netns(name: str) -> str:
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
    return f"/run/netns/{name}"


def in_ns(name: str, *argv: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", name, *argv], capture_output=True, text=True, timeout=timeout,
                          check=False)
