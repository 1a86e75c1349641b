"""What a one-link edit reuses instead of reading it again must never be stale:
- the recorded id (nsfs inode) of a namespace the run did not read is kept, but a
  node the run re-made gets the id of its new namespace (reconcile/record.py);
- every node's resolv.conf is one hard-linked file, so once one node's is read,
  the others are checked by inode; a node whose resolv.conf is another file is read
  in full and rewritten (kernel/nodefiles.py);
- a host-namespace bridge port has no IPv6 link-local address of its own, while
  the node's end keeps its own and IPv6 crosses the bridge (kernel/rtnl.py)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from helpers import ip_json, vethlab
from vethlab.state import store


def lab(n0_ip: str = "10.0.0.10") -> str:
    return "\n".join([
        "name: reuse", "nodes:", "  n0: {}", "  n1: {}", "  n2: {}",
        "networks:", "  lan:", "    subnet: 10.0.0.0/24", "    subnet6: fd00:1::/64", "    members:",
        f"      n0: {{ip: {n0_ip}}}", "      n1: {ip: 10.0.0.11}", "      n2: {ip: 10.0.0.12}",
    ]) + "\n"


def nsfs_inode(ns: str) -> int:
    return os.stat(f"/run/netns/{ns}").st_ino


def test_a_namespace_made_again_by_an_edit_gets_its_new_id_recorded(tmp_path: Path) -> None:
    path = tmp_path / "reuse.yaml"
    path.write_text(lab())
    vethlab("up", str(path), check=True)
    state = store.load("reuse")
    assert state is not None
    before = dict(state.netns_ids)
    assert before == {ns: nsfs_inode(ns) for ns in ("n0", "n1", "n2")}
    # n1's namespace goes behind vethlab's back; the edit moves n0's address: the run
    # reads n0 (edited), n1 (gone: made again) and the host, and trusts n2
    # (held open meanwhile: the kernel hands a freed namespace number out again, and
    # n1's new namespace must have an id unlike the one recorded)
    held = os.open("/run/netns/n1", os.O_RDONLY)
    try:
        subprocess.run(["ip", "netns", "del", "n1"], check=True)
        path.write_text(lab("10.0.0.99"))
        vethlab("up", str(path), check=True)
    finally:
        os.close(held)
    state = store.load("reuse")
    assert state is not None
    assert state.netns_ids == {ns: nsfs_inode(ns) for ns in ("n0", "n1", "n2")}
    assert state.netns_ids["n1"] != before["n1"] and state.netns_ids["n2"] == before["n2"]


def test_a_node_whose_resolv_conf_is_another_file_gets_ours_back_when_hosts_change(tmp_path: Path) -> None:
    path = tmp_path / "reuse.yaml"
    path.write_text(lab())
    vethlab("up", str(path), check=True)
    ours = Path("/etc/netns/n0/resolv.conf").read_bytes()
    assert os.stat("/etc/netns/n0/resolv.conf").st_ino == os.stat("/etc/netns/n2/resolv.conf").st_ino
    # n1's is replaced by another file (another inode) with other content; n0's and n2's
    # stay the shared one, read first and last
    odd = Path("/etc/netns/n1/resolv.conf.new")
    odd.write_bytes(b"nameserver 192.0.2.53\n")
    odd.chmod(0o644)
    odd.replace("/etc/netns/n1/resolv.conf")
    path.write_text(lab("10.0.0.99"))  # every node's hosts file changes
    vethlab("up", str(path), check=True)
    assert {n: Path(f"/etc/netns/{n}/resolv.conf").read_bytes() for n in ("n0", "n1", "n2")} == \
        dict.fromkeys(("n0", "n1", "n2"), ours)
    assert "10.0.0.99\tn0" in Path("/etc/netns/n1/hosts").read_text()


def test_bridge_ports_have_no_link_local_address_and_ipv6_crosses_the_bridge(tmp_path: Path) -> None:
    path = tmp_path / "reuse.yaml"
    path.write_text(lab())
    vethlab("up", str(path), check=True)
    bridge = next(link["ifname"] for link in ip_json("link", "show", "type", "bridge"))
    ports = [link["ifname"] for link in ip_json("link", "show", "master", bridge)]
    assert len(ports) == 3
    for port in ports:
        assert [a for link in ip_json("-6", "addr", "show", "dev", port) for a in link.get("addr_info", []) if a] == [], port
    # the nodes' ends keep theirs, and answer over the bridge at once
    ends = {n: [a["local"] for link in ip_json("-n", n, "-6", "addr", "show", "scope", "link")
                for a in link.get("addr_info", []) if a] for n in ("n0", "n1")}
    assert all(len(v) == 1 and v[0].startswith("fe80:") for v in ends.values()), ends
    ifname = next(link["ifname"] for link in ip_json("-n", "n0", "link") if link["ifname"] != "lo")
    subprocess.run(["ip", "netns", "exec", "n0", "ping", "-6", "-c", "1", "-W", "2", f"{ends['n1'][0]}%{ifname}"],
                   check=True, capture_output=True)
    ours = [a for a in ip_json("-n", "n1", "-6", "addr", "show", "scope", "global")
            for a in a.get("addr_info", []) if a]
    assert ours, "n1 has its IPv6 address from subnet6"
    subprocess.run(["ip", "netns", "exec", "n0", "ping", "-6", "-c", "1", "-W", "2", ours[0]["local"]],
                   check=True, capture_output=True)
