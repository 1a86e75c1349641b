"""A re-run reads only the changed nodes and their link peers; when that peer is the
host (a member's port on a bridge), only the host interfaces of the nodes in scope
are read and judged (model.desired.restricted's peers_only).  Whatever an edit
was, the kernel must end exactly as a fresh build of the same file leaves it:
every link, address and route of the host and of every node, and the firewall."""

from __future__ import annotations

import difflib
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from helpers import vethlab

MEMBERS = {"n0": "10.0.0.10", "n1": "10.0.0.11", "n2": "10.0.0.12", "n3": "10.0.0.13"}


def star(members: dict[str, str], subnet: str = "10.0.0.0/24", nat: bool = False,
         publish: str | None = None, gone: str = "", aux: bool = True) -> str:
    """Members on one bridge network, plus a point-to-point link from the host to n1
    (a host end that is not a bridge port) and one between two members, and (`aux`)
    a second network of one member, n4.  Every node but `gone` exists, member or not."""
    nodes = sorted(({"n0", "n1", "n2", "n3", "n4", "x"} | set(members)) - {gone})
    lines = ["name: inc", "nodes:"] + [f"  {n}: {{}}" for n in nodes]
    lines += ["links:", "  - {endpoints: [host:hp1, n1:up], addresses: [10.9.0.1/30, 10.9.0.2/30]}",
              "  - {endpoints: [n1:side, x:side], addresses: [10.8.0.1/30, 10.8.0.2/30]}"]
    lines += ["networks:", "  lan:", f"    subnet: {subnet}", f"    nat: {str(nat).lower()}", "    members:"]
    for node, ip in members.items():
        extra = f", publish: [\"{publish}\"]" if publish and node == "n2" else ""
        lines.append(f"      {node}: {{ip: {ip}{extra}}}")
    if aux:
        lines += ["  aux:", "    subnet: 10.1.0.0/24", "    members: {n4: {}}"]
    return "\n".join(lines) + "\n"


def _ip(netns: str | None, *args: str) -> list[dict[str, Any]]:
    cmd = ["ip", "-j"] + (["-n", netns] if netns else []) + list(args)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out) if out.strip() else []


# what differs between two builds of the same thing: kernel numbering, random MACs
_VOLATILE = {"ifindex", "link_index", "link_netnsid", "address", "broadcast", "handle", "valid_life_time",
             "preferred_life_time", "operstate", "linkmode", "group", "qdisc", "txqlen"}


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if k not in _VOLATILE}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _addresses(netns: str | None) -> list[Any]:
    out = []
    for link in _ip(netns, "addr", "show"):
        link["addr_info"] = [a for a in link.get("addr_info", []) if not a.get("local", "").startswith("fe80:")]
        link.pop("link", None)  # the peer as "ifNNN" when it is in another namespace
        out.append(link)
    return sorted(_clean(out), key=lambda link: link["ifname"])


def _routes(netns: str | None) -> list[Any]:
    return sorted((_clean(r) for r in _ip(netns, "route", "show", "table", "all")
                   if not r.get("dst", "").startswith("fe80::") or r["dst"] == "fe80::/64"), key=json.dumps)


def _firewall() -> Any:
    out = subprocess.run(["nft", "-j", "list", "ruleset"], capture_output=True, text=True, check=True).stdout
    return _clean(json.loads(out)["nftables"][1:])  # [0]: the version


def whole_state() -> dict[str, Any]:
    """Every link, address and route of the host and of each node's namespace."""
    names = sorted(entry["name"] for entry in _ip(None, "netns", "list"))
    state: dict[str, Any] = {"host": (_addresses(None), _routes(None)), "firewall": _firewall()}
    for ns in names:
        state[ns] = (_addresses(ns), _routes(ns))
    return state


def same(edited: dict[str, Any], built: dict[str, Any]) -> str:
    """'' when equal, else a unified diff of the two states, for the failure message."""
    if edited == built:
        return ""
    a, b = (json.dumps(s, indent=1, sort_keys=True).splitlines() for s in (edited, built))
    return "\n".join(difflib.unified_diff(a, b, "after the edit", "fresh build", lineterm="", n=2))


def fresh(path: str) -> dict[str, Any]:
    vethlab("down", path, check=True)
    vethlab("up", path, check=True)
    return whole_state()


EDITS = {
    # the benchmark's one-link edit: n0's static address moves; the host is in scope
    # only as its peer, so just n0's port and the bridge are read there
    "move a member's address": star({**MEMBERS, "n0": "10.0.0.99"}),
    # the host's part changes: its whole side is read and judged, n3's port goes
    "remove a member": star({k: v for k, v in MEMBERS.items() if k != "n3"}),
    "remove a member's node": star({k: v for k, v in MEMBERS.items() if k != "n3"}, gone="n3"),
    "add a member": star({**MEMBERS, "n4": "10.0.0.14"}),
    # the bridge of a network the file no longer has is judged too
    "remove a network": star(MEMBERS, aux=False),
    "change the bridge's subnet": star({n: ip.replace("10.0.0.", "10.0.1.") for n, ip in MEMBERS.items()},
                                       subnet="10.0.1.0/24"),
    "nat and publish": star(MEMBERS, nat=True, publish="8080:80/tcp"),
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_an_edited_star_ends_as_a_fresh_build_of_its_file(tmp_path: Path, edit: str) -> None:
    path = tmp_path / "inc.yaml"
    path.write_text(star(MEMBERS))
    vethlab("up", str(path), check=True)
    path.write_text(EDITS[edit])
    vethlab("up", str(path), check=True)
    edited = whole_state()
    assert vethlab("plan", str(path), "--refresh", check=True).stdout.strip() == "lab inc: no changes"
    assert not (diff := same(edited, fresh(str(path)))), diff


def test_a_member_removed_and_another_edited_in_two_runs(tmp_path: Path) -> None:
    """The host's part unchanged in the second run (only n0 moves) after it changed in
    the first: the port removed in the first run stays removed, the others stay."""
    path = tmp_path / "inc.yaml"
    path.write_text(star(MEMBERS))
    vethlab("up", str(path), check=True)
    fewer = {k: v for k, v in MEMBERS.items() if k != "n2"}
    path.write_text(star(fewer))
    vethlab("up", str(path), check=True)
    path.write_text(star({**fewer, "n0": "10.0.0.50"}))
    vethlab("up", str(path), check=True)
    edited = whole_state()
    assert not (diff := same(edited, fresh(str(path)))), diff
