"""A lab built in Python, a call per node, link and network — Mininet's `Topo`
(`addHost`, `addLink`) for vethlab:

    lab = Lab.new("demo")
    lab.add_node("r1", sysctls={"net.ipv4.ip_forward": 1})
    lab.add_node("r2", routes=["default via 10.0.0.1"])
    lab.add_link("r1:e0", "r2:e0", addresses=["10.0.0.1/30", "10.0.0.2/30"])
    lab.up()

The builder only writes down the plain data a topology file holds, key for key,
and hands it to the file's own validator (validate.parse_document).  So a lab
built in code is exactly the LabSpec of the equivalent file, and a mistake gets
the file's message and field path (`<builder>: links[0].addresses[1]: …`), only
without a line number.  A separate code path that "also validates" would drift
from the file's rules; this one cannot.

Nothing is checked when a method is called, as nothing is in a half-written
file: a route may name an interface whose link is added later.  Everything is
checked at once, every problem reported together, when the spec is first needed
(`build()`, or `Lab.up`/`plan`/`spec`).  The only exception is the lab's name,
checked by the constructor, because a Lab needs it at once.

Pure: no kernel, no I/O.  Each keyword argument is the file's key of the same
name (`shaping_a`/`shaping_b` are the link's `a:`/`b:` blocks); None means
"not given", so the file's default applies.  tests/unit/test_builder.py checks
that every key the validator accepts has its argument here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from ..errors import Issue, UsageError, ValidationError
from .naming import lab_problem

if TYPE_CHECKING:  # the loader brings PyYAML: imported when a spec is built, not with Lab (see __init__.py)
    from .loader import Path
    from .schema import LabSpec

#: what a topology error names as the file when the lab was built in code
DEFAULT_FILE = "<builder>"

Command = str | Sequence[str]  # a string split into words (never run by a shell), or the words themselves
Addresses = str | Sequence[str] | None  # one end's: an address, a list of them, or nothing


class Draft:
    """The topology being written: the file's plain data, the problems only a
    builder can make (a name given twice), and the LabSpec once validated."""

    def __init__(self, name: str, prefix: bool | None = None, file: str = DEFAULT_FILE) -> None:
        problem = lab_problem(name)
        if problem:
            raise ValidationError([Issue(file, None, "name", problem)])
        self.file = file
        self.data: dict[str, Any] = {"name": name}
        if prefix is not None:
            self.data["prefix"] = prefix
        self.data["nodes"] = {}
        self.problems: list[tuple[Path, str]] = []
        self._spec: LabSpec | None = None

    def put(self, section: Path, key: str, value: Any) -> None:
        """data[section...][key] = value; a key given twice is the file's "duplicate
        key" (and, as there, the first one stays)."""
        self._spec = None
        where: Any = self.data
        for part in section:
            where = where.setdefault(part, {}) if isinstance(where, dict) else None
        if not isinstance(where, dict):
            return  # the section itself is wrong (members=5): the validator says so
        if key in where:
            self.problems.append((section + (key,), "duplicate key"))
        else:
            where[key] = value

    def append(self, section: str, value: Any) -> None:
        self._spec = None
        self.data.setdefault(section, []).append(value)

    def to_dict(self) -> dict[str, Any]:
        """A deep copy of the data: what `Lab.from_dict` takes, and what a YAML dump
        of it writes as a topology file."""
        copied: dict[str, Any] = _plain(self.data)
        return copied

    def spec(self) -> LabSpec:
        """The validated LabSpec; ValidationError with every problem, as for a file."""
        if self._spec is None:
            from .loader import Document, format_path
            from .validate import parse_document

            issues = [Issue(self.file, None, format_path(path), message) for path, message in self.problems]
            self._spec = parse_document(Document(file=self.file, data=self.to_dict(), issues=issues))
        return self._spec


class Builder:
    """The add_* methods, shared by the standalone LabBuilder and by Lab (a mixin).
    A subclass says where the draft is."""

    def _draft(self) -> Draft:
        raise NotImplementedError

    def add_node(self, name: str, /, *,
                 sysctls: Mapping[str, str | int | bool] | None = None,
                 routes: Sequence[str] | None = None,
                 exec: Sequence[Command] | None = None,
                 run: Sequence[Command | Mapping[str, Any]] | None = None,
                 ready: Sequence[Command] | None = None,
                 hostname: str | None = None,
                 files: Mapping[str, str | Mapping[str, Any]] | None = None,
                 private: Sequence[str | Mapping[str, Any]] | None = None,
                 mounts: Mapping[str, str] | None = None,
                 machine: str | None = None) -> str:
        """A node (a namespace; `host` is the namespace vethlab runs in).  `run` items
        are commands or `{"cmd": COMMAND, "oneshot": True}`; `ready` items are
        `"tcp:PORT"` or commands.  `hostname`, `files` (path → content, or "@FILE"),
        `private` (directories) and `mounts` (host path → node path[:rw]) give the node
        a view of its own (docs/nodes.md); `machine` places it on one of the lab's
        machines (add_machine, docs/machines.md).  Returns the name, for use in endpoints."""
        self._draft().put(("nodes",), name, _given(sysctls=sysctls, routes=routes, exec=exec, run=run,
                                                    ready=ready, hostname=hostname, files=files, private=private,
                                                    mounts=mounts, machine=machine))
        return name

    def add_machine(self, name: str, /, *,
                    address: str | None = None,
                    dev: str | None = None,
                    mtu: int | None = None) -> str:
        """A machine of a lab that spans several (docs/machines.md): its underlay
        `address`, optionally the underlay `dev` and its `mtu`.  Returns the name."""
        self._draft().put(("machines",), name, _given(address=address, dev=dev, mtu=mtu))
        return name

    def add_link(self, end_a: str, end_b: str, /, *,
                 addresses: Sequence[Addresses] | None = None,
                 mtu: int | None = None,
                 state: Literal["up", "down"] | None = None,
                 rate: str | None = None,
                 delay: str | None = None,
                 jitter: str | None = None,
                 loss: str | float | None = None,
                 shaping_a: Mapping[str, str | float] | None = None,
                 shaping_b: Mapping[str, str | float] | None = None,
                 vni: int | None = None,
                 carrier: bool | None = None) -> None:
        """A veth pair between two `NODE:IFNAME` ends.  `addresses` has one entry per
        end (an address with its prefix length, a list of them, or None); rate, delay,
        jitter and loss shape both ends' egress, and `shaping_a`/`shaping_b`
        (`{"rate": …, "delay": …}`) override them for one end.  Across machines: `vni`
        (default derived from lab and link) and `carrier` (a veth stitched to the
        tunnel, so the far end sees carrier go)."""
        self._draft().append("links", {"endpoints": [end_a, end_b],
                                       **_given(addresses=addresses, mtu=mtu, state=state, rate=rate, delay=delay,
                                                jitter=jitter, loss=loss, a=shaping_a, b=shaping_b, vni=vni,
                                                carrier=carrier)})

    def add_network(self, name: str, /, *,
                    members: Mapping[str, Mapping[str, Any] | None] | Sequence[str] | None = None,
                    host: str | None = None,
                    driver: Literal["bridge", "macvlan"] | None = None,
                    bridge: str | None = None,
                    parent: str | None = None,
                    subnet: str | None = None,
                    subnet6: str | None = None,
                    gateway: bool | None = None,
                    nat: bool | None = None,
                    internal: bool | None = None,
                    isolated: bool | None = None,
                    uplinks: Sequence[str] | None = None,
                    mtu: int | None = None,
                    machine: str | None = None,
                    vni: int | None = None) -> str:
        """A network: a Linux bridge in `host` (default the host namespace) or, with
        driver "macvlan", members on `parent`'s LAN.  `members` is a list of node names
        (each gets the next free address and eth0, eth1, …) or a mapping node →
        `{"ip": …, "ip6": …, "ifname": …, "publish": [...]}`; `add_member` adds more.
        Across machines: `machine` holds the gateway, `vni` joins the bridges.
        Returns the name."""
        settings = _given(host=host, driver=driver, bridge=bridge, parent=parent, subnet=subnet, subnet6=subnet6,
                          gateway=gateway, nat=nat, internal=internal, isolated=isolated, uplinks=uplinks, mtu=mtu,
                          machine=machine, vni=vni)
        draft = self._draft()
        fresh = name not in draft.data.get("networks", {})
        draft.put(("networks",), name, settings)
        if members is None:
            pass
        elif isinstance(members, (Mapping, str)) or not isinstance(members, Sequence):
            settings["members"] = _plain(members)  # a mapping, or something the validator names as wrong
        elif fresh:
            settings["members"] = {}
            for node in members:
                draft.put(("networks", name, "members"), node, {})
        return name

    def add_member(self, network: str, node: str, /, *,
                   ip: str | None = None,
                   ip6: str | None = None,
                   ifname: str | None = None,
                   publish: Sequence[str] | None = None) -> None:
        """Attach `node` to `network` (added before): Mininet's addLink(host, switch).
        `publish` items are `[HOSTIP:]HOSTPORT:PORT[/tcp|udp]`."""
        draft = self._draft()
        if network not in draft.data.get("networks", {}):
            draft.problems.append((("networks", network), f"network '{network}' is not defined: add_network it "
                                                          "before add_member"))
            return
        draft.put(("networks", network, "members"), node, _given(ip=ip, ip6=ip6, ifname=ifname, publish=publish))

    def to_dict(self) -> dict[str, Any]:
        """The topology as the plain data of a file (`yaml.safe_dump` writes it out)."""
        return self._draft().to_dict()


class LabBuilder(Builder):
    """A topology built in code, with no Lab around it: `build()` gives the LabSpec."""

    def __init__(self, name: str, prefix: bool | None = None, file: str = DEFAULT_FILE) -> None:
        self.draft = Draft(name, prefix, file)

    def _draft(self) -> Draft:
        return self.draft

    def build(self) -> LabSpec:
        return self.draft.spec()


class Buildable(Builder):
    """What `Lab.new` gives a Lab: the add_* methods, and `spec` as a property that
    validates what was added (again after each change).  A Lab loaded from a file
    or a dict has a spec and no draft; add_* on it is a usage error."""

    _draft_: Draft | None = None
    _given_spec: LabSpec | None = None

    @property
    def spec(self) -> LabSpec | None:
        if self._draft_ is not None:
            return self._draft_.spec()
        return self._given_spec

    @spec.setter
    def spec(self, value: LabSpec | None) -> None:
        self._given_spec = value
        self._draft_ = None  # a spec given outright replaces what was being built

    def _start(self, draft: Draft) -> None:
        self._draft_ = draft

    def _draft(self) -> Draft:
        if self._draft_ is None:
            raise UsageError("add_node, add_link, add_network and add_member build a lab made with "
                             "Lab.new(NAME); this lab was loaded from a file, a dict or by name")
        return self._draft_


def _given(**values: Any) -> dict[str, Any]:
    """The keys whose value was given (None: the file's default), as plain data."""
    return {key: _plain(value) for key, value in values.items() if value is not None}


def _plain(value: Any) -> Any:
    """Tuples and other sequences as lists, mappings as dicts, copied: the types the
    validator reads a file as (a tuple of addresses is as good as a list)."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return [_plain(item) for item in value]
    return value
