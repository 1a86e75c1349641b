"""`vethlab web`: serve the live page of a lab until interrupted."""

from __future__ import annotations

import argparse
import sys


def cmd_web(args: argparse.Namespace) -> int:
    from ..errors import ConflictError

    try:
        import aiohttp  # noqa: F401
    except ImportError:
        raise ConflictError("`vethlab web` needs aiohttp: pip install aiohttp (./run setup installs it)") from None
    from .webserver import serve

    def say(line: str) -> None:
        print(line, file=sys.stderr if args.json else sys.stdout, flush=True)

    serve(args.lab, args.port, args.bind, say)
    return 0
