"""IP forwarding of the host namespace, held by labs: switched on by the first lab
whose network routes through the host, restored when the last one is gone, even
when the state directory was lost on the way.

Two copies say who holds it and what it was before vethlab:

* the ledger STATE/.shared.json (state.shared), which survives a firewall reload
  (`nft flush ruleset`, as `systemctl restart nftables` does);
* a marker table in the host namespace's own ruleset, `inet vethlab__forwarding`,
  which survives the loss of the state directory and dies with the namespace whose
  setting it describes (a sandbox's; the machine's at reboot, when the setting
  resets too).  It has no base chain, so no packet ever meets it; the names of its
  empty chains carry the facts: `was.net.ipv4.ip_forward.0` (the value before
  vethlab turned it on) and `held-by.LAB` (one per lab that needs it).  Both are
  plain nft identifiers, so `nft list ruleset > f; nft -f f` re-reads them.  The
  chain `owner-vethlab` marks the table as vethlab's: a table of that name without
  it is left alone, and only the ledger keeps the record then.

A setting is restored only when neither copy names a lab that still holds it.  The
kernel copy is changed under the ledger's lock, so labs going up and down in
parallel agree on both.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ..errors import ConflictError
from ..kernel.api import Kernel
from ..state import shared

TABLE = "vethlab__forwarding"  # lab tables are vethlab_LAB, LAB starting with a letter: no clash
_WAS = re.compile(r"^was\.(?P<key>net\.[a-z0-9_.]+)\.(?P<value>[0-9]+)$")
_HELD = "held-by."
_OWNER = "owner-vethlab"


class _Foreign(Exception):
    """A table named like the record that vethlab did not make."""


def _chain(name: str, verb: str = "add") -> dict[str, Any]:
    return {verb: {"chain": {"family": "inet", "table": TABLE, "name": name}}}


def read(kernel: Kernel) -> tuple[dict[str, str], set[str]] | None:
    """(key -> value before vethlab, labs holding) from the kernel's copy, or None;
    raises _Foreign for a table of that name without vethlab's marker chain."""
    try:
        chains = kernel.firewall_chains(None, TABLE)
    except ConflictError:  # no nft on this host: the ledger is the only copy
        return None
    if chains is None:
        return None
    if _OWNER not in chains:
        raise _Foreign
    was = {m["key"]: m["value"] for name in chains if (m := _WAS.match(name))}
    return was, {name[len(_HELD):] for name in chains if name.startswith(_HELD)}


def _read(kernel: Kernel) -> tuple[dict[str, str], set[str]] | None:
    """`read`, with a foreign table of that name read as no record at all."""
    try:
        return read(kernel)
    except _Foreign:
        return None


def hold(kernel: Kernel, lab: str, key: str) -> None:
    """Lab `lab` needs sysctl `key` = 1 in the host namespace."""
    fresh: dict[str, str | None] = {}

    def original() -> str | None:  # the ledger has no entry for key (first holder, or the ledger was lost)
        mark = _read(kernel)
        value = mark[0].get(key) if mark else None  # a lost ledger must not take our 1 for the host's own
        fresh[key] = value if value is not None else kernel.read_sysctl(None, key)
        return fresh[key]

    def write(value: str) -> None:
        try:
            mark = read(kernel)
            cmds: list[dict[str, Any]] = []
            if mark is None:  # `create`: never adds chains to a table of that name that appeared meanwhile
                cmds += [{"create": {"table": {"family": "inet", "name": TABLE}}}, _chain(_OWNER)]
            cmds.append(_chain(_HELD + lab))
            before = fresh.get(key)
            if before is not None and before.isdigit() and not (mark and key in mark[0]):
                cmds.append(_chain(f"was.{key}.{before}"))
            kernel.firewall_apply(None, {"nftables": cmds}, f"record that lab {lab} holds {key} in the host namespace")
        except (ConflictError, _Foreign):  # no nft, or a foreign table of that name: the ledger is the only copy
            pass
        try:
            kernel.write_sysctl(None, key, value)
            kernel.flush()
        except Exception:
            # the write failed, so the ledger will not name this lab (its update is
            # abandoned): take the kernel's copy back too, or it would claim a holder
            # that holds nothing and keep the record table for ever
            try:
                _let_go(kernel, {lab})
            except Exception:  # the write's own error is the one to report
                pass
            raise

    shared.hold(lab, key, original, write, "1")


def _let_go(kernel: Kernel, gone: set[str]) -> tuple[set[str], dict[str, str]]:
    """Under the ledger's lock: drop `gone` from the kernel's copy; with no holder
    left, restore every value it recorded and remove the table.  Returns the holders
    the kernel's copy still names and the values restored from it."""
    mark = _read(kernel)
    if mark is None:
        return set(), {}
    was, holders = mark
    leaving = holders & gone
    if holders - gone:
        if leaving:
            kernel.firewall_apply(None, {"nftables": [_chain(_HELD + lab, "delete") for lab in sorted(leaving)]},
                                  "forget labs that no longer hold host forwarding")
        return holders - gone, {}
    for key, value in was.items():
        kernel.write_sysctl(None, key, value)
    kernel.flush()
    kernel.firewall_apply(None, {"nftables": [{"delete": {"table": {"family": "inet", "name": TABLE}}}]},
                          "remove the record of host forwarding")
    return set(), was


def release(kernel: Kernel, lab: str, recorded: bool = False) -> None:
    """Lab `lab` is gone: restore what it was the last holder of, by either copy.
    `recorded`: the lab's state was there, so the ledger knows whether it held
    anything, and a lab it does not name is neither looked up in the ruleset nor
    written out of the ledger (nothing to do: an nftables read and a ledger rewrite
    saved on every `down` of a lab that never routed through the host; only an `up`
    of this very lab, which waits for the lock the caller holds, could name it
    meanwhile).

    Both copies change in one turn of the ledger's lock, the kernel's first: what it
    still says is known then, and needs no second read (a lab the ledger lost, its
    state directory gone, may still hold the setting; a value the kernel's copy has
    just restored is not written twice)."""
    if recorded and not shared.held_by(lab):
        return
    kernel_copy: list[tuple[set[str], dict[str, str]]] = []

    def restore(key: str, value: str) -> None:  # the ledger's last holder left
        others, restored = kernel_copy[0]
        if others:
            return  # a lab the ledger lost (its state dir went) still needs it
        if restored.get(key) != value:
            kernel.write_sysctl(None, key, value)
            kernel.flush()

    shared.release(lab, restore, first=lambda: kernel_copy.append(_let_go(kernel, {lab})))


def release_orphans(kernel: Kernel, living: Callable[[], set[str]]) -> None:
    """`clean`: holders in the kernel's copy that are no lab any more (state and every
    marked object gone) hold nothing.  `living` is asked under the ledger's lock, with
    the holders read there too: a lab saves its state before it takes that lock to
    hold, so one coming up meanwhile is either not a holder yet or already living."""
    mark = _read(kernel)
    if mark is None or not mark[1]:
        return

    def let_go() -> None:
        alive = living()
        now = _read(kernel)
        if now is not None and now[1] - alive:
            _let_go(kernel, now[1] - alive)

    shared.under_lock(let_go)
