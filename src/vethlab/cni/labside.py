"""What a lab's own commands (`up`, `plan`, `down`) must know of the containers a
runtime joined to it through the plugin (labjoin.py), read from the lab's
STATE/LAB/cni.json:

- the hosts driver lists them after the lab's nodes, so a re-run `up` keeps
  their names in every node's hosts file (`host_lines`: the same lines, in the
  same order, that ADD and DEL write, so the digests agree and `plan` is quiet);
- the lab's IPAM takes their addresses as held (`held`), so a member added to
  the file later never gets one of them;
- `down` removes what the plugin published for them (`forget_published`); their
  host-side veth ends it finds by their marker (reconcile/removal.py), their
  records go with the lab's state directory.

`up` and `down` hold the lab's lock, which ADD and DEL take too: the records
read here are the ones in force.  The plugin's start-up never imports this."""

from __future__ import annotations

import os
from typing import Any

from ..errors import StateError

RECORDS = "cni.json"  # labjoin.RECORDS (tests/unit/test_cni_labside.py): a lab without records imports none of the plugin


def attachments(lab: str) -> dict[str, dict[str, Any]]:
    """The lab's joined containers, by "CONTAINERID/IFNAME"; StateError (naming the
    file) when the records cannot be read or an entry lacks what the lab needs.

    Nothing at all in the records' place (no file, no link, no lab directory: every
    lab no runtime ever joined, and every first `up`) is no attachment, found with
    one lstat: the plugin's modules (~1.5 ms of imports) and its checked reading are
    for a lab that has records.  `up` asks twice (IPAM, hosts files)."""
    from ..state import store

    if not os.path.lexists(os.path.join(store.lab_dir(lab), RECORDS)):
        return {}
    from .labjoin import LabRecords
    from .protocol import CniError

    try:
        data = LabRecords(lab).load()
    except CniError as exc:
        raise StateError(exc.details) from None
    found = data.get("attachments")
    if not isinstance(found, dict):
        raise StateError(f"{LabRecords(lab).path()}: `attachments` is not an object: remove the file (the "
                         "containers joined to the lab are then unknown to it)")
    for key, record in found.items():
        if not (isinstance(record, dict) and all(isinstance(record.get(k), str) for k in ("node", "address",
                                                                                           "network"))):
            raise StateError(f"{LabRecords(lab).path()}: attachment {key} is damaged (node, address, network): "
                             "remove it, or the file")
    return found


def host_lines(found: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
    """(address, name) of each joined container, after the lab's own lines in every
    node's hosts file: sorted by name, then address (a function of the records,
    not of the order ADDs came in)."""
    return sorted(((a["address"].split("/")[0], a["node"]) for a in found.values()), key=lambda e: (e[1], e[0]))


def held(lab: str) -> dict[str, dict[str, str]]:
    """network -> {IPv4 address: holder} for the lab's IPAM."""
    out: dict[str, dict[str, str]] = {}
    for record in attachments(lab).values():
        out.setdefault(record["network"], {})[record["address"].split("/")[0]] = \
            f"container {record['node']} (joined through vethlab-cni)"
    return out


def forget_published(lab: str) -> None:
    """Drop the lab's joined containers' published ports and its networks' entries
    from the plugin's table (`inet vethlab-cni`): `down` leaves no rule behind
    that points into a lab that is gone."""
    from . import ports
    from .records import peek_firewall

    seen = peek_firewall()
    if seen is None:
        return  # the plugin never published anything on this host
    prefix = f"lab:{lab}:"  # labjoin._firewall_key
    networks = {n for n in seen.get("networks", {}) if n.startswith(prefix)}
    networks |= {p.get("network") for p in seen.get("publish", {}).values()
                 if isinstance(p, dict) and str(p.get("network", "")).startswith(prefix)}
    for network in sorted(networks):
        keys = [k for k, p in seen.get("publish", {}).items() if isinstance(p, dict) and p.get("network") == network]
        ports.update(network, None, drop_keys=keys, drop_network=True)
