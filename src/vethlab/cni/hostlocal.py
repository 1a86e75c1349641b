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
import os
import time

from . import addr
from .protocol import INVALID_CONFIG, IO_FAILURE, NO_ADDRESS, TRY_AGAIN_LATER, CniError
from .result import Result

TYPE_CHECKING = False  # typing itself is not imported at run time: start-up cost (main.py)
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

DEFAULT_DATA_DIR = "/var/lib/cni/networks"


class Range:
    """One range of a range set; addresses are integers of one IP version (addr.py)."""

    def __init__(self, item: Any, where: str) -> None:
        if not isinstance(item, dict) or not isinstance(item.get("subnet"), str):
            raise CniError(INVALID_CONFIG, f"{where}.subnet: missing or not a string")
        try:
            version, value, prefix = addr.parse_cidr(item["subnet"])
            self.version, self.prefix = version, prefix
            self.network = addr.network(version, value, prefix)
            self.broadcast = addr.last(version, value, prefix)
            top = self.broadcast - 1 if version == 4 else self.broadcast
            self.start = self._inside(item, "rangeStart", self.network + 1, where)
            self.end = self._inside(item, "rangeEnd", top, where)
            self.gateway = self._inside(item, "gateway", self.network + 1, where, check=False)
        except ValueError as exc:
            raise CniError(INVALID_CONFIG, f"{where}: {exc}") from None
        if version == 4 and prefix > 30:
            raise CniError(INVALID_CONFIG, f"{where}.subnet: {item['subnet']} is too small to hand out addresses")
        if self.start > self.end:
            raise CniError(INVALID_CONFIG, f"{where}: rangeStart {addr.text(version, self.start)} is after "
                           f"rangeEnd {addr.text(version, self.end)}")

    def _inside(self, item: dict[str, Any], key: str, default: int, where: str, check: bool = True) -> int:
        if not item.get(key):
            return default
        version, value = addr.parse(item[key])
        if version != self.version or (check and not self.network <= value <= self.broadcast):
            raise CniError(INVALID_CONFIG, f"{where}.{key}: {item[key]} is outside {item['subnet']}")
        return value

    def holds(self, version: int, value: int) -> bool:
        return version == self.version and self.start <= value <= self.end

    def usable(self, value: int) -> bool:
        return value != self.gateway and value != self.network and (self.version == 6 or value != self.broadcast)

    def text(self, value: int) -> str:
        return addr.text(self.version, value)


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
                item = {"dst": addr.subnet_text(*addr.parse_cidr(route["dst"]))}
                if route.get("gw"):
                    item["gw"] = addr.text(*addr.parse(route["gw"]))
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
                addr.parse(name)
                with open(os.path.join(self.config.dir, name), "rb") as fh:
                    content = fh.read(600).decode(errors="replace")
            except (ValueError, OSError):
                continue
            cid, _, ifname = content.strip().partition("\r\n")
            out[name] = (cid.strip(), ifname.strip())
        return out

    def _reserve(self, name: str, owner: str) -> bool:
        try:
            fd = os.open(os.path.join(self.config.dir, name),
                         os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as fh:
            fh.write(owner)
        return True

    def _last(self, index: int) -> tuple[int, int] | None:
        try:
            with open(os.path.join(self.config.dir, f"last_reserved_ip.{index}")) as fh:
                return addr.parse(fh.read().strip())
        except (OSError, ValueError):
            return None

    def allocate(self, container_id: str, ifname: str, wanted: list[tuple[int, int]]) -> list[tuple[int, Range]]:
        owner = f"{container_id}\r\n{ifname}"
        leases = self.leases()
        mine = [addr.parse(ip) for ip, who in leases.items() if who == (container_id, ifname)]
        out: list[tuple[int, Range]] = []
        for index, rset in enumerate(self.config.sets):
            held = next(((v, r) for ver, v in mine for r in rset if r.holds(ver, v)), None)
            if held is not None:  # a retried ADD keeps its lease, as a runtime's second try expects
                out.append(held)
                continue
            asked = next(((v, r) for ver, v in wanted for r in rset if r.holds(ver, v)), None)
            if asked is not None:
                value, r = asked
                if not r.usable(value) or not self._reserve(r.text(value), owner):
                    raise CniError(NO_ADDRESS, f"requested address {r.text(value)} is already in use")
                out.append(asked)
                continue
            chosen = self._next(index, rset, owner, leases)
            if chosen is None:
                raise CniError(NO_ADDRESS, "no free address left in " + ", ".join(
                    f"{r.text(r.start)}-{r.text(r.end)}" for r in rset) + f" ({self.config.dir})")
            out.append(chosen)
            self._write_last(index, chosen[1].text(chosen[0]))
        return out

    def _write_last(self, index: int, text: str) -> None:
        """last_reserved_ip.N replaced by rename, never written through a symlink
        planted under that name (open(…, "w") followed it and truncated its target)."""
        name = os.path.join(self.config.dir, f"last_reserved_ip.{index}")
        tmp = f"{name}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)
        os.rename(tmp, name)

    def _next(self, index: int, rset: list[Range], owner: str,
              leases: dict[str, tuple[str, str]]) -> tuple[int, Range] | None:
        """Round robin from the address after the last one reserved, as host-local does."""
        for value, r in _candidates(rset, self._last(index)):
            name = r.text(value)
            if r.usable(value) and name not in leases and self._reserve(name, owner):
                return value, r
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


def _candidates(rset: list[Range], last: tuple[int, int] | None) -> Iterator[tuple[int, Range]]:
    """Every address of the range set once, starting after `last` and wrapping round."""
    at = next((i for i, r in enumerate(rset) if last is not None and r.holds(*last)), None)
    if at is None or last is None:
        for r in rset:
            yield from ((v, r) for v in range(r.start, r.end + 1))
        return
    here, value = rset[at], last[1]
    yield from ((v, here) for v in range(value + 1, here.end + 1))
    for r in rset[at + 1:] + rset[:at]:
        yield from ((v, r) for v in range(r.start, r.end + 1))
    yield from ((v, here) for v in range(here.start, value + 1))


def add(ipam: dict[str, Any], network: str, container_id: str, ifname: str, args: dict[str, str],
        wait: float) -> Result:
    config = Config(ipam, network)
    wanted = []
    for item in (args.get("IP") or "").split(","):
        if item:
            try:
                wanted.append(addr.parse(item.split("/")[0]))
            except ValueError:
                raise CniError(INVALID_CONFIG, f"CNI_ARGS IP={item}: not an address") from None
    with Store(config, wait) as store:
        chosen = store.allocate(container_id, ifname, wanted)
    ips = [{"address": f"{r.text(value)}/{r.prefix}", "gateway": r.text(r.gateway)} for value, r in chosen]
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
