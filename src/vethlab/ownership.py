"""The ownership marker: the only place that writes or reads it.

Every interface vethlab creates carries the alias `vethlab:LAB`; every namespace it
creates carries the same alias on its `lo` (a namespace has no attribute of its own
to mark, and `lo` is born with it and dies with it).  Routes vethlab adds carry the
route protocol ROUTE_PROTO, so they are told apart from the admin's even in the
host namespace.  `clean` finds leftovers by these markers, never by name patterns.

Anyone may set an alias or name a file under /run/netns, so a marker is read
through topology.naming: one carrying a name vethlab could not have written
(`vethlab:../../x`) is not a marker, and is never acted on as a lab or a path.
"""

from __future__ import annotations


def lab_problem(name: object) -> str | None:
    # topology.naming imported on use: it imports `re`, and the CNI plugin, which needs
    # only cni_marker from here, must start without it (cni/jsonio.py says why)
    from .topology.naming import lab_problem as problem

    return problem(name)


def netns_problem(name: object) -> str | None:
    from .topology.naming import netns_problem as problem

    return problem(name)

PREFIX = "vethlab:"
#: a namespace file is born as /run/netns/.vethlab:LAB:NAME (hard-linked to NAME
#: before it is mounted), so a file left dead by a crash mid-creation is traceable
NETNS_TAG_PREFIX = "." + PREFIX
#: rtm_protocol for routes vethlab adds (unassigned in /etc/iproute2/rt_protos).
ROUTE_PROTO = 118


def marker(lab: str) -> str:
    return PREFIX + lab


def lab_of(alias: str | None) -> str | None:
    """The lab an alias marks, or None when the object is not vethlab's."""
    if alias and alias.startswith(PREFIX) and not lab_problem(alias[len(PREFIX):]):
        return alias[len(PREFIX):]
    return None


def table_name(lab: str) -> str:
    """The lab's nftables table, `vethlab_LAB` ('-' becomes '_': lab names have no
    '_', so it stays unique): the table's name is its marker."""
    return "vethlab_" + lab.replace("-", "_")


def lab_of_table(name: str) -> str | None:
    """The lab a firewall table is named for, or None.  A name alone proves nothing
    (anyone can make a table `vethlab_x`): ownership is `table_owner`'s job."""
    lab = name[len("vethlab_"):].replace("_", "-") if name.startswith("vethlab_") else None
    return lab if lab and not lab_problem(lab) else None


def table_marker(lab: str) -> str:
    """The empty regular chain every table of the lab carries, its proof of ownership.

    nft 1.0.6 keeps no table or chain comment in its JSON (measured: a `comment` given
    in a JSON batch is dropped, and `nft -j list` never shows one made in text), so the
    mark is a chain's name.  It stays a plain identifier (no ':' or '='): `nft list
    ruleset > f; nft -f f`, as admins and nftables.service save rulesets, must re-read it."""
    return "owner-vethlab-" + lab


_LEGACY_CHAINS = {"postrouting", "prerouting", "output", "forward"}


def _is_digest_chain(name: str) -> bool:
    """`v-` + 16 hex digits (firewall.py's ruleset digest chain)."""
    return len(name) == 18 and name.startswith("v-") and all(c in "0123456789abcdef" for c in name[2:])


def table_owner(table: str, chains: list[str]) -> str | None:
    """The lab that made `table` (its name and its marker chain agree), or None.

    A table an older vethlab made, before the marker chain, is recognised by its
    shape: our four chains at most plus exactly one ruleset-digest chain `v-` + 16
    hex digits (firewall.py), nothing else.  Refusing it would strand, in the host's
    ruleset, the NAT rules of every lab built before the upgrade."""
    lab = lab_of_table(table)
    if lab is None:
        return None
    if table_marker(lab) in chains:
        return lab
    digests = [c for c in chains if _is_digest_chain(c)]
    return lab if len(digests) == 1 and set(chains) - set(digests) <= _LEGACY_CHAINS else None


#: /etc/netns/NODE_DIR_MARKER + NODE holds `vethlab:LAB DEV:INODE:GENERATION` for a directory
#: /etc/netns/NODE vethlab made.  Beside it, not in it: `ip netns exec` bind-mounts
#: every entry of the directory over /etc and complains of any /etc lacks.
NODE_DIR_MARKER = ".vethlab-owner."
#: what a directory written by a vethlab from before these markers reads as: vethlab's
#: own files and nothing else, of no known lab; adopted by the next lab that writes it
LEGACY_NODE_DIR = "vethlab-legacy"
#: temporary files and directories of a lab in /etc/netns are named TEMP_PREFIX + LAB + "."
TEMP_PREFIX = ".vethlab-tmp."


def temp_prefix(lab: str) -> str:
    """The name prefix of a lab's temporary entries in /etc/netns: up, down and clean
    find a killed run's leftovers by it (lab names hold no '.', so it is unambiguous)."""
    return f"{TEMP_PREFIX}{lab}."


def lab_of_temp(filename: str) -> str | None:
    if not filename.startswith(TEMP_PREFIX):
        return None
    lab = filename[len(TEMP_PREFIX):].split(".", 1)[0]
    return lab if lab and not lab_problem(lab) else None


def netns_tag(lab: str, netns: str) -> str:
    """The marker file name a lab's namespace file is born under."""
    return birth_tag(marker(lab), netns)


def birth_tag(mark: str, netns: str) -> str:
    """`netns_tag` from the lab's marker (what the kernel layer is given)."""
    return f".{mark}:{netns}"


def temp_prefix_of(mark: str) -> str:
    """`temp_prefix` from the lab's marker (what the kernel layer is given)."""
    return temp_prefix(lab_of(mark) or "")


def lab_of_node_entry(mark: str | None, filename: str) -> str | None:
    """The lab an entry of /etc/netns that `NodeFiles.node_temp_files` listed belongs
    to: a marker file's `mark`, else the temporary name's."""
    return lab_of(mark) if mark is not None else lab_of_temp(filename)


def parse_netns_tag(filename: str) -> tuple[str, str] | None:
    """(lab, netns) of a marker file name, or None."""
    if not filename.startswith(NETNS_TAG_PREFIX):
        return None
    lab, sep, netns = filename[len(NETNS_TAG_PREFIX):].partition(":")
    return (lab, netns) if sep and not lab_problem(lab) and not netns_problem(netns) else None


#: interfaces the CNI plugin makes carry `vethlab-cni:NETWORK` (a bridge and the host
#: ends of its containers' veths), or `vethlab-cni:LAB` for a container joined to a
#: lab's network: not `vethlab:` — `clean` and a lab's `up` must never take a
#: runtime's containers for leftovers of a lab and remove them
CNI_PREFIX = "vethlab-cni:"


def cni_marker(network: str) -> str:
    return CNI_PREFIX + network


def cni_network_of(alias: str | None) -> str | None:
    return alias[len(CNI_PREFIX):] or None if alias and alias.startswith(CNI_PREFIX) else None
