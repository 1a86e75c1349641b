"""The Lab facade: load → validate → compile → observe → plan → execute → verify.

The CLI, the Python API and the pytest plugin are thin fronts over this class.
The kernel layer (and with it pyroute2, ~0.2 s to import) is loaded only when a
method needs the kernel.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

from .drivers.shaping import require_qdiscs
from .errors import KernelError, UsageError
from .kernel.api import Kernel, Netns
from .kernel.process import run_in_node
from .ownership import marker
from .reconcile.actions import Action, Plan
from .reconcile.journal import wait_until
from .reconcile.services import Record as _Record
from .state import store
from .topology import HOST, LabSpec, lab_from_dict, load_lab

__all__ = ["Lab", "Node", "default_kernel", "lab_status", "require_qdiscs", "set_link_state"]


def default_kernel() -> Kernel:
    from .kernel.rtnl import NetlinkKernel

    return NetlinkKernel()


class Node:
    """One node of a lab, for running commands in it."""

    def __init__(self, lab: str, name: str, netns: Netns) -> None:
        self.lab, self.name, self.netns = lab, name, netns

    def exec(self, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        """Run argv in the node (as `ip netns exec` does) and return the CompletedProcess,
        its output captured as text in `.stdout`/`.stderr` — what a test or a script
        wants to look at.  Keyword arguments go to subprocess.run: pass
        `capture_output=False` (or your own stdout=/stderr=) to let the output through
        to the terminal instead, `text=False` for bytes."""
        if not any(key in kwargs for key in ("capture_output", "stdout", "stderr")):
            kwargs["capture_output"] = True
        if kwargs.get("capture_output") and not any(k in kwargs for k in ("text", "encoding", "universal_newlines")) \
                and not isinstance(kwargs.get("input"), bytes):
            kwargs["text"] = True
        return run_in_node(self.netns, argv, **kwargs)

    def __repr__(self) -> str:
        return f"Node({self.lab}:{self.name})"


class Lab:
    def __init__(self, spec: LabSpec | None, name: str | None = None, kernel: Kernel | None = None) -> None:
        self.spec = spec
        self.name = spec.name if spec else str(name)
        self._kernel = kernel
        self.marker = marker(self.name)

    # -- construction ---------------------------------------------------------
    @classmethod
    def load(cls, path: str, kernel: Kernel | None = None) -> Lab:
        return cls(load_lab(path), kernel=kernel)

    @classmethod
    def from_dict(cls, data: dict[str, Any], kernel: Kernel | None = None) -> Lab:
        return cls(lab_from_dict(data), kernel=kernel)

    @classmethod
    def existing(cls, name: str, kernel: Kernel | None = None) -> Lab:
        """A lab known only by name (for down, status, exec)."""
        return cls(None, name=name, kernel=kernel)

    @property
    def kernel(self) -> Kernel:
        if self._kernel is None:
            self._kernel = default_kernel()
        return self._kernel

    def close(self) -> None:
        if self._kernel is not None:
            self._kernel.close()

    @property
    def machine(self) -> str | None:
        """A lab across machines (SPEC §7): the machine whose part `up`, `plan` build."""
        return self.spec.machine if self.spec else None

    @machine.setter
    def machine(self, name: str | None) -> None:
        import dataclasses

        if self.spec is not None:
            self.spec = dataclasses.replace(self.spec, machine=name)

    # -- the reconcile loop (reconcile/up.py) ------------------------------------------
    def _spec(self) -> LabSpec:
        if self.spec is None:
            raise UsageError(f"lab {self.name}: this needs the topology file")
        return self.spec

    def plan(self, refresh: bool = False) -> Plan:
        """What `up` would change; touches nothing."""
        from .reconcile import up

        return up.plan(self.kernel, self._spec(), refresh)

    def up(self, keep_on_error: bool = False, wait: float = 60.0,
           progress: Callable[[Action], None] | None = None, refresh: bool = False) -> Plan:
        """Make the kernel match the file; return the plan that was carried out.
        Returns once links are up and addresses usable; rolls back on failure."""
        from .reconcile import up

        spec = self._spec()
        return up.up(self.kernel, spec, keep_on_error, wait, progress, refresh)

    def down(self, wait: float = 60.0) -> dict[str, int]:
        """Remove everything of this lab.  A lab that does not exist: nothing to do.
        Returns how many processes it ended, per node."""
        from .ops.down import down

        return down(self.name, self.kernel, wait)

    # -- using a lab -----------------------------------------------------------------
    def nodes(self) -> dict[str, Netns]:
        if self.spec is not None:
            return {name: self.spec.netns_of(name) for name in self.spec.nodes}
        state = store.load(self.name)
        return dict(state.nodes) if state else {}

    def node(self, name: str) -> Node:
        nodes = self.nodes()
        if name != HOST and name not in nodes:
            raise UsageError(f"lab {self.name} has no node {name} (it has: {', '.join(sorted(nodes)) or 'none'})")
        return Node(self.name, name, nodes.get(name))

    def __enter__(self) -> Lab:
        self.up()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            self.down()
        finally:
            self.close()


def service_record(item: Sequence[Any]) -> _Record:
    return _Record.of(item)


# -- runtime views and faults (used by `status` and `link up|down`) -------------------
def lab_status(name: str, kernel: Kernel | None = None) -> dict[str, Any]:
    """Nodes and, per interface: node, peer (node:ifname), addresses, MTU, admin
    state, operational state, carrier and counters."""
    from .ops.inspect import interfaces, lab_state

    state = lab_state(name)
    kernel = kernel or default_kernel()
    try:
        exists, views = interfaces(kernel, state)
    finally:
        kernel.close()
    from .kernel import services
    from .reconcile.services import log_name

    def log(node: str, index: int, label: str) -> str:
        return os.path.join(store.lab_dir(name), "logs", log_name(label) if label else f"{node}-{index}.log")

    found = services.lab_processes([ns for node, ns in state.nodes.items() if ns and node in state.services])
    labelled = {label for procs in found.values() for _pid, _started, label in procs if label}

    return {
        "lab": name, "file": state.file, "complete": state.complete,
        "nodes": [{"name": n, "netns": ns, "exists": exists.get(n, False)} for n, ns in state.nodes.items()],
        "interfaces": [v.to_json() for v in views],
        "services": [{"node": node, "command": " ".join(rec.argv), "pid": rec.pid,
                      "state": "running" if services.alive(rec.pid, rec.started) or rec.label in labelled else
                      "done" if rec.done else "exited", "log": log(node, i, rec.label)}
                     for node, items in state.services.items()
                     for i, rec in enumerate(service_record(item) for item in items)],
    }


def set_link_state(name: str, node: str, ifname: str, up: bool, timeout: float = 5.0,
                   kernel: Kernel | None = None) -> None:
    """Fault injection: set one end down or up, and return once its peer shows it
    (no carrier, operationally down / carrier, operationally up)."""
    from .ops.inspect import lab_state, peers

    state = lab_state(name)
    peer = peers(state).get((node, ifname))
    if peer is None:
        raise UsageError(f"{node}:{ifname} is not a link end of lab {name}")
    if state.fingerprints.pop(node, None) is not None:  # differs from the file now: re-read at the next up
        store.save(state)
    kernel = kernel or default_kernel()
    try:
        kernel.set_link(state.nodes.get(node), ifname, up=up)
        if peer[0] not in state.nodes:
            return  # the far end is on another machine: nothing here to wait for (see docs/machines.md)
        peer_ns = state.nodes.get(peer[0])

        def shows() -> bool:
            for link in kernel.links(peer_ns):
                if link.ifname == peer[1]:
                    peer_up = link.admin_up
                    want_carrier = up and peer_up
                    return link.carrier == want_carrier and (link.operstate == "UP") == want_carrier
            return False

        if not wait_until(shows, timeout):
            raise KernelError(f"{peer[0]}:{peer[1]} did not show {node}:{ifname} going {'up' if up else 'down'} "
                              f"within {timeout:g} s")
    finally:
        kernel.close()
