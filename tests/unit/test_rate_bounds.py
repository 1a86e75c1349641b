"""Edges a demanding user found, that need no kernel: what the file accepts, the
kernel request can carry."""

from __future__ import annotations

import struct

import pytest

from vethlab.kernel import tc
from vethlab.topology.shaping import RATE_MAX, RATE_MIN, parse_rate


@pytest.mark.parametrize("text", ["1kbit", "125bps", "34gbit", "4294967295bps", "1.5mbit"])
def test_every_rate_the_file_accepts_encodes_for_tbf_and_netem(text: str) -> None:
    """A rate the validator passed used to fail at `up`, after building, with
    struct's "'I' format requires 0 <= number <= 4294967295" (1bit, 100bit, 5tbit)."""
    rate = parse_rate(text)
    assert RATE_MIN <= rate <= RATE_MAX
    tc.request(1, {"rate": rate})
    tc.request(1, {"rate": rate, "delay": 1000})


@pytest.mark.parametrize("text", ["1bit", "100bit", "465bit", "5tbit", "999999tbit", "35gbit", "5gbps"])
def test_rates_tc_cannot_carry_are_refused_by_the_parser(text: str) -> None:
    with pytest.raises(ValueError, match="out of range"):
        parse_rate(text)


def test_rate_bounds_are_the_encoders_bounds() -> None:
    """Just inside both bounds encodes; the bounds themselves are the encoder's."""
    tc.request(1, {"rate": RATE_MIN})
    tc.request(1, {"rate": RATE_MAX})
    with pytest.raises(struct.error):
        tc.request(1, {"rate": RATE_MAX + 8})
