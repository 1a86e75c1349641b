"""Check a parsed topology file completely and turn it into a LabSpec.

Every rule appends to one list of issues, so a user sees every problem of the file
at once (netavark: "validate before we do anything"; containerlab decodes
strictly, so an unknown key is an error, not a silent no-op).  Nothing here
touches the kernel.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from ..errors import ValidationError
from . import nodeview
from .checker import Checker, FastV4, address_parts, kind_of, parse_interface
from .loader import Document, Path
from .naming import ifname_problem, lab_problem, name_resolution_problem, node_problem, sysctl_problem
from .networks import parse_networks
from .routes import RouteSyntaxError, parse_route
from .schema import HOST, Endpoint, LabSpec, LinkSpec, NodeSpec, RouteSpec
from .shaping import Shaping, parse_shaping
from .words import split

TOP_KEYS = {"name", "prefix", "nodes", "links", "networks", "machines"}
NODE_KEYS = {"sysctls", "routes", "exec", "run", "ready", "machine", *nodeview.VIEW_KEYS}
LINK_KEYS = {"endpoints", "addresses", "mtu", "state", "rate", "delay", "jitter", "loss", "a", "b", "vni", "carrier"}
SHAPING_KEYS = {"rate", "delay", "jitter", "loss"}
_SHAPED = frozenset({*SHAPING_KEYS, "a", "b"})  # a link without these has no shaping
#: keys of the contract that later work will implement: refused, never ignored
NOT_YET: dict[tuple[str, ...], set[str]] = {
    (): set(),
    ("node",): set(),
    ("link",): {"type", "remote", "dev"},
}


def parse_document(doc: Document) -> LabSpec:
    """Validate a parsed document; raise ValidationError with every issue found."""
    c = Checker(doc)
    data = doc.data
    if data is None:
        c.err((), "the file is empty; it needs at least 'name' and 'nodes'")
        raise ValidationError(c.issues)
    top = c.mapping(data, (), "the lab")
    if top is None:
        raise ValidationError(c.issues)
    c.keys(top, (), TOP_KEYS, NOT_YET[()])

    name = top.get("name")
    if name is None:
        c.err((), "'name' is required")
        name = "invalid"
    elif lab_problem(name):
        c.err(("name",), str(lab_problem(name)))
        name = "invalid"

    prefix = top.get("prefix", False)
    if not isinstance(prefix, bool):
        c.err(("prefix",), f"must be true or false, not {kind_of(prefix)}")
        prefix = False

    raw_nodes = c.mapping(top.get("nodes"), ("nodes",), "node name: settings", allow_none=True) or {}
    if "nodes" not in top:
        c.err((), "'nodes' is required")
    raw_links = top.get("links", [])
    if raw_links is None:
        raw_links = []
    if not isinstance(raw_links, list):
        c.err(("links",), f"must be a list of links, not {kind_of(raw_links)}")
        raw_links = []

    indexed = [(i, _link(c, raw, ("links", i), raw_nodes)) for i, raw in enumerate(raw_links)]
    numbered = [(i, good) for i, (good, _read) in indexed if good is not None]
    readable = [(i, read) for i, (_good, read) in indexed if read is not None]
    good_links = [link for _, link in numbered]
    _check_interfaces(c, readable)
    networks = parse_networks(c, top.get("networks"), raw_nodes, good_links)
    interfaces_of: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
    for link in good_links:
        for end in link.endpoints:
            interfaces_of.setdefault(end.node, []).append((end.ifname, link.addresses_of(end)))
    for net in networks:
        plen = ipaddress.ip_network(net.subnet).prefixlen if net.subnet else 0  # once per network, not per member
        for member in net.members:
            assert member.ifname is not None
            known = [f"{member.ip}/{plen}"] if member.ip and net.subnet else []
            # an address IPAM will choose is unknown here ("*"): routes via it are not checked
            interfaces_of.setdefault(member.node, []).append((member.ifname, tuple(known) or ("*",)))
        if net.driver == "bridge":
            interfaces_of.setdefault(net.host, []).append((net.bridge or "", ("*",)))
    nodes: dict[str, NodeSpec] = {}
    for node_name, raw in raw_nodes.items():
        node = _node(c, node_name, raw, ("nodes", node_name), interfaces_of.get(node_name, []))
        if node is not None:
            nodes[node_name] = node
    _check_addresses(c, readable, raw_links)
    _check_link_subnets(c, readable, nodes)
    from .machines import apply_machines  # SPEC §7: machines, machine:, vni:

    machines, nodes, good_links, networks = apply_machines(c, top, raw_nodes, nodes, raw_links, numbered, networks,
                                                           top.get("networks"))

    if c.issues:
        raise ValidationError(c.issues)
    return LabSpec(name=name, nodes=nodes, links=tuple(good_links), networks=tuple(networks), prefix=prefix,
                   file=doc.file, machines=machines)


def _node(c: Checker, name: str, raw: Any, path: Path, ifaces: list[tuple[str, tuple[str, ...]]]) -> NodeSpec | None:
    ok = True
    if node_problem(name):
        c.err(path, str(node_problem(name)))
        ok = False
    elif name_resolution_problem(name):
        c.err(path, str(name_resolution_problem(name)))
        ok = False
    if (raw is None or raw == {}) and ok:  # `n1: {}`, most nodes of a big lab: nothing more to read
        return NodeSpec(name=name, line=c.doc.line(path))
    spec = c.section(raw, path, "node settings", NODE_KEYS, NOT_YET[("node",)])
    if spec is None:
        return None

    sysctls: list[tuple[str, str]] = []
    raw_sysctls = c.mapping(spec.get("sysctls"), path + ("sysctls",), "sysctl: value", allow_none=True) or {}
    for key, value in raw_sysctls.items():
        kpath = path + ("sysctls", key)
        if sysctl_problem(key):
            c.err(kpath, str(sysctl_problem(key)))
        elif isinstance(value, bool):
            sysctls.append((key, "1" if value else "0"))
        elif isinstance(value, (int, str)) and str(value).strip() != "":
            sysctls.append((key, str(value)))
        else:
            c.err(kpath, f"sysctl value must be a number or a string, not {kind_of(value)}")

    routes: list[RouteSpec] = []
    reach: _Reach | None = None
    for i, text in enumerate(_str_list(c, spec.get("routes"), path + ("routes",), "route")):
        rpath = path + ("routes", i)
        try:
            route = parse_route(text)
        except RouteSyntaxError as exc:
            c.err(rpath, str(exc))
            continue
        reach = reach or _Reach(ifaces)
        problem = _route_problem(route, reach)
        if problem:
            c.err(rpath, problem)
        routes.append(route)

    commands = _commands(c, spec.get("exec"), path + ("exec",))
    services, oneshot = _services(c, spec.get("run"), path + ("run",))
    if services and name == HOST:
        c.err(path + ("run",), "services run in lab nodes, not in the host namespace")
    ready = _ready(c, spec.get("ready"), path + ("ready",), bool(services))
    hostname, files, private, mounts = nodeview.parse(c, spec, path, name)
    if name == HOST:
        for key in nodeview.VIEW_KEYS:
            if key in spec:
                c.err(path + (key,), "the host namespace is the machine's own: it has no view of its own to change")
    if not ok:
        return None
    return NodeSpec(name=name, sysctls=tuple(sysctls), routes=tuple(routes), exec=tuple(commands),
                    run=tuple(services), line=c.doc.line(path), oneshot=oneshot, ready=ready,
                    hostname=hostname, files=files, private=private, mounts=mounts)


def _commands(c: Checker, raw: Any, path: Path) -> list[tuple[str, ...]]:
    if raw is not None and not isinstance(raw, list):
        c.err(path, f"must be a list of commands, not {kind_of(raw)}")
        return []
    commands = []
    for i, item in enumerate(raw or []):
        argv = _command(c, item, path + (i,))
        if argv:
            commands.append(argv)
    return commands


SERVICE_KEYS = {"cmd", "oneshot"}
READY_TCP = re.compile(r"^tcp:(\d{1,5})$")


def _services(c: Checker, raw: Any, path: Path) -> tuple[list[tuple[str, ...]], tuple[int, ...]]:
    """`run:` items: a command (string or list of words), or a mapping
    `{cmd: COMMAND, oneshot: true}` for a command that may exit (with status 0)
    during `up`, such as one that daemonises or only sets something up."""
    if raw is not None and not isinstance(raw, list):
        c.err(path, f"must be a list of commands, not {kind_of(raw)}")
        return [], ()
    commands: list[tuple[str, ...]] = []
    oneshot: list[int] = []
    for i, item in enumerate(raw or []):
        ipath = path + (i,)
        once = False
        if isinstance(item, dict):
            for key in item:
                if key not in SERVICE_KEYS:
                    c.err(ipath + (str(key),), f"unknown key (a service has: {', '.join(sorted(SERVICE_KEYS))})")
            if "cmd" not in item:
                c.err(ipath, "a service given as a mapping needs `cmd`")
                continue
            once = item.get("oneshot", False)
            if not isinstance(once, bool):
                c.err(ipath + ("oneshot",), f"must be true or false, not {kind_of(once)}")
                once = False
            item, ipath = item["cmd"], ipath + ("cmd",)
        argv = _command(c, item, ipath)
        if argv:
            if once:
                oneshot.append(len(commands))
            commands.append(argv)
    return commands, tuple(oneshot)


def _ready(c: Checker, raw: Any, path: Path, has_services: bool) -> tuple[tuple[str, ...], ...]:
    """`ready:` checks: `tcp:PORT` (a socket listens on PORT in the node) or a
    command that must exit 0."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        c.err(path, f"must be a list of checks (tcp:PORT or a command), not {kind_of(raw)}")
        return ()
    if raw and not has_services:
        c.err(path, "readiness checks wait for the node's `run:` services, and it has none")
    checks: list[tuple[str, ...]] = []
    for i, item in enumerate(raw):
        if isinstance(item, str) and item.startswith("tcp:"):
            match = READY_TCP.match(item)
            if not match or not 1 <= int(match.group(1)) <= 65535:
                c.err(path + (i,), f"{item!r}: expected tcp:PORT with PORT in 1..65535")
                continue
            checks.append((f"tcp:{int(match.group(1))}",))
            continue
        argv = _command(c, item, path + (i,))
        if argv:
            checks.append(argv)
    return tuple(checks)


def _command(c: Checker, item: Any, path: Path) -> tuple[str, ...] | None:
    """A command is a string (split like a shell would split words, but never run
    through a shell) or a list of words."""
    if isinstance(item, str):
        try:
            argv = split(item)  # shlex.split's words, in linear time
        except ValueError as exc:
            c.err(path, f"cannot split command into words: {exc}")
            return None
    elif isinstance(item, list) and all(isinstance(w, (str, int, float)) for w in item):
        argv = [str(w) for w in item]
    else:
        c.err(path, f"a command must be a string or a list of words, not {kind_of(item)}")
        return None
    if not argv:
        c.err(path, "empty command")
        return None
    return tuple(argv)


def _str_list(c: Checker, value: Any, path: Path, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        c.err(path, f"must be a list of {what}s, not {kind_of(value)}")
        return []
    out = []
    for i, item in enumerate(value):
        if isinstance(item, str):
            out.append(item)
        else:
            c.err(path + (i,), f"a {what} must be a string, not {kind_of(item)}")
    return out


class _Reach:
    """A node's interfaces and their addresses, indexed so that checking one route
    costs the same whatever the number of interfaces (a list scan per route was
    quadratic: 10 000 routes on a 10 000-interface node).  `*` stands for an
    address IPAM will choose: any gateway may be on it."""

    def __init__(self, ifaces: list[tuple[str, tuple[str, ...]]]) -> None:
        self.names = list(dict.fromkeys(name for name, _ in ifaces))
        self.known = set(self.names)
        self.unknown = {name for name, addrs in ifaces if "*" in addrs}  # interfaces with an IPAM address
        self.plens: dict[int, set[int]] = {4: set(), 6: set()}
        # (version, prefix length, network as int) -> interface -> its addresses there, as ints
        self.nets: dict[tuple[int, int, int], dict[str, set[int]]] = {}
        for name, addrs in ifaces:
            for text in addrs:
                if text == "*":
                    continue
                version, value, plen = address_parts(text)
                self.plens[version].add(plen)
                key = (version, plen, value >> ((32 if version == 4 else 128) - plen))
                self.nets.setdefault(key, {}).setdefault(name, set()).add(value)

    def on_link(self, gateway: ipaddress.IPv4Address | ipaddress.IPv6Address, dev: str | None) -> bool:
        """Is `gateway` in the subnet of an address of `dev` (any interface if None), not that address itself?"""
        if self.unknown and (dev is None or dev in self.unknown):
            return True
        value, width = int(gateway), (32 if gateway.version == 4 else 128)
        for plen in self.plens[gateway.version]:
            bucket = self.nets.get((gateway.version, plen, value >> (width - plen)))
            if not bucket:
                continue
            groups = [bucket.get(dev, set())] if dev is not None else bucket.values()
            if any(len(ips) > 1 or value not in ips for ips in groups if ips):
                return True
        return False


def _route_problem(route: RouteSpec, ifaces: _Reach) -> str | None:
    if route.dev is not None and route.dev not in ifaces.known and route.dev != "lo":
        shown = ", ".join(ifaces.names[:10]) + (f", … ({len(ifaces.names)} in all)" if len(ifaces.names) > 10 else "")
        return f"dev {route.dev} is not an interface of this node (it has: {shown or 'none'})"
    if route.via is None:
        if route.dev is None:
            return "a route needs 'via GATEWAY' or 'dev IFNAME'"
        return None
    if ifaces.on_link(ipaddress.ip_address(route.via), route.dev):
        return None
    where = f"on {route.dev}" if route.dev else "on any subnet of this node"
    return f"gateway {route.via} is not {where}; the kernel would refuse the route"


_PLAIN_LINK = frozenset({"endpoints", "addresses"})


def _plain_link(raw: Any, line: int | None, nodes: dict[str, Any]) -> LinkSpec | None:
    """Most links of a big lab: `{endpoints: [N:I, N:I], addresses: [A, B]}` with
    good ends and one good IPv4 address (or none) per end, read without building a
    path per field.  None: anything else, read by _any_link (which gives the same
    LinkSpec for what this one takes: tests/unit/test_validate_fast_paths.py)."""
    if type(raw) is not dict or not raw.keys() <= _PLAIN_LINK:
        return None
    ends, addresses = raw.get("endpoints"), raw.get("addresses")
    if type(ends) is not list or len(ends) != 2:
        return None
    a, b = _plain_end(ends[0], nodes), _plain_end(ends[1], nodes)
    if a is None or b is None or a == b:
        return None
    if addresses is None:
        return LinkSpec(a=a, b=b, line=line)
    if type(addresses) is not list or len(addresses) != 2:
        return None
    first, second = _plain_address(addresses[0]), _plain_address(addresses[1])
    if first is None or second is None:
        return None
    return LinkSpec(a=a, b=b, addresses_a=first, addresses_b=second, line=line)


#: interface names _plain_end found good: ifname_problem is a pure function of the name,
#: and a big lab repeats a few names thousands of times (bounded: the API may validate
#: many files in one process)
_GOOD_IFNAMES: set[str] = set()


def _plain_end(text: Any, nodes: dict[str, Any]) -> Endpoint | None:
    """`NODE:IFNAME` of a defined node and a good name, as _endpoint reads it; else None."""
    if type(text) is not str:
        return None
    node, colon, ifname = text.partition(":")
    if not colon or ":" in ifname or (node not in nodes and node != HOST):
        return None
    if ifname not in _GOOD_IFNAMES:
        if ifname_problem(ifname):
            return None
        if len(_GOOD_IFNAMES) < 4096:
            _GOOD_IFNAMES.add(ifname)
    return Endpoint(node, ifname)


def _plain_address(value: Any) -> tuple[str, ...] | None:
    """One IPv4 address of an end (or null), as _addresses reads it when it is good:
    a unicast address that is not its subnet's network or broadcast address; else None."""
    if value is None:
        return ()
    if type(value) is not str:
        return None
    try:
        iface = parse_interface(value)
    except ValueError:
        return None
    if not isinstance(iface, FastV4):
        return None
    number, network, broadcast = iface.quick()
    first = number >> 24
    if first == 0 or first == 127 or 224 <= first <= 239 or (iface._plen < 31 and number in (network, broadcast)):
        return None
    return (value,)


def _link(c: Checker, raw: Any, path: Path, nodes: dict[str, Any]) -> tuple[LinkSpec | None, LinkSpec | None]:
    """(the link, or None when any of its fields is wrong; what could be read of it —
    its two ends and its good addresses — for the checks across links, so a reused
    interface or address is reported even on a link that has another problem)."""
    link = _plain_link(raw, c.doc.line(path), nodes)
    if link is not None:
        return link, link
    return _any_link(c, raw, path, nodes)


def _any_link(c: Checker, raw: Any, path: Path, nodes: dict[str, Any]) -> tuple[LinkSpec | None, LinkSpec | None]:
    """_link for every link: each field checked, each problem reported with its path."""
    spec = c.mapping(raw, path, "a link")
    if spec is None:
        return None, None
    c.keys(spec, path, LINK_KEYS, NOT_YET[("link",)])
    ok = True
    ends: list[Endpoint] = []
    raw_ends = spec.get("endpoints")
    if raw_ends is None:
        c.err(path, "'endpoints' is required: [NODE:IFNAME, NODE:IFNAME]")
        ok = False
    elif not isinstance(raw_ends, list) or len(raw_ends) != 2:
        c.err(path + ("endpoints",), "must be a list of exactly two NODE:IFNAME")
        ok = False
    else:
        for j, text in enumerate(raw_ends):
            end = _endpoint(c, text, path + ("endpoints", j), nodes)
            if end is None:
                ok = False
            else:
                ends.append(end)
    if len(ends) == 2 and ends[0] == ends[1]:
        c.err(path + ("endpoints", 1), f"both ends are the same interface {ends[0]}")
        ok = False

    addresses: list[tuple[str, ...]] = [(), ()]
    raw_addrs = spec.get("addresses")
    if raw_addrs is not None:
        if not isinstance(raw_addrs, list) or len(raw_addrs) != 2:
            c.err(path + ("addresses",), "must be a list of two entries, one per end (an address, a list of addresses, or null)")
            ok = False
        else:
            for j, per_end in enumerate(raw_addrs):
                addresses[j] = _addresses(c, per_end, path + ("addresses", j))

    mtu = spec.get("mtu")
    if mtu is not None:
        if isinstance(mtu, bool) or not isinstance(mtu, int) or not 68 <= mtu <= 65535:
            c.err(path + ("mtu",), f"mtu must be a whole number from 68 to 65535, not {mtu!r}")
            ok = False
        elif mtu < 1280 and any(":" in a for end in addresses for a in end):
            c.err(path + ("mtu",), f"mtu {mtu} is below 1280, the minimum for IPv6 addresses on this link")
            ok = False

    state = spec.get("state", "up")
    if state not in ("up", "down"):
        c.err(path + ("state",), f"state must be 'up' or 'down', not {state!r}")
        ok = False
    if len(ends) == 2 and ok and not spec.keys() & _SHAPED:  # most links: no shaping to read
        link = LinkSpec(a=ends[0], b=ends[1], addresses_a=addresses[0], addresses_b=addresses[1],
                        mtu=mtu, up=state == "up", line=c.doc.line(path))
        return link, link
    shaping = _shaping(c, spec, path)
    overrides: list[Shaping | None] = []
    for side in ("a", "b"):
        if spec.get(side) is None:  # no block for this end (most links): nothing to read
            overrides.append(None)
            continue
        block = c.section(spec.get(side), path + (side,), "rate/delay/jitter/loss for this end", SHAPING_KEYS)
        if block is None:
            ok = False
            overrides.append(None)
            continue
        overrides.append(_shaping(c, block, path + (side,)) if block else None)
    if len(ends) != 2:
        return None, None
    if not ok:
        return None, LinkSpec(a=ends[0], b=ends[1], addresses_a=addresses[0], addresses_b=addresses[1],
                              line=c.doc.line(path))
    base = shaping or Shaping()
    per_end = [base.merged(o) for o in overrides]
    link = LinkSpec(a=ends[0], b=ends[1], addresses_a=addresses[0], addresses_b=addresses[1],
                    mtu=mtu, up=state == "up", line=c.doc.line(path),
                    shaping_a=per_end[0] or None, shaping_b=per_end[1] or None)
    return link, link


def _shaping(c: Checker, spec: dict[str, Any], path: Path) -> Shaping | None:
    try:
        return parse_shaping(spec)
    except ValueError as exc:
        key, message = exc.args
        c.err(path + (key,), message)
        return None


def _endpoint(c: Checker, text: Any, path: Path, nodes: dict[str, Any]) -> Endpoint | None:
    if not isinstance(text, str) or text.count(":") != 1:
        c.err(path, f"an endpoint is NODE:IFNAME, not {text!r}")
        return None
    node, ifname = text.split(":")
    good = True
    if node != HOST and node not in nodes:
        c.err(path, f"node '{node}' is not defined under 'nodes'")
        good = False
    problem = ifname_problem(ifname)
    if problem:
        c.err(path, problem)
        good = False
    return Endpoint(node, ifname) if good else None


def _addresses(c: Checker, value: Any, path: Path) -> tuple[str, ...]:
    if value is None:
        return ()
    if type(value) is str:  # one address for this end (most labs)
        text = _address(c, value, path)
        return (text,) if text else ()
    items: list[tuple[Path, Any]]
    if isinstance(value, list):
        items = [(path + (k,), v) for k, v in enumerate(value)]
    else:
        items = [(path, value)]
    out = []
    for ipath, item in items:
        text = _address(c, item, ipath)
        if text:
            out.append(text)
    return tuple(out)


# ASCII digits only, the whole text: \d also matches "١٠" (which int() reads as 10) and
# $ matches before a final newline, so "10.0.0.1/24\n" and Arabic digits slipped past
# ipaddress (which refuses both) into the spec.


def _address(c: Checker, item: Any, path: Path) -> str | None:
    if not isinstance(item, str) or "/" not in item:
        c.err(path, f"{item!r} is not an address with a prefix length, such as 192.168.1.1/24 or fd00::1/64")
        return None
    try:
        iface = parse_interface(item)
    except ValueError as exc:
        c.err(path, f"{item!r} is not a valid address: {exc}")
        return None
    if isinstance(iface, FastV4):
        value, network, broadcast = iface.quick()
        first = value >> 24
        if not (first == 0 or first == 127 or 224 <= first <= 239) and \
                (iface._plen >= 31 or value not in (network, broadcast)):
            return str(iface)  # the common case, decided without ipaddress
        iface = ipaddress.ip_interface(item)
    ip = iface.ip
    if ip.is_multicast or ip.is_unspecified or ip.is_loopback:
        c.err(path, f"{item} is a {'multicast' if ip.is_multicast else 'unspecified' if ip.is_unspecified else 'loopback'} address, not one for an interface")
        return None
    net = iface.network
    if iface.version == 4 and net.prefixlen < 31:
        if ip == net.network_address:
            c.err(path, f"{item} is the network address of {net}")
            return None
        if ip == net.broadcast_address:
            c.err(path, f"{item} is the broadcast address of {net}")
            return None
    return str(iface)


def _check_interfaces(c: Checker, links: list[tuple[int, LinkSpec]]) -> None:
    seen: dict[tuple[str, str], int] = {}
    for index, link in links:
        for j, end in enumerate(link.endpoints):
            key = (end.node, end.ifname)
            if key in seen:
                c.err(("links", index, "endpoints", j),
                      f"interface {end} is already used by links[{seen[key]}]")
            else:
                seen[key] = index


def _check_addresses(c: Checker, links: list[tuple[int, LinkSpec]], raw_links: list[Any]) -> None:
    seen: dict[tuple[int, int], Endpoint] = {}  # (version, address as an integer): no address objects made
    for index, link in links:
        for j, end in enumerate(link.endpoints):
            for k, text in enumerate(link.addresses_of(end)):
                version, value, _plen = address_parts(text)
                key = (version, value)
                if key in seen:
                    ip = ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value)
                    c.err(_addr_path(index, j, k, raw_links), f"address {ip} is already given to {seen[key]} "
                          "(an address belongs to one interface in the whole lab)")
                else:
                    seen[key] = end


def _addr_path(index: int, j: int, k: int, raw_links: list[Any]) -> Path:
    raw = raw_links[index]["addresses"][j]
    return ("links", index, "addresses", j, k) if isinstance(raw, list) else ("links", index, "addresses", j)



def _check_link_subnets(c: Checker, links: list[tuple[int, LinkSpec]],
                        nodes: dict[str, NodeSpec] | None = None) -> None:
    """SPEC §2: a link whose two ends share no subnet is an error.  Judged per IP
    version, and only when both ends have addresses of it.  Two addresses share a
    subnet when each is inside the other's prefix, i.e. they agree on the longer of
    the two prefix lengths (10.0.0.1/24 and 10.0.0.2/16 do: each end reaches the
    other directly).  Grouped by prefix length, so a link with thousands of
    addresses costs (addresses x distinct prefix lengths), not addresses squared."""
    for index, link in links:
        if not link.addresses_a or not link.addresses_b:
            continue  # an end without addresses: nothing to judge
        if len(link.addresses_a) == 1 and len(link.addresses_b) == 1:  # one address each (most links)
            (va, ia, pa), (vb, ib, pb) = address_parts(link.addresses_a[0]), address_parts(link.addresses_b[0])
            shift = (32 if va == 4 else 128) - max(pa, pb)
            if va == vb and ia >> shift == ib >> shift:
                continue  # one subnet: what _share_subnet finds, without its sets
        parts = [[(address_parts(text), text) for text in texts] for texts in (link.addresses_a, link.addresses_b)]
        for version in (4, 6):
            ends = []
            for per_end in parts:
                by_plen: dict[int, list[int]] = {}
                shown = []
                for (v, value, plen), text in per_end:
                    if v == version:
                        by_plen.setdefault(plen, []).append(value)
                        shown.append(text)
                ends.append((by_plen, shown))
            (a, shown_a), (b, shown_b) = ends
            if not a or not b or _share_subnet(a, b, 32 if version == 4 else 128):
                continue
            if (_routed_on(nodes, link.a.node, link.a.ifname, shown_b)
                    and _routed_on(nodes, link.b.node, link.b.ifname, shown_a)):
                continue  # point-to-point /32s (/128s), each end with a route to the other on the link
            c.err(("links", index, "addresses"),
                  f"the ends share no IPv{version} subnet: {link.a} has {_few(shown_a)}, {link.b} has "
                  f"{_few(shown_b)}; neither reaches the other directly")


def _routed_on(nodes: dict[str, NodeSpec] | None, node: str, ifname: str, peer: list[str]) -> bool:
    """Does `node` route one of the peer's addresses straight out of `ifname`
    (`10.0.0.2/32 dev e0`, no `via`)?  Then it reaches the peer without a shared
    subnet: the point-to-point design of routers and of Calico's /32 veths."""
    spec = (nodes or {}).get(node)
    if spec is None:
        return False
    nets = []
    for route in spec.routes:
        if route.dev == ifname and route.via is None:
            try:
                nets.append(ipaddress.ip_network(route.dst, strict=False))
            except ValueError:  # "default"
                nets.extend([ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")])
    return any(ipaddress.ip_interface(text).ip in net for text in peer for net in nets
               if net.version == ipaddress.ip_interface(text).version)


def _share_subnet(a: dict[int, list[int]], b: dict[int, list[int]], width: int) -> bool:
    for plen_a, values_a in a.items():
        for plen_b, values_b in b.items():
            shift = width - max(plen_a, plen_b)
            if {v >> shift for v in values_a}.intersection(v >> shift for v in values_b):
                return True
    return False


def _few(texts: list[str]) -> str:
    return ", ".join(texts[:3]) + (f" and {len(texts) - 3} more" if len(texts) > 3 else "")
