"""VXLAN devices and static FDB entries over rtnetlink (our codec, nl.py).

A link across machines is a kernel VXLAN device (a standard VTEP, UDP 4789) in
the node's namespace under the link's interface name.  It is created by a
request sent on a socket of the *machine's* namespace carrying IFLA_NET_NS_FD of
the node, exactly as `ip link add e0 netns a type vxlan id N local L remote R
dstport 4789 [dev D]` run in the machine does: the kernel makes the device in
the node but binds its UDP socket (and resolves `dev`) in the namespace the
request came from, so the tunnel's packets leave by the machine's underlay while
the node sees an ordinary Ethernet interface.  One request, no temporary name.

A network across machines gets a VXLAN port without a remote next to its bridge,
and one all-zero-MAC FDB entry per other machine (`bridge fdb append
00:00:00:00:00:00 dev vx… dst R`): broadcast and unknown unicast are copied to
each of them (head-end replication), so no multicast is needed on the underlay.
"""

from __future__ import annotations

import ipaddress
import struct

from . import nl

IFLA_VXLAN_ID, IFLA_VXLAN_GROUP, IFLA_VXLAN_LINK, IFLA_VXLAN_LOCAL = 1, 2, 3, 4
IFLA_VXLAN_LEARNING, IFLA_VXLAN_PORT, IFLA_VXLAN_GROUP6, IFLA_VXLAN_LOCAL6 = 7, 15, 16, 17
RTM_NEWNEIGH, RTM_DELNEIGH, RTM_GETNEIGH = 28, 29, 30
NDA_DST, NDA_LLADDR = 1, 2
NUD_NOARP, NUD_PERMANENT = 0x40, 0x80
NTF_SELF = 0x02
F_APPEND = 0x800
AF_BRIDGE = 7
_NDM = struct.Struct("=BxxxiHBB")  # ndmsg: family, pad, pad16, ifindex, state, flags, type
ZERO_MAC = b"\0" * 6


def vxlan_body(name: str, vni: int, local: str, remote: str | None, *, port: int = 4789, dev_index: int | None = None,
               ns_fd: int | None = None, mtu: int | None = None, index: int = 0, learning: bool = True,
               mac: bytes | None = None) -> bytes:
    """RTM_NEWLINK body of `ip link add NAME [netns NS] [address MAC] [mtu M] type vxlan id VNI local L
    [remote R] dstport PORT [dev D] [nolearning]`."""
    body = nl.ifinfo(index) + nl.attr_str(nl.IFLA_IFNAME, name)
    if mac is not None:
        body += nl.attr(nl.IFLA_ADDRESS, mac)
    if ns_fd is not None:
        body += nl.attr_u32(nl.IFLA_NET_NS_FD, ns_fd)
    if mtu:
        body += nl.attr_u32(nl.IFLA_MTU, mtu)
    here = ipaddress.ip_address(local)
    data = nl.attr_u32(IFLA_VXLAN_ID, vni)
    if remote is not None:
        there = ipaddress.ip_address(remote)
        data += nl.attr(IFLA_VXLAN_GROUP if there.version == 4 else IFLA_VXLAN_GROUP6, there.packed)
    data += nl.attr(IFLA_VXLAN_LOCAL if here.version == 4 else IFLA_VXLAN_LOCAL6, here.packed)
    if dev_index is not None:
        data += nl.attr_u32(IFLA_VXLAN_LINK, dev_index)
    data += nl.attr(IFLA_VXLAN_PORT, struct.pack(">H", port))
    data += nl.attr(IFLA_VXLAN_LEARNING, struct.pack("=B", 1 if learning else 0))
    return body + nl.attr(nl.IFLA_LINKINFO, nl.attr_str(nl.IFLA_INFO_KIND, "vxlan") + nl.attr(nl.IFLA_INFO_DATA, data))


def fdb_body(index: int, dst: str, mac: bytes = ZERO_MAC) -> bytes:
    """RTM_NEWNEIGH / RTM_DELNEIGH body of `bridge fdb append MAC dev IF dst DST` (self, permanent)."""
    ip = ipaddress.ip_address(dst)
    return _NDM.pack(AF_BRIDGE, index, NUD_NOARP | NUD_PERMANENT, NTF_SELF, 0) + nl.attr(NDA_LLADDR, mac) + \
        nl.attr(NDA_DST, ip.packed)


def parse_vxlan(msg: memoryview) -> dict[str, object] | None:
    """From an RTM_NEWLINK message: the VXLAN fields that make a link what the file
    asks (`vni`, `local`, `remote`, `port`, `link`), or None if it is no VXLAN."""
    a = nl.attrs(msg, 16 + 16, len(msg))
    info = a.get(nl.IFLA_LINKINFO)
    if info is None:
        return None
    inner = nl.attrs(info, 0, len(info))
    if nl.text(inner.get(nl.IFLA_INFO_KIND)) != "vxlan" or nl.IFLA_INFO_DATA not in inner:
        return None
    raw = inner[nl.IFLA_INFO_DATA]
    data = nl.attrs(raw, 0, len(raw))

    def addr(v4: int, v6: int) -> str | None:
        value = data.get(v4) or data.get(v6)
        return str(ipaddress.ip_address(bytes(value))) if value is not None and any(value) else None

    port = data.get(IFLA_VXLAN_PORT)
    return {"vni": nl.u32(data.get(IFLA_VXLAN_ID)), "remote": addr(IFLA_VXLAN_GROUP, IFLA_VXLAN_GROUP6),
            "local": addr(IFLA_VXLAN_LOCAL, IFLA_VXLAN_LOCAL6),
            "port": struct.unpack(">H", bytes(port))[0] if port is not None and len(port) >= 2 else None,
            "link": nl.u32(data.get(IFLA_VXLAN_LINK))}


def parse_fdb(msg: memoryview) -> tuple[int, str, str | None]:
    """(ifindex, MAC, dst) of an RTM_NEWNEIGH of family AF_BRIDGE."""
    _family, index, _state, _flags, _type = _NDM.unpack_from(msg, 16)
    a = nl.attrs(msg, 16 + _NDM.size, len(msg))
    mac = bytes(a.get(NDA_LLADDR) or b"")
    dst = a.get(NDA_DST)
    return index, ":".join(f"{b:02x}" for b in mac), str(ipaddress.ip_address(bytes(dst))) if dst is not None else None


def fdb_dump_body(index: int) -> bytes:
    return _NDM.pack(AF_BRIDGE, index, 0, 0, 0)
