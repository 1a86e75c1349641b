"""ADD, DEL, CHECK, STATUS and GC for a network of the plugin's own (bridge mode).

ADD, under the network's lock: IPAM, bridge (+ gateway address), veth pair,
container addresses and routes, attachment record, firewall; anything that fails
half-way is undone in reverse (the lease released, the pair deleted) before the
error is reported.  DEL is idempotent and works from the record when the
container's namespace is gone (the host end dies with the namespace; the lease,
the record and the port rules are ours to remove, and they are).  GC removes
every attachment of the network not in `cni.dev/valid-attachments`, keeps going
past errors and reports them all at the end."""

from __future__ import annotations

import os

from ..ownership import cni_marker
from . import ipam, link, ports
from .config import NetConf
from .protocol import (
    CANNOT_ADD,
    CHECK_FAILED,
    INVALID_CONFIG,
    LIMITED_CONNECTIVITY,
    UNKNOWN_CONTAINER,
    CniError,
    Env,
)
from .records import NetworkState, attachment_name, lock_wait
from .result import Result

TYPE_CHECKING = False  # typing itself is not imported at run time: start-up cost (main.py)
if TYPE_CHECKING:
    from typing import Any


def _routes_for(result: Result, conf: NetConf) -> list[dict[str, Any]]:
    """The container's routes: IPAM's (a route without `gw` goes via the gateway of
    its family), plus a default route per family when isDefaultGateway."""
    gateways = {(6 if ":" in ip["gateway"] else 4): ip["gateway"] for ip in result.ips if ip.get("gateway")}
    routes = []
    for route in result.routes:
        family = 6 if ":" in route["dst"] else 4
        gw = route.get("gw") or gateways.get(family)
        routes.append({"dst": route["dst"], **({"gw": gw} if gw else {})})
    if conf.is_default_gateway:
        for family, gw in sorted(gateways.items()):
            dst = "0.0.0.0/0" if family == 4 else "::/0"
            if not any(r["dst"] == dst for r in routes):
                routes.append({"dst": dst, "gw": gw})
    return routes


def _gateway_cidrs(result: Result) -> list[str]:
    out = []
    for ip in result.ips:
        if ip.get("gateway"):
            out.append(f"{ip['gateway']}/{ip['address'].split('/')[1]}")
    return out


def _subnets(result: Result) -> list[str]:
    from . import addr

    return sorted({addr.subnet_text(*addr.parse_cidr(ip["address"])) for ip in result.ips})


def add(conf: NetConf, env: Env) -> dict[str, Any]:
    if not conf.ipam:
        raise CniError(INVALID_CONFIG, "ipam: missing (vethlab needs an address for the container: give "
                       "`ipam` host-local's `ranges`, or use `lab` + `network`)")
    if conf.port_mappings:
        ports.refuse_listened(conf.port_mappings)
    ns_fd = link.open_netns(env.netns)
    marker = cni_marker(conf.name)
    host_name = link.host_veth_name(env.container_id, env.ifname)
    undo: list[tuple[str, Any]] = []
    try:
        with NetworkState(conf.name, "ADD") as state:
            try:
                # the lease is asked for first and collected when the address is needed:
                # a delegated IPAM plugin runs while the bridge and the pair are made
                lease = ipam.Pending(conf.raw, env, lock_wait())
                undo.append(("lease", lease))
                from ..kernel import nl

                host = nl.NlSocket()
                bridge = link.ensure_bridge(host, conf.bridge, conf.mtu, marker, conf.promisc)
                link.create_veth(host, host_name, env.ifname, ns_fd, conf.mtu, marker)
                undo.append(("veth", host))
                port = link.port_up(host, host_name, bridge.index, conf.hairpin)
                ctr = link.socket_in(ns_fd)
                result, holder = lease.result()
                if conf.is_gateway:
                    link.refuse_overlap(host, bridge, _gateway_cidrs(result))
                    link.add_addresses(host, bridge.index, _gateway_cidrs(result), f"bridge {conf.bridge}")
                    link.flush(host)
                    link.await_in_use(host, _gateway_cidrs(result), f"bridge {conf.bridge}")
                routes = _routes_for(result, conf)
                inner = link.configure_container(ctr, env.ifname, [ip["address"] for ip in result.ips], routes)
                if conf.is_gateway:
                    link.enable_forwarding({6 if ":" in ip["address"] else 4 for ip in result.ips})
                record = {"containerID": env.container_id, "ifname": env.ifname, "netns": env.netns,
                          "hostVeth": host_name, "bridge": conf.bridge, "ips": result.ips, "routes": routes,
                          "ipam": holder, "ipamConf": conf.ipam, "mac": inner.mac,
                          "portMappings": [m.to_json() for m in conf.port_mappings]}
                state.save(record)
                undo.append(("record", state))
                _firewall_add(conf, env, result, bridge.ifname)
            except BaseException:
                _undo(undo, conf, env)
                raise
    finally:
        os.close(ns_fd)
    out = Result(interfaces=[{"name": bridge.ifname, "mac": bridge.mac}, {"name": port.ifname, "mac": port.mac},
                             {"name": env.ifname, "mac": inner.mac, "sandbox": env.netns}],
                 ips=[{**ip, "interface": 2} for ip in result.ips],
                 routes=result.routes + [r for r in routes if conf.is_default_gateway and r["dst"] in
                                         ("0.0.0.0/0", "::/0") and all(x["dst"] != r["dst"] for x in result.routes)],
                 dns=conf.dns or result.dns)
    return out.to_json(conf.version)


def _firewall_add(conf: NetConf, env: Env, result: Result, bridge: str) -> None:
    entry = ports.network_entry(conf.name, bridge, _subnets(result), conf.ip_masq)
    publish = None
    if conf.port_mappings:
        ip4 = next((ip["address"].split("/")[0] for ip in result.ips if ":" not in ip["address"]), None)
        ip6 = next((ip["address"].split("/")[0] for ip in result.ips if ":" in ip["address"]), None)
        publish = {"network": conf.name, "ip4": ip4, "ip6": ip6,
                   "mappings": [m.to_json() for m in conf.port_mappings]}
        if any(m.host_ip in (None, "127.0.0.1") for m in conf.port_mappings):
            link.set_sysctl(f"/proc/sys/net/ipv4/conf/{bridge}/route_localnet", "1")
    if ports.needs_update(conf.name, entry, publish is not None):
        ports.update(conf.name, entry, _key(env.container_id, env.ifname), publish)


def _key(container_id: str, ifname: str) -> str:
    return f"{container_id}/{ifname}"


def _undo(undo: list[tuple[str, Any]], conf: NetConf, env: Env) -> None:
    """Roll back a failed ADD in reverse; the original error is what gets reported."""
    for kind, what in reversed(undo):
        try:
            if kind == "record":
                what.remove(env.container_id, env.ifname)
            elif kind == "veth":
                link.delete_owned(what, link.host_veth_name(env.container_id, env.ifname), cni_marker(conf.name))
            elif kind == "lease":
                what.abandon()
                ipam.delete(conf.raw, env, what.holder, env.container_id, env.ifname, lock_wait())
        except Exception:  # noqa: S110 - keep unwinding; the first error is the one to report
            pass


def delete(conf: NetConf, env: Env) -> None:
    with NetworkState(conf.name, "DEL") as state:
        _remove(conf, env, state, env.container_id, env.ifname)


def _remove(conf: NetConf, env: Env, state: NetworkState, container_id: str, ifname: str) -> list[str]:
    """Everything of one attachment, each step whatever the others did; the errors."""
    from ..kernel import nl

    errors: list[str] = []
    record = state.load(container_id, ifname)
    host_name = record["hostVeth"] if record else link.host_veth_name(container_id, ifname)
    try:
        sock = nl.NlSocket()
        try:
            link.delete_owned(sock, host_name, cni_marker(conf.name))
        finally:
            sock.close()
    except CniError as exc:
        errors.append(exc.details)
    ipam_conf = dict(conf.raw)
    if record and record.get("ipamConf") and not conf.ipam:
        ipam_conf["ipam"] = record["ipamConf"]  # DEL with a config stripped of its ipam still frees the lease
    try:
        ipam.delete(ipam_conf, env, record.get("ipam") if record else None, container_id, ifname, lock_wait())
    except CniError as exc:
        errors.append(exc.details)
    if record and record.get("portMappings"):
        try:
            ports.update(conf.name, None, drop_keys=[_key(container_id, ifname)])
        except CniError as exc:
            errors.append(exc.details)
    if not errors:
        state.remove(container_id, ifname)
    return errors


def check(conf: NetConf, env: Env) -> None:
    if conf.prev_result is None:
        raise CniError(INVALID_CONFIG, "prevResult: CHECK needs the result of ADD")
    prev = Result.from_json(conf.prev_result, "prevResult")
    with NetworkState(conf.name, "CHECK") as state:
        record = state.load(env.container_id, env.ifname)
    if record is None:
        raise CniError(UNKNOWN_CONTAINER, f"no attachment of container {env.container_id} ({env.ifname}) "
                       f"on network {conf.name}")
    from ..kernel import nl

    marker = cni_marker(conf.name)
    host = nl.NlSocket()
    try:
        bridge = link.get_link(host, conf.bridge)
        if bridge is None or bridge.alias != marker:
            raise CniError(CHECK_FAILED, f"bridge {conf.bridge} is missing or not this network's")
        port = link.get_link(host, record["hostVeth"])
        if port is None or port.alias != marker or port.master != bridge.index or not port.up:
            raise CniError(CHECK_FAILED, f"host end {record['hostVeth']} is missing, down or off the bridge")
    finally:
        host.close()
    ctr = link.socket_in_netns(env.netns)
    try:
        inner = link.get_link(ctr, env.ifname)
        if inner is None or not inner.up:
            raise CniError(CHECK_FAILED, f"{env.ifname} is missing or down in the container")
        have = set(link.addresses(ctr, inner.index))
    finally:
        ctr.close()
    for ip in prev.ips:
        if ip["address"] not in have:
            raise CniError(CHECK_FAILED, f"{env.ifname} in the container lacks {ip['address']} "
                           f"(has {', '.join(sorted(have)) or 'none'})")
    for want in prev.interfaces:
        if want.get("sandbox") and want.get("name") == env.ifname and want.get("mac") and \
                want["mac"].lower() != inner.mac:
            raise CniError(CHECK_FAILED, f"{env.ifname} has MAC {inner.mac}, prevResult says {want['mac']}")
    plugin = ipam.which(conf.ipam, env) if conf.ipam else None
    if plugin is not None:
        ipam.delegate(plugin, "CHECK", conf.raw, env)
    elif conf.ipam:
        from . import hostlocal

        held = hostlocal.check(conf.ipam, conf.name, env.container_id, env.ifname, lock_wait())
        leased = {ip["address"].split("/")[0] for ip in prev.ips}
        if not leased <= set(held):
            raise CniError(CHECK_FAILED, f"IPAM holds {sorted(held)} for this attachment, prevResult has "
                           f"{sorted(leased)}")


def gc(conf: NetConf, env: Env) -> None:
    """Remove attachments, rules and leases of this network not in the valid list."""
    raw = conf.raw.get("cni.dev/valid-attachments", [])
    if not isinstance(raw, list) or not all(isinstance(a, dict) for a in raw):
        raise CniError(INVALID_CONFIG, "cni.dev/valid-attachments: not a list of {containerID, ifname}")
    valid = {(str(a.get("containerID", "")), str(a.get("ifname", ""))) for a in raw}
    errors: list[str] = []
    with NetworkState(conf.name, "GC") as state:
        damaged: list[str] = []
        records = state.all(damaged)
        for record in records:
            if (record["containerID"], record["ifname"]) not in valid:
                try:
                    errors += _remove(conf, env, state, record["containerID"], record["ifname"])
                except CniError as exc:
                    errors.append(exc.details)
        # a damaged record of an attachment not valid: what it would say is swept below
        # (host end, rules, lease); the file stays, and is said
        valid_names = {attachment_name(cid, ifname) for cid, ifname in valid}
        errors += [f"{state.path}/{name} is damaged: remove it" for name in damaged if name not in valid_names]
        # host ends are a function of the attachment: a valid one keeps its own even
        # when its record is damaged
        kept = {record["hostVeth"] for record in records if (record["containerID"], record["ifname"]) in valid}
        kept |= {link.host_veth_name(cid, ifname) for cid, ifname in valid}
        errors += _sweep_ports(conf, kept)
        errors += _sweep_rules(conf, valid)
        errors += _gc_ipam(conf, env, valid)
        if not state.all() and not damaged and not any(
                (r["containerID"], r["ifname"]) in valid for r in records):
            try:
                ports.update(conf.name, None, drop_network=True)
            except CniError as exc:
                errors.append(exc.details)
    if errors:
        from .protocol import KERNEL_FAILURE

        raise CniError(KERNEL_FAILURE, "GC finished with errors: " + "; ".join(errors))


def _sweep_rules(conf: NetConf, valid: set[tuple[str, str]]) -> list[str]:
    """Published ports of this network whose attachment is not valid (its record
    damaged or lost): dropped."""
    from .records import peek_firewall

    seen = peek_firewall()
    stale = [key for key, item in (seen or {}).get("publish", {}).items()
             if isinstance(item, dict) and item.get("network") == conf.name
             and tuple(key.split("/", 1)) not in valid]
    if not stale:
        return []
    try:
        ports.update(conf.name, None, drop_keys=stale)
    except CniError as exc:
        return [exc.details]
    return []


def _sweep_ports(conf: NetConf, kept: set[str]) -> list[str]:
    """Host ends marked as this network's with no valid record (an ADD killed before
    it saved one): deleted."""
    from ..kernel import nl

    marker = cni_marker(conf.name)
    errors = []
    sock = nl.NlSocket()
    try:
        for facts in link.links(sock):
            if facts.alias == marker and facts.kind == "veth" and facts.ifname not in kept:
                try:
                    link.delete_owned(sock, facts.ifname, marker)
                except CniError as exc:
                    errors.append(exc.details)
    finally:
        sock.close()
    return errors


def _gc_ipam(conf: NetConf, env: Env, valid: set[tuple[str, str]]) -> list[str]:
    """Leases of attachments not valid: our own allocator's directly; a delegate that
    speaks 1.1.0 gets GC forwarded (as the reference bridge plugin does), and where
    it does not (the reference host-local before plugins 1.5) each stale lease of
    its host-local-compatible store is released by a DEL."""
    if not conf.ipam:
        return []
    from . import hostlocal

    errors: list[str] = []
    try:
        plugin = ipam.which(conf.ipam, env)
    except CniError as exc:
        return [exc.details]
    if plugin is None:
        try:
            hostlocal.gc(conf.ipam, conf.name, valid, lock_wait())
        except CniError as exc:
            errors.append(exc.details)
        return errors
    if ipam.speaks(plugin, conf.version, env):
        try:
            ipam.run(plugin, "GC", conf.raw, env)
        except CniError as exc:
            errors.append(exc.details)
        return errors
    # a delegate that predates GC: release each stale lease of its host-local store by DEL
    if conf.ipam.get("type") != "host-local":
        return errors
    try:
        stale = {who for who in hostlocal.leases(conf.ipam, conf.name, lock_wait()).values() if who not in valid}
    except CniError as exc:
        return [exc.details]
    for cid, ifname in sorted(stale):
        if not cid:
            continue
        try:
            ipam.delegate(plugin, "DEL", conf.raw, env, cid, ifname or env.ifname or "eth0")
        except CniError as exc:
            errors.append(exc.details)
    return errors


def _ipam_status(plugin: str, conf: NetConf, env: Env) -> None:
    """STATUS forwarded to the delegated IPAM plugin, as the reference bridge plugin
    does (its 50 or 51 is ours; any other failure means it cannot lease now: 50)."""
    try:
        ipam.run(plugin, "STATUS", conf.raw, env)
    except CniError as exc:
        code = exc.code if exc.code in (CANNOT_ADD, LIMITED_CONNECTIVITY) else CANNOT_ADD
        raise CniError(code, exc.details) from None


def status(conf: NetConf, env: Env) -> None:
    """Code 50 when an ADD could not work now, 51 when existing containers may have
    limited connectivity; success otherwise."""
    from .records import _cni_dir

    try:
        fd, _ = _cni_dir()
        os.close(fd)
    except CniError as exc:
        raise CniError(CANNOT_ADD, f"the state directory is unusable: {exc.details}") from None
    if conf.ipam:
        try:
            plugin = ipam.which(conf.ipam, env)
        except CniError as exc:
            raise CniError(CANNOT_ADD, exc.details) from None
        if plugin is not None and ipam.speaks(plugin, conf.version, env):
            _ipam_status(plugin, conf, env)
    if conf.ip_masq or conf.raw.get("capabilities", {}).get("portMappings"):
        import shutil

        if not (shutil.which("nft") or os.path.exists("/usr/sbin/nft")):
            raise CniError(CANNOT_ADD, "nft (package nftables) is missing: ipMasq and port mappings need it")
    from ..kernel import nl

    sock = nl.NlSocket()
    try:
        bridge = link.get_link(sock, conf.bridge)
    finally:
        sock.close()
    if bridge is not None and bridge.alias != cni_marker(conf.name):
        raise CniError(CANNOT_ADD, f"bridge {conf.bridge} exists and is not this network's")
    if bridge is not None and not bridge.up:
        raise CniError(LIMITED_CONNECTIVITY, f"bridge {conf.bridge} is down")
    if conf.is_gateway and bridge is not None:
        try:
            with open("/proc/sys/net/ipv4/ip_forward") as fh:
                forwarding = fh.read().strip() == "1"
        except OSError:
            forwarding = True
        if not forwarding:
            raise CniError(LIMITED_CONNECTIVITY, "net.ipv4.ip_forward is 0: containers cannot reach beyond the host")
