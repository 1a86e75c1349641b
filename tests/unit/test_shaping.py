"""Shaping values and the tc messages they become (netem included, kernel or not)."""

from __future__ import annotations

import pytest

from vethlab.topology.shaping import Shaping, parse_loss, parse_rate, parse_shaping, parse_time


def test_units() -> None:
    assert parse_rate("100mbit") == 100_000_000 and parse_rate("1gbit") == 10**9
    assert parse_rate("500kbps") == 4_000_000 and parse_rate("1.5mbit") == 1_500_000
    assert parse_time("5ms") == 5000 and parse_time("100us") == 100 and parse_time("1s") == 1_000_000
    assert parse_loss("0.1%") == 0.1 and parse_loss(2) == 2.0
    for bad in ("fast", "10 furlongs", "-1mbit"):
        with pytest.raises(ValueError):
            parse_rate(bad)


def test_override_and_qdisc_choice() -> None:
    base = parse_shaping({"rate": "8mbit"})
    assert base.qdisc == "tbf"
    end = base.merged(Shaping(delay=5000))
    assert end == Shaping(rate=8_000_000, delay=5000) and end.qdisc == "netem"
    assert end.describe() == "rate 8mbit delay 5ms"


def test_netem_message_carries_delay_jitter_loss_rate() -> None:
    from pyroute2.netlink.rtnl.tcmsg import tcmsg

    from vethlab.kernel import tc

    data = tc.request(7, {"rate": 10_000_000, "delay": 20_000, "jitter": 5_000, "loss": 1.0})
    msg = tcmsg(data)
    msg.decode()
    assert msg["index"] == 7 and msg.get_attr("TCA_KIND") == "netem"
    opts = msg.get_attr("TCA_OPTIONS")
    assert opts["loss"] == int(0xFFFFFFFF * 0.01) or abs(opts["loss"] / 0xFFFFFFFF - 0.01) < 1e-6
    assert opts["delay"] > 0 and opts["jitter"] > 0 and opts["delay"] == 4 * opts["jitter"]
    assert opts.get_attr("TCA_NETEM_RATE")["rate"] == 10_000_000 // 8


def test_tbf_message() -> None:
    from pyroute2.netlink.rtnl.tcmsg import tcmsg

    from vethlab.kernel import tc

    msg = tcmsg(tc.request(3, {"rate": 8_000_000}))
    msg.decode()
    assert msg.get_attr("TCA_KIND") == "tbf"
    assert msg.get_attr("TCA_OPTIONS").get_attr("TCA_TBF_PARMS")["rate"] == 1_000_000
