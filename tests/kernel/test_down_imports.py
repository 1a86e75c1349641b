"""What `down` and a repeated `up` import, in a real process on a real (sandboxed)
kernel: `down` needs neither YAML nor the planner; a first read of a plain file
needs no PyYAML (topology/quickyaml.py); an `up` of a file it has read before
needs neither the loader nor the validator (the topology cache)."""

from __future__ import annotations

from pathlib import Path

from helpers import modules_after

PLANNING = {"yaml", "vethlab.lab", "vethlab.topology.loader", "vethlab.topology.validate",
            "vethlab.reconcile.planner", "vethlab.reconcile.executor", "vethlab.model.desired"}


def test_down_of_no_lab_and_of_a_lab_load_no_planning(tmp_path: Path) -> None:
    assert modules_after("down", "--lab", "nope") & PLANNING == set()
    path = tmp_path / "lab.yaml"
    path.write_text("name: imports\nnodes: {a: {}, b: {}}\nlinks: [{endpoints: [a:e0, b:e0]}]\n")
    first = modules_after("up", str(path))
    assert {"vethlab.topology.loader", "vethlab.topology.validate"} <= first  # the first read of the file
    assert "yaml" not in first  # plain YAML: read by topology/quickyaml.py, no PyYAML
    second = modules_after("up", str(path))
    assert {"vethlab.topology.loader", "vethlab.topology.validate"} <= second  # the lab did not exist at the first
    again = modules_after("up", str(path))
    assert again & {"yaml", "vethlab.topology.loader", "vethlab.topology.validate"} == set()
    assert modules_after("down", str(path)) & PLANNING == set()
    assert not Path("/run/netns/a").exists()  # it did come down


#: start-up weight that building and removing a lab without services never uses:
#: processes and signals (kernel/process.py, subprocess, signal: a service or
#: `exec` loads them), `socket`'s enum wrappers (the netlink code uses _socket),
#: OpenSSL (vethlab/digests.py)
PROCESS_MACHINERY = {"subprocess", "signal", "socket", "hashlib", "_hashlib", "vethlab.kernel.process"}


def test_up_and_down_of_a_lab_without_services_load_no_process_machinery(tmp_path: Path) -> None:
    path = tmp_path / "lab.yaml"
    path.write_text("name: lean\nnodes: {a: {}, b: {}}\nlinks: [{endpoints: [a:e0, b:e0]}]\n")
    assert modules_after("down", "--lab", "nope") & (PROCESS_MACHINERY | {"vethlab.topology.schema"}) == set()
    assert modules_after("up", str(path)) & PROCESS_MACHINERY == set()
    assert modules_after("up", str(path)) & PROCESS_MACHINERY == set()  # read from the topology cache
    assert modules_after("down", str(path)) & (PROCESS_MACHINERY | {"vethlab.topology.schema"}) == set()
    assert not Path("/run/netns/a").exists()
