"""The commands' side of a lab across machines (SPEC §7): which machine this is,
and what the other machines hold, as far as `status` and `pingall` here need it.

Nothing is asked of the other machines: the file says where every node is and
which addresses it has, so the far end of a link is named (MACHINE/NODE:IF) and
pinged from the file alone.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from ..errors import UsageError
from ..kernel import open_kernel
from ..kernel.api import Processes
from ..state import store
from ..topology.schema import LabSpec


def local_addresses() -> set[str]:
    """The addresses of the namespace vethlab runs in (the machine's)."""
    kernel = open_kernel()
    try:
        return {cidr.split("/")[0] for link in kernel.links(None) for cidr in link.addresses}
    finally:
        kernel.close()


def choose(spec: LabSpec | None, requested: str | None) -> str | None:
    """The machine whose part to build: `--machine`, else the one whose underlay
    address this host has; None for a lab on one machine.  UsageError (exit 2)
    when it cannot be told."""
    if spec is None:
        return requested
    names = [m.name for m in spec.machines]
    if not names:
        if requested is not None:
            raise UsageError(f"lab {spec.name} declares no machines: --machine {requested} means nothing here")
        return None
    if requested is not None:
        if requested not in names:
            raise UsageError(f"lab {spec.name} has no machine {requested} (machines: {', '.join(names)})")
        here = local_addresses()
        asked = next(m for m in spec.machines if m.name == requested)
        others = [m for m in spec.machines if m.address in here and m.name != requested]
        if others and asked.address not in here:
            # the state here is one machine's part: building or removing another's here would
            # replace (up) or remove (down) the part this host really holds
            raise UsageError(f"this host has {others[0].name}'s underlay address {others[0].address}, not "
                             f"{requested}'s ({asked.address}): it is {others[0].name} (run with --machine "
                             f"{others[0].name}, or on {requested} itself)")
        return requested
    from ..model.placement import recognise

    here = local_addresses()
    several = [m.name for m in spec.machines if m.address in here]
    if len(several) > 1:
        raise UsageError(f"this host has the underlay addresses of machines {', '.join(several)} of lab "
                         f"{spec.name}: say which machine this is with --machine NAME")
    found = recognise(spec, here)
    if found is None:
        raise UsageError(f"lab {spec.name} spans machines ({', '.join(names)}) and none of their addresses is on "
                         "this host: say which machine this is with --machine NAME")
    return found


def spec_of(state: store.LabState) -> LabSpec | None:
    """The lab's file, if it is still there, valid, and declares machines."""
    if not state.file:
        return None
    try:
        from ..topology import load_lab

        spec = load_lab(state.file)
    except Exception:  # noqa: BLE001 - a file changed or gone since: nothing to add
        return None
    return spec if spec.machines and spec.name == state.lab else None


def remote_peers(state: store.LabState) -> dict[tuple[str, str], str]:
    """(node, ifname) -> MACHINE/NODE:IF for each local end of a link across machines."""
    spec = spec_of(state)
    if spec is None:
        return {}
    from ..model.placement import machine_of

    out = {}
    for a, a_if, b, b_if in state.links:
        for here, here_if, there, there_if in ((a, a_if, b, b_if), (b, b_if, a, a_if)):
            if here in state.nodes and there not in state.nodes:
                out[(here, here_if)] = f"{machine_of(spec, there) or '?'}/{there}:{there_if}"
    return out


def remote_addresses(state: store.LabState) -> dict[str, list[tuple[str, str]]]:
    """node -> [(ifname, cidr)] for the nodes of the lab that live on other machines,
    from the file (with this machine's IPAM choices, the same as theirs for the
    explicit subnets a lab across machines uses)."""
    spec = spec_of(state)
    if spec is None:
        return {}
    from ..model import ipam
    from ..model.desired import compile_lab

    full = compile_lab(spec, ipam.Allocation.previous(state.allocation))
    out: dict[str, list[tuple[str, str]]] = {}
    for (node, ifname), iface in full.interfaces.items():
        if node in state.nodes or iface.kind == "bridge":
            continue
        out.setdefault(node, []).extend((ifname, cidr) for cidr in iface.addresses
                                        if not ipaddress.ip_interface(cidr).is_loopback)
    return out


def name_peers(report: dict[str, Any], state: store.LabState) -> None:
    """status: far ends of links across machines as MACHINE/NODE:IF (in place)."""
    names = remote_peers(state)
    for item in report.get("interfaces", []):
        far = names.get((item["node"], item["name"]))
        if far is not None:
            item["peer"] = far


def far_port(state: store.LabState, node: str, ifname: str) -> tuple[Any, str] | None:
    """For a local end of a link across machines with `carrier: true`: (the far
    machine's MachineSpec, the far machine-side veth end as host:NAME).  None for a
    link within this machine.  UsageError for a link across machines without carrier."""
    spec = spec_of(state)
    if spec is None:
        return None
    from ..model.placement import crosses, machine_of, stitch_names

    for link in spec.links:
        for here, there in ((link.a, link.b), (link.b, link.a)):
            if (here.node, here.ifname) != (node, ifname) or not crosses(spec, link):
                continue
            if not link.carrier:
                raise UsageError(f"{node}:{ifname} is a link across machines without `carrier: true`: its far end "
                                 f"cannot be told (see docs/machines.md)")
            far = {m.name: m for m in spec.machines}[machine_of(spec, there.node) or ""]
            return far, "host:" + stitch_names(spec.name, there.node, there.ifname)[0]
    return None


def check_far_end(lab: str, node: str, ifname: str) -> None:
    """Before anything changes: UsageError if `--all` cannot reach the far end."""
    state = store.load(lab)
    if state is not None:
        far_port(state, node, ifname)


def tell_far_end(lab: str, node: str, ifname: str, up: bool, kernel: Processes | None = None) -> str | None:
    """`link down|up NODE:IF --all`: the far machine takes its machine-side end of
    the link down (up), and returns once its node shows NO-CARRIER (carrier).
    Returns what to print, None for a link within this machine."""
    state = store.load(lab)
    if state is None:
        raise UsageError(f"lab {lab} does not exist")
    found = far_port(state, node, ifname)
    if found is None:
        return None
    machine, port = found
    kernel = kernel or open_kernel()
    result = kernel.run_on_machine(machine.name, machine.address, ["link", "up" if up else "down", port, "--lab", lab],
                                   timeout=60)
    if result.returncode != 0:
        from ..errors import CommandFailed

        raise CommandFailed(f"machine {machine.name} could not take {port} {'up' if up else 'down'}: "
                            f"{(result.stderr or result.stdout).strip()}")
    peer = remote_peers(state).get((node, ifname), f"{machine.name}/?")
    return f"{peer} shows {'carrier' if up else 'NO-CARRIER'}"
