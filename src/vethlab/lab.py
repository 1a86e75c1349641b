"""The Lab facade: load → validate → compile → observe → plan → execute → verify.

The CLI, the Python API and the pytest plugin are thin fronts over this class.
The kernel layer (and with it pyroute2, ~0.2 s to import) is loaded only when a
method needs the kernel.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .errors import UsageError
from .kernel import open_kernel
from .kernel.api import Kernel, Netns, Processes
from .ownership import marker
from .reconcile.actions import Action, Plan
from .reconcile.services import Record as _Record
from .state import store
from .state.speccache import load_lab
from .topology import HOST, LabSpec, lab_from_dict
from .topology.builder import Buildable, Draft

if TYPE_CHECKING:  # for Node.exec's type only: `up` need not load subprocess
    import subprocess

__all__ = ["Lab", "Node", "default_kernel"]


def default_kernel() -> Kernel:
    return open_kernel()


class Node:
    """One node of a lab, for running commands in it."""

    def __init__(self, lab: str, name: str, netns: Netns, kernel: Processes | None = None) -> None:
        self.lab, self.name, self.netns = lab, name, netns
        self._kernel = kernel  # the lab's; None: the real one, opened for each command

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
        if self._kernel is not None:
            return self._kernel.run_in_node(self.netns, argv, **kwargs)
        kernel = open_kernel()
        try:
            return kernel.run_in_node(self.netns, argv, **kwargs)
        finally:
            kernel.close()

    def __repr__(self) -> str:
        return f"Node({self.lab}:{self.name})"


class Lab(Buildable):  # add_node, add_link, add_network on a Lab.new (topology/builder.py)
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
    def new(cls, name: str, prefix: bool | None = None, kernel: Kernel | None = None) -> Lab:
        """An empty lab to build in code with add_node, add_link, add_network, add_member."""
        draft = Draft(name, prefix)  # the lab name is checked here, the rest when first needed
        lab = cls(None, name=name, kernel=kernel)
        lab._start(draft)
        return lab

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
        return Node(self.name, name, nodes.get(name), self.kernel)

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
