from __future__ import annotations

import pytest

from vethlab.topology.routes import RouteSyntaxError, parse_route


def test_default_v4_and_v6() -> None:
    assert parse_route("default via 192.168.1.1").dst == "0.0.0.0/0"
    assert parse_route("default via fd00::1").dst == "::/0"


def test_full() -> None:
    r = parse_route("10.9.0.0/16 via 192.168.1.1 dev vp2 metric 20 src 192.168.1.2")
    assert (r.dst, r.via, r.dev, r.metric, r.src) == ("10.9.0.0/16", "192.168.1.1", "vp2", 20, "192.168.1.2")


@pytest.mark.parametrize("text", ["", "default via", "10.0.0.0/8 via x", "10.0.0.0/8 via fd00::1",
                                  "default metric -1", "default via 1.1.1.1 via 1.1.1.2", "nonsense"])
def test_bad(text: str) -> None:
    with pytest.raises(RouteSyntaxError):
        parse_route(text)
