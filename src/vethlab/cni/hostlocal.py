"""A host-local-compatible address allocator: vethlab's own IPAM, used when the
config's `ipam.type` is `host-local` and no such plugin is in CNI_PATH (or
VETHLAB_CNI_IPAM=own asks for it: no extra process per ADD).

Compatible with the reference host-local on disk, so the two can take turns on
one network: DATADIR/NETWORK/ holds one file per leased address, named by the
address and holding "CONTAINERID\\r\\nIFNAME", `last_reserved_ip.N` per range set,
and a `lock` file both lock with flock(2).  Allocation goes round-robin from the
last reserved address, skipping the network, broadcast and gateway addresses,
as host-local does; a lease is taken with O_EXCL, so it can never be shared.

Config keys: `ranges` (a list of range sets, each a list of {subnet, rangeStart,
rangeEnd, gateway}), the older single `subnet`/`rangeStart`/`rangeEnd`/`gateway`,
`routes`, `dataDir`; CNI_ARGS `IP=` asks for given addresses."""

from __future__ import annotations

import fcntl
import ipaddress
import os
import time

from .protocol import INVALID_CONFIG, IO_FAILURE, NO_ADDRESS, TRY_AGAIN_LATER, CniError
from .result import Result

TYPE_CHECKING = False  # typing itself is not imported at run time: start-up cost (main.py)
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

DEFAULT_DATA_DIR = "/var/lib/cni/networks"
Addr = ipaddress.IPv4Address | ipaddress.IPv6Address
Net = ipaddress.IPv4Network | ipaddress.IPv6Network


class Range:
    def __init__(self, item: Any, where: str) -> None:
        if not isinstance(item, dict) or not isinstance(item.get("subnet"), str):
            raise CniError(INVALID_CONFIG, f"{where}.subnet: missing or not a string")
        try:
            self.subnet: Net = ipaddress.ip_network(item["subnet"], strict=False)
            net = self.subnet
            last = net.broadcast_address - 1 if net.version == 4 else net.broadcast_address
            self.start: Addr = ipaddress.ip_address(item["rangeStart"]) if item.get("rangeStart") else \
                net.network_address + 1
            self.end: Addr = ipaddress.ip_address(item["rangeEnd"]) if item.get("rangeEnd") else last
            self.gateway: Addr = ipaddress.ip_address(item["gateway"]) if item.get("gateway") else \
                net.network_address + 1
        except (ValueError, TypeError) as exc:
            raise CniError(INVALID_CONFIG, f"{where}: {exc}") from None
        if net.num_addresses < 4 and net.version == 4:
            raise CniError(INVALID_CONFIG, f"{where}.subnet: {net} is too small to hand out addresses")
        for key, ip in (("rangeStart", self.start), ("rangeEnd", self.end)):
            if ip not in net:
                raise CniError(INVALID_CONFIG, f"{where}.{key}: {ip} is outside {net}")
        if self.start.version != self.end.version or int(self.start) > int(self.end):
            raise CniError(INVALID_CONFIG, f"{where}: rangeStart {self.start} is after rangeEnd {self.end}")

    def __contains__(self, ip: Addr) -> bool:
        return ip.version == self.start.version and self.start <= ip <= self.end  # type: ignore[operator]


class Config:
    def __init__(self, ipam: dict[str, Any], network: str) -> None:
        raw_sets = ipam.get("ranges")
        if raw_sets is None and ipam.get("subnet"):
            raw_sets = [[{k: ipam[k] for k in ("subnet", "rangeStart", "rangeEnd", "gateway") if k in ipam}]]
        if not isinstance(raw_sets, list) or not raw_sets:
            raise CniError(INVALID_CONFIG, "ipam.ranges: missing or empty (host-local needs at least one range)")
        self.sets: list[list[Range]] = []
        for i, rset in enumerate(raw_sets):
            if not isinstance(rset, list) or not rset:
                raise CniError(INVALID_CONFIG, f"ipam.ranges[{i}]: not a non-empty list of ranges")
            self.sets.append([Range(r, f"ipam.ranges[{i}][{j}]") for j, r in enumerate(rset)])
        routes = ipam.get("routes") or []
        if not isinstance(routes, list):
            raise CniError(INVALID_CONFIG, "ipam.routes: not a list")
        self.routes: list[dict[str, Any]] = []
        for i, route in enumerate(routes):
            try:
                item = {"dst": str(ipaddress.ip_network(route["dst"], strict=False))}
                if route.get("gw"):
                    item["gw"] = str(ipaddress.ip_address(route["gw"]))
            except (KeyError, TypeError, ValueError) as exc:
                raise CniError(INVALID_CONFIG, f"ipam.routes[{i}]: {exc}") from None
            self.routes.append(item)
        data_dir = ipam.get("dataDir") or DEFAULT_DATA_DIR
        if not isinstance(data_dir, str) or not data_dir.startswith("/"):
            raise CniError(INVALID_CONFIG, f"ipam.dataDir: {data_dir!r} is not an absolute path")
        self.dir = os.path.join(data_dir, network)


class Store:
    """DATADIR/NETWORK under its flock (a context manager)."""

    def __init__(self, config: Config, wait: float) -> None:
        self.config = config
        self.wait = wait
        self.lock = -1

    def __enter__(self) -> Store:
        try:
            os.makedirs(self.config.dir, 0o755, exist_ok=True)
            self.lock = os.open(os.path.join(self.config.dir, "lock"),
                                os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise CniError(IO_FAILURE, f"cannot use the IPAM directory {self.config.dir}: {exc.strerror}") from None
        deadline = time.monotonic() + self.wait
        while True:
            try:
                fcntl.flock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(self.lock)
                    raise CniError(TRY_AGAIN_LATER, f"the IPAM lock {self.config.dir}/lock is held; gave up after "
                                   f"{self.wait:g} s") from None
                time.sleep(0.005)

    def __exit__(self, *exc: object) -> None:
        os.close(self.lock)

    def leases(self) -> dict[str, tuple[str, str]]:
        """address -> (container id, ifname) of every lease."""
        out = {}
        for name in os.listdir(self.config.dir):
            if name == "lock" or name.startswith("last_reserved_ip") or name.startswith("."):
                continue
            try:
                ipaddress.ip_address(name)
                with open(os.path.join(self.config.dir, name), "rb") as fh:
                    text = fh.read(600).decode(errors="replace")
            except (ValueError, OSError):
                continue
            cid, _, ifname = text.strip().partition("\r\n")
            out[name] = (cid.strip(), ifname.strip())
        return out

    def _reserve(self, ip: Addr, owner: str) -> bool:
        try:
            fd = os.open(os.path.join(self.config.dir, str(ip)),
                         os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as fh:
            fh.write(owner)
        return True

    def _last(self, index: int) -> Addr | None:
        try:
            with open(os.path.join(self.config.dir, f"last_reserved_ip.{index}")) as fh:
                return ipaddress.ip_address(fh.read().strip())
        except (OSError, ValueError):
            return None

    def allocate(self, container_id: str, ifname: str, wanted: list[Addr]) -> list[tuple[Addr, Range]]:
        owner = f"{container_id}\r\n{ifname}"
        leases = self.leases()
        mine = {ipaddress.ip_address(ip) for ip, who in leases.items() if who == (container_id, ifname)}
        out: list[tuple[Addr, Range]] = []
        for index, rset in enumerate(self.config.sets):
            held = next(((ip, r) for ip in mine for r in rset if ip in r), None)
            if held is not None:  # a retried ADD keeps its lease, as a runtime's second try expects
                out.append(held)
                continue
            asked = next(((ip, r) for ip in wanted for r in rset if ip in r), None)
            if asked is not None:
                if asked[0] == asked[1].gateway or not self._reserve(asked[0], owner):
                    raise CniError(NO_ADDRESS, f"requested address {asked[0]} is already in use")
                out.append(asked)
                continue
            chosen = self._next(index, rset, owner, leases)
            if chosen is None:
                raise CniError(NO_ADDRESS, "no free address left in "
                               + ", ".join(f"{r.start}-{r.end}" for r in rset) + f" ({self.config.dir})")
            out.append(chosen)
            with open(os.path.join(self.config.dir, f"last_reserved_ip.{index}"), "w") as fh:
                fh.write(str(chosen[0]))
        return out

    def _next(self, index: int, rset: list[Range], owner: str,
              leases: dict[str, tuple[str, str]]) -> tuple[Addr, Range] | None:
        """Round robin from the address after the last one reserved, as host-local does."""
        for ip, r in _candidates(rset, self._last(index)):
            net = r.subnet
            if ip != r.gateway and ip != net.network_address and \
                    (net.version == 6 or ip != net.broadcast_address) and str(ip) not in leases:
                if self._reserve(ip, owner):
                    return ip, r
        return None

    def release(self, container_id: str, ifname: str) -> list[str]:
        """Remove the attachment's leases (also the pre-0.4 form holding only the id)."""
        gone = []
        for ip, who in self.leases().items():
            if who == (container_id, ifname) or (who[1] == "" and who[0] == container_id):
                try:
                    os.unlink(os.path.join(self.config.dir, ip))
                    gone.append(ip)
                except FileNotFoundError:
                    pass
        return gone


def _span(r: Range, first: Addr, last: Addr) -> Iterator[tuple[Addr, Range]]:
    ip = first
    while ip <= last:  # type: ignore[operator]
        yield ip, r
        ip += 1


def _candidates(rset: list[Range], last: Addr | None) -> Iterator[tuple[Addr, Range]]:
    """Every address of the range set once, starting after `last` and wrapping round."""
    at = next((i for i, r in enumerate(rset) if last is not None and last in r), None)
    if at is None or last is None:
        for r in rset:
            yield from _span(r, r.start, r.end)
        return
    here = rset[at]
    if last < here.end:  # type: ignore[operator]
        yield from _span(here, last + 1, here.end)
    for r in rset[at + 1:] + rset[:at]:
        yield from _span(r, r.start, r.end)
    yield from _span(here, here.start, last)


def add(ipam: dict[str, Any], network: str, container_id: str, ifname: str, args: dict[str, str],
        wait: float) -> Result:
    config = Config(ipam, network)
    wanted = []
    for text in (args.get("IP") or "").split(","):
        if text:
            try:
                wanted.append(ipaddress.ip_address(text.split("/")[0]))
            except ValueError:
                raise CniError(INVALID_CONFIG, f"CNI_ARGS IP={text}: not an address") from None
    with Store(config, wait) as store:
        chosen = store.allocate(container_id, ifname, wanted)
    ips = [{"address": f"{ip}/{r.subnet.prefixlen}", "gateway": str(r.gateway)} for ip, r in chosen]
    return Result(ips=ips, routes=list(config.routes))


def delete(ipam: dict[str, Any], network: str, container_id: str, ifname: str, wait: float) -> None:
    try:
        config = Config(ipam, network)
    except CniError:
        return  # DEL must succeed: a config that cannot name a store has no leases of ours
    if not os.path.isdir(config.dir):
        return
    with Store(config, wait) as store:
        store.release(container_id, ifname)


def check(ipam: dict[str, Any], network: str, container_id: str, ifname: str, wait: float) -> list[str]:
    config = Config(ipam, network)
    if not os.path.isdir(config.dir):
        return []
    with Store(config, wait) as store:
        return [ip for ip, who in store.leases().items() if who == (container_id, ifname)]


def leases(ipam: dict[str, Any], network: str, wait: float) -> dict[str, tuple[str, str]]:
    config = Config(ipam, network)
    if not os.path.isdir(config.dir):
        return {}
    with Store(config, wait) as store:
        return store.leases()


def gc(ipam: dict[str, Any], network: str, valid: set[tuple[str, str]], wait: float) -> list[str]:
    """Release every lease whose (container id, ifname) is not in `valid`."""
    config = Config(ipam, network)
    if not os.path.isdir(config.dir):
        return []
    gone = []
    with Store(config, wait) as store:
        for ip, who in store.leases().items():
            if who not in valid and not (who[1] == "" and any(v[0] == who[0] for v in valid)):
                try:
                    os.unlink(os.path.join(config.dir, ip))
                    gone.append(ip)
                except FileNotFoundError:
                    pass
    return gone
