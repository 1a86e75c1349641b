"""Services and processes of a lab, with real processes, real namespaces and real kills.

What belongs to a lab is what runs in its namespaces or what vethlab recorded
starting; `down` ends all of that and nothing else (not another sandbox's lab of
the same name, not the host node's processes).  A service that exits during
`up` fails it; a service is never started twice; `ready:` is waited for."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from helpers import vethlab

VETHLAB = [sys.executable, "-m", "vethlab"]


def write(tmp_path: Path, text: str, name: str = "lab.yaml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def ns_of(pid: int | str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return None


def processes(word: str) -> list[int]:
    """Live (not zombie) `sleep` processes with `word` as an argument.  Matched by the
    program the process runs (/proc/PID/exe), not by its command line: a `vethlab
    exec … sleep WORD` is first a Python, then an `ip netns exec`, then the sleep —
    the same pid with the same argument, which a command-line match counts or
    not depending on the moment (CI caught one)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            if os.path.basename(os.readlink(f"/proc/{entry}/exe")) != "sleep":
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                argv = fh.read().split(b"\0")
            with open(f"/proc/{entry}/stat", "rb") as fh:
                state = fh.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if word.encode() in argv and state != b"Z":
            out.append(int(entry))
    return out


def gone(pids: list[int], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(p in processes_any() for p in pids):
            return True
        time.sleep(0.05)
    return False


def processes_any() -> set[int]:
    out = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as fh:
                    if fh.read().rsplit(b")", 1)[1].split()[0] != b"Z":
                        out.add(int(entry))
            except OSError:
                pass
    return out


def nothing_left() -> list[str]:
    left = [f"namespace {n}" for n in os.listdir("/run/netns")]
    left += [f"state {e}" for e in os.listdir(os.environ["VETHLAB_STATE_DIR"])]
    return left


# -- services that fail ----------------------------------------------------------------
@pytest.mark.parametrize("command, says", [
    ("false", "exited with status 1"),
    ("sh -c 'echo starting-up; echo no config file >&2; exit 3'", "exited with status 3"),
    ("no-such-binary-vl", "no-such-binary-vl: command not found"),
    ("sh -c 'exit 0'", "exited with status 0"),  # not one-shot: exiting at once is a failure too
])
def test_a_service_that_exits_fails_up_and_leaves_nothing(tmp_path: Path, command: str, says: str) -> None:
    path = write(tmp_path, f"""\
        name: svc
        nodes:
          a: {{run: {json.dumps(["sh -c 'env -i setsid sleep 4119 & exec sleep 4101'", command])}}}
          b: {{}}
        links: [{{endpoints: [a:e0, b:e0]}}]
        """)
    r = vethlab("up", path)
    assert r.returncode == 1, r.stderr
    assert says in r.stderr and "node a" in r.stderr, r.stderr
    if "exit 3" in command:
        assert "starting-up" in r.stderr and "no config file" in r.stderr  # the tail of its log
    assert nothing_left() == []
    assert gone(processes("4101")), "the other service of the failed run is still running"
    assert gone(processes("4119")), "a process that escaped into the failed run's node is still running"


def test_a_one_shot_may_exit_and_is_not_run_again(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = write(tmp_path, f"""\
        name: svc
        nodes:
          a: {{run: [{{cmd: "sh -c 'echo x >> {marker}'", oneshot: true}}]}}
        """)
    assert vethlab("up", path).returncode == 0
    assert vethlab("up", path).stdout.strip() == "lab svc: up to date, no changes"
    assert vethlab("up", "--refresh", path).returncode == 0
    assert marker.read_text() == "x\n"
    status = vethlab("status", "--json")
    assert [s["state"] for s in json.loads(status.stdout)["services"]] == ["done"]
    failing = write(tmp_path, """\
        name: svc2
        nodes: {b: {run: [{cmd: "sh -c 'exit 4'", oneshot: true}]}}
        """, "failing.yaml")
    r = vethlab("up", failing)
    assert r.returncode == 1 and "exited with status 4" in r.stderr


def test_a_daemonising_service_runs_once(tmp_path: Path) -> None:
    """Its parent exits 0 at once, its child runs on with the service's label: the
    service runs, and the next `up` (even one re-reading everything) does not start
    it again."""
    path = write(tmp_path, """\
        name: svc
        nodes:
          a: {run: ["sh -c 'sleep 4102 & exit 0'"]}
        """)
    assert vethlab("up", path).returncode == 0
    first = processes("4102")
    assert len(first) == 1
    for args in (["up", path], ["up", "--refresh", path]):
        r = vethlab(*args)
        assert r.returncode == 0, r.stderr
        assert processes("4102") == first
    r = vethlab("down", path)
    assert "stopped 1 process in node a" in r.stdout
    assert gone(first)


def test_a_service_the_state_lost_is_found_by_label_not_started_again(tmp_path: Path) -> None:
    """A run killed after starting a service but before recording its pid: the next
    `up` finds it in the node by its label and does not start a second copy."""
    path = write(tmp_path, "name: svc\nnodes: {a: {run: ['sleep 4120']}}\n")
    assert vethlab("up", path).returncode == 0
    first = processes("4120")
    state_file = Path(os.environ["VETHLAB_STATE_DIR"]) / "svc" / "state.json"
    state = json.loads(state_file.read_text())
    state["services"], state["complete"] = {}, False  # what a kill before the record leaves
    state_file.write_text(json.dumps(state))
    r = vethlab("up", path)
    assert r.returncode == 0, r.stderr
    assert processes("4120") == first and len(first) == 1
    assert "sleep 4120" in vethlab("status").stdout  # recorded again
    assert "stopped 1 process in node a" in vethlab("down", path).stdout
    assert gone(first)


# -- readiness ------------------------------------------------------------------------------
def test_ready_tcp_is_waited_for(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        name: web
        nodes:
          srv:
            run: ["sh -c 'sleep 0.8; exec python3 -m http.server 8000 --bind 10.0.0.1'"]
            ready: ["tcp:8000"]
          cli: {}
        links: [{endpoints: [srv:e0, cli:e0], addresses: [10.0.0.1/24, 10.0.0.2/24]}]
        """)
    r = vethlab("up", path)
    assert r.returncode == 0, r.stderr
    connect = ("import socket; socket.create_connection(('10.0.0.1', 8000), timeout=2).close()")
    assert vethlab("exec", "cli", "--", "python3", "-c", connect).returncode == 0


def test_ready_command_and_timeout(tmp_path: Path) -> None:
    flag = tmp_path / "flag"
    path = write(tmp_path, f"""\
        name: web
        nodes:
          srv:
            run: ["sh -c 'sleep 0.7; touch {flag}; exec sleep 4103'"]
            ready: ["test -e {flag}"]
        """)
    assert vethlab("up", path).returncode == 0
    assert flag.exists()
    assert vethlab("down", path).returncode == 0
    never = write(tmp_path, """\
        name: web
        nodes:
          srv: {run: ["sleep 4104"], ready: ["tcp:9"]}
        """, "never.yaml")
    r = vethlab("up", never, env={"VETHLAB_READY_TIMEOUT": "1"})
    assert r.returncode == 1
    assert "node srv: not ready after 1 s: nothing listens on TCP port 9" in r.stderr
    assert nothing_left() == [] and gone(processes("4104"))


# -- down ends everything in the lab's namespaces, and nothing else -------------------
def test_down_ends_escaped_processes_and_nothing_else(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        name: x
        nodes:
          a: {run: ["sleep 4105"]}
          b: {}
        links: [{endpoints: [a:e0, b:e0]}]
        """)
    assert vethlab("up", path).returncode == 0
    labels = {}
    with open(f"/proc/{processes('4105')[0]}/environ", "rb") as fh:
        labels = dict(item.split(b"=", 1) for item in fh.read().split(b"\0") if b"=" in item)
    forged = {**os.environ, "VETHLAB_SERVICE": labels[b"VETHLAB_SERVICE"].decode()}
    # escaped: no environment, own session; a backgrounded `vethlab exec`; an `ip netns exec` shell
    escaped = subprocess.Popen(["ip", "netns", "exec", "b", "env", "-i", "setsid", "sleep", "4106"])
    via_exec = subprocess.Popen([*VETHLAB, "exec", "a", "--", "sleep", "4107"])
    shell = subprocess.Popen(["ip", "netns", "exec", "b", "sh", "-c", "sleep 4108; :"])
    # in the host node, carrying the service's very label: not the lab's
    outsider = subprocess.Popen(["sleep", "4109"], env=forged)
    try:
        deadline = time.monotonic() + 30
        while not all(processes(w) for w in ("4106", "4107", "4108")) and time.monotonic() < deadline:
            time.sleep(0.05)
        inside = {w: processes(w) for w in ("4105", "4106", "4107", "4108")}
        assert [len(pids) for pids in inside.values()] == [1, 1, 1, 1], inside
        inside = [p for pids in inside.values() for p in pids]
        r = vethlab("down", path)
        assert r.returncode == 0, r.stderr
        assert "stopped 5 processes in nodes a, b" in r.stdout  # 4 sleeps and the shell
        assert gone(inside)
        assert outsider.poll() is None, "down signalled a process of the host node"
        assert nothing_left() == []
    finally:
        for proc in (escaped, via_exec, shell, outsider):
            proc.kill()
            proc.wait()


def test_a_namespace_that_is_the_host_node_is_never_swept(tmp_path: Path) -> None:
    """A lab namespace file that turns out to be the host node's namespace (a bind
    mount of it, marked as the lab's): clean removes the file and ends nothing there."""
    path = write(tmp_path, "name: x\nnodes: {a: {run: ['sleep 4110']}}\n")
    assert vethlab("up", path).returncode == 0
    host_sleep = subprocess.Popen(["sleep", "4111"])
    try:
        open("/run/netns/evil", "w").close()
        subprocess.run(["mount", "--bind", "/proc/self/ns/net", "/run/netns/evil"], check=True)
        subprocess.run(["ip", "link", "set", "lo", "alias", "vethlab:x"], check=True)
        subprocess.run(["rm", "-rf", os.path.join(os.environ["VETHLAB_STATE_DIR"], "x")], check=True)
        # (clean then fails on the host's lo, marked by hand: not this test's business)
        vethlab("clean")
        assert host_sleep.poll() is None
        assert gone(processes("4110"))
    finally:
        host_sleep.kill()
        host_sleep.wait()


def test_another_sandbox_with_a_same_named_lab_is_untouched(tmp_path: Path) -> None:
    """Two sandboxes side by side, each with lab x running the same service: down
    and clean --all in one leave the other's service running."""
    path = write(tmp_path, "name: x\nnodes: {a: {run: ['sleep 4112']}}\n")
    ready = tmp_path / "other-ready"
    from vethlab.kernel.sandbox import command

    # unshare itself, so that killing it (--kill-child) takes the whole other sandbox down
    other = subprocess.Popen(command(["sh", "-c", f"{sys.executable} -m vethlab up {path} >/dev/null "
                                                  f"&& touch {ready} && sleep 600"]))
    try:
        deadline = time.monotonic() + 30
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        theirs = processes("4112")
        assert len(theirs) == 1
        assert vethlab("up", path).returncode == 0
        ours = [p for p in processes("4112") if p not in theirs]
        assert len(ours) == 1
        assert vethlab("down", path).returncode == 0
        assert gone(ours)
        assert vethlab("up", path).returncode == 0
        assert vethlab("clean", "--all").returncode == 0
        r = vethlab("clean", "--all")
        assert r.returncode == 0
        assert processes("4112") == theirs, "the other sandbox's service was stopped"
    finally:
        other.kill()
        other.wait()


# -- crashes --------------------------------------------------------------------------------
KILLS = int(os.environ.get("VETHLAB_SERVICE_KILLS", "20"))


@pytest.mark.slow
def test_sigkill_during_up_orphans_nothing_and_starts_nothing_twice(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        name: k
        nodes:
          a:
            run: ["sleep 4113", "sh -c 'sleep 4114 & exit 0'", "sh -c 'sleep 0.3; exec sleep 4115'"]
            ready: ["pgrep -x -f 'sleep 4115'"]
          b: {run: ["sleep 4116"]}
        links: [{endpoints: [a:e0, b:e0]}]
        """)
    words = ("4113", "4114", "4115", "4116")
    rng = random.Random(20261202)
    duplicates, orphans = [], []
    for round_ in range(KILLS):
        proc = subprocess.Popen([*VETHLAB, "up", path], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.05, 1.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        r = vethlab("up", path)
        assert r.returncode == 0, f"round {round_}: up after kill: {r.stderr}"
        counts = {w: len(processes(w)) for w in words}
        if counts != dict.fromkeys(words, 1):
            duplicates.append((round_, counts))
        assert vethlab("down", path).returncode == 0
        left = [p for w in words for p in processes(w)]
        if not gone(left, 2.0):
            orphans.append((round_, left))
    assert duplicates == [] and orphans == []
    assert nothing_left() == []


# -- logs and exec ----------------------------------------------------------------------
def test_logs(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        name: l
        nodes:
          a: {run: ["sh -c 'echo one; echo two >&2; exec sleep 4117'", "sh -c 'echo other; exec sleep 4118'"]}
        """)
    assert vethlab("up", path).returncode == 0
    assert vethlab("logs", "a", "0").stdout == "one\ntwo\n"
    assert vethlab("logs", "--lab", "l", "a", "sh -c 'echo other; exec sleep 4118'").stdout == "other\n"
    assert vethlab("logs", "a", "0", "-n", "1").stdout == "two\n"
    both = vethlab("logs", "a").stdout
    assert "==> sh -c 'echo one; echo two >&2; exec sleep 4117' <==\none\ntwo\n" in both and "other\n" in both
    r = vethlab("logs", "a", "sh")  # two services are `sh`
    assert r.returncode == 2 and "several services named sh" in r.stderr
    assert vethlab("logs", "a", "nginx").returncode == 2
    assert vethlab("logs", "zz").returncode == 2


def test_exec_exit_status_like_a_shell(tmp_path: Path) -> None:
    path = write(tmp_path, "name: e\nnodes: {a: {}}\n")
    assert vethlab("up", path).returncode == 0
    r = vethlab("exec", "a", "--", "no-such-command-vl")
    assert r.returncode == 127 and "no-such-command-vl: command not found" in r.stderr
    r = vethlab("exec", "a", "--", "/etc/passwd")
    assert r.returncode == 126 and "Permission denied" in r.stderr
    assert vethlab("exec", "a", "--", "sh", "-c", "exit 1").returncode == 1
    assert vethlab("exec", "--lab", "e", "host", "--", "no-such-command-vl").returncode == 127
    # the Python API and exec: items say the same
    from vethlab import Lab

    done = Lab.existing("e").node("a").exec(["no-such-command-vl"], capture_output=True, text=True)
    assert (done.returncode, done.stderr) == (127, "no-such-command-vl: command not found\n")
    bad = write(tmp_path, "name: e2\nnodes: {b: {exec: ['no-such-command-vl --now']}}\n", "bad.yaml")
    r = vethlab("up", bad)
    assert r.returncode == 1
    assert "`no-such-command-vl --now` exited with status 127:\nno-such-command-vl: command not found" in r.stderr


def test_ready_listening_check_reads_the_nodes_own_sockets() -> None:
    """tcp:PORT looks at the node's sockets, not the host's."""
    from vethlab.kernel import services

    subprocess.run(["ip", "netns", "add", "rd"], check=True)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert not services.listening("rd", port)
        srv = subprocess.Popen(["ip", "netns", "exec", "rd", "python3", "-c",
                                f"import socket,time; s=socket.socket(); s.bind(('0.0.0.0',{port})); s.listen();"
                                "time.sleep(30)"])
        try:
            deadline = time.monotonic() + 30
            while not services.listening("rd", port) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert services.listening("rd", port)
        finally:
            srv.kill()
            srv.wait()


def test_a_service_never_runs_unless_recorded_first(tmp_path: Path) -> None:
    """A service waits at its gate until vethlab has recorded it; a vethlab that
    dies in between (here: exits without releasing) leaves nothing running."""
    subprocess.run(["ip", "netns", "add", "gate"], check=True)
    script = textwrap.dedent(f"""\
        import os, sys
        from vethlab.kernel import services
        pid, started = services.start("gate", ["sleep", "4121"], "{tmp_path}/gate.log", "g:a:k")
        print(pid, flush=True)
        if sys.argv[1] == "release":
            services.release(pid)
        os._exit(0)
        """)
    died = subprocess.run([sys.executable, "-c", script, "die"], capture_output=True, text=True, check=True)
    pid = int(died.stdout)
    assert gone([pid]) and processes("4121") == []
    released = subprocess.run([sys.executable, "-c", script, "release"], capture_output=True, text=True, check=True)
    pid = int(released.stdout)
    deadline = time.monotonic() + 30
    while not processes("4121") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes("4121") == [pid]  # the very pid recorded: the gate's shell became the command
    os.kill(pid, signal.SIGKILL)
