"""The lab's claims on the host namespace (names, subnets, host link addresses,
published ports), chosen and recorded as one step under the host-wide lock so a
lab coming up in parallel sees them before it chooses (state/hostwide.py)."""

from __future__ import annotations

from typing import Any

from ..kernel.api import Kernel
from ..model import claims, ipam
from ..ownership import lab_of, marker
from ..state import store
from ..state.hostwide import AllocationLock
from ..topology import HOST, LabSpec

CLAIM_FIELDS = ("allocation", "host_subnets", "host_addresses", "host_ports", "host_names")


def record_claims(state: store.LabState, mine: claims.HostClaims, keep: bool) -> None:
    """Put the lab's host-namespace claims in its state.  keep: add to what is
    recorded (before building: what an interrupted run may have made stays claimed
    until `down`); else replace (after a complete run)."""
    for key, values in (("host_subnets", mine.subnets), ("host_addresses", mine.addresses),
                        ("host_ports", mine.ports), ("host_names", mine.names)):
        setattr(state, key, sorted(set(getattr(state, key)) | values if keep else values))


def taken(kernel: Kernel, spec: LabSpec) -> claims.HostUse:
    """What others hold in the host namespace that this lab must not claim too:
    other labs' recorded claims (names, subnets, host link addresses, published
    ports), the addresses of interfaces not this lab's, and — when the lab
    publishes — the host's listening sockets.  `up` reads this under the
    host-wide lock; every lab takes it, since namespace names are host-wide."""
    use = claims.HostUse()
    for other in store.labs():
        state = store.load(other) if other != spec.name else None
        if state is None:
            continue
        who = f"lab {other}"
        use.names += [(name, who) for name in state.host_names]
        use.subnets += [(subnet, who) for subnet in state.host_subnets]
        use.addresses += [(address, who) for address in state.host_addresses]
        use.ports += [(port, who) for port in state.host_ports]
    if not claims.wants_host(spec):
        return use  # nodes and networks all in the lab's own namespaces: only names can clash
    mark = marker(spec.name)
    for link in kernel.links(None, only_addressed=True):  # not the lab's 1000 unaddressed veth ends
        if link.alias != mark:
            owner = lab_of(link.alias)
            who = f"interface {link.ifname} of the host namespace" + (f" (lab {owner})" if owner else "")
            use.addresses += [(cidr, who) for cidr in link.addresses]
    if any(m.publish for net in spec.networks if net.host == HOST for m in net.members):
        use.listeners = [(str(claims.Port(s.port, s.protocol, s.address)), "a process of the host namespace")
                         for s in kernel.host_listeners()]
    return use


def allocate(kernel: Kernel, spec: LabSpec, state: store.LabState | None) -> ipam.Allocation:
    """IPAM's choices, checked against what others hold in the host namespace and
    the addresses of containers joined to the lab's networks (cni/labside.py):
    ConflictError (exit 1) before anything is built."""
    from ..cni.labside import held

    use = taken(kernel, spec)
    allocation = ipam.allocate(spec, ipam.Allocation.previous(state.allocation if state else None),
                               {HOST: use.taken_subnets()}, held(spec.name) if state else None)
    claims.check(spec, use)
    return allocation


def claim(kernel: Kernel, spec: LabSpec, state: store.LabState, existed: store.LabState | None,
          wait: float) -> ipam.Allocation:
    """Choose and record the lab's host-namespace claims under the host-wide lock.
    The lock covers reading, choosing and one state save."""
    with AllocationLock(spec.name, wait):
        allocation = allocate(kernel, spec, existed)
        before = [getattr(state, key) for key in CLAIM_FIELDS]
        state.allocation = allocation.to_json()
        record_claims(state, claims.of(spec, allocation), keep=True)
        if existed is None or [getattr(state, key) for key in CLAIM_FIELDS] != before:
            store.save(state)  # a re-run that claims nothing new writes nothing
    return allocation


def unclaim(state: store.LabState, existed: store.LabState | None, before: dict[str, Any]) -> None:
    """A refused `up` (a conflict found after the claim) gives its claims back."""
    if existed is None:
        store.remove(state.lab)
        return
    for key, value in before.items():
        setattr(state, key, value)
    store.save(state)
