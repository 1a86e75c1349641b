"""argparse types for numbers with a range, so that a wrong number is exit 2 at parse time.

Plain `type=int` let through what the command then choked on: `web --port 99999`
was "internal error: OverflowError" (exit 1), `perf --time 0` never returned,
`ping -c 0` was ping's own complaint (exit 1), `link flap --count -3` and
`logs -n -3` did nothing and exited 0.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def integer(low: int, high: int | None = None) -> Callable[[str], int]:
    """An int from `low` to `high` (inclusive; no upper bound when None)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low or (high is not None and value > high):
            bound = f"from {low} to {high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"{text!r} is out of range: {bound}")
        return value
    parse.__name__ = "integer"
    return parse


def seconds(*, positive: bool) -> Callable[[str], float]:
    """A finite number of seconds: above zero when `positive`, else zero or more."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
        if not math.isfinite(value) or value < 0 or (positive and value == 0):
            raise argparse.ArgumentTypeError(
                f"{text!r} is out of range: {'above zero' if positive else 'zero or more'} seconds")
        return value
    parse.__name__ = "seconds"
    return parse


PORT = integer(0, 65535)
COUNT = integer(1)
LINES = integer(0)
