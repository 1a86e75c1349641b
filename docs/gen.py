"""Generate the reference pages from the code, so they cannot drift from it.

    .venv/bin/python docs/gen.py           # rewrite docs/reference/*.md
    .venv/bin/python docs/gen.py --check   # exit 1 and name the stale files

* docs/reference/topology.md comes from the key tables the validator enforces
  (`topology/validate.py`: TOP_KEYS, NODE_KEYS, LINK_KEYS, SHAPING_KEYS, NOT_YET;
  `topology/networks.py`: NETWORK_KEYS, MEMBER_KEYS), the name patterns, the
  defaults of the schema's NamedTuples (`topology/schema.py`) and the unit tables
  of `topology/shaping.py`.  A key the validator accepts but DESCRIPTIONS below
  does not describe is written as "undocumented" and fails tests/unit/test_docs.py:
  describe it here, then regenerate.
* docs/reference/cli.md comes from argparse (`cli/main.py` build_parser()): every
  command, argument, choice, default and help text.  It is built from the parser's
  actions, not from `format_help()`, whose layout changes with the terminal width
  and the Python version.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "reference"

# -- the topology file ---------------------------------------------------------

#: (section, key) -> what the key means, for users.  Sections: top, node, link,
#: end (a:/b: of a link), network, member.  Keys the contract names but this
#: version refuses are described too: the page marks them "not supported yet"
#: while they sit in NOT_YET, and the text is ready when they arrive.
DESCRIPTIONS: dict[tuple[str, str], str] = {
    ("top", "name"): "The lab's name, `[a-z][a-z0-9-]{0,11}`. Required. It names the lab's state, "
                     "its nftables table (`inet vethlab_NAME`) and the `vethlab:NAME` marker on everything it makes.",
    ("top", "prefix"): "`true`: a node's namespace is `/run/netns/LAB-NODE` instead of `/run/netns/NODE`, "
                       "so two labs may use the same node names. Default `false`.",
    ("top", "nodes"): "Mapping of node name to its settings (`{}` for none). Required. A node is one network "
                      "namespace. The name `host` means the namespace vethlab runs in.",
    ("top", "links"): "List of veth pairs, each joining two node interfaces.",
    ("top", "networks"): "Mapping of network name to its settings: Docker-style bridge networks (or macvlan).",
    ("top", "machines"): "Mapping of machine name to `{address: UNDERLAY-IP, dev: IFNAME, mtu: N}` (`dev`, `mtu` "
                         "optional; mtu default 1500), for labs that span machines: see [machines](../machines.md).",

    ("node", "sysctls"): "Mapping of `net.*` sysctl to value, set inside the node (`true`/`false` become 1/0). "
                         "A router needs `net.ipv4.ip_forward: 1`: a new namespace copies the value of the "
                         "namespace that created it.",
    ("node", "routes"): "List of routes in `ip route` syntax (a subset): `DST [via GW] [dev IFNAME] [metric N] "
                        "[src ADDR]`; DST is `default` or a network such as `10.9.0.0/16`. The gateway must lie "
                        "on a subnet of one of the node's interfaces. Routes vethlab adds carry protocol 118.",
    ("node", "exec"): "List of one-shot commands run in the node after its network is up; each must exit 0. "
                      "A command is a string (split into words like a shell would, but never run by a "
                      "shell: no pipes, no `$VAR`) or a list of words.",
    ("node", "run"): "List of long-running commands (services), started after `exec`, stopped by `down`. "
                     "Same command syntax as `exec`. A service that exits during `up` fails `up`. "
                     "Not allowed in `host`.",
    ("node", "ready"): "List of readiness checks `up` waits for (bounded) before returning: `tcp:PORT`, or a "
                       "command that must exit 0.",
    ("node", "hostname"): "The node's own hostname, in a UTS namespace of its own. Default: the node's name, once "
                          "the node has any of `hostname`, `files`, `private`, `mounts` (a node without them shares "
                          "the machine's name and files and costs nothing more). See docs/nodes.md.",
    ("node", "files"): "Mapping of node path to content, seen only inside this node: the text; `@F` reads file F "
                       "next to the lab file; or `{content: TEXT | source: F, mode: \"0600\"}`. Inside a `private` "
                       "directory the file is written there; elsewhere the node sees yours over the host's (or where "
                       "the host has none: made inside the node only, nothing on the host). See docs/nodes.md.",
    ("node", "private"): "List of directories the node sees as its own, empty (owner and mode as the host's), kept "
                         "until `down`; an item may be `{path: DIR, copy: true, owner: USER[:GROUP], mode: \"0755\"}` "
                         "(`copy`: start from a copy of the host's). A directory missing on the host is made inside "
                         "the node only (nothing on the host).",
    ("node", "mounts"): "Mapping of host path to node path, read-only unless the node path ends in `:rw`. A node "
                        "path missing on the host is made inside the node only.",
    ("node", "machine"): "With `machines:`, the machine this node lives on.",

    ("link", "endpoints"): "Exactly two `NODE:IFNAME`. IFNAME is at most 15 bytes, without `/`, `:` or "
                           "spaces, and not `lo`. Required.",
    ("link", "addresses"): "Two entries, one per end in the order of `endpoints`: an address with its prefix "
                           "length (`192.168.1.1/24`, `fd00::1/64`), a list of them, or `null` for none.",
    ("link", "mtu"): "MTU of both ends, 68 to 65535 (at least 1280 when an end has an IPv6 address).",
    ("link", "state"): "`up` (default) or `down`: a link built down has both ends administratively down.",
    ("link", "rate"): "Egress rate limit of both ends (tc tbf), e.g. `10mbit`, `1gbit`, `500kbps`.",
    ("link", "delay"): "Added one-way delay of both ends, e.g. `20ms` (tc netem; refused before anything is "
                       "built where the kernel lacks `sch_netem`).",
    ("link", "jitter"): "Delay variation, e.g. `5ms`; needs `delay` (netem).",
    ("link", "loss"): "Random loss in percent, e.g. `0.1%` (netem).",
    ("link", "a"): "Shaping of the first end only (`rate`, `delay`, `jitter`, `loss`), overriding the "
                   "link's values for that end's egress.",
    ("link", "b"): "Shaping of the second end only, like `a`.",
    ("link", "type"): "Kind of link other than a local veth pair.",
    ("link", "remote"): "The far end's address, for a link that leaves this machine.",
    ("link", "vni"): "VXLAN network identifier of a link between machines; default derived from lab and link.",
    ("link", "dev"): "Underlay interface of a link between machines.",
    ("link", "carrier"): "`true` on a link between machines: each end is a veth stitched to the tunnel in its "
                         "machine, so `vethlab link down NODE:IF --all` makes the far end see NO-CARRIER.",

    ("end", "rate"): "Egress rate limit of this end (tbf).",
    ("end", "delay"): "Added delay on this end's egress (netem).",
    ("end", "jitter"): "Delay variation on this end's egress; needs a delay (netem).",
    ("end", "loss"): "Loss in percent on this end's egress (netem).",

    ("network", "host"): "The node that holds the bridge (where `docker0` would be).",
    ("network", "driver"): "`bridge`: a Linux bridge with one veth pair per member (Docker's bridge driver); "
                           "`macvlan`: members sit directly on the LAN of `parent`, no bridge.",
    ("network", "bridge"): "Name of the bridge interface (at most 15 bytes); default `vb.LAB.NET`, or a "
                           "hash-derived `vb.…` name when that is too long.",
    ("network", "parent"): "For `driver: macvlan`: the existing interface whose LAN the members join.",
    ("network", "subnet"): "IPv4 subnet such as `172.30.5.0/24`; when absent, a free /24 of "
                           "172.30.0.0/16, stable over re-runs and distinct from other labs'.",
    ("network", "subnet6"): "IPv6 subnet such as `fd00:30::/64` (optional).",
    ("network", "gateway"): "The bridge takes the subnet's first address and members route default via it. "
                            "Default true, but false with `uplinks`, with `driver: macvlan` or when `internal` "
                            "(the real LAN has its own router).",
    ("network", "nat"): "Masquerade members' traffic that leaves the host node by another interface, like "
                        "Docker. Needs `gateway`.",
    ("network", "internal"): "No gateway, no NAT, no route out of the subnet (`docker network create "
                             "--internal`).",
    ("network", "isolated"): "Unreachable from the lab's other networks, like Docker's networks; `false` lets "
                             "them route to each other.",
    ("network", "uplinks"): "Existing interfaces of the host node enslaved to the bridge (layer 2 to a real "
                            "LAN); refused if they carry addresses; released at `down`.",
    ("network", "mtu"): "MTU of the bridge and its members' interfaces, 68 to 65535.",
    ("network", "members"): "Mapping of node name to member settings (`{}` for the defaults).",
    ("network", "machine"): "With members on several machines: the machine whose bridge holds the gateway "
                            "(default the first machine, in `machines:` order, with a member).",
    ("network", "vni"): "With members on several machines: the VXLAN id joining the machines' bridges; "
                        "default derived from lab and network.",

    ("member", "ip"): "Static IPv4 address without prefix (the subnet's); default: the next free address "
                      "after the gateway.",
    ("member", "ip6"): "Static IPv6 address; needs the network's `subnet6`.",
    ("member", "ifname"): "Interface name inside the member; default `eth0`, then `eth1`, … in the order of "
                          "the node's networks, skipping names its links use.",
    ("member", "publish"): "List of `[HOSTIP:]HOSTPORT:PORT[/tcp|udp]` (default tcp): the host's port "
                           "forwarded to the member's, like `docker run -p`. Works from outside, from the host "
                           "itself and from another member. Needs `nat` or `gateway`.",
}

SECTIONS = [
    ("top", "Top level", "The file is one YAML mapping.", "TOP_KEYS", ()),
    ("node", "`nodes: NAME:`", "Settings of one node. Every key is optional; `{}` is a node with none.",
     "NODE_KEYS", ("node",)),
    ("link", "`links: - …`", "One veth pair.", "LINK_KEYS", ("link",)),
    ("end", "`links: - a:` / `b:`", "Shaping of one end of a link.", "SHAPING_KEYS", None),
    ("network", "`networks: NAME:`", "One network.", "NETWORK_KEYS", None),
    ("member", "`networks: NAME: members: NODE:`", "One node's place on a network.", "MEMBER_KEYS", None),
]

UNDOCUMENTED = "**undocumented** (describe it in docs/gen.py DESCRIPTIONS)"


def _key_tables() -> dict[str, set[str]]:
    from vethlab.topology import networks, validate

    return {"TOP_KEYS": validate.TOP_KEYS, "NODE_KEYS": validate.NODE_KEYS, "LINK_KEYS": validate.LINK_KEYS,
            "SHAPING_KEYS": validate.SHAPING_KEYS, "NETWORK_KEYS": networks.NETWORK_KEYS,
            "MEMBER_KEYS": networks.MEMBER_KEYS}


def _defaults() -> dict[tuple[str, str], Any]:
    """Defaults as the schema's NamedTuples hold them (None and () mean "none")."""
    from vethlab.topology import schema

    out: dict[tuple[str, str], Any] = {}
    for section, cls in (("network", schema.NetworkSpec), ("member", schema.MemberSpec)):
        for field, value in cls._field_defaults.items():
            if value not in (None, ()) and field != "line":
                out[(section, field)] = value
    out[("link", "state")] = "up" if schema.LinkSpec._field_defaults["up"] else "down"
    out[("top", "prefix")] = schema.LabSpec.__dataclass_fields__["prefix"].default
    return out


def _yaml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def undocumented() -> list[str]:
    """Keys the validator accepts (or reserves) that DESCRIPTIONS does not describe."""
    from vethlab.topology import validate

    tables = _key_tables()
    missing = []
    for section, _title, _intro, table, reserved in SECTIONS:
        keys = set(tables[table]) | (set(validate.NOT_YET.get(reserved, set())) if reserved is not None else set())
        missing += [f"{section}.{key}" for key in sorted(keys) if (section, key) not in DESCRIPTIONS]
    return missing


def topology_page() -> str:
    from vethlab.topology import naming, networks, shaping, validate

    tables = _key_tables()
    defaults = _defaults()
    lines = [
        "<!-- GENERATED by docs/gen.py from src/vethlab/topology/ — do not edit; run `.venv/bin/python docs/gen.py` -->",
        "# Topology file reference",
        "",
        "A lab is one YAML file. Every key below is checked before anything touches the kernel; an "
        "unknown key is an error (with a *did you mean* hint), never ignored. All problems of a file are "
        "reported at once as `FILE:LINE: field.path: message`, exit status 2.",
        "For a walk through a real file see [the tutorial](../tutorial.md); for the whole contract, "
        "[spec.md](../spec.md).",
        "",
    ]
    for section, title, intro, table, reserved in SECTIONS:
        later = set(validate.NOT_YET.get(reserved, set())) if reserved is not None else set()
        known = [k for (s, k) in DESCRIPTIONS if s == section]  # the order a reader needs them in
        accepted = set(tables[table])
        keys = [k for k in known if k in accepted] + sorted(accepted - set(known))
        keys += [k for k in known if k in later - accepted] + sorted(later - accepted - set(known))
        lines += [f"## {title}", "", intro, "", "| key | default | meaning |", "|---|---|---|"]
        for key in keys:
            text = DESCRIPTIONS.get((section, key), UNDOCUMENTED)
            if key in later:
                text = "*Not supported yet by this version: refused with an error.* " + text
            default = defaults.get((section, key))
            shown = f"`{_yaml(default)}`" if default is not None else ""
            lines.append(f"| `{key}` | {shown} | {_cell(text)} |")
        lines.append("")
    lines += [
        "## Names and values",
        "",
        "| what | rule |",
        "|---|---|",
        f"| lab name | `{naming.LAB_NAME.pattern.strip('^$')}` |",
        f"| node name | `{naming.NODE_NAME.pattern.strip('^$')}`; not a number such as `10` or `0x1f` (resolvers read it as an address); `host` is the namespace vethlab runs in |",
        f"| network name | `{networks.NETWORK_NAME.pattern.strip('^$')}` |",
        f"| interface name | at most {naming.IFNAMSIZ - 1} bytes; no `/`, `:` or whitespace; not `.`, `..` or `lo` |",
        f"| sysctl key | `{naming.SYSCTL_KEY.pattern.strip('^$')}` (per-namespace keys only) |",
        f"| rate units | {', '.join(f'`{u}`' for u in shaping._RATE)} (as tc: `bit` units are bits, "
        "`bps` units are bytes per second); a rate is 1kbit to 34gbit (what tc carries) |",
        f"| time units | {', '.join(f'`{u}`' for u in shaping._TIME)} |",
        "| loss | a number from 0 to 100, `%` optional |",
        "| publish | `[HOSTIP:]HOSTPORT:PORT[/tcp\\|udp]`, ports 1–65535 |",
        "",
    ]
    return "\n".join(lines)


# -- the command line -----------------------------------------------------------

def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _helps(parser: argparse.ArgumentParser) -> dict[str, str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return {a.dest: a.help or "" for a in action._choices_actions}
    return {}


def _is_positional(action: argparse.Action) -> bool:
    return not action.option_strings


def _metavar(action: argparse.Action) -> str:
    if action.choices is not None and not isinstance(action.metavar, str):
        return "|".join(str(c) for c in action.choices)
    if isinstance(action.metavar, str):
        return action.metavar
    return action.dest.upper()


def _takes_value(action: argparse.Action) -> bool:
    return action.nargs != 0


def _usage_word(action: argparse.Action) -> str:
    if _is_positional(action):
        name = _metavar(action)
        if action.nargs == "?":
            return f"[{name}]"
        if action.nargs == argparse.REMAINDER:
            return f"[-- {name} …]" if action.dest == "cmd" else f"[{name} …]"
        return name
    flag = max(action.option_strings, key=len)
    word = f"{flag} {_metavar(action)}" if _takes_value(action) else flag
    return word if action.required else f"[{word}]"


def _arg_name(action: argparse.Action) -> str:
    if _is_positional(action):
        return _metavar(action)
    value = f" {_metavar(action)}" if _takes_value(action) else ""
    return ", ".join(f"{flag}{value}" for flag in action.option_strings)


def _default(action: argparse.Action) -> str:
    if action.default in (None, False, argparse.SUPPRESS) or _is_positional(action):
        return ""
    if isinstance(action, argparse._HelpAction | argparse._VersionAction):
        return ""
    return f"`{action.default}`"


def _cell(text: str | None) -> str:
    """Text fit for one cell of a Markdown table."""
    return (text or "").replace("%%", "%").replace("|", "\\|").replace("\n", " ")


#: What a positional argument is, where the parser gives it no help text (argparse
#: positionals in cli/main.py have none).  Keyed by the argument's dest.
POSITIONALS = {
    "file": "the topology file (default `./vethlab.yaml`)",
    "node": "a node of the lab",
    "cmd": "the command and its arguments, after `--`",
    "src": "the node the traffic starts from",
    "dst": "`ping`: an address, or a node (its address on a subnet shared with SRC, else its first); "
           "`perf`: a node",
    "endpoint": "one end of a link, `NODE:IFNAME`",
    "action": "what to do",
}


#: Options the parser gives no help text yet, keyed by (command, dest).  Better
#: moved into cli/main.py as `help=`, where `--help` shows them too; the parser's
#: own text wins as soon as it has one.
OPTIONS = {
    ("ping", "count"): "how many echo requests to send",
    ("chaos", "duration"): "how long to flap links, e.g. `60s`",
    ("chaos", "seed"): "the random seed: the same seed replays the same run",
    ("perf", "time"): "seconds to measure",
    ("graph", "output"): "the picture to write; its suffix (`.svg`, `.png`, `.dot`, `.mmd`) picks the format",
}


def _help(action: argparse.Action, command: str) -> str:
    if action.help:
        return _cell(action.help)
    if _is_positional(action):
        return POSITIONALS.get(action.dest, "")
    return OPTIONS.get((command, action.dest), "")


def _own_actions(parser: argparse.ArgumentParser, common: set[str]) -> list[argparse.Action]:
    return [a for a in parser._actions
            if not isinstance(a, argparse._HelpAction) and a.dest not in common]


def _common_options(commands: dict[str, argparse.ArgumentParser]) -> list[argparse.Action]:
    """Options every command takes (the shared parent parser's), listed once."""
    sets = [{a.dest for a in p._actions if a.option_strings} for p in commands.values()]
    shared = set.intersection(*sets) if sets else set()
    first = next(iter(commands.values()))
    return [a for a in first._actions if a.dest in shared and not isinstance(a, argparse._HelpAction)]


def cli_page() -> str:
    from vethlab.cli.main import build_parser

    parser = build_parser()
    commands = _subparsers(parser)
    helps = _helps(parser)
    common = _common_options(commands)
    common_dests = {a.dest for a in common}
    lines = [
        "<!-- GENERATED by docs/gen.py from src/vethlab/cli/main.py — do not edit; run `.venv/bin/python docs/gen.py` -->",
        "# Command-line reference",
        "",
        f"`vethlab COMMAND …` — {parser.description} `vethlab COMMAND --help` prints the same as this page.",
        "",
        "Exit status: 0 success; 1 the operation failed (a kernel error, an unreachable pair, a conflict with "
        "what is on the host, a missing kernel feature); 2 bad input (usage, or a topology file that does not "
        "validate); `exec` returns the command's own status, 127 when it cannot be found. "
        "FILE defaults to `./vethlab.yaml`. See [spec.md](../spec.md) for the full contract.",
        "",
        "## Options of every command",
        "",
        "They may stand anywhere after the command word (`vethlab link --lab L set …` or "
        "`vethlab link set --lab L …`).",
        "",
        "| option | meaning |",
        "|---|---|",
    ]
    lines += [f"| `{_arg_name(a)}` | {_cell(a.help)} |" for a in common]
    lines += ["", "## Commands", "", "| command | does |", "|---|---|"]
    lines += [f"| [`{name}`](#vethlab-{name}) | {_cell(helps.get(name))} |" for name in commands]
    lines.append("")
    for name, sub in commands.items():
        own = _own_actions(sub, common_dests)
        usage = " ".join(["vethlab", name] + [_usage_word(a) for a in own if not _is_positional(a)]
                         + [_usage_word(a) for a in own if _is_positional(a)])
        lines += [f"### vethlab {name}", "", _cell(sub.description or helps.get(name)), "", "```", usage, "```", ""]
        if own:
            lines += ["| argument | default | meaning |", "|---|---|---|"]
            lines += [f"| `{_cell(_arg_name(a))}` | {_default(a)} | {_help(a, name)} |" for a in own]
            lines.append("")
    return "\n".join(lines)


# -- driver --------------------------------------------------------------------

def pages() -> dict[Path, str]:
    """Every generated file and what it must contain."""
    return {OUT / "topology.md": topology_page(), OUT / "cli.md": cli_page()}


def stale() -> list[Path]:
    return [path for path, text in pages().items() if not path.exists() or path.read_text() != text]


def main(argv: Iterable[str] = ()) -> int:
    args = list(argv)
    if "--check" in args:
        bad = stale()
        for path in bad:
            print(f"{path.relative_to(ROOT)} is stale: run .venv/bin/python docs/gen.py", file=sys.stderr)
        return 1 if bad else 0
    OUT.mkdir(parents=True, exist_ok=True)
    for path, text in pages().items():
        path.write_text(text)
        print(f"wrote {path.relative_to(ROOT)}")
    missing = undocumented()
    if missing:
        print(f"undocumented keys (add them to DESCRIPTIONS in docs/gen.py): {', '.join(missing)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    raise SystemExit(main(sys.argv[1:]))

