"""Nodes' own views (hostname, files, private directories, mounts) on the real
kernel: what a node sees, what the host keeps, what every way into a node sees,
and that `down` leaves the machine exactly as it was.

Host paths live under /run, which the sandbox makes a private tmpfs: nothing
here touches the real machine's files."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from helpers import vethlab
from vethlab import Lab
from vethlab.kernel import nodefs
from vethlab.kernel.process import node_argv
from vethlab.topology import lab_from_text

HOSTDIR = Path("/run/t")


@pytest.fixture(autouse=True)
def _netns_dir_mounted() -> None:
    """/run/netns becomes a mount point with the first namespace (as iproute2 makes
    it) and stays one: made so before any test takes its `world()`."""
    subprocess.run(["ip", "netns", "add", "warm-up"], check=True)
    subprocess.run(["ip", "netns", "del", "warm-up"], check=True)


def world() -> dict[str, Any]:
    """What a lab may touch, seen from the sandbox's host: mounts, files under /run,
    namespaces, the state directory, the hostname."""
    mounts = sorted(line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines())
    files = {}
    for top, dirs, names in os.walk("/run"):
        dirs.sort()
        for name in sorted(dirs + names):
            path = os.path.join(top, name)
            files[path] = Path(path).read_bytes() if os.path.isfile(path) and not os.path.islink(path) else None
    return {"mounts": mounts, "files": files, "hostname": socket.gethostname(),
            "netns": sorted(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else []}


def host_tree() -> None:
    """The 'host' files the lab shows differently in its node."""
    (HOSTDIR / "etc" / "app").mkdir(parents=True)
    (HOSTDIR / "etc" / "app" / "seed.conf").write_text("seeded from the host\n")
    (HOSTDIR / "etc" / "app" / "keep.conf").write_text("the host's\n")
    (HOSTDIR / "motd").write_text("host motd\n")
    (HOSTDIR / "share").mkdir()
    (HOSTDIR / "share" / "data.txt").write_text("shared\n")
    (HOSTDIR / "rw").mkdir()


LAB = textwrap.dedent("""\
    name: views
    nodes:
      r1:
        hostname: router-one
        private:
          - /run/t/var
          - {path: /run/t/etc/app, copy: true, mode: "0750"}
          - /run/t/new/dir
        files:
          /run/t/etc/app/app.conf: "router one\\n"
          /run/t/var/deep/x.conf: {content: "deep\\n", mode: "0600"}
          /run/t/motd: "@motd.txt"
          /run/t/nowhere/conf/x.conf: "made in the node\\n"   # no /run/t/nowhere on the host
        mounts:
          /run/t/share: /run/t/var/share
          /run/t/rw: /run/t/var/rw:rw
          /run/t/motd.txt: /run/t/opt/motd                   # no /run/t/opt on the host
      plain: {}
    links:
      - endpoints: [r1:eth0, plain:eth0]
        addresses: [10.0.0.1/24, 10.0.0.2/24]
    """)


def sh(lab: Lab, node: str, script: str) -> subprocess.CompletedProcess[str]:
    return lab.node(node).exec(["sh", "-c", script], capture_output=True, text=True)


def test_node_sees_its_own_view_and_the_host_keeps_its_own() -> None:
    host_tree()
    (HOSTDIR / "lab.yaml").write_text(LAB)
    (HOSTDIR / "motd.txt").write_text("r1 motd\n")  # `@motd.txt`: next to the lab file
    before = world()
    lab = Lab.load(str(HOSTDIR / "lab.yaml"))
    lab.up()
    try:
        r1 = lab.node("r1")
        assert r1.exec(["hostname"], capture_output=True).stdout == "router-one\n"
        assert lab.node("plain").exec(["hostname"], capture_output=True).stdout == socket.gethostname() + "\n"
        seen = sh(lab, "r1", "cat /run/t/etc/app/app.conf /run/t/etc/app/seed.conf /run/t/etc/app/keep.conf "
                             "/run/t/var/deep/x.conf /run/t/motd /run/t/var/share/data.txt; "
                             "stat -c '%a' /run/t/etc/app /run/t/var/deep/x.conf; ls -A /run/t/new/dir")
        assert seen.stdout.split("\n") == ["router one", "seeded from the host", "the host's", "deep", "r1 motd",
                                           "shared", "750", "600", ""], seen.stderr
        # read-only unless asked; writable when asked (and then the host sees it)
        assert sh(lab, "r1", "echo x > /run/t/var/share/new").returncode != 0
        assert sh(lab, "r1", "echo hello > /run/t/var/rw/from-node").returncode == 0
        assert (HOSTDIR / "rw" / "from-node").read_text() == "hello\n"
        # a private directory is the node's: written there, not on the host
        assert sh(lab, "r1", "echo n > /run/t/var/note && echo n > /run/t/etc/app/keep.conf").returncode == 0
        assert not (HOSTDIR / "var" / "note").exists()
        assert (HOSTDIR / "etc" / "app" / "keep.conf").read_text() == "the host's\n"
        assert (HOSTDIR / "motd").read_text() == "host motd\n"
        assert not (HOSTDIR / "etc" / "app" / "app.conf").exists()
        # paths the host does not have are made in the node only
        assert sh(lab, "r1", "cat /run/t/nowhere/conf/x.conf /run/t/opt/motd; ls -A /run/t/new").stdout \
            == "made in the node\nr1 motd\ndir\n"
        assert sorted(os.listdir(HOSTDIR)) == ["etc", "lab.yaml", "motd", "motd.txt", "rw", "share"]
        # the plain node sees the host's files, as before
        assert sh(lab, "plain", "cat /run/t/motd").stdout == "host motd\n"
        # `ip netns exec` keeps the network view only: the host's files and name
        raw = subprocess.run(["ip", "netns", "exec", "r1", "sh", "-c", "cat /run/t/motd; hostname; ip -br addr "
                              "show eth0"], capture_output=True, text=True)
        assert raw.stdout.split("\n")[:2] == ["host motd", socket.gethostname()]
        assert "10.0.0.1/24" in raw.stdout
        # the CLI's exec and shell enter the view too
        assert vethlab("exec", "r1", "--", "cat", "/run/t/motd").stdout == "r1 motd\n"
        shell = vethlab("shell", "r1", input="hostname; cat /run/t/var/deep/x.conf\nexit\n",
                        env={"SHELL": "/bin/bash"})
        assert "router-one\ndeep\n" in shell.stdout, shell.stdout + shell.stderr
        assert "(views:r1) router-one:" in shell.stderr, shell.stderr  # the prompt names the node's host name
        plain = vethlab("shell", "plain", input="exit\n", env={"SHELL": "/bin/bash"})
        assert f"(views:plain) {socket.gethostname()}:" in plain.stderr, plain.stderr
    finally:
        lab.down()
        lab.close()
    after = world()
    # what stays on purpose: what the node wrote into the rw mount; nothing else
    assert after["mounts"] == before["mounts"]
    made = {"/run/t/rw/from-node": b"hello\n"}
    assert after["files"] == {**before["files"], **made}
    assert after == {**before, "mounts": after["mounts"], "files": after["files"]}


def test_services_and_capture_run_in_the_view() -> None:
    lab = Lab(lab_from_text(textwrap.dedent("""\
        name: svc
        nodes:
          a:
            private: [/run/t/data]
            run: ["sh -c 'hostname > /run/t/data/name; exec sleep 600'"]
          b: {}
        links:
          - endpoints: [a:eth0, b:eth0]
            addresses: [10.0.0.1/24, 10.0.0.2/24]
        """)))
    HOSTDIR.mkdir()
    lab.up()
    try:
        deadline = time.monotonic() + 10
        while sh(lab, "a", "cat /run/t/data/name").stdout != "a\n" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sh(lab, "a", "cat /run/t/data/name").stdout == "a\n"  # the default hostname is the node's name
        assert not (HOSTDIR / "data" / "name").exists()

        pinger = threading.Thread(target=lambda: [sh(lab, "b", "ping -c1 -W1 10.0.0.1") for _ in range(20)])
        pinger.start()
        cap = vethlab("capture", "a:eth0", "-c", "1", "-w", "/run/t/data/cap.pcap", timeout=30)
        pinger.join()
        assert cap.returncode == 0, cap.stderr
        assert int(sh(lab, "a", "stat -c %s /run/t/data/cap.pcap").stdout) > 24  # a pcap header and a packet
        assert not (HOSTDIR / "data" / "cap.pcap").exists()
    finally:
        lab.down()
        lab.close()


def test_node_without_view_keys_costs_nothing() -> None:
    lab = Lab(lab_from_text("name: plain\nnodes:\n  a: {}\n"))
    lab.up()
    try:
        assert node_argv("a", ["true"])[1:4] == ["netns", "exec", "a"]  # no nsenter in front
        assert not os.path.exists(nodefs.views_root())
        assert lab.kernel.views() == {}
    finally:
        lab.down()
        lab.close()


def test_a_file_is_never_written_through_a_link_the_node_planted() -> None:
    """The node replaces its config file by a symlink to a host file; the next `up`
    (with new content) replaces the link, and the host file keeps its content."""
    HOSTDIR.mkdir()
    victim = HOSTDIR / "victim"
    victim.write_text("precious\n")
    text = ("name: esc\nnodes:\n  a:\n    private: [/run/t/conf]\n    files:\n      /run/t/conf/a.conf: {0}\n"
            "      /run/t/conf/sub/c.conf: {0}\n")
    path = HOSTDIR / "esc.yaml"
    path.write_text(text.format(json.dumps("one\n")))
    vethlab("up", str(path), check=True)
    try:
        assert vethlab("exec", "a", "--", "sh", "-c", "rm -r /run/t/conf/sub && ln -s /run/t /run/t/conf/sub").returncode == 0
        path.write_text(text.format(json.dumps("two\n")).replace("sub/c.conf", "sub/victim"))
        result = vethlab("up", str(path))
        assert result.returncode != 0 and "not a directory" in result.stderr, result.stderr
        assert victim.read_text() == "precious\n"
        # refused before anything changed: the node keeps the view it had (a.conf too, which
        # comes first in the file: review found it rewritten by the refused run)
        assert vethlab("exec", "a", "--", "readlink", "/run/t/conf/sub").stdout == "/run/t\n"
        assert vethlab("exec", "a", "--", "cat", "/run/t/conf/a.conf").stdout == "one\n"
        assert vethlab("exec", "a", "--", "sh", "-c", "rm /run/t/conf/sub && ln -s /run/t/victim "
                       "/run/t/conf/sub").returncode == 0
        path.write_text(text.format(json.dumps("three\n")).replace("sub/c.conf", "sub"))
        vethlab("up", str(path), check=True)
        assert victim.read_text() == "precious\n"
        assert vethlab("exec", "a", "--", "cat", "/run/t/conf/sub").stdout == "three\n"
    finally:
        vethlab("down", str(path), check=True)


def test_a_rebuilt_view_keeps_private_content_and_an_unchanged_one_is_left_alone() -> None:
    HOSTDIR.mkdir()
    path = HOSTDIR / "re.yaml"
    path.write_text("name: re\nnodes:\n  a:\n    hostname: one\n    private: [/run/t/p]\n")
    vethlab("up", str(path), check=True)
    try:
        vethlab("exec", "a", "--", "sh", "-c", "echo kept > /run/t/p/state", check=True)
        again = vethlab("up", str(path), check=True)
        assert "no changes" in again.stdout + again.stderr
        path.write_text("name: re\nnodes:\n  a:\n    hostname: two\n    private: [/run/t/p]\n")
        vethlab("up", str(path), check=True)
        assert vethlab("exec", "a", "--", "sh", "-c", "hostname; cat /run/t/p/state").stdout == "two\nkept\n"
        path.write_text("name: re\nnodes:\n  a: {hostname: two}\n  b: {hostname: bee}\n")
        vethlab("up", str(path), check=True)
        assert sorted(nodefs.views()) == ["a", "b"]
        path.write_text("name: re\nnodes:\n  a: {}\n")  # a has no view any more, b is gone: their views go
        vethlab("up", str(path), check=True)
        assert vethlab("exec", "a", "--", "hostname").stdout == socket.gethostname() + "\n"
        assert not os.path.exists(nodefs.views_root())
    finally:
        vethlab("down", str(path), check=True)


def test_a_failed_up_removes_the_views_it_made() -> None:
    HOSTDIR.mkdir()
    before = world()
    path = HOSTDIR / "fail.yaml"
    path.write_text("name: fail\nnodes:\n  a:\n    private: [/run/t/p]\n    exec: [\"false\"]\n")
    before = world()
    result = vethlab("up", str(path))
    assert result.returncode != 0 and "removed again" in result.stderr
    after = world()
    assert after == before, _diff(before, after)


def test_down_removes_what_a_killed_run_left() -> None:
    """A run killed after it wrote a view's owner but before it pinned the
    namespaces leaves a directory with dead pin files: `down` finds it by the owner."""
    path = "/run/killed.yaml"
    Path(path).write_text("name: killed\nnodes:\n  a:\n    hostname: x\n")
    before = world()
    vethlab("up", path, check=True)
    pins = nodefs.pin_dir("a")
    for kind in nodefs.KINDS:
        nodefs._umount(os.path.join(pins, kind))
    assert nodefs.owner("a") == "vethlab:killed" and not nodefs.has_view("a")
    vethlab("down", path, check=True)
    after = world()
    del before["files"][path], after["files"][path]
    assert after == before, _diff(before, after)


def test_exec_finds_a_command_only_the_node_has() -> None:
    HOSTDIR.mkdir()
    lab = Lab(lab_from_text(textwrap.dedent("""\
        name: cmd
        nodes:
          a:
            private: [/run/t/bin]
            files:
              /run/t/bin/hello: {content: "#!/bin/sh\\necho hello from $(hostname)\\n", mode: "0755"}
        """)))
    lab.up()
    try:
        assert vethlab("exec", "a", "--", "/run/t/bin/hello").stdout == "hello from a\n"
        missing = vethlab("exec", "a", "--", "/run/t/bin/nope")
        assert missing.returncode == 127
    finally:
        lab.down()
        lab.close()


NOBODY_SCRIPT = """\
set -e
mkdir -p /run/t/etc
echo host > /run/t/etc/f
cat > /run/t/lab.yaml <<'EOF'
name: rootless
nodes:
  a:
    hostname: alpha
    private: [/run/t/etc]
    files: {/run/t/etc/f: "node\\n", /run/t/gone/g: "made\\n"}
EOF
PY -m vethlab up /run/t/lab.yaml >/dev/null
PY -m vethlab exec a -- sh -c 'hostname; cat /run/t/etc/f /run/t/gone/g'
cat /run/t/etc/f
ls /run/t
PY -m vethlab down /run/t/lab.yaml >/dev/null
ls -A /run/vethlab | wc -l
"""


def _nobody_can_run_python() -> bool:
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c",
                        "import vethlab"], capture_output=True)
    return r.returncode == 0


@pytest.mark.skipif(not _nobody_can_run_python(), reason="user nobody cannot run this interpreter (see NOTES.md)")
def test_rootless_as_nobody() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("VETHLAB_STATE_DIR", "VETHLAB_SANDBOX")}
    script = NOBODY_SCRIPT.replace("PY", sys.executable)
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m",
                        "vethlab", "sandbox", "--", "sh", "-c", script], capture_output=True, text=True, env=env,
                       cwd="/", timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.split() == ["alpha", "node", "made", "host", "etc", "lab.yaml", "0"], r.stdout + r.stderr


def _diff(a: dict[str, Any], b: dict[str, Any]) -> str:
    out = []
    for key in a:
        if a[key] != b[key]:
            if isinstance(a[key], dict):
                out.append(f"{key}: -{sorted(set(a[key].items()) - set(b[key].items()))} "
                           f"+{sorted(set(b[key].items()) - set(a[key].items()))}")
            elif isinstance(a[key], list):
                out.append(f"{key}: -{sorted(set(a[key]) - set(b[key]))} +{sorted(set(b[key]) - set(a[key]))}")
            else:
                out.append(f"{key}: {a[key]!r} -> {b[key]!r}")
    return "\n".join(out)


def test_clean_finds_a_view_by_its_owner_with_the_state_gone() -> None:
    path = "/run/lost.yaml"
    Path(path).write_text("name: lost\nnodes:\n  a:\n    hostname: x\n    private: [/run/p]\n")
    before = world()
    vethlab("up", path, check=True)
    os.unlink(os.path.join(nodefs.state_root(), "lost", "state.json"))
    assert vethlab("clean", "--all", check=True).returncode == 0
    after = world()
    assert after == before, _diff(before, after)


def test_a_path_made_in_the_node_keeps_the_mounts_around_it() -> None:
    """/run/newdir and /run/t/sub/f do not exist: /run and the tmpfs at /run/t/sub
    become overlays in the node.  What is mounted below them still shows there —
    /run/netns with a namespace added after `up` among it — and the host gets
    nothing."""
    HOSTDIR.mkdir()
    sub = HOSTDIR / "sub"
    sub.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "sub", str(sub)], check=True)
    try:
        (sub / "s").write_text("below\n")
        path = HOSTDIR / "ov.yaml"
        path.write_text("name: ov\nnodes:\n  a:\n    private: [/run/newdir]\n    files: {/run/t/sub/f: \"f\\n\"}\n")
        before = world()
        vethlab("up", str(path), check=True)
        try:
            subprocess.run(["ip", "netns", "add", "late"], check=True)
            seen = vethlab("exec", "a", "--", "sh", "-c", "ls -A /run/newdir; cat /run/t/sub/s /run/t/sub/f; "
                           "ls /run/netns; echo w > /run/newdir/w")
            assert seen.stdout.split("\n") == ["below", "f", "a", "late", ""], seen.stderr
            assert not os.path.exists("/run/newdir") and sorted(os.listdir(sub)) == ["s"]
        finally:
            subprocess.run(["ip", "netns", "del", "late"], check=True)
            vethlab("down", str(path), check=True)
        after = world()
        assert after == before, _diff(before, after)
    finally:
        subprocess.run(["umount", str(sub)], check=True)


def _sleepers(arg: str) -> list[int]:
    """Pids of `sleep ARG` processes (ARG unique to the test)."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes() == f"sleep\0{arg}\0".encode():
                out.append(int(pid))
        except OSError:
            pass
    return out


def test_services_are_restarted_in_a_rebuilt_view_and_plan_says_why() -> None:
    HOSTDIR.mkdir()
    path = HOSTDIR / "svc.yaml"
    text = ("name: svcview\nnodes:\n  a:\n    hostname: HOST\n    private: [/run/t/p]\n"
            "    run: [\"sh -c 'hostname >> /run/t/p/names; exec sleep 4713'\",\n"
            "          {cmd: \"sh -c 'hostname >> /run/t/p/once'\", oneshot: true}]\n")
    path.write_text(text.replace("HOST", "one"))
    vethlab("up", str(path), check=True)
    try:
        [old] = _sleepers("4713")
        path.write_text(text.replace("HOST", "two"))
        plan = vethlab("plan", str(path), check=True).stdout
        assert "the node's view changes: restarted in the new one" in plan, plan
        assert "the node's view changed: restarted in it" in plan, plan
        vethlab("up", str(path), check=True)
        [new] = _sleepers("4713")
        assert new != old and not os.path.exists(f"/proc/{old}")
        # the service runs in the node's current view; the finished one-shot was not run again
        # (`ip netns exec` gives it a mount namespace of its own, copied from the node's: compare UTS)
        assert os.stat(f"/proc/{new}/ns/uts").st_ino == os.stat(os.path.join(nodefs.pin_dir("a"), "uts")).st_ino
        assert vethlab("exec", "a", "--", "cat", "/run/t/p/names", "/run/t/p/once").stdout == "one\ntwo\none\n"
        again = vethlab("up", str(path), check=True)
        assert "no changes" in again.stdout + again.stderr and _sleepers("4713") == [new]
    finally:
        vethlab("down", str(path), check=True)
    assert _sleepers("4713") == []


def test_a_read_only_mount_is_read_only_below_too() -> None:
    """(review) `mounts:` binds recursively, and a read-only remount covers one mount:
    a file system mounted below the host directory stayed writable in the node."""
    inner = HOSTDIR / "data" / "inner"
    inner.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "inner", str(inner)], check=True)
    path = HOSTDIR / "ro.yaml"
    path.write_text("name: ro\nnodes:\n  a:\n    mounts: {/run/t/data: /mnt}\n")
    try:
        vethlab("up", str(path), check=True)
        try:
            for target in ("/mnt/top", "/mnt/inner/below"):
                r = vethlab("exec", "a", "--", "touch", target)
                assert r.returncode != 0 and "Read-only file system" in r.stderr, (target, r.stderr)
            assert os.listdir(inner) == [] and sorted(os.listdir(HOSTDIR / "data")) == ["inner"]
        finally:
            vethlab("down", str(path), check=True)
    finally:
        subprocess.run(["umount", str(inner)], check=True)


def test_copy_of_a_directory_with_a_socket_and_a_fifo() -> None:
    """(review) `copy: true` of a directory a running daemon uses (its socket, a FIFO)
    failed the whole `up` with shutil's error list: sockets are left out, FIFOs made anew."""
    src = HOSTDIR / "daemon"
    src.mkdir(parents=True)
    (src / "conf").write_text("x\n")
    os.mkfifo(src / "fifo")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(src / "sock"))
        path = HOSTDIR / "cp.yaml"
        path.write_text("name: cp\nnodes:\n  a:\n    private: [{path: /run/t/daemon, copy: true}]\n")
        vethlab("up", str(path), check=True)
        try:
            seen = vethlab("exec", "a", "--", "sh", "-c", "cd /run/t/daemon && for f in *; do "
                           "[ -p $f ] && echo $f:fifo || echo $f:$(cat $f); done").stdout.split()
            assert seen == ["conf:x", "fifo:fifo"]
        finally:
            vethlab("down", str(path), check=True)
