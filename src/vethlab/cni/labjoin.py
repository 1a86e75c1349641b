"""Join-a-lab mode: `{"type": "vethlab", "lab": "LAB", "network": "NET"}` attaches
the container to network NET of the running lab LAB, as if it were one more member.

What a member gets, the container gets: a veth pair from the lab's bridge (in the
network's host node) into the container, an address from the lab's subnet that no
member and no other joined container holds, a default route via the network's
gateway (when it has one), the network's MTU, and a line in every lab node's
hosts file, so the lab's nodes reach it by name.  `vethlab status --lab LAB` lists
it as a node named after the container (K8S_POD_NAME, which Podman sets to the
container's name; else `c-` + the id's first 12 characters).  DEL undoes each of
those, and the lab is as before.

The lab's lock is held throughout (the same lock `up` and `down` take, bounded:
code 11 when it times out), and the attachments live in the lab's state directory
(`cni.json`): `vethlab down` of the lab forgets them with the rest.  The host end
is marked `vethlab-cni:lab:LAB`, not with the lab's own marker: a re-run `up` of
the lab must not take a runtime's container for an interface the file lost.

The lab's own commands know of them through labside.py: a re-run `up` keeps
their lines in the hosts files, the lab's IPAM never hands their addresses to a
member added later, and `down` removes their host ends and published ports (a
later DEL from the runtime then finds nothing, and succeeds).  Only bridge
networks can be joined (not macvlan)."""

from __future__ import annotations

import ipaddress
import os

from ..ownership import cni_marker
from . import link
from .config import NetConf
from .protocol import CONFLICT, INVALID_CONFIG, NO_ADDRESS, NOT_FOUND, STATE_FAILURE, UNKNOWN_CONTAINER, CniError, Env
from .records import lock_wait, read_json, write_json
from .result import Result

TYPE_CHECKING = False  # typing itself is not imported at run time: start-up cost (main.py)
if TYPE_CHECKING:
    from typing import Any

    from ..kernel import nl
    from ..state.store import LabState

RECORDS = "cni.json"


def marker(lab: str) -> str:
    return cni_marker("lab:" + lab)  # CNI network names hold no ':': never a network's marker


class LabNetwork:
    """What the lab's file and state say about network NET."""

    def __init__(self, lab: str, network: str) -> None:
        from ..state import store

        state = store.load(lab)
        if state is None:
            raise CniError(NOT_FOUND, f"lab {lab} does not exist (no state under {store.state_root()})")
        if not state.file:
            raise CniError(NOT_FOUND, f"lab {lab} was not built from a file; join-a-lab reads the network from it")
        from ..errors import ValidationError
        from ..model.desired import bridge_name
        from ..topology import load_lab

        try:
            spec = load_lab(state.file)
        except ValidationError as exc:
            raise CniError(NOT_FOUND, f"lab {lab}: its file {state.file} does not load: {exc}") from None
        net = next((n for n in spec.networks if n.name == network), None)
        if net is None:
            raise CniError(NOT_FOUND, f"lab {lab} has no network {network} (it has: "
                           f"{', '.join(n.name for n in spec.networks) or 'none'})")
        if net.driver != "bridge":
            raise CniError(INVALID_CONFIG, f"network {network} of lab {lab} is a {net.driver} network; containers "
                           "join bridge networks")
        subnet = state.allocation.get("subnet", {}).get(network)
        if not subnet:
            raise CniError(NOT_FOUND, f"network {network} of lab {lab} has no IPv4 subnet in the lab's state")
        self.lab = lab
        self.state: LabState = state
        self.name = network
        self.bridge = bridge_name(lab, net)
        self.host_node = net.host
        self.netns: str | None = state.nodes.get(net.host)
        self.subnet = ipaddress.ip_network(subnet)
        self.gateway = str(self.subnet.network_address + 1) if net.gateway and not net.internal else None
        self.mtu = net.mtu
        self.members = {ipaddress.ip_interface(a).ip for a in state.allocation.get("address", {}).get(network,
                                                                                                      {}).values()}

    def pick(self, taken: set[str]) -> str:
        """The first free address after the gateway: no member's, no joined container's."""
        used = set(self.members) | {ipaddress.ip_address(t) for t in taken}
        if self.gateway:
            used.add(ipaddress.ip_address(self.gateway))
        for ip in self.subnet.hosts():
            if ip not in used:
                return f"{ip}/{self.subnet.prefixlen}"
        raise CniError(NO_ADDRESS, f"network {self.name} of lab {self.lab}: no free address left in {self.subnet}")


class LabRecords:
    """STATE/LAB/cni.json, read and written under the lab's lock."""

    def __init__(self, lab: str) -> None:
        self.lab = lab

    def path(self) -> str:
        from ..state import store

        return os.path.join(store.lab_dir(self.lab), RECORDS)

    def _dir(self) -> tuple[int, str] | None:
        from ..state import fs, store

        root = fs.open_root(store.state_root(), create=False)
        if root is None:
            return None
        try:
            path = store.lab_dir(self.lab)
            fd = fs.open_dir(root, self.lab, path, False, f"the state directory of lab {self.lab}")
        finally:
            os.close(root)
        return None if fd is None else (fd, path)

    def load(self, strict: bool = True) -> dict[str, Any]:
        """The records.  strict: a damaged attachment is code 103 (ADD, DEL, CHECK
        must not guess); GC and status pass over it (GC says it at the end)."""
        where = self._dir()
        if where is None:
            return {"attachments": {}}
        fd, path = where
        try:
            data = read_json(fd, RECORDS, os.path.join(path, RECORDS)) or {"attachments": {}}
        finally:
            os.close(fd)
        if not isinstance(data.get("attachments"), dict):
            raise CniError(STATE_FAILURE, f"{self.path()}: `attachments` is not an object: remove the file")
        if strict:
            for key, record in data["attachments"].items():
                if not _sound(record):
                    raise CniError(STATE_FAILURE, f"{self.path()}: attachment {key} is damaged: GC with the "
                                   "valid attachments, or remove it from the file")
        return data

    def save(self, data: dict[str, Any]) -> None:
        where = self._dir()
        if where is None:
            return  # the lab went (`down`) meanwhile: nothing left to record against
        fd, path = where
        try:
            if data.get("attachments"):
                write_json(fd, RECORDS, os.path.join(path, RECORDS), data)
            else:  # the last container left: the lab's directory is as it was before the first came
                from ..state import fs

                fs.unlink(fd, RECORDS)
        finally:
            os.close(fd)


def _sound(record: Any) -> bool:
    return isinstance(record, dict) and all(isinstance(record.get(k), str) for k in (
        "containerID", "ifname", "netns", "node", "address", "hostVeth", "network"))


def _key(env: Env) -> str:
    return f"{env.container_id}/{env.ifname}"


def _node_name(env: Env, lab_nodes: set[str], joined: set[str]) -> str:
    from ..topology.naming import node_problem

    pod = env.args.get("K8S_POD_NAME", "")
    if pod and not node_problem(pod) and pod not in lab_nodes and pod not in joined:
        return pod
    return f"c-{env.container_id[:12]}"


def _lock(lab: str) -> Any:
    from ..state.lock import LabLock

    return LabLock(lab, wait=lock_wait(), say=False)


def _host_socket(netns: str | None) -> nl.NlSocket:
    from ..kernel import nl
    from ..kernel.netns import call_inside

    if netns is None:
        return nl.NlSocket()

    def open_raw() -> int:
        import _socket

        return _socket.socket(_socket.AF_NETLINK, _socket.SOCK_RAW, 0).detach()

    try:
        return nl.NlSocket(call_inside(netns, open_raw))
    except OSError as exc:
        raise CniError(NOT_FOUND, f"cannot enter the lab's namespace {netns}: {exc.strerror}") from None


def _hosts(net: LabNetwork, attachments: dict[str, Any], gone: list[dict[str, Any]] | None = None) -> None:
    """Every lab node's hosts file: the lab's entries, then one line per joined
    container (`gone`: records of containers just detached, whose lines go).  The
    lab's state learns the new digest: the hosts driver of the next `up` computes
    the same lines (labside.host_lines) and finds nothing to change."""
    from ..kernel import nodefiles
    from ..model.hosts import hosts_digest
    from ..ownership import marker as lab_marker
    from ..state import store
    from .labside import host_lines

    namespaces = [ns for ns in net.state.nodes.values() if ns]
    if not namespaces:
        return
    joined = set(host_lines(attachments)) | set(host_lines({str(i): r for i, r in enumerate(gone or [])}))
    entries = [e for e in _lab_entries(namespaces[0]) if e not in joined] + host_lines(attachments)
    digest = hosts_digest(entries)
    nodefiles.write_files(namespaces, entries, lab_marker(net.lab), digest)
    net.state.hosts_digest = digest
    store.save(net.state)


def _lab_entries(ns: str) -> list[tuple[str, str]]:
    """The entries of a node's hosts file (lines after the digest): the lab's own,
    then the joined containers' (the caller takes those out by address and name: a
    lab node may carry a joined container's name, never its address)."""
    from ..kernel import nodefiles

    out = []
    seen_digest = False
    try:
        with open(os.path.join(nodefiles.node_dir(ns), "hosts"), encoding="utf-8") as fh:
            for line in fh:
                if line.startswith(nodefiles.DIGEST_PREFIX):
                    seen_digest = True
                    continue
                words = line.split()
                if seen_digest and len(words) == 2:
                    out.append((words[0], words[1]))
    except OSError:
        return []
    return out


def add(conf: NetConf, env: Env) -> dict[str, Any]:
    assert conf.lab is not None and conf.network is not None
    ns_fd = link.open_netns(env.netns)
    try:
        with _lock(conf.lab):
            net = LabNetwork(conf.lab, conf.network)
            records = LabRecords(conf.lab)
            data = records.load()
            attachments: dict[str, Any] = data.setdefault("attachments", {})
            old = attachments.pop(_key(env), None)
            address = old["address"] if old else net.pick({a["address"].split("/")[0] for a in attachments.values()})
            name = old["node"] if old else _node_name(env, set(net.state.nodes), {a["node"] for a in
                                                                                  attachments.values()})
            host_name = link.host_veth_name(env.container_id, env.ifname)
            mark = marker(conf.lab)
            if conf.port_mappings and net.netns is None:
                from .ports import refuse_listened

                refuse_listened(conf.port_mappings)
            host = _host_socket(net.netns)
            made = published = saved = False
            try:
                bridge = link.get_link(host, net.bridge)
                if bridge is None or bridge.kind != "bridge":
                    raise CniError(NOT_FOUND, f"the bridge {net.bridge} of network {net.name} is missing: is lab "
                                   f"{conf.lab} up?")
                from ..ownership import marker as lab_marker

                if bridge.alias != lab_marker(conf.lab):  # a bridge of that name the lab did not make
                    raise CniError(CONFLICT, f"bridge {net.bridge} is not lab {conf.lab}'s (alias {bridge.alias!r}): "
                                   "refusing to attach a container to it")
                link.create_veth(host, host_name, env.ifname, ns_fd, net.mtu, mark)
                made = True
                port = link.port_up(host, host_name, bridge.index, False)
                routes = [{"dst": "0.0.0.0/0", "gw": net.gateway}] if net.gateway else []
                ctr = link.socket_in(ns_fd)
                try:
                    inner = link.configure_container(ctr, env.ifname, [address], routes)
                finally:
                    ctr.close()
                localnet = False
                if conf.port_mappings:
                    localnet = _publish(conf, env, net, address)
                    published = True
                attachments[_key(env)] = {"containerID": env.container_id, "ifname": env.ifname,
                                          "netns": env.netns, "node": name, "address": address,
                                          "cniNetwork": conf.name,
                                          "hostVeth": host_name, "network": net.name, "mac": inner.mac,
                                          "ports": bool(conf.port_mappings), "localnet": localnet}
                records.save(data)
                saved = True
                _hosts(net, attachments)
            except BaseException:
                _rollback(conf.lab, net, records, data, env, host, host_name, mark, made, published, saved)
                raise
            finally:
                host.close()
    finally:
        os.close(ns_fd)
    gw = {"gateway": net.gateway} if net.gateway else {}
    out = Result(interfaces=[{"name": bridge.ifname, "mac": bridge.mac}, {"name": port.ifname, "mac": port.mac},
                             {"name": env.ifname, "mac": inner.mac, "sandbox": env.netns}],
                 ips=[{"address": address, "interface": 2, **gw}], routes=routes, dns=conf.dns)
    return out.to_json(conf.version)


def _rollback(lab: str, net: LabNetwork, records: LabRecords, data: dict[str, Any], env: Env, host: nl.NlSocket,
              host_name: str, mark: str, made: bool, published: bool, saved: bool) -> None:
    """Undo a failed ADD in reverse, every step whatever the others do; the ADD's own
    error is the one reported."""
    steps = []
    if saved:
        def unsave() -> None:
            record = data["attachments"].pop(_key(env), None)
            records.save(data)
            _hosts(net, data["attachments"], [record] if record else [])
        steps.append(unsave)
    if published:
        steps.append(lambda: _unpublish(lab, net.name, _pub_key(lab, env)))
    if made:
        def unmake() -> None:
            link.delete_owned(host, host_name, mark)
        steps.append(unmake)
    for step in steps:
        try:
            step()
        except Exception:  # noqa: S110 - keep unwinding
            pass


def _pub_key(lab: str, env: Env) -> str:
    return f"lab:{lab}/{_key(env)}"


def _firewall_key(lab: str, network: str) -> str:
    return f"lab:{lab}:{network}"  # CNI network names hold no ':': never a plugin network's entry


def _publish(conf: NetConf, env: Env, net: LabNetwork, address: str) -> bool:
    """Port mappings of a joined container, in the plugin's own table (the lab's
    table is the lab's: its `up` rewrites it from the file).  True when it had to
    turn route_localnet on for the lab's bridge (DEL turns it off again)."""
    from . import ports
    from .protocol import UNSUPPORTED_FIELD

    if net.netns is not None:
        raise CniError(UNSUPPORTED_FIELD, f"runtimeConfig.portMappings: network {net.name} of lab {net.lab} has its "
                       f"bridge in node {net.host_node}, not in the host: ports are published from the host only")
    changed = False
    if any(m.host_ip in (None, "127.0.0.1") for m in conf.port_mappings):
        path = f"/proc/sys/net/ipv4/conf/{net.bridge}/route_localnet"
        with open(path) as fh:
            changed = fh.read().strip() == "0"
        if changed:
            link.set_sysctl(path, "1")
    key = _firewall_key(net.lab, net.name)
    ports.update(key, ports.network_entry(key, net.bridge, [str(net.subnet)], False), _pub_key(net.lab, env),
                 {"network": key, "ip4": address.split("/")[0], "ip6": None,
                  "mappings": [m.to_json() for m in conf.port_mappings]})
    return changed


def _localnet_off(net: LabNetwork, attachments: dict[str, Any]) -> None:
    """route_localnet back to 0 on the lab's bridge once no joined container that
    turned it on is left."""
    if not any(a.get("localnet") for a in attachments.values() if a["network"] == net.name):
        try:
            link.set_sysctl(f"/proc/sys/net/ipv4/conf/{net.bridge}/route_localnet", "0")
        except CniError:
            pass  # the bridge went with its lab


def _unpublish(lab: str, network: str, key: str) -> None:
    from . import ports
    from .records import peek_firewall

    seen = peek_firewall()
    if seen is None or key not in seen.get("publish", {}):
        return  # nothing published: no lock, no nft

    from .records import FirewallState

    with FirewallState() as state:
        left = [k for k, v in state.load().get("publish", {}).items()
                if v.get("network") == _firewall_key(lab, network) and k != key]
    ports.update(_firewall_key(lab, network), None, drop_keys=[key], drop_network=not left)


def delete(conf: NetConf, env: Env) -> None:
    """Detach; idempotent, and fine when the lab or the namespace is already gone."""
    assert conf.lab is not None and conf.network is not None
    from ..state import store

    host_name = link.host_veth_name(env.container_id, env.ifname)
    if store.load(conf.lab) is None:
        _delete_port(None, host_name, conf.lab)  # the lab went: the host end may still be in the host
        _unpublish(conf.lab, conf.network, _pub_key(conf.lab, env))  # and its ports, if it had any
        return
    with _lock(conf.lab):
        try:
            net: LabNetwork | None = LabNetwork(conf.lab, conf.network)
        except CniError:
            net = None  # the file changed or went: undo what the record says all the same
        records = LabRecords(conf.lab)
        data = records.load(strict=False)  # another container's damaged entry is GC's to say, not this DEL's
        attachments = data.setdefault("attachments", {})
        if _key(env) in attachments and not _sound(attachments[_key(env)]):
            raise CniError(STATE_FAILURE, f"{records.path()}: attachment {_key(env)} is damaged: remove it from "
                           "the file, then run DEL again")
        record = attachments.pop(_key(env), None)
        _delete_port(net.netns if net else None, record["hostVeth"] if record else host_name, conf.lab)
        if record is not None and record.get("ports"):
            _unpublish(conf.lab, record["network"], _pub_key(conf.lab, env))
            if record.get("localnet") and net is not None:
                _localnet_off(net, attachments)
        if record is not None:
            records.save(data)
            if net is not None:
                _hosts(net, attachments, [record])


def _delete_port(netns: str | None, host_name: str, lab: str) -> None:
    try:
        sock = _host_socket(netns)
    except CniError:
        return  # the namespace holding the bridge is gone, and the host end with it
    try:
        link.delete_owned(sock, host_name, marker(lab))
    finally:
        sock.close()


def check(conf: NetConf, env: Env) -> None:
    assert conf.lab is not None
    if conf.prev_result is None:
        raise CniError(INVALID_CONFIG, "prevResult: CHECK needs the result of ADD")
    prev = Result.from_json(conf.prev_result, "prevResult")
    record = LabRecords(conf.lab).load(strict=False)["attachments"].get(_key(env))
    if record is not None and not _sound(record):
        raise CniError(STATE_FAILURE, f"attachment {_key(env)} of lab {conf.lab} is damaged")
    if record is None:
        raise CniError(UNKNOWN_CONTAINER, f"container {env.container_id} ({env.ifname}) has not joined lab "
                       f"{conf.lab}")
    ctr = link.socket_in_netns(env.netns)
    try:
        inner = link.get_link(ctr, env.ifname)
        have = set(link.addresses(ctr, inner.index)) if inner else set()
    finally:
        ctr.close()
    from .protocol import CHECK_FAILED

    for ip in prev.ips:
        if ip["address"] not in have:
            raise CniError(CHECK_FAILED, f"{env.ifname} in the container lacks {ip['address']}")


def gc(conf: NetConf, env: Env) -> None:
    """Detach the containers of this config not in `cni.dev/valid-attachments`.
    Only this config's attachments are looked at (a runtime's GC lists the valid
    ones of one network config: containers joined through another stay).  Keeps
    going past errors (a damaged record is left, and said, at the end)."""
    assert conf.lab is not None
    raw = conf.raw.get("cni.dev/valid-attachments", [])
    valid = {f"{a.get('containerID')}/{a.get('ifname')}" for a in raw if isinstance(a, dict)} \
        if isinstance(raw, list) else set()
    errors: list[str] = []
    with _lock(conf.lab):
        records = LabRecords(conf.lab)
        data = records.load(strict=False)
        attachments = data.setdefault("attachments", {})
        try:
            net: LabNetwork | None = LabNetwork(conf.lab, conf.network or "")
        except CniError:
            net = None
        gone = []
        for key in [k for k, r in attachments.items() if k not in valid and _of_config(r, conf)]:
            record = attachments[key]
            try:
                if not _sound(record):  # what its key tells is undone all the same; the entry stays, said
                    _delete_port(net.netns if net else None, link.host_veth_name(*key.split("/", 1)), conf.lab)
                    _unpublish(conf.lab, conf.network or "", f"lab:{conf.lab}/{key}")
                    raise CniError(STATE_FAILURE, "damaged: remove it from the file")
                _delete_port(net.netns if net else None, record.get("hostVeth") or
                             link.host_veth_name(*key.split("/", 1)), conf.lab)
                if record.get("ports"):
                    _unpublish(conf.lab, record["network"], f"lab:{conf.lab}/{key}")
            except (CniError, KeyError, TypeError, ValueError, OSError) as exc:
                errors.append(f"attachment {key} in {records.path()}: {getattr(exc, 'details', exc)}")
                continue
            gone.append(attachments.pop(key))
        if net is not None and any(r.get("localnet") for r in gone):
            _localnet_off(net, attachments)
        if gone:
            records.save(data)
            if net is not None:
                _hosts(net, {k: r for k, r in attachments.items() if _sound(r)}, gone)
    if errors:
        from .protocol import KERNEL_FAILURE

        raise CniError(KERNEL_FAILURE, "GC finished with errors: " + "; ".join(errors))


def _of_config(record: Any, conf: NetConf) -> bool:
    """Was this attachment made through this network config?  (Records from before
    `cniNetwork` was kept: by the lab's network.)  A damaged one: yes, to be said."""
    if not isinstance(record, dict):
        return True
    if "cniNetwork" in record:
        return bool(record["cniNetwork"] == conf.name)
    return bool(record.get("network") == conf.network)


def status(conf: NetConf, env: Env) -> None:
    from .protocol import CANNOT_ADD

    assert conf.lab is not None and conf.network is not None
    try:
        net = LabNetwork(conf.lab, conf.network)
    except CniError as exc:
        raise CniError(CANNOT_ADD, exc.details) from None
    sock = _host_socket(net.netns)
    try:
        bridge = link.get_link(sock, net.bridge)
    finally:
        sock.close()
    if bridge is None:
        raise CniError(CANNOT_ADD, f"the bridge {net.bridge} of network {net.name} is missing")


def joined(lab: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """For `vethlab status --lab LAB`: (nodes, interfaces) of the joined containers,
    in the shapes lab_status uses."""
    try:
        attachments = {k: r for k, r in LabRecords(lab).load(strict=False)["attachments"].items() if _sound(r)}
    except CniError:
        return [], []
    if not attachments:
        return [], []
    try:
        net_host = {name: LabNetwork(lab, name) for name in {a["network"] for a in attachments.values()}}
    except CniError:
        net_host = {}
    nodes, views = [], []
    for record in attachments.values():
        netns_path = record["netns"]
        inner = None
        addresses: list[str] = []
        try:
            fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            fd = -1
        if fd >= 0:
            try:
                sock = link.socket_in(fd)
                try:
                    inner = link.get_link(sock, record["ifname"], stats=True)
                    addresses = link.addresses(sock, inner.index) if inner else []
                finally:
                    sock.close()
            except CniError:
                inner = None
            finally:
                os.close(fd)
        nodes.append({"name": record["node"], "netns": netns_path, "exists": fd >= 0,
                      "container": record["containerID"]})
        host_node = net_host[record["network"]].host_node if record["network"] in net_host else "host"
        if inner is not None:
            views.append({"name": record["ifname"], "node": record["node"],
                          "peer": f"{host_node}:{record['hostVeth']}", "addresses": addresses, "mtu": inner.mtu,
                          "admin_state": "up" if inner.up else "down", "operstate": inner.operstate,
                          "carrier": inner.carrier, "stats": inner.stats, "shaping": None})
    return nodes, views

