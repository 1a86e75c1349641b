"""A lab built with the Python builder (Lab.new + add_*) comes up, works, grows
and goes, like a lab from a file."""

from __future__ import annotations

import os
from typing import Any

from helpers import ip_json
from vethlab import Lab


def ping(lab: Lab, node: str, address: str) -> int:
    return lab.node(node).exec(["ping", "-c", "1", "-W", "2", address]).returncode


def addresses(netns: str) -> dict[str, list[str]]:
    return {link["ifname"]: sorted(f"{a['local']}/{a['prefixlen']}" for a in link["addr_info"]
                                   if a["family"] == "inet")
            for link in ip_json("-n", netns, "addr")}


def test_a_built_two_node_lab_comes_up_pings_grows_and_goes() -> None:
    lab = Lab.new("built")
    a = lab.add_node("a", routes=["10.0.2.0/24 via 10.0.1.2"])
    b = lab.add_node("b", sysctls={"net.ipv4.ip_forward": 1})
    lab.add_link(f"{a}:e0", f"{b}:e0", addresses=["10.0.1.1/24", "10.0.1.2/24"], mtu=1400)
    first = lab.up()
    assert first and not lab.plan()  # what was built is what the builder says
    assert ping(lab, "a", "10.0.1.2") == 0 and ping(lab, "b", "10.0.1.1") == 0
    assert addresses("a") == {"lo": ["127.0.0.1/8"], "e0": ["10.0.1.1/24"]}
    assert next(link["mtu"] for link in ip_json("-n", "b", "link") if link["ifname"] == "e0") == 1400

    # the same object grows: only the new node and link are made, through b
    lab.add_node("c", routes=["default via 10.0.2.1"])
    lab.add_link("b:e1", "c:e0", addresses=["10.0.2.1/24", "10.0.2.2/24"])
    grown = lab.up()
    assert {action.target for action in grown.actions} == {
        "c", "c:e0", "b:e1", "b:e1 <-> c:e0", "10.0.2.1/24 on b:e1", "10.0.2.2/24 on c:e0", "c: default via 10.0.2.1",
        "/etc/netns/a/hosts", "/etc/netns/b/hosts", "/etc/netns/c/hosts"}  # every node now knows c by name
    assert sorted(os.listdir("/run/netns")) == ["a", "b", "c"]
    assert ping(lab, "a", "10.0.2.2") == 0  # a -> b (forwarding) -> c, by a's route and c's default

    lab.down()
    assert os.listdir("/run/netns") == [] and os.listdir("/etc/netns") == []
    assert "built" not in os.listdir(os.environ["VETHLAB_STATE_DIR"])


def test_the_pytest_fixture_takes_a_built_lab(vethlab_lab: Any) -> None:
    lab = Lab.new("fixture")
    lab.add_node("x")
    lab.add_node("y")
    lab.add_network("lan", members=["x", "y"], subnet="10.7.0.0/24", gateway=False)
    assert vethlab_lab(lab) is lab
    assert ping(lab, "x", "10.7.0.2") == 0  # IPAM: members in order, from the first address (no gateway)
