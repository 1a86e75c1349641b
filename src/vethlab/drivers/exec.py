"""exec: one-shot commands run in a node once when it is created, and again when
its commands changed (the state keeps a digest of them per node)."""

from __future__ import annotations

import json
from typing import Any

from ..deferred import dataclass
from ..digests import sha256
from ..errors import CommandFailed
from ..reconcile.actions import ApplyContext, PlanContext, SelfChecked
from ..reconcile.journal import Step
from .base import Driver

EXEC_TIMEOUT = 300.0


def exec_digest(commands: tuple[tuple[str, ...], ...]) -> str:
    return sha256(json.dumps(commands).encode()).hexdigest()[:16] if commands else ""


@dataclass(frozen=True)
class RunExec(SelfChecked):  # its exit status was the check
    VERB = "run"
    KIND = "exec"
    PHASE = "exec"
    argv: tuple[str, ...]

    def params(self) -> dict[str, Any]:
        return {"argv": list(self.argv)}

    def apply(self, ctx: ApplyContext) -> Step | None:
        status, output = ctx.kernel.run_command(self.netns, list(self.argv), EXEC_TIMEOUT)
        if status != 0:
            output = output.strip()
            raise CommandFailed(f"exec in node {self.node}: `{' '.join(self.argv)}` exited with status {status}"
                                + (f":\n{output}" if output else ""))
        return None


class ExecDriver(Driver):
    kind = "exec"

    def plan(self, ctx: PlanContext) -> None:
        previous = ctx.memory.exec_digests
        for name, node in ctx.desired.nodes.items():
            digest = exec_digest(node.exec)
            ctx.plan.exec_digests[name] = digest
            if node.exec and (name in ctx.created or previous.get(name) != digest):
                for argv in node.exec:
                    ctx.plan.add(RunExec(f"{name}: {' '.join(argv)}", "node is new" if name in ctx.created else
                                         "exec commands changed", name, node.netns, tuple(argv)))


DRIVER = ExecDriver()
