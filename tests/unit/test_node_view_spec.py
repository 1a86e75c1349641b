"""hostname / files / private / mounts: validation (every rule, with its line) and
planning against the fake kernel."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from vethlab.errors import ValidationError
from vethlab.kernel.fake import FakeKernel
from vethlab.model.desired import compile_lab
from vethlab.ownership import marker
from vethlab.reconcile.executor import Executor
from vethlab.reconcile.observe import observe
from vethlab.reconcile.planner import make_plan
from vethlab.topology import lab_from_text, load_lab
from vethlab.topology.schema import FileSpec, MountSpec, PrivateSpec


def errors(text: str) -> list[str]:
    with pytest.raises(ValidationError) as info:
        lab_from_text(textwrap.dedent(text), "lab.yaml")
    return [str(i) for i in info.value.issues]


def test_a_full_view_parses_to_what_it_says(tmp_path: Path) -> None:
    (tmp_path / "motd.txt").write_bytes(b"from a file\n")
    (tmp_path / "lab.yaml").write_text(textwrap.dedent("""\
        name: t
        nodes:
          r1:
            private: [/etc/frr, {path: /run/frr, owner: "0:0", mode: "0750", copy: true}]
            files:
              /etc/frr/frr.conf: "hostname r1\\n"
              /etc/motd: "@motd.txt"
              /etc/frr/daemons: {source: motd.txt, mode: "0600"}
            mounts: {/usr/share: /srv/share, /var/tmp: /srv/tmp:rw}
          plain: {}
        """))
    spec = load_lab(str(tmp_path / "lab.yaml"))
    r1, plain = spec.nodes["r1"], spec.nodes["plain"]
    assert (r1.hostname, r1.files, r1.private, r1.mounts) == (
        "r1",
        (FileSpec("/etc/frr/frr.conf", b"hostname r1\n", 0o644, None),
         FileSpec("/etc/motd", b"from a file\n", 0o644, str(tmp_path / "motd.txt")),
         FileSpec("/etc/frr/daemons", b"from a file\n", 0o600, str(tmp_path / "motd.txt"))),
        (PrivateSpec("/etc/frr"), PrivateSpec("/run/frr", True, (0, 0), 0o750)),
        (MountSpec("/usr/share", "/srv/share", False), MountSpec("/var/tmp", "/srv/tmp", True)))
    assert (plain.hostname, plain.files, plain.private, plain.mounts, plain.has_view) == (None, (), (), (), False)


def test_every_rule_reports_its_line() -> None:
    assert errors("""\
        name: t
        nodes:
          r1:
            hostname: "bad_name"
            files:
              etc/x: "a"
              /etc/hosts: "x"
              /etc/../shadow: "x"
              /etc/y: {source: nope.conf}
              /etc/z: {content: "x", mode: 0644}
              /etc/w: {content: "x", source: y}
              /proc/x: "x"
            private:
              - /etc/frr
              - /run
              - {path: /var/lib/x, owner: nosuchuser}
              - /etc/frr
              - /etc/
              - 5
            mounts:
              /nonexist: /data
              /usr/share: /mnt:xx
              /usr/lib: /etc/netns
          host:
            hostname: x
        """) == [
        "lab.yaml:4: nodes.r1.hostname: must be a host name: letters, digits, '-' and '.', at most 64, starting and "
        "ending with a letter or digit",
        "lab.yaml:6: nodes.r1.files.etc/x: 'etc/x' must be an absolute path",
        "lab.yaml:7: nodes.r1.files./etc/hosts: vethlab writes the node's /etc/hosts itself (from /etc/netns/NODE): "
        "it cannot be a file of yours",
        "lab.yaml:8: nodes.r1.files./etc/../shadow: '/etc/../shadow' must be written plainly: no '..', '.', '//' or "
        "trailing '/'",
        "lab.yaml:9: nodes.r1.files./etc/y.source: cannot read " + str(Path("lab.yaml").resolve().parent / "nope.conf") +
        ": No such file or directory",
        "lab.yaml:10: nodes.r1.files./etc/z.mode: must be an octal mode in quotes, such as \"0644\" (unquoted, YAML "
        "reads 0644 as the number 420)",
        "lab.yaml:11: nodes.r1.files./etc/w: give exactly one of `content` (the text) and `source` (a file next to "
        "the topology file)",
        "lab.yaml:12: nodes.r1.files./proc/x: /proc/x is the host's in every node",
        "lab.yaml:15: nodes.r1.private[1]: /run would hide /run/netns, which every node needs as the host has it",
        "lab.yaml:16: nodes.r1.private[2].owner: no user 'nosuchuser' on this machine",
        "lab.yaml:17: nodes.r1.private[3]: /etc/frr is given twice (also in private)",
        "lab.yaml:18: nodes.r1.private[4]: '/etc/' must be written plainly: no '..', '.', '//' or trailing '/'",
        "lab.yaml:19: nodes.r1.private[5]: must be an absolute path (a string)",
        "lab.yaml:21: nodes.r1.mounts./nonexist: host path /nonexist does not exist",
        "lab.yaml:22: nodes.r1.mounts./usr/share: must be the node path, or NODE_PATH:rw to let the node write "
        "(read-only unless asked)",
        "lab.yaml:23: nodes.r1.mounts./usr/lib: node path: /etc/netns is the host's in every node",
        "lab.yaml:25: nodes.host.hostname: the host namespace is the machine's own: it has no view of its own to "
        "change",
    ]


def test_overlaps_are_refused() -> None:
    assert errors("""\
        name: t
        nodes:
          r1:
            files:
              /srv/share/x: "in a host mount"
              /etc/a: "a file"
              /etc/a/b: "below a file"
            private: [/srv/share/p]
            mounts: {/usr/share: /srv/share}
        """) == [
        "lab.yaml:5: nodes.r1.files./srv/share/x: /srv/share/x is inside /srv/share, which is mounted from the "
        "host: put it elsewhere, or make the directory private instead",
        "lab.yaml:7: nodes.r1.files./etc/a/b: /etc/a/b would be inside the file /etc/a",
        "lab.yaml:8: nodes.r1.private[0]: /srv/share/p is inside /srv/share, which is mounted from the host: put "
        "it elsewhere, or make the directory private instead",
    ]


def test_paths_the_machine_cannot_mount_on_are_refused_with_their_line(tmp_path: Path) -> None:
    """A missing path is made inside the node only, on an overlay of the nearest
    directory the machine has; what that cannot do is refused before anything is
    touched, naming the line."""
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("x")
    (tmp_path / "other").write_text("x")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    t = str(tmp_path)
    top = ("/vethlab-no-such-top does not exist on this machine: a missing path is made inside the node on an "
           "overlay of the nearest directory that exists, never of / (create /vethlab-no-such-top on the machine, "
           "or name a path below an existing directory)")
    assert errors(f"""\
        name: t
        nodes:
          r1:
            files:
              {t}/dir: "over a directory"
              {t}/other/below: "below a file"
              {t}/dangling: "through a dangling link"
              {t}/new/deep/ok: "made in the node"
              /vethlab-no-such-top/f: "nothing but / on the way"
            private: [{t}/file, {t}/new/p, /vethlab-no-such-top/p/inside]
            mounts: {{{t}/dir: {t}/new/m, {t}/other: {t}/dir}}
        """) == [
        f"lab.yaml:5: nodes.r1.files.{t}/dir: {t}/dir is given twice (also in mounts)",
        f"lab.yaml:5: nodes.r1.files.{t}/dir: {t}/dir is a directory on this machine, not a file",
        f"lab.yaml:6: nodes.r1.files.{t}/other/below: {t}/other is not a directory on this machine: "
        f"{t}/other/below cannot be made below it",
        f"lab.yaml:7: nodes.r1.files.{t}/dangling: {t}/dangling is a symbolic link to nothing on this machine",
        f"lab.yaml:9: nodes.r1.files./vethlab-no-such-top/f: {top}",
        f"lab.yaml:10: nodes.r1.private[0]: {t}/file is a file on this machine, not a directory",
        f"lab.yaml:10: nodes.r1.private[2]: {top}",
        f"lab.yaml:11: nodes.r1.mounts.{t}/other: {t}/dir is a directory on this machine, not a file",
    ]


VIEW = """\
name: v
nodes:
  r1:
    private: [/etc/frr]
    files: {/etc/frr/frr.conf: "CONTENT"}
  plain: {}
"""


def plan_for(text: str, kernel: FakeKernel):
    desired = compile_lab(lab_from_text(text))
    from vethlab.drivers.registry import observe_kinds

    observed = observe(kernel, desired, {}, marker(desired.lab))
    observe_kinds(kernel, desired, observed)
    return desired, make_plan(desired, observed, marker(desired.lab))


def apply(text: str, kernel: FakeKernel) -> list[tuple[str, str, str]]:
    desired, plan = plan_for(text, kernel)
    Executor(kernel, marker(desired.lab)).run(plan)
    return [(a.verb, a.kind, a.reason) for a in plan.ordered() if a.kind == "view"]


def test_views_are_planned_for_nodes_that_ask_only_and_kept_while_unchanged() -> None:
    kernel = FakeKernel()
    assert apply(VIEW, kernel) == [("create", "view", "node is new")]
    assert set(kernel.views()) == {"r1"}
    assert apply(VIEW, kernel) == []
    assert apply(VIEW.replace("CONTENT", "NEW"), kernel) == [
        ("create", "view", "its files, private directories, mounts or hostname changed")]
    assert apply(VIEW.replace("    private: [/etc/frr]\n    files: {/etc/frr/frr.conf: \"CONTENT\"}\n", ""),
                 kernel) == [("delete", "view", "the node no longer has its own files, private directories, mounts "
                                                "or hostname")]
    assert kernel.views() == {}


def test_a_failure_after_the_view_removes_it() -> None:
    kernel = FakeKernel()
    kernel.command_status["false"] = 1
    desired, plan = plan_for(VIEW.replace("  plain: {}\n", "  plain: {}\n").replace(
        "    private:", "    exec: [\"false\"]\n    private:"), kernel)
    with pytest.raises(Exception, match="exited with status 1"):
        Executor(kernel, marker(desired.lab)).run(plan)
    assert kernel.views() == {} and kernel.built_views == {}


LINKED = VIEW + """\
links:
  - endpoints: [r1:eth0, plain:eth0]
    addresses: [10.0.0.1/24, 10.0.0.2/24]
"""


def _steps() -> int:
    kernel = FakeKernel()
    apply(LINKED, kernel)
    return kernel.calls


@pytest.mark.parametrize("step", range(1, _steps() + 1))
def test_failure_at_every_step_leaves_no_view(step: int) -> None:
    from vethlab.errors import KernelError

    kernel = FakeKernel(fail_at=step)
    with pytest.raises(KernelError, match="injected failure"):
        apply(LINKED, kernel)
    assert kernel.built_views == {} and set(kernel.spaces) == {None}, kernel.log


@pytest.mark.parametrize("step", range(1, _steps() + 1))
def test_crash_at_every_step_then_up_builds_the_view_once(step: int) -> None:
    from vethlab.kernel.fake import Crash

    kernel = FakeKernel(crash_at=step)
    with pytest.raises(Crash):
        apply(LINKED, kernel)
    kernel.crash_at = None
    apply(LINKED, kernel)
    assert set(kernel.views()) == {"r1"}
    assert apply(LINKED, kernel) == []  # nothing left to do for the view


def test_a_source_that_is_a_fifo_or_a_device_is_refused_not_waited_on(tmp_path: Path) -> None:
    """`@F` naming a FIFO blocked `vethlab validate` forever (open waits for a
    writer); a device or a directory is no file either: exit 2, with the line."""
    import os

    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "lab.yaml").write_text(textwrap.dedent("""\
        name: t
        nodes:
          r1:
            files: {/etc/a: "@fifo", /etc/b: "@/dev/zero", /etc/c: {source: .}}
        """))
    import signal

    def hung(*_: object) -> None:
        raise AssertionError("validation blocked on the FIFO")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(20)  # a regression fails instead of hanging the suite
    try:
        with pytest.raises(ValidationError) as info:
            load_lab(str(tmp_path / "lab.yaml"))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert [str(i).split(": ", 1)[1] for i in info.value.issues] == [
        f"nodes.r1.files./etc/a: {tmp_path}/fifo is not a regular file",
        "nodes.r1.files./etc/b: /dev/zero is not a regular file",
        f"nodes.r1.files./etc/c.source: {tmp_path} is not a regular file"]


def test_an_owner_id_out_of_range_is_exit_2_not_an_internal_error_at_up() -> None:
    """(review) owner "99999999999999999999" passed validation and `up` then failed
    with "internal error: OverflowError"; 4294967295 is chown's "leave it"."""
    assert errors("""\
        name: t
        nodes:
          r1:
            private:
              - {path: /tmp, owner: "99999999999999999999"}
              - {path: /var, owner: "0:4294967295"}
        """) == [
        "lab.yaml:5: nodes.r1.private[0].owner: 99999999999999999999 is not a user or group id (0 to 4294967294)",
        "lab.yaml:6: nodes.r1.private[1].owner: 4294967295 is not a user or group id (0 to 4294967294)"]
