"""The result document (the spec's "Success" section), read and written per version.

1.0.0 and 1.1.0 share one shape; 0.3.0-0.4.0 add `version` ("4"/"6") to each IP.
The IPAM plugin's result and a runtime's `prevResult` are read in any of these
shapes, so a delegate or a runtime speaking an older version still works."""

from __future__ import annotations

from . import addr
from .protocol import DECODING_FAILURE, CniError, json_object, version_key

TYPE_CHECKING = False  # typing itself is not imported at run time: start-up cost (main.py)
if TYPE_CHECKING:
    from typing import Any


class Result:
    def __init__(self, interfaces: list[dict[str, Any]] | None = None, ips: list[dict[str, Any]] | None = None,
                 routes: list[dict[str, Any]] | None = None, dns: dict[str, Any] | None = None) -> None:
        self.interfaces = interfaces or []
        self.ips = ips or []
        self.routes = routes or []
        self.dns = dns or {}

    def to_json(self, version: str) -> dict[str, Any]:
        old = version_key(version) < (1, 0, 0)
        ips = []
        for ip in self.ips:
            item: dict[str, Any] = {}
            if old:
                item["version"] = "6" if ":" in ip["address"] else "4"
            if ip.get("interface") is not None:
                item["interface"] = ip["interface"]
            item["address"] = ip["address"]
            if ip.get("gateway"):
                item["gateway"] = ip["gateway"]
            ips.append(item)
        out: dict[str, Any] = {"cniVersion": version}
        if self.interfaces:
            out["interfaces"] = self.interfaces
        if ips:
            out["ips"] = ips
        if self.routes:
            out["routes"] = self.routes
        out["dns"] = self.dns
        return out

    @classmethod
    def from_json(cls, data: Any, what: str) -> Result:
        """Any 0.3.0-1.1.0 result; code 6 naming `what` when it is not one."""
        data = json_object(data, DECODING_FAILURE, what)
        try:
            interfaces = [dict(i) for i in data.get("interfaces") or []]
            ips = []
            for ip in data.get("ips") or []:
                item: dict[str, Any] = {"address": addr.cidr(*addr.parse_cidr(ip["address"]))}
                if ip.get("gateway"):
                    item["gateway"] = addr.text(*addr.parse(ip["gateway"]))
                if ip.get("interface") is not None:
                    item["interface"] = int(ip["interface"])
                ips.append(item)
            routes = []
            for route in data.get("routes") or []:
                item = {"dst": addr.subnet_text(*addr.parse_cidr(route["dst"]))}
                if route.get("gw"):
                    item["gw"] = addr.text(*addr.parse(route["gw"]))
                routes.append(item)
            dns = dict(data.get("dns") or {})
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CniError(DECODING_FAILURE, f"{what}: not a CNI result ({type(exc).__name__}: {exc})") from None
        return cls(interfaces, ips, routes, dns)
