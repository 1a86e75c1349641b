"""The services the lab's state records, kept true across runs: saved the moment
they start, pruned of those stopped or gone after a run, and -- after a run that
was killed -- adopted when found running by their label (reconcile/services.py)."""

from __future__ import annotations

from typing import Any

from ..kernel.api import Kernel
from ..model.desired import Desired
from ..state import store
from .actions import Outcome
from .services import Record, is_running, labels, records, running_labels, supervise


def save_started(state: store.LabState, outcome: Outcome) -> None:
    """Record services the moment they are started (their pid and start time),
    before watching them: a kill from then on leaves nothing `down` does not know."""
    for node, rec in outcome.started:
        items = state.services.setdefault(node, [])
        items[:] = [item for item in items if Record.of(item).label != rec.label]
        items.append(rec.to_json())
    store.save(state)


def remember(kernel: Kernel, state: store.LabState, outcome: Outcome) -> None:
    """The services the state keeps: those recorded or started by this run that
    still run (or, one-shot, finished), each once; the ones this run stopped or
    restarted are forgotten."""
    fresh = {rec.label for _node, rec in outcome.started}
    candidates = [(node, rec) for node, rec in records(state.services)
                  if rec.label not in fresh and rec.pid not in outcome.stopped
                  and (not rec.label or rec.label not in outcome.stopped)]
    candidates += outcome.started
    labelled = running_labels(kernel, [state.nodes.get(node) for node, rec in candidates
                                       if not rec.done and not kernel.service_alive(rec.pid, rec.started)])
    kept: dict[str, list[list[Any]]] = {}
    for node, rec in candidates:
        ns = state.nodes.get(node)
        if is_running(kernel, rec, ns, labelled):
            if not rec.done and ns and not kernel.service_alive(rec.pid, rec.started):
                # its first process is gone (it daemonised, or a killed run never recorded
                # it): remember the process that carries its label, so the next run trusts it
                rec = rec._replace(pid=labelled[ns][rec.label][0], started=labelled[ns][rec.label][1])
            kept.setdefault(node, []).append(rec.to_json())
    state.services = kept


def adopt(kernel: Kernel, state: store.LabState, desired: Desired, existed: store.LabState | None) -> None:
    """After a run that did not finish, record the services of the file that run
    in their node under their label but that the state does not know (the run
    was killed between starting them and recording them)."""
    if existed is None or existed.complete:
        return
    nodes = {name: node for name, node in desired.nodes.items() if node.run and node.netns}
    labelled = running_labels(kernel, [node.netns for node in nodes.values()]
                              + [state.nodes.get(name) for name in state.services])
    known = {rec.label for _node, rec in records(state.services)}
    for name, items in state.services.items():  # recorded before they started: their pid now
        ns = state.nodes.get(name)
        for i, item in enumerate(items):
            rec = Record.of(item)
            if ns and not rec.pid and rec.label in labelled.get(ns, {}):
                pid, started = labelled[ns][rec.label]
                items[i] = rec._replace(pid=pid, started=started, netns_id=kernel.namespace_id(ns) or 0).to_json()
    for name, node in nodes.items():
        found = labelled.get(node.netns or "", {})
        for argv, label in zip(node.run, labels(desired.lab, name, node.run), strict=True):
            if label not in known and label in found:
                pid, started = found[label]
                record = Record(list(argv), pid, started, label, False, kernel.namespace_id(node.netns or "") or 0)
                state.services.setdefault(name, []).append(record.to_json())


def await_ready(kernel: Kernel, desired: Desired, existed: store.LabState | None, watched: set[str]) -> None:
    """After a run that did not finish (killed), services it started are found
    running and not started again, so this run did not watch them: wait for
    their readiness checks here, or `up` would return before they listen."""
    if existed is None or existed.complete:
        return
    checks = {name: (node.netns, list(node.ready)) for name, node in desired.nodes.items()
              if node.ready and node.run and name not in watched}
    if checks:
        supervise(kernel, [], checks)
