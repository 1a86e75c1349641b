"""Link shaping values: `rate: 100mbit`, `delay: 5ms`, `jitter: 1ms`, `loss: 0.1%`.

Units follow tc(8): rates in bit (bit, kbit, mbit, gbit, tbit) or bytes per second
(bps, kbps, mbps, gbps), times in s, ms, us.  Parsed once, here, into integers
(bits per second, microseconds) and a float (percent).
"""

from __future__ import annotations

import re
from typing import NamedTuple

_RATE = {"bit": 1, "kbit": 1000, "mbit": 1000**2, "gbit": 1000**3, "tbit": 1000**4,
         "bps": 8, "kbps": 8000, "mbps": 8 * 1000**2, "gbps": 8 * 1000**3}
_TIME = {"s": 1_000_000, "ms": 1000, "us": 1, "usec": 1, "msec": 1000, "sec": 1_000_000}
# ASCII digits, at most 15 before and after the point: a longer number made float()
# return inf, and int(inf) raised OverflowError (an internal error, not exit 2)
_NUMBER = r"([0-9]{1,15}(?:\.[0-9]{1,15})?)"
# The rates tc can carry: tbf's and netem's rate fields are u32 bytes per second
# (4294967295 B/s = 34359738360 bit/s), and tbf's buffer, in psched ticks of a
# 16 kB burst, overflows u32 below 466 bit/s (measured by encoding the request).
# Outside these the request failed at `up`, after building, with struct's
# "'I' format requires 0 <= number <= 4294967295"; now the file is refused.
RATE_MIN = 1000
RATE_MAX = 0xFFFFFFFF * 8


class Shaping(NamedTuple):
    """Egress shaping of one interface.  Needs tbf (rate only) or netem (anything else)."""

    rate: int | None = None  # bits per second
    delay: int | None = None  # microseconds
    jitter: int | None = None  # microseconds
    loss: float | None = None  # percent

    @property
    def qdisc(self) -> str:
        return "netem" if (self.delay or self.jitter or self.loss) else "tbf"

    def merged(self, other: Shaping | None) -> Shaping:
        """`other`'s values where given, ours elsewhere."""
        if other is None:
            return self
        return Shaping(rate=other.rate if other.rate is not None else self.rate,
                       delay=other.delay if other.delay is not None else self.delay,
                       jitter=other.jitter if other.jitter is not None else self.jitter,
                       loss=other.loss if other.loss is not None else self.loss)

    def __bool__(self) -> bool:
        return any(v is not None for v in (self.rate, self.delay, self.jitter, self.loss))

    def describe(self) -> str:
        parts = []
        if self.rate is not None:
            parts.append(f"rate {format_rate(self.rate)}")
        if self.delay is not None:
            parts.append(f"delay {self.delay / 1000:g}ms")
        if self.jitter is not None:
            parts.append(f"jitter {self.jitter / 1000:g}ms")
        if self.loss is not None:
            parts.append(f"loss {self.loss:g}%")
        return " ".join(parts)

    def to_json(self) -> dict[str, float | int | None]:
        return {"rate": self.rate, "delay": self.delay, "jitter": self.jitter, "loss": self.loss}


def format_rate(bps: int) -> str:
    for unit, size in (("gbit", 1000**3), ("mbit", 1000**2), ("kbit", 1000)):
        if bps >= size and bps % size == 0:
            return f"{bps // size}{unit}"
    return f"{bps}bit"


def parse_rate(text: object) -> int:
    m = re.fullmatch(_NUMBER + r"\s*([a-z]+)", str(text).strip().lower())
    if not m or m.group(2) not in _RATE:
        raise ValueError(f"{text!r} is not a rate such as 100mbit, 1gbit or 500kbps")
    value = int(float(m.group(1)) * _RATE[m.group(2)])
    if value <= 0:
        raise ValueError(f"rate {text!r} must be above zero")
    if not RATE_MIN <= value <= RATE_MAX:
        raise ValueError(f"rate {text!r} is out of range: tc takes 1kbit to 34gbit")
    return value


def parse_time(text: object) -> int:
    m = re.fullmatch(_NUMBER + r"\s*([a-z]+)", str(text).strip().lower())
    if not m or m.group(2) not in _TIME:
        raise ValueError(f"{text!r} is not a time such as 5ms, 100us or 1s")
    return int(float(m.group(1)) * _TIME[m.group(2)])


def parse_loss(text: object) -> float:
    m = re.fullmatch(_NUMBER + r"\s*%?", str(text).strip())
    if not m or float(m.group(1)) > 100:
        raise ValueError(f"{text!r} is not a loss such as 0.1% (0 to 100)")
    return float(m.group(1))


def parse_shaping(values: dict[str, object]) -> Shaping:
    """From a mapping with keys rate/delay/jitter/loss; raises ValueError(key, message)."""
    out: dict[str, object] = {}
    for key, parser in (("rate", parse_rate), ("delay", parse_time), ("jitter", parse_time), ("loss", parse_loss)):
        if values.get(key) is not None:
            try:
                out[key] = parser(values[key])
            except ValueError as exc:
                raise ValueError(key, str(exc)) from None
    shaping = Shaping(**out)  # type: ignore[arg-type]
    if shaping.jitter and not shaping.delay:
        raise ValueError("jitter", "jitter needs a delay")
    return shaping
