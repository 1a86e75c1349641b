"""Kernel.oper_states, what `up` polls while its links come up, against the real
kernel: the same names and states as `ip -j link` shows, all of a namespace's
links or -- filtered by the kernel -- only those of one kind; and a new lab's `up`
returns with every one of them UP."""

from __future__ import annotations

from helpers import ip_json, star_lab, vethlab
from vethlab.kernel.rtnl import NetlinkKernel


def _ip_states(*ns: str) -> dict[str, tuple[str, str]]:
    """ifname -> (kind, operstate), as iproute2 decodes them."""
    args = ["-n", ns[0]] if ns else []
    return {link["ifname"]: (link.get("linkinfo", {}).get("info_kind", ""), link["operstate"])
            for link in ip_json(*args, "-d", "link")}


def test_oper_states_are_what_ip_shows(write) -> None:
    vethlab("up", write(star_lab(3)), check=True)
    kernel = NetlinkKernel()
    try:
        for ns in ("n0", "n2"):
            ip = _ip_states(ns)
            assert ip == {"lo": ("", "UNKNOWN"), "eth0": ("veth", "UP")}
            assert kernel.oper_states(ns) == {name: state for name, (_kind, state) in ip.items()}
            assert kernel.oper_states(ns, "veth") == {"eth0": "UP"}
        host = _ip_states()
        assert kernel.oper_states(None) == {name: state for name, (_kind, state) in host.items()}
        veths = {name: state for name, (kind, state) in host.items() if kind == "veth"}
        assert len(veths) == 3 and set(veths.values()) == {"UP"}
        assert kernel.oper_states(None, "veth") == veths
        assert kernel.oper_states(None, "bridge") == {name: state for name, (kind, state) in host.items()
                                                      if kind == "bridge"}
    finally:
        kernel.close()
