"""Real runtimes on vethlab networks, inside the test's sandbox: Podman 4.3 (CNI
backend, runc, a busybox rootfs) and containerd 1.6 (`ctr run --cni`).

Each test skips, saying why, only when the runtime's binary is missing; CI installs
them (./run's APT_PACKAGES).  Podman calls VERSION with CNI_NETNS=dummy, ADD with
CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAME=…, and DEL with prevResult (also after a failed
ADD); it never calls STATUS or GC — test_cni_plugin.py covers those."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from typing import Any

import pytest

from cni_driver import JOINABLE_LAB, install
from helpers import ip_json, vethlab

BUSYBOX = "/bin/busybox"


def need(*binaries: str) -> None:
    for binary in binaries:
        if shutil.which(binary) is None and not os.path.exists(binary):
            pytest.skip(f"{binary} is not installed (apt-get install podman runc busybox-static containerd "
                        "containernetworking-plugins)")


def rootfs(path: str) -> str:
    """A busybox root filesystem: the static binary and a relative link per applet."""
    os.makedirs(os.path.join(path, "bin"))
    shutil.copy(BUSYBOX, os.path.join(path, "bin", "busybox"))
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            os.symlink("busybox", os.path.join(path, "bin", applet))
    return path


def conflist(name: str, plugin: dict[str, Any]) -> str:
    return json.dumps({"cniVersion": "1.0.0", "name": name, "plugins": [plugin]})


def bridge_plugin(bridge: str, subnet: str, data_dir: str) -> dict[str, Any]:
    return {"type": "vethlab", "bridge": bridge, "isGateway": True, "ipMasq": True,
            "capabilities": {"portMappings": True},
            "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]], "routes": [{"dst": "0.0.0.0/0"}],
                     "dataDir": data_dir}}


LAB = JOINABLE_LAB


class Podman:
    def __init__(self, tmp: str, base_hosts: str) -> None:
        self.tmp = tmp
        self.bin = install(os.path.join(tmp, "bin"))
        self.net = os.path.join(tmp, "net")
        os.makedirs(self.net)
        conf = os.path.join(tmp, "containers.conf")
        with open(conf, "w") as fh:
            fh.write(f"""[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
base_hosts_file = "{base_hosts}"
[network]
network_backend = "cni"
cni_plugin_dirs = ["{self.bin}"]
network_config_dir = "{self.net}"
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
""")
        self.env = {**os.environ, "CONTAINERS_CONF": conf}
        self.rootfs = rootfs(os.path.join(tmp, "rootfs"))

    def network(self, name: str, plugin: dict[str, Any]) -> None:
        with open(os.path.join(self.net, f"{name}.conflist"), "w") as fh:
            fh.write(conflist(name, plugin))

    def __call__(self, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        argv = ["podman", "--root", os.path.join(self.tmp, "storage"), "--runroot", "/run/podman-test",
                "--storage-driver", "vfs", *args]
        return subprocess.run(argv, capture_output=True, text=True, env=self.env, timeout=timeout, check=False)

    def ok(self, *args: str) -> str:
        done = self(*args)
        assert done.returncode == 0, f"podman {' '.join(args)}: {done.stdout}{done.stderr}"
        return done.stdout

    def run(self, name: str, network: str, *command: str, publish: str | None = None) -> str:
        extra = ["-p", publish] if publish else []
        return self.ok("run", "-d", "--name", name, "--network", network, *extra, "--rootfs", self.rootfs,
                       *command)

    def ip(self, name: str, network: str) -> str:
        data = json.loads(self.ok("inspect", name))
        return str(data[0]["NetworkSettings"]["Networks"][network]["IPAddress"])

    def exec(self, name: str, *command: str) -> subprocess.CompletedProcess[str]:
        return self("exec", name, *command)

    def exec_ok(self, name: str, *command: str) -> None:
        done = self.exec(name, *command)
        assert done.returncode == 0, f"podman exec {name} {' '.join(command)}: {done.stdout}{done.stderr}"


def _fetch(address: str, port: int, tries: int = 150) -> str:
    """The server's greeting (a container's server may take a moment to listen)."""
    for _ in range(tries):
        try:
            with socket.create_connection((address, port), timeout=3) as conn:
                data = conn.recv(100).decode()
                if data:
                    return data.strip()
        except OSError:
            pass
        time.sleep(0.1)
    return ""


def _lab_view() -> dict[str, Any]:
    status = json.loads(vethlab("status", "--lab", "pl", "--json", check=True).stdout)
    for iface in status["interfaces"]:
        iface.pop("stats", None)
    hosts = {}
    for node in ("a", "b"):
        with open(f"/etc/netns/{node}/hosts") as fh:
            hosts[node] = fh.read()
    return {"nodes": status["nodes"], "interfaces": status["interfaces"], "hosts": hosts,
            "links": _links()}


def _links() -> list[dict[str, Any]]:
    """Every interface of the host namespace, all but its operational state: a bridge's
    follows its ports through linkwatch, which may leave it UNKNOWN (flags UP,
    LOWER_UP) until some later carrier event -- kernel timing, not the lab's state."""
    links = json.loads(subprocess.run(["ip", "-j", "-d", "link"], capture_output=True, text=True).stdout)
    for link in links:
        link.pop("operstate", None)
        link.pop("linkinfo", None)  # a bridge's timers and counters move on their own
    return links


def test_podman_containers_on_a_vethlab_network_and_in_a_lab(tmp_path) -> None:
    need("podman", "runc", BUSYBOX, "/usr/lib/cni/host-local")
    lab_file = tmp_path / "lab.yaml"
    lab_file.write_text(LAB)
    vethlab("up", str(lab_file), check=True)
    podman = Podman(str(tmp_path), "/etc/netns/a/hosts")  # the lab's names, for containers that join it
    podman.network("vlnet", bridge_plugin("vlpod0", "10.77.0.0/24", str(tmp_path / "ipam")))
    podman.network("labnet", {"type": "vethlab", "lab": "pl", "network": "lan"})
    try:
        # a container gets its address, serves a published port; a second one reaches both
        podman.run("web", "vlnet", "sh", "-c", "while true; do echo hello | nc -l -p 80; done", publish="8080:80")
        podman.run("client", "vlnet", "sleep", "300")
        web_ip = podman.ip("web", "vlnet")
        assert web_ip.startswith("10.77.0.")
        podman.exec_ok("client", "ping", "-c1", "-W5", "10.77.0.1")
        podman.exec_ok("client", "ping", "-c1", "-W5", web_ip)
        assert _fetch("127.0.0.1", 8080) == "hello"  # published to the host
        # joining the lab: an address from the lab's subnet, a name in the lab, a node in its status
        before = _lab_view()
        podman.run("joiner", "labnet", "sleep", "300")
        assert podman.ip("joiner", "labnet") == "172.31.5.4"  # after the gateway (.1) and members a, b
        podman.exec_ok("joiner", "ping", "-c1", "-W5", "a")
        joined = subprocess.run(["ip", "netns", "exec", "b", "ping", "-c1", "-W5", "joiner"], capture_output=True,
                                text=True)
        assert joined.returncode == 0, joined.stdout + joined.stderr
        status = json.loads(vethlab("status", "--lab", "pl", "--json", check=True).stdout)
        assert [n["name"] for n in status["nodes"]] == ["a", "b", "host", "joiner"]
        (iface,) = [i for i in status["interfaces"] if i["node"] == "joiner"]
        assert iface["name"] == "eth0" and iface["addresses"] == ["172.31.5.4/24"]
        podman.ok("rm", "-f", "-t", "0", "joiner")  # DEL: the lab is as before
        assert _lab_view() == before
    finally:
        podman("rm", "-f", "-t", "0", "--all")
        vethlab("down", "--lab", "pl")


def test_podman_del_after_a_failed_add_leaves_nothing(tmp_path) -> None:
    need("podman", "runc", BUSYBOX, "/usr/lib/cni/host-local")
    podman = Podman(str(tmp_path), "none")
    data = str(tmp_path / "ipam")
    podman.network("vlnet", bridge_plugin("vlpod0", "10.77.0.0/24", data))
    subprocess.run(["ip", "link", "add", "vlpod0", "type", "bridge"], check=True)  # a foreign bridge of that name
    done = podman("run", "--rm", "--network", "vlnet", "--rootfs", podman.rootfs, "true")
    assert done.returncode != 0 and "not this network's" in done.stderr
    store = os.path.join(data, "vlnet")
    leases = [n for n in os.listdir(store) if n != "lock" and not n.startswith("last_reserved_ip")] \
        if os.path.isdir(store) else []
    assert leases == []  # the failed ADD gave its lease back; Podman's DEL after it found nothing to do
    assert [link["ifname"] for link in ip_json("link", "show")] == ["lo", "vlpod0"]


def test_containerd_ctr_run_cni_gets_a_vethlab_address(tmp_path) -> None:
    need("containerd", "ctr", "runc", BUSYBOX, "/usr/lib/cni/host-local")
    bin_dir = install(str(tmp_path / "bin"))
    conf_dir = tmp_path / "net"
    conf_dir.mkdir()
    (conf_dir / "10-vethlab.conflist").write_text(
        conflist("vlctr", bridge_plugin("vlctr0", "10.78.0.0/24", str(tmp_path / "ipam"))))
    config = tmp_path / "containerd.toml"
    config.write_text(f"""version = 2
root = "{tmp_path}/root"
state = "/run/ctrd-test/state"
[grpc]
  address = "/run/ctrd-test/ctrd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  disable_tcp_service = true
[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "{bin_dir}"
  conf_dir = "{conf_dir}"
""")
    # `ctr run --cni` reads /etc/cni/net.d and /opt/cni/bin: bound over them in this
    # test's own mount namespace only
    for source, target in ((str(conf_dir), "/etc/cni/net.d"), (bin_dir, "/opt/cni/bin")):
        os.makedirs(target, exist_ok=True)
        subprocess.run(["mount", "--bind", source, target], check=True)
    fs = rootfs(str(tmp_path / "rootfs"))
    log = open(tmp_path / "containerd.log", "w")
    daemon = subprocess.Popen(["containerd", "--config", str(config)], stdout=log, stderr=log)
    try:
        for _ in range(100):
            if os.path.exists("/run/ctrd-test/ctrd.sock"):
                break
            time.sleep(0.05)
        done = subprocess.run(["ctr", "-a", "/run/ctrd-test/ctrd.sock", "run", "--rm", "--cni", "--rootfs", fs, "c1",
                               "/bin/sh", "-c", "ip -4 -o addr show eth0; ping -c1 -W2 10.78.0.1"],
                              capture_output=True, text=True, timeout=90, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "inet 10.78.0.2/24" in done.stdout and "1 packets received" in done.stdout
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=30)
        log.close()
