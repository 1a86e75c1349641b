"""`vethlab` command line: argument parsing and the one place errors become exit
statuses (0 ok, 1 failed, 2 bad input), never tracebacks.

argparse (stdlib) rather than click/typer: `vethlab exec NODE -- true` must start
within ~50 ms of a bare `python3 -c pass`, and every import counts.  Commands are
imported only when chosen.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn, cast

from . import argtypes

Handler = Callable[[argparse.Namespace], int]


def _lazy(module: str, name: str) -> Handler:
    def handler(args: argparse.Namespace) -> int:
        import importlib

        fn: Handler = getattr(importlib.import_module(f"vethlab.cli.{module}"), name)
        return fn(args)

    return handler


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # exit 2 with our prefix, like every usage error
        self.print_usage(sys.stderr)
        print(f"vethlab: error: {message}", file=sys.stderr)
        raise SystemExit(2)


FILE_HELP = "the topology file (YAML; default ./vethlab.yaml)"


class _Unbuilt:
    """Stands in for the parser of a command this run did not choose: every call on
    it (add_argument, set_defaults, ...) does nothing.  Building all 23 subparsers
    took 8 ms of `vethlab down`'s ~75 ms (measured); building one takes ~1."""

    def __getattr__(self, name: str) -> Callable[..., _Unbuilt]:
        return lambda *args, **kwargs: self


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with `only`, a parser whose one subcommand is
    `only` (the same parser for that command's arguments, help and errors).
    An `only` that names no command gets the whole parser (its error lists them)."""
    parser = _build(only)
    if only is not None and only not in _choices(parser):
        parser = _build(None)
    return parser


def _choices(parser: argparse.ArgumentParser) -> dict[str, Any]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _build(only: str | None) -> argparse.ArgumentParser:
    # Options shared by commands may stand anywhere after the command word: each
    # subparser gets them (SUPPRESS keeps a nested parser from resetting them).
    common = _Parser(add_help=False)
    common.add_argument("--lab", default=argparse.SUPPRESS, help="the lab (default: the only one)")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="one JSON document on stdout")
    common.add_argument("--wait", type=argtypes.seconds(positive=False), default=argparse.SUPPRESS, metavar="SECONDS",
                        help="wait this long for another vethlab working on the lab (default 60)")

    parser = _Parser(prog="vethlab", description="Virtual networks of namespaces, veth pairs and bridges.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def cmd(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        if only is not None and name != only:
            return cast(argparse.ArgumentParser, _Unbuilt())
        p = sub.add_parser(name, parents=[common], help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        return p

    p = cmd("up", _lazy("lifecycle", "cmd_up"), "build the lab of FILE, or change it to match FILE")
    p.add_argument("file", nargs="?", metavar="FILE", help=FILE_HELP)
    p.add_argument("--keep-on-error", action="store_true", help="on failure, leave what was built for inspection")
    p.add_argument("-v", "--verbose", action="store_true", help="print each change as it is made")
    p.add_argument("--refresh", action="store_true",
                   help="re-read every node, not only those whose part of the file changed (repairs drift)")
    p.add_argument("--machine", metavar="NAME", help="a lab across machines: this machine's part only (default: the machine whose address this host has)")
    p = cmd("plan", _lazy("lifecycle", "cmd_plan"), "print what `up` would change, touching nothing")
    p.add_argument("file", nargs="?", metavar="FILE", help=FILE_HELP)
    p.add_argument("--refresh", action="store_true", help="re-read every node (shows drift)")
    p.add_argument("--machine", metavar="NAME", help="a lab across machines: this machine's part only (default: the machine whose address this host has)")
    p = cmd("down", _lazy("lifecycle", "cmd_down"), "remove everything the lab created")
    p.add_argument("file", nargs="?", metavar="FILE", help=FILE_HELP + "; or name the lab with --lab")
    p.add_argument("--machine", metavar="NAME", help="a lab across machines: this machine's part only (default: the machine whose address this host has)")
    p = cmd("validate", _lazy("lifecycle", "cmd_validate"), "check a topology file only")
    p.add_argument("file", nargs="?", metavar="FILE", help=FILE_HELP)
    cmd("ls", _lazy("inspect", "cmd_ls"), "the labs that exist")
    p = cmd("status", _lazy("inspect", "cmd_status"), "nodes and interfaces of a lab, as the kernel has them")
    p.add_argument("--machine", metavar="NAME", help="a lab across machines: this machine's part (the only one "
                   "its state holds); far ends of links are shown as MACHINE/NODE:IF")
    p = cmd("exec", _lazy("run", "cmd_exec"), "run a command inside a node")
    p.add_argument("node")
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    p = cmd("shell", _lazy("run", "cmd_shell"), "an interactive shell inside a node")
    p.add_argument("node")
    p = cmd("ping", _lazy("run", "cmd_ping"), "ping from node SRC to an address or node DST")
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("-c", "--count", type=argtypes.COUNT, default=3)
    p = cmd("pingall", _lazy("run", "cmd_pingall"), "ping between every pair of neighbours; exit 1 if any fails")
    p.add_argument("--all", action="store_true", help="every node to every address of every other node")
    p.add_argument("--machine", metavar="NAME", help="a lab across machines: pairs whose source is on this machine "
                   "(always so: the others' nodes are not here)")
    p = cmd("link", _lazy("faults", "cmd_link"), "faults and shaping on one link end: down, up, set, clear, flap")
    p.add_argument("action", choices=["down", "up", "set", "clear", "flap"])
    p.add_argument("endpoint", metavar="NODE:IFNAME")
    p.add_argument("--rate", help="set: e.g. 10mbit (tbf)")
    p.add_argument("--delay", help="set: e.g. 20ms (netem)")
    p.add_argument("--jitter", help="set: e.g. 5ms (netem; needs --delay)")
    p.add_argument("--loss", help="set: e.g. 1%% (netem)")
    p.add_argument("--down", default="1s", metavar="T", help="flap: time down (default 1s)")
    p.add_argument("--up", default="1s", metavar="T", help="flap: time up between flaps (default 1s)")
    p.add_argument("--count", type=argtypes.COUNT, default=1, help="flap: how many times (default 1)")
    p.add_argument("--all", action="store_true", help="down/up of a link across machines (with `carrier: true`): "
                   "the far machine takes its side too, so the far node sees NO-CARRIER (over ssh, or in a "
                   "simulated machine)")
    p = cmd("node", _lazy("faults", "cmd_node"), "all of a node's links down (isolate) or back up (restore)")
    p.add_argument("action", choices=["isolate", "restore"])
    p.add_argument("node")
    p.add_argument("--all", action="store_true", help="the far machines take their sides of the node's links "
                   "across machines (with `carrier: true`) down/up too, so the far nodes see NO-CARRIER")
    p = cmd("chaos", _lazy("faults", "cmd_chaos"), "random flaps for a while; the same seed replays the same run")
    p.add_argument("--duration", default="60s", metavar="T")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--all", action="store_true", help="each flap of a link across machines (with `carrier: true`) "
                   "takes the far machine's side too, so the far node sees NO-CARRIER")
    p = cmd("watch", _lazy("faults", "cmd_watch"), "link and address changes as they happen (netlink events)")
    p.add_argument("--duration", metavar="T", help="stop after this long")
    p.add_argument("--count", type=argtypes.COUNT, help="stop after this many events")
    p = cmd("capture", _lazy("faults", "cmd_capture"), "tcpdump on a node's interface")
    p.add_argument("endpoint", metavar="NODE:IFNAME")
    p.add_argument("-w", "--write", metavar="FILE", help="write a pcap file")
    p.add_argument("-c", "--count", type=argtypes.COUNT, help="stop after this many packets")
    p.add_argument("filter", nargs=argparse.REMAINDER, help="a pcap filter, e.g. icmp")
    p = cmd("perf", _lazy("faults", "cmd_perf"), "TCP throughput from node SRC to node DST")
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--time", type=argtypes.seconds(positive=True), default=5.0, metavar="S")
    p = cmd("graph", _lazy("inspect", "cmd_graph"), "draw the topology (.svg .png .dot .mmd .html)")
    p.add_argument("file", nargs="?", metavar="FILE", help=FILE_HELP + "; or draw a running lab with --lab")
    p.add_argument("-o", "--output", required=True, metavar="OUT")
    p = cmd("logs", _lazy("logs", "cmd_logs"), "the output of a node's services")
    p.add_argument("node")
    p.add_argument("service", nargs="?", help="the command, its program name, or its position in run: (from 0)")
    p.add_argument("-n", "--tail", type=argtypes.LINES, metavar="N", help="only the last N lines")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing what the services write")
    p = cmd("clean", _lazy("lifecycle", "cmd_clean"), "remove leftovers of labs whose run died")
    p.add_argument("--all", action="store_true", help="remove every lab, complete ones too")
    p = cmd("sandbox", _cmd_sandbox, "run a command in a throw-away network+mount namespace")
    p.add_argument("--machines", metavar="M1,M2,…",
                   help="simulated machines on an underlay bridge: machine N has eth0 10.200.0.N/24 (see docs/machines.md)")
    p.add_argument("--mtu", type=argtypes.integer(1280, 65535), metavar="BYTES", help="with --machines: the underlay's MTU (default 1500)")
    p.add_argument("--on", metavar="MACHINE", help="run CMD inside MACHINE of the enclosing `sandbox --machines`")
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    cmd("demo", _cmd_demo, "the seed's veth pair, shown working, in a sandbox")
    p = cmd("web", _lazy("web", "cmd_web"), "a live page of the lab on 127.0.0.1 (actions need the printed token)")
    p.add_argument("--port", type=argtypes.PORT, default=8088, help="TCP port (default 8088; 0: any free port)")
    p.add_argument("--bind", metavar="ADDRESS", help="listen on ADDRESS instead of 127.0.0.1 (reachable by others!)")
    p = cmd("doctor", _lazy("doctor", "cmd_doctor"),
            "preflight of this host: kernel features, firewalls, settings; with FILE, what it needs")
    p.add_argument("file", nargs="?", help="a topology file: its needs become requirements (exit 1 if missing)")
    return parser


def _version() -> str:
    from .. import __version__

    return f"vethlab {__version__}"


def _cmd_sandbox(args: argparse.Namespace) -> int:
    from ..kernel import sandbox

    argv = list(args.cmd)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if args.on is not None:
        if args.machines:
            print("vethlab: error: --on runs in a machine of the enclosing sandbox; it takes no --machines",
                  file=sys.stderr)
            return 2
        from ..kernel import machines

        return machines.exec_on(args.on, argv)
    names = None
    if args.machines is not None:
        from ..kernel import machines

        try:
            names = machines.parse_names(args.machines)
        except ValueError as exc:
            print(f"vethlab: error: {exc}", file=sys.stderr)
            return 2
    return sandbox.run(argv, names, args.mtu)


def _cmd_demo(args: argparse.Namespace) -> int:
    from ..kernel import sandbox

    if os.environ.get(sandbox.ENV_FLAG):
        from .demo import main as demo_main

        return demo_main()
    return sandbox.run([sys.executable, "-m", "vethlab", "demo"])


def _defaults(args: argparse.Namespace) -> argparse.Namespace:
    for name, value in (("lab", None), ("json", False), ("wait", 60.0), ("file", None)):
        if not hasattr(args, name):
            setattr(args, name, value)
    if getattr(args, "command", None) == "exec" and args.cmd and args.cmd[0] == "--":
        args.cmd = args.cmd[1:]
    return args


def main(argv: list[str] | None = None) -> int:
    from ..errors import ValidationError, VethlabError

    words = sys.argv[1:] if argv is None else argv
    # the command word comes first (top-level options are only --help and --version):
    # build that command's parser alone
    parser = build_parser(words[0] if words and not words[0].startswith("-") else None)
    args = parser.parse_args(words)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    args = _defaults(args)
    try:
        if args.lab is not None:  # every command: a --lab that is no lab name never reaches a path
            from ..topology.naming import check_lab

            check_lab(args.lab)
        return int(args.handler(args))
    except ValidationError as exc:
        for issue in exc.issues:
            print(str(issue), file=sys.stderr)
        return exc.exit_code
    except VethlabError as exc:
        print(f"vethlab: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("vethlab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    except Exception as exc:  # a bug: say so plainly, with enough to report it
        if os.environ.get("VETHLAB_DEBUG"):
            raise
        print(f"vethlab: internal error: {type(exc).__name__}: {exc} (set VETHLAB_DEBUG=1 for a traceback)",
              file=sys.stderr)
        return 1


def run() -> NoReturn:
    """The process's entry point (the `vethlab` script, `python -m vethlab`): main(),
    then its exit status.  When nothing is left for the interpreter to do at exit --
    no atexit callback, no other thread, no profiler or tracer, output flushed --
    the process ends at once: tearing the interpreter down (freeing ~200 modules and
    everything they hold) took ~8 ms of every command, as long as a small `down`'s
    own work.  Otherwise (and for a SystemExit from argparse) it exits as usual.

    The cyclic garbage collector runs far less often (every 100 000 allocations
    instead of 700): a command builds tens of thousands of small objects that live
    until it ends and form no cycles worth finding, and the default threshold made
    the collector walk them again and again -- ~6 ms of a 110 ms one-member `plan`
    of a 1000-node star (medians of 6, interleaved).  Memory is freed by reference
    counting as before; a long-lived caller of the Python API keeps its own settings."""
    import gc

    gc.set_threshold(100_000, 50, 100)
    code = main()
    if _nothing_left_at_exit():
        try:
            for stream in (sys.stdout, sys.stderr):
                if stream is not None:
                    stream.flush()
        except Exception:  # e.g. a closed pipe: the interpreter reports it, as it always did
            raise SystemExit(code) from None
        os._exit(code)
    raise SystemExit(code)


def _nothing_left_at_exit() -> bool:
    import atexit

    threading = sys.modules.get("threading")
    callbacks = getattr(atexit, "_ncallbacks", None)  # CPython's count of atexit.register()ed callbacks
    return (callbacks is not None and callbacks() == 0
            and (threading is None or threading.active_count() == 1)
            and sys.getprofile() is None and sys.gettrace() is None and not sys.flags.dev_mode)


if __name__ == "__main__":
    run()
