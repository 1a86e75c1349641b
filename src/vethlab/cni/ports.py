"""NAT and published ports (`runtimeConfig.portMappings`) in vethlab's own
nftables table, `inet vethlab-cni` — never iptables-nft's tables, and no
`portmap` plugin needed.

The rules are the ones lab networks use (model/firewall.py): masquerade a
network's subnet leaving by another interface (ipMasq); DNAT a published port for
`fib daddr type local` in prerouting (from outside) and output (from the host,
127.0.0.1 included: route_localnet on the bridge), and masquerade DNAT-ed traffic
coming back into the bridge (hairpin).  One table holds every CNI network of the
host, each network's rules computed from .cni/.firewall.json, and it is rewritten
whole in one atomic `nft -j -f -` batch under the firewall lock, so concurrent
ADDs on several networks never lose each other's rules, and several networks
with ipMasq each keep theirs (the reference plugin's nftables backend keeps
only the last subnet's).

ADD pays for nft only when the table must change: the first container of an
ipMasq network, or a container with port mappings.  The table carries the empty
chain `owner-vethlab-cni`, its proof of ownership: a table of that name without
it is someone else's and is never replaced or deleted."""

from __future__ import annotations

from .jsonio import dumps
from .protocol import CONFLICT, KERNEL_FAILURE, CniError
from .records import FirewallState, peek_firewall

TYPE_CHECKING = False  # typing itself is not imported at run time: start-up cost (main.py)
if TYPE_CHECKING:
    from typing import Any

    from .config import PortMapping

TABLE = "vethlab-cni"
OWNER_CHAIN = "owner-vethlab-cni"


def network_entry(name: str, bridge: str, subnets: list[str], nat: bool) -> dict[str, Any]:
    return {"bridge": bridge, "subnets": sorted(subnets), "nat": nat}


def needs_update(network: str, entry: dict[str, Any], publish: bool) -> bool:
    """Must this ADD touch the table?  (read without the lock: a stale "no" is
    impossible, since entries only change under the network's own lock)."""
    if publish:
        return True
    if not entry["nat"]:
        return False
    have = peek_firewall()
    return have is None or have.get("networks", {}).get(network) != entry


def update(network: str, entry: dict[str, Any] | None, key: str | None = None,
           publish: dict[str, Any] | None = None, drop_keys: list[str] | None = None,
           drop_network: bool = False) -> None:
    """Record the change under the firewall lock and rewrite the table if its rules changed."""
    with FirewallState() as state:
        data = state.load()
        before = _digest(data)
        if entry is not None:
            data["networks"][network] = entry
        if drop_network:
            data["networks"].pop(network, None)
        if key is not None and publish is not None:
            data["publish"][key] = publish
        for k in drop_keys or []:
            data["publish"].pop(k, None)
        after = _digest(data)
        if after != before or data.get("digest") != after:
            apply(data, bool(data.get("digest")))
            data["digest"] = after
        state.save(data)


def _digest(data: dict[str, Any]) -> str:
    from hashlib import sha256

    return sha256(dumps(_rules(data), sort_keys=True).encode()).hexdigest()[:16]


def _networks(data: dict[str, Any]) -> list[Any]:
    from ..model.desired import NatNetwork
    from ..topology.schema import PublishSpec

    out = []
    for name, net in sorted(data.get("networks", {}).items()):
        pubs = []
        for item in data.get("publish", {}).values():
            if item.get("network") != name:
                continue
            for m in item.get("mappings", []):
                pubs.append((PublishSpec(m["hostPort"], m["containerPort"], m["protocol"], m.get("hostIP")),
                             item.get("ip4"), item.get("ip6")))
        sub4 = next((s for s in net["subnets"] if ":" not in s), None)
        sub6 = next((s for s in net["subnets"] if ":" in s), None)
        out.append(NatNetwork(name, net["bridge"], sub4, sub6, net["nat"], False, False, tuple(pubs)))
    return out


def _rules(data: dict[str, Any]) -> dict[str, list[list[dict[str, Any]]]]:
    from ..model.firewall import rules

    return rules(_networks(data))


def batch(data: dict[str, Any], exists: bool) -> dict[str, Any]:
    from ..model.firewall import table_batch

    chains = _rules(data)
    if not any(chains.values()):
        return {"nftables": [{"delete": {"table": {"family": "inet", "name": TABLE}}}]} if exists else {"nftables": []}
    return table_batch(TABLE, exists, [OWNER_CHAIN], {chain: rules for chain, rules in chains.items() if rules})


def _owned() -> bool:
    """True: our table is there; False: none; a foreign one of our name: a conflict."""
    from ..kernel import nftables

    have = nftables.chains(None, TABLE)
    if have is None:
        return False
    if OWNER_CHAIN not in have:
        raise CniError(CONFLICT, f"an nftables table inet {TABLE} exists and is not vethlab's: remove or rename it")
    return True


def apply(data: dict[str, Any], recorded: bool) -> None:
    """Make the table hold `data`'s rules.  `recorded`: our state says the table is
    there (no `nft list` needed to know it); otherwise it is created, and only an
    existing table that carries our owner chain is replaced.  If the state was
    wrong (the table removed behind our back, or made by a run whose state was
    lost), the kernel is asked once and the batch redone accordingly."""
    from ..errors import VethlabError
    from ..kernel import nftables

    what = f"update nftables table inet {TABLE}"
    try:
        cmds = batch(data, recorded)
        if cmds["nftables"]:
            nftables.apply(None, cmds, what)
        return
    except VethlabError:
        pass
    exists = _owned()
    try:
        cmds = batch(data, exists)
        if cmds["nftables"]:
            nftables.apply(None, cmds, what)
    except VethlabError as exc:
        raise CniError(KERNEL_FAILURE, str(exc)) from None


def delete_table() -> None:
    """Remove the table if it is ours (GC of the last network)."""
    if _owned():
        apply({"networks": {}, "publish": {}}, True)


def refuse_listened(mappings: list[PortMapping]) -> None:
    """A host port a process of the host namespace listens on is not published: the
    DNAT would silently take its traffic (from outside and from the host itself) —
    taking over what vethlab did not create.  Labs refuse it too (kernel/listeners.py);
    code 101, called before anything is built."""
    from ..kernel.listeners import listeners

    wild = ("0.0.0.0", "::")
    found = listeners()
    for m in mappings:
        for s in found:
            if s.port == m.host_port and s.protocol == m.protocol and (
                    m.host_ip in (None, *wild) or s.address in wild or s.address == m.host_ip):
                raise CniError(CONFLICT, f"host port {m.host_port}/{m.protocol} is already in use: a process of the "
                                         f"host namespace listens on {s.address}:{s.port}; publishing it would take "
                                         "its traffic")
