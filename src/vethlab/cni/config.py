"""The network configuration: the reference `bridge` plugin's keys, checked.

Keys (all optional but `cniVersion`, `name`, `type`): bridge, isGateway,
isDefaultGateway, ipMasq, mtu, hairpinMode, promiscMode, ipam (host-local's:
ranges, routes, dataDir, subnet...), dns, `runtimeConfig.portMappings` (the
`portMappings` capability), `prevResult`.  Join-a-lab mode is `lab` + `network`.
Keys the runtime or other plugins add are ignored, as the spec asks; keys of the
bridge plugin this one cannot honour (vlan filtering: the kernel here lacks it)
are refused with code 2, never silently dropped.  A wrong type or value is code 7,
naming the field.
"""

from __future__ import annotations

from . import addr
from .protocol import INVALID_CONFIG, UNSUPPORTED_FIELD, CniError, json_object, plain_name

TYPE_CHECKING = False  # typing itself is not imported at run time: start-up cost (main.py)
if TYPE_CHECKING:
    from typing import Any

DEFAULT_BRIDGE = "cni0"
#: bridge-plugin keys with no equivalent here, and the value that is harmless
UNSUPPORTED = {"vlan": 0, "vlanTrunk": None, "preserveDefaultVlan": None, "macspoofchk": False}


class PortMapping:
    """One `runtimeConfig.portMappings` entry: hostPort -> containerPort/protocol."""

    def __init__(self, host_port: int, container_port: int, protocol: str, host_ip: str | None) -> None:
        self.host_port = host_port
        self.container_port = container_port
        self.protocol = protocol
        self.host_ip = host_ip

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"hostPort": self.host_port, "containerPort": self.container_port,
                               "protocol": self.protocol}
        if self.host_ip:
            out["hostIP"] = self.host_ip
        return out

    @classmethod
    def from_json(cls, item: Any, where: str) -> PortMapping:
        item = json_object(item, INVALID_CONFIG, where)
        host, cont = item.get("hostPort"), item.get("containerPort")
        for key, value in (("hostPort", host), ("containerPort", cont)):
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
                raise CniError(INVALID_CONFIG, f"{where}.{key}: {value!r} is not a port (1-65535)")
        proto = str(item.get("protocol") or "tcp").lower()
        if proto not in ("tcp", "udp", "sctp"):
            raise CniError(INVALID_CONFIG, f"{where}.protocol: {proto!r} is not tcp, udp or sctp")
        host_ip = item.get("hostIP") or None
        if host_ip is not None:
            try:
                version, value = addr.parse(host_ip)
            except ValueError:
                raise CniError(INVALID_CONFIG, f"{where}.hostIP: {host_ip!r} is not an IP address") from None
            if version != 4:
                raise CniError(UNSUPPORTED_FIELD, f"{where}.hostIP: {host_ip} (only IPv4 host addresses are "
                               "published by address; leave hostIP empty for every address)")
            host_ip = None if value == 0 else addr.text(version, value)
        assert isinstance(host, int) and isinstance(cont, int)
        return cls(host, cont, proto, host_ip)


class NetConf:
    """The checked configuration of one invocation."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw
        self.version: str = raw.get("cniVersion", "")
        self.name: str = _name(raw)
        self.type: str = _str(raw, "type", "")
        self.lab: str | None = raw.get("lab")
        self.network: str | None = raw.get("network")
        self.bridge: str = _str(raw, "bridge", DEFAULT_BRIDGE)
        self.is_default_gateway = _bool(raw, "isDefaultGateway")
        self.is_gateway = _bool(raw, "isGateway") or self.is_default_gateway
        self.ip_masq = _bool(raw, "ipMasq")
        self.hairpin = _bool(raw, "hairpinMode")
        self.promisc = _bool(raw, "promiscMode")
        mtu = raw.get("mtu", 0)
        if not isinstance(mtu, int) or isinstance(mtu, bool) or (mtu and not 68 <= mtu <= 65535):
            raise CniError(INVALID_CONFIG, f"mtu: {mtu!r} is not an MTU (68-65535)")
        self.mtu: int | None = mtu or None
        ipam = json_object(raw.get("ipam", {}), INVALID_CONFIG, "ipam")
        if ipam and not isinstance(ipam.get("type"), str):
            raise CniError(INVALID_CONFIG, "ipam.type: missing or not a string")
        self.ipam: dict[str, Any] = ipam
        self.dns: dict[str, Any] = json_object(raw.get("dns", {}), INVALID_CONFIG, "dns")
        prev = raw.get("prevResult")
        self.prev_result: dict[str, Any] | None = None if prev is None else json_object(prev, INVALID_CONFIG,
                                                                                         "prevResult")
        runtime = json_object(raw.get("runtimeConfig", {}), INVALID_CONFIG, "runtimeConfig")
        self.runtime: dict[str, Any] = runtime
        maps = runtime.get("portMappings") or []
        if not isinstance(maps, list):
            raise CniError(INVALID_CONFIG, "runtimeConfig.portMappings: not a list")
        self.port_mappings = [PortMapping.from_json(m, f"runtimeConfig.portMappings[{i}]") for i, m in enumerate(maps)]
        for key, harmless in UNSUPPORTED.items():
            if key in raw and raw[key] not in (harmless, None, [], False):
                raise CniError(UNSUPPORTED_FIELD, f"{key}: {raw[key]!r} is not supported by vethlab (this kernel "
                               "has no bridge VLAN filtering); remove the key")
        if self.lab is not None or self.network is not None:
            self._check_lab()
        else:
            _ifname(self.bridge, "bridge")

    def _check_lab(self) -> None:
        from ..topology.naming import lab_problem, node_problem

        if not isinstance(self.lab, str) or lab_problem(self.lab):
            raise CniError(INVALID_CONFIG, f"lab: {self.lab!r} is not a lab name")
        if not isinstance(self.network, str) or node_problem(self.network):
            raise CniError(INVALID_CONFIG, f"network: {self.network!r} is not a network name (join-a-lab mode "
                           "needs both `lab` and `network`)")
        for key in ("bridge", "ipam", "isGateway", "ipMasq"):
            if key in self.raw:
                raise CniError(INVALID_CONFIG, f"{key}: not allowed with `lab`: the lab's file decides the "
                               "network's bridge, addresses and NAT")


def _name(raw: dict[str, Any]) -> str:
    name = raw.get("name")
    if not isinstance(name, str) or not plain_name(name, "_.-") or len(name) > 128:
        raise CniError(INVALID_CONFIG, f"name: {name!r} is not a network name (letters, digits, '_', '.', '-')")
    if name.endswith(".lock"):  # NAME.lock is network NAME's lock file (records.py)
        raise CniError(INVALID_CONFIG, f"name: {name!r} cannot end in '.lock' (vethlab keeps each network's lock "
                                       "under that name)")
    return name


def _str(raw: dict[str, Any], key: str, default: str) -> str:
    value = raw.get(key, default)
    if not isinstance(value, str):
        raise CniError(INVALID_CONFIG, f"{key}: {value!r} is not a string")
    return value or default


def _bool(raw: dict[str, Any], key: str) -> bool:
    value = raw.get(key, False)
    if not isinstance(value, bool):
        raise CniError(INVALID_CONFIG, f"{key}: {value!r} is not true or false")
    return value


def _ifname(name: str, key: str) -> None:
    if not name or len(name.encode()) > 15 or name in (".", "..") or any(c in "/:" or c.isspace() for c in name):
        raise CniError(INVALID_CONFIG, f"{key}: {name!r} is not an interface name (at most 15 bytes)")
