"""The state directory and every name that reaches a path, through the real CLI.

Each scenario runs in a nested `vethlab sandbox` (its own pid namespace too): a
lab removed by its markers alone (damaged state) searches every process for
service markers, and in the test's own sandbox /proc shows other sandboxes'
processes.  Canaries live in the sandbox's private /run tmpfs, so even a failing
test cannot touch the host.  Every scenario compares whole things: the canary's
bytes and mode, the namespace list, the state file's bytes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

PRELUDE = '''
import json, os, stat, subprocess, sys, time
SEED = """name: seed
nodes:
  ns1: {run: ["sleep 600"]}
  ns2: {}
links:
  - endpoints: [ns1:vp1, ns2:vp2]
    addresses: [192.168.1.1/24, 192.168.1.2/24]
"""
os.makedirs("/run/work", exist_ok=True)
os.chdir("/run/work")
with open("seed.yaml", "w") as fh:
    fh.write(SEED)

def v(*args, env=None, user=None):
    argv = [sys.executable, "-m", "vethlab", *args]
    if user:
        argv = ["runuser", "-u", user, "--"] + argv
    r = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=120)
    return {"rc": r.returncode, "out": r.stdout, "err": r.stderr}

def netns():
    return sorted(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else "/run/netns is gone"

def canary(path="/run/canary"):
    """A directory with a file, somewhere vethlab must never touch."""
    os.makedirs(path, exist_ok=True)
    with open(path + "/f", "w") as fh:
        fh.write("precious")
    os.chmod(path + "/f", 0o644)
    return path

def snap(path="/run/canary"):
    if not os.path.exists(path):
        return None
    if os.path.isdir(path):
        return {n: snap(os.path.join(path, n)) for n in sorted(os.listdir(path))}
    with open(path, "rb") as fh:
        return [fh.read().decode(errors="replace"), oct(stat.S_IMODE(os.stat(path).st_mode))]

def sleepers():
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    if fh.read().split(b"\\0")[:2] == [b"sleep", b"600"]:
                        out.append(int(pid))
            except OSError:
                pass
    return out

def state_bytes(lab="seed"):
    try:
        with open(f"/run/vethlab/{lab}/state.json", "rb") as fh:
            return fh.read().decode()
    except OSError as exc:
        return str(exc)

out = {}
'''


def scenario(tmp_path: Path, body: str) -> dict[str, Any]:
    """Run `body` (after PRELUDE) in a fresh `vethlab sandbox`; return its `out`."""
    script = tmp_path / "scenario.py"
    script.write_text(PRELUDE + textwrap.dedent(body) + "\nprint('RESULT ' + json.dumps(out))\n")
    r = subprocess.run([sys.executable, "-m", "vethlab", "sandbox", "--", sys.executable, str(script)],
                       capture_output=True, text=True, timeout=600)
    lines = [line for line in r.stdout.splitlines() if line.startswith("RESULT ")]
    assert r.returncode == 0 and lines, f"scenario failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    result: dict[str, Any] = json.loads(lines[-1][len("RESULT "):])
    return result


def clean_exit(r: dict[str, Any], code: int) -> None:
    assert r["rc"] == code, r
    assert "Traceback" not in r["err"] and "internal error" not in r["err"], r["err"]


# -- class 1: names that climb out of their directory --------------------------------------
def test_path_names_from_command_line_file_and_state_delete_nothing(tmp_path: Path) -> None:
    out = scenario(tmp_path, '''
        out["up"] = v("up", "seed.yaml")
        canary()
        before = {"canary": snap(), "netns": netns(), "state": state_bytes()}
        for i, lab in enumerate([".", "..", "../canary", "../../run/canary", "", "seed/..", "seed\\n"]):
            out[f"down --lab {lab!r}"] = v("down", "--lab", lab)
            out[f"status --lab {lab!r}"] = v("status", "--lab", lab)
        with open("bad.yaml", "w") as fh:
            fh.write("name: ../canary\\nnodes: {}\\n")
        out["down FILE"] = v("down", "bad.yaml")
        out["same"] = before == {"canary": snap(), "netns": netns(), "state": state_bytes()}
        out["left"] = sorted(os.listdir("/run"))
    ''')
    assert out["up"]["rc"] == 0, out["up"]
    for key, r in out.items():
        if key.startswith(("down --lab", "status --lab")):
            clean_exit(r, 2)
            assert "lab name" in r["err"], (key, r)
    clean_exit(out["down FILE"], 2)
    assert out["down FILE"]["err"].startswith("bad.yaml:1: name: lab name '../canary'"), out["down FILE"]
    assert out["same"] is True
    assert "canary.lock" not in out["left"]


def test_state_naming_a_path_as_a_namespace_is_damaged_and_down_removes_the_lab(tmp_path: Path) -> None:
    """nodes {"ns1": "../canary"}: `down` used to take it for a dead /run/netns file
    and delete /run/canary.  Now the state is damaged, and the lab goes by markers."""
    out = scenario(tmp_path, '''
        out["up"] = v("up", "seed.yaml")
        canary()
        before = snap()
        data = json.loads(state_bytes())
        data["nodes"]["ns1"] = "../canary"
        data["firewall_nodes"] = {"ns1": "../canary"}
        with open("/run/vethlab/seed/state.json", "w") as fh:
            json.dump(data, fh)
        out["status"] = v("status")
        out["down"] = v("down", "--lab", "seed")
        out["canary"] = snap() == before
        out["netns"] = netns()
        out["state"] = os.listdir("/run/vethlab")
        out["sleepers"] = sleepers()
    ''')
    clean_exit(out["status"], 1)
    assert "/run/vethlab/seed/state.json: nodes.ns1: namespace name '../canary'" in out["status"]["err"]
    clean_exit(out["down"], 0)
    assert "removing lab seed by its kernel markers" in out["down"]["err"]
    assert out["canary"] is True and out["netns"] == [] and out["state"] == [] and out["sleepers"] == []


MARKERS = {
    "alias": [
        'subprocess.run(["ip", "link", "add", "fake0", "type", "veth", "peer", "fake1"], check=True)',
        'subprocess.run(["ip", "link", "set", "fake0", "alias", "vethlab:" + LAB], check=True)'],
    "birth-marker": ['open(f"/run/netns/.vethlab:{LAB}:canary", "w").close()'],
    "service": [  # any user can start a process carrying the marker variable
        'proc = subprocess.Popen(["runuser", "-u", "nobody", "--", "env", f"VETHLAB_SERVICE={LAB}:x", "sleep", "600"])',
        'time.sleep(0.3)'],
}


@pytest.mark.parametrize("lab", ["..", "../canary"])
@pytest.mark.parametrize("kind", list(MARKERS))
def test_markers_with_path_names_are_never_acted_on(tmp_path: Path, kind: str, lab: str) -> None:
    """A marker naming lab ".." made `clean` remove all of /run (rm -rf
    /run/vethlab/..), "../canary" the directory /run/canary: from an alias, a
    birth-marker file, or the environment of any user's process."""
    if kind == "birth-marker" and "/" in lab:
        pytest.skip("a file name cannot hold '/'")
    out = scenario(tmp_path, "\n".join([
        f"LAB = {lab!r}",
        "canary()",
        'before = {"run": sorted(os.listdir("/run")), "canary": snap()}',
        *MARKERS[kind],
        'out["clean"] = v("clean")',
        'out["clean --all"] = v("clean", "--all")',
        'out["same"] = before == {"run": sorted(os.listdir("/run")), "canary": snap()}',
        'out["links"] = sorted(l["ifname"] for l in json.loads(subprocess.run(["ip", "-j", "link"], '
        'capture_output=True, text=True, check=True).stdout))',
        'out["markers"] = netns()',
        f'out["alive"] = {kind == "service"} and proc.poll() is None',
    ]))
    for cmd in ("clean", "clean --all"):
        clean_exit(out[cmd], 0)
        assert out[cmd]["out"] == "nothing to clean\n", out[cmd]
    assert out["same"] is True and out["alive"] is (kind == "service")
    assert out["links"] == (["fake0", "fake1", "lo"] if kind == "alias" else ["lo"])
    assert out["markers"] == ([f".vethlab:{lab}:canary"] if kind == "birth-marker" else [])


# -- class 3: states of the wrong shape -------------------------------------------------------
WRONG = {
    "issue": '{"lab": "seed", "nodes": "abc", "services": 5}',
    "lists": '{"lab": "seed", "nodes": {"ns1": ["ns1"]}, "links": {"a": 1}}',
    "pid": '{"lab": "seed", "services": {"ns1": [[["sleep"], -1, 0]]}}',
    "not-json": '{"lab": "seed", "nodes": {',
    "array": "[1, 2]",
    "empty": "",
}


@pytest.mark.parametrize("how", ["down", "clean --all"])
@pytest.mark.parametrize("case", list(WRONG), ids=list(WRONG))
def test_wrong_state_gives_clean_errors_and_the_lab_can_still_be_removed(tmp_path: Path, case: str,
                                                                          how: str) -> None:
    out = scenario(tmp_path, f'''
        out["up"] = v("up", "seed.yaml")
        out["before"] = {{"netns": netns(), "sleepers": len(sleepers())}}
        with open("/run/vethlab/seed/state.json", "w") as fh:
            fh.write({WRONG[case]!r})
        out["ls"] = v("ls")
        out["ls --json"] = v("ls", "--json")
        out["status"] = v("status", "--lab", "seed")
        out["exec"] = v("exec", "ns1", "--", "true")
        out["remove"] = v(*{how.split()!r})
        out["after"] = {{"netns": netns(), "sleepers": len(sleepers()), "state": os.listdir("/run/vethlab")}}
    ''')
    assert out["up"]["rc"] == 0 and out["before"] == {"netns": ["ns1", "ns2"], "sleepers": 1}, out
    clean_exit(out["ls"], 0)
    assert "damaged" in out["ls"]["out"], out["ls"]
    rows = json.loads(out["ls --json"]["out"])["labs"]
    assert [r["name"] for r in rows] == ["seed"] and "/run/vethlab/seed/state.json" in rows[0]["damaged"]
    for cmd in ("status", "exec"):
        clean_exit(out[cmd], 1)
        assert "the state of lab seed is damaged: /run/vethlab/seed/state.json" in out[cmd]["err"], out[cmd]
    clean_exit(out["remove"], 0)
    assert out["after"] == {"netns": [], "sleepers": 0, "state": []}


# -- class 2: the state directory is not trusted blindly -------------------------------------
def test_symlinks_in_the_state_directory_are_never_followed(tmp_path: Path) -> None:
    out = scenario(tmp_path, '''
        canary()
        before = snap()
        os.makedirs("/run/vethlab", exist_ok=True)
        os.symlink("/run/canary/f", "/run/vethlab/seed.lock")
        out["up lock"] = v("up", "seed.yaml")
        out["netns after lock"] = netns()
        os.unlink("/run/vethlab/seed.lock")
        os.makedirs("/run/vethlab/seed", mode=0o700)
        os.symlink("/run/canary/f", "/run/vethlab/seed/.state.json.tmp")
        out["up tmp"] = v("up", "seed.yaml")
        out["tmp"] = os.path.lexists("/run/vethlab/seed/.state.json.tmp")
        out["down"] = v("down", "seed.yaml")
        os.makedirs("/run/vethlab/seed", mode=0o700)
        os.symlink("/run/canary", "/run/vethlab/seed/logs")
        out["up logs"] = v("up", "seed.yaml")
        out["netns after logs"] = netns()
        out["down logs"] = v("down", "seed.yaml")
        out["state after logs"] = os.listdir("/run/vethlab")
        os.symlink("/run/canary/f", "/run/vethlab/.shared.lock")
        with open("nat.yaml", "w") as fh:
            fh.write("name: nat\\nnodes: {a: {}}\\nnetworks: {lan: {nat: true, members: {a: {}}}}\\n")
        out["up ledger"] = v("up", "nat.yaml")
        out["netns after ledger"] = netns()
        os.makedirs("/run/real-state", mode=0o700)
        os.symlink("/run/real-state", "/run/link-state")
        for path in ("/run/link-state", "/run/link-state/inner"):
            out[f"ls {path}"] = v("ls", env={"VETHLAB_STATE_DIR": path})
            out[f"up {path}"] = v("up", "seed.yaml", env={"VETHLAB_STATE_DIR": path})
        out["real-state"] = os.listdir("/run/real-state")
        out["canary"] = snap() == before
    ''')
    clean_exit(out["up lock"], 1)
    assert "/run/vethlab/seed.lock is a symbolic link (to /run/canary/f)" in out["up lock"]["err"]
    assert out["netns after lock"] == []
    clean_exit(out["up tmp"], 0)
    assert out["tmp"] is False
    clean_exit(out["down"], 0)
    clean_exit(out["up logs"], 1)
    assert "/run/vethlab/seed/logs is a symbolic link" in out["up logs"]["err"]
    assert out["netns after logs"] == []
    clean_exit(out["down logs"], 0)  # removes the link as a link: the canary's file stays
    assert out["state after logs"] == []
    clean_exit(out["up ledger"], 1)
    assert "/run/vethlab/.shared.lock is a symbolic link" in out["up ledger"]["err"], out["up ledger"]
    assert out["netns after ledger"] == []
    for key in ("ls /run/link-state", "up /run/link-state", "ls /run/link-state/inner", "up /run/link-state/inner"):
        clean_exit(out[key], 1)
        assert "is a symbolic link" in out[key]["err"] and "VETHLAB_STATE_DIR" in out[key]["err"], out[key]
    assert out["real-state"] == [] and out["canary"] is True


def test_state_root_of_another_user_or_writable_by_others_is_refused(tmp_path: Path) -> None:
    out = scenario(tmp_path, '''
        out["up"] = v("up", "seed.yaml")
        before = {"netns": netns(), "state": state_bytes()}
        os.chown("/run/vethlab", 65534, 65534)
        for cmd in (["ls"], ["status"], ["down", "--lab", "seed"], ["up", "seed.yaml"], ["clean", "--all"],
                    ["exec", "ns1", "--", "true"]):
            out["nobody's: " + " ".join(cmd)] = v(*cmd)
        os.chown("/run/vethlab", 0, 0)
        for mode in (0o777, 0o770):
            os.chmod("/run/vethlab", mode)
            for cmd in (["ls"], ["down", "--lab", "seed"]):
                out[f"{mode:o}: " + " ".join(cmd)] = v(*cmd)
        out["same"] = before == {"netns": netns(), "state": state_bytes()}
        os.chmod("/run/vethlab", 0o700)
        out["down at last"] = v("down", "--lab", "seed")
        out["netns"] = netns()
    ''')
    assert out["up"]["rc"] == 0
    for key, r in out.items():
        if key.startswith("nobody's"):
            clean_exit(r, 1)
            assert "belongs to nobody (uid 65534), not to you (root (uid 0))" in r["err"], (key, r)
            assert "chown root /run/vethlab" in r["err"], (key, r)
        elif key.startswith(("777", "770")):
            clean_exit(r, 1)
            assert "/run/vethlab is writable by" in r["err"] and "chmod go-w /run/vethlab" in r["err"], (key, r)
    assert out["same"] is True
    clean_exit(out["down at last"], 0)
    assert out["netns"] == []


# -- class 13 (state and permission parts): not root, outside a sandbox --------------------------
def test_nobody_outside_a_sandbox_gets_a_clear_message(tmp_path: Path) -> None:
    """`nobody` in the root sandbox is nobody outside any vethlab sandbox: no user
    namespace, no capabilities."""
    out = scenario(tmp_path, '''
        out["up"] = v("up", "seed.yaml")
        os.chmod("/run/work", 0o755)
        os.chmod("/run/work/seed.yaml", 0o644)
        nobody = {}
        for cmd in (["ls"], ["status"], ["status", "--lab", "seed"], ["exec", "ns1", "--", "true"],
                    ["up", "seed.yaml"], ["down", "--lab", "seed"], ["down", "seed.yaml"], ["clean"], ["plan", "seed.yaml"]):
            nobody[" ".join(cmd)] = v(*cmd, user="nobody")
        out["nobody"] = nobody
        os.makedirs("/run/nobody-state", mode=0o700)
        os.chown("/run/nobody-state", 65534, 65534)
        own = {}
        for cmd in (["ls"], ["up", "seed.yaml"], ["down", "--lab", "seed"], ["clean", "--all"]):
            own[" ".join(cmd)] = v(*cmd, user="nobody", env={"VETHLAB_STATE_DIR": "/run/nobody-state"})
        out["own"] = own
        out["netns"] = netns()
    ''')
    assert out["up"]["rc"] == 0
    for key, r in out["nobody"].items():
        clean_exit(r, 1)
        assert "inside `vethlab sandbox" in r["err"], (key, r)
    for key in ("ls", "status", "exec ns1 -- true"):  # never "no labs" / "does not exist" when merely unreadable
        assert "cannot open the state directory /run/vethlab: permission denied" in out["nobody"][key]["err"]
    for key, r in out["own"].items():
        clean_exit(r, 0 if key == "ls" else 1)
        if key != "ls":
            assert "needs root" in r["err"], (key, r)
    assert out["netns"] == ["ns1", "ns2"]
