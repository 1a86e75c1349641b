"""`run:` and `ready:` in the file, service labels, and the supervision rules, without a kernel."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from vethlab.errors import CommandFailed, ValidationError
from vethlab.kernel.fake import FakeKernel
from vethlab.reconcile.services import Launch, labels, supervise
from vethlab.topology import lab_from_text


def errors(text: str) -> list[str]:
    with pytest.raises(ValidationError) as info:
        lab_from_text(textwrap.dedent(text), "lab.yaml")
    return [str(i) for i in info.value.issues]


def test_run_items_may_be_one_shot_mappings_and_ready_checks_parse() -> None:
    spec = lab_from_text(textwrap.dedent("""\
        name: t
        nodes:
          a:
            run: ["sleep 1", {cmd: "dnsmasq -k", oneshot: false}, {cmd: [setup, --now], oneshot: true}]
            ready: ["tcp:53", "test -e /run/ok", [pgrep, dnsmasq]]
        """))
    node = spec.nodes["a"]
    assert node.run == (("sleep", "1"), ("dnsmasq", "-k"), ("setup", "--now"))
    assert node.oneshot == (2,)
    assert node.ready == (("tcp:53",), ("test", "-e", "/run/ok"), ("pgrep", "dnsmasq"))


def test_bad_services_and_checks_are_reported_with_lines() -> None:
    found = errors("""\
        name: t
        nodes:
          a:
            run: [{cmd: "x", once: true}, {oneshot: true}, {cmd: "y", oneshot: "yes"}]
            ready: ["tcp:0", "tcp:http", 7]
          b:
            ready: ["tcp:80"]
        """)
    assert found == [
        "lab.yaml:4: nodes.a.run[0].once: unknown key (a service has: cmd, oneshot)",
        "lab.yaml:4: nodes.a.run[1]: a service given as a mapping needs `cmd`",
        "lab.yaml:4: nodes.a.run[2].oneshot: must be true or false, not a string",
        "lab.yaml:5: nodes.a.ready[0]: 'tcp:0': expected tcp:PORT with PORT in 1..65535",
        "lab.yaml:5: nodes.a.ready[1]: 'tcp:http': expected tcp:PORT with PORT in 1..65535",
        "lab.yaml:5: nodes.a.ready[2]: a command must be a string or a list of words, not a number",
        "lab.yaml:7: nodes.b.ready: readiness checks wait for the node's `run:` services, and it has none",
    ]


def test_labels_tell_equal_commands_apart_and_are_stable() -> None:
    first = labels("lab", "a", [("sleep", "1"), ("sleep", "1"), ("true",)])
    assert len(set(first)) == 3 and all(label.startswith("lab:a:") for label in first)
    assert labels("lab", "a", [("sleep", "1"), ("sleep", "1"), ("true",)]) == first
    assert labels("lab", "b", [("sleep", "1")])[0] != first[0]
    assert labels("other", "a", [("sleep", "1")])[0] != first[0]
    # a service keeps its label when another one is added before it
    assert labels("lab", "a", [("true",), ("sleep", "1")])[1] == first[0]


def launch(kernel: FakeKernel, argv: list[str], tmp: Path, oneshot: bool = False) -> Launch:
    log = tmp / f"{argv[0]}.log"
    log.write_text("line 1\nfatal: no config\n")
    pid, started = kernel.start_service("ns-a", argv, str(log), f"t:a:{argv[0]}")
    return Launch("a", "ns-a", argv, f"t:a:{argv[0]}", pid, started, oneshot, str(log))


def test_a_service_that_exits_fails_with_status_and_log_tail(tmp_path: Path) -> None:
    kernel = FakeKernel()
    kernel.command_status["broken"] = 2
    with pytest.raises(CommandFailed) as info:
        supervise(kernel, [launch(kernel, ["server"], tmp_path), launch(kernel, ["broken"], tmp_path)], {},
                  settle=0.05)
    text = str(info.value)
    assert "node a: service `broken` exited with status 2 during `up`" in text
    assert "fatal: no config" in text


def test_a_one_shot_may_exit_zero(tmp_path: Path) -> None:
    kernel = FakeKernel()
    kernel.command_status["setup"] = 0
    done = supervise(kernel, [launch(kernel, ["setup"], tmp_path, oneshot=True)], {}, settle=0.05)
    assert done == {"t:a:setup"}
    kernel.command_status["plain"] = 0
    with pytest.raises(CommandFailed, match="oneshot: true"):  # not one-shot: the hint says how
        supervise(kernel, [launch(kernel, ["plain"], tmp_path)], {}, settle=0.05)


def test_readiness_that_never_comes_is_bounded(tmp_path: Path) -> None:
    kernel = FakeKernel()
    kernel.ready_check = lambda ns, check, timeout: False  # type: ignore[method-assign]
    with pytest.raises(CommandFailed, match=r"node a: not ready after 0.2 s: nothing listens on TCP port 80"):
        supervise(kernel, [launch(kernel, ["server"], tmp_path)], {"a": ("ns-a", [("tcp:80",)])}, timeout=0.2)
