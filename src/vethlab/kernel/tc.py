"""Traffic control: tbf for a rate alone, netem for delay, jitter, loss (and rate).

Encoding tc messages (rate tables, psched ticks, netem's option structs) is what
pyroute2 does well and what vethlab needs rarely, so this module uses it — and is
imported only when a lab shapes a link (pyroute2's import costs ~0.2 s).

Whether the kernel has a qdisc is probed, not guessed: once per process, in a
throw-away network namespace (a worker thread unshares one), by adding that qdisc
to its lo.  So a lab asking for `delay:` on a kernel without sch_netem is refused
before anything is built.
"""

from __future__ import annotations

import errno
import os
import socket
from typing import Any

from ..errors import KernelError
from . import netns as nsmod

BURST_MIN = 16_000  # bytes: above any MTU, small enough for an accurate rate at a few Mbit/s
LATENCY = "50ms"
_probed: dict[str, bool] = {}



def params(shaping: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(qdisc kind, pyroute2 tc parameters) for a shaping (Shaping.to_json())."""
    rate, delay, jitter, loss = (shaping.get(k) or 0 for k in ("rate", "delay", "jitter", "loss"))
    if delay or jitter or loss:
        out: dict[str, Any] = {"delay": int(delay or 0), "jitter": int(jitter or 0), "loss": float(loss or 0),
                               "limit": 10_000}
        if rate:
            out["rate"] = f"{int(rate)}bit"
        return "netem", out
    burst = max(BURST_MIN, int(rate) // 8 // 100)  # at least 10 ms worth of bytes
    return "tbf", {"rate": f"{int(rate)}bit", "burst": burst, "latency": LATENCY}


def request(index: int, shaping: dict[str, Any]) -> bytes:
    """The RTM_NEWQDISC message `apply` sends, without sending it (for tests)."""
    from pyroute2 import IPBatch

    kind, kwargs = params(shaping)
    batch = IPBatch()
    batch.tc("replace", kind=kind, index=index, handle="1:", **kwargs)
    return bytes(batch.batch)


def supported(kind: str) -> bool:
    """Does this kernel have qdisc `kind`?  Probed in a throw-away namespace."""
    if kind not in _probed:
        def probe() -> bool:
            from pyroute2 import IPRoute

            nsmod.unshare_net()
            with IPRoute() as ipr:
                ipr.link("set", index=1, state="up")
                kwargs = params({"delay": 1000} if kind == "netem" else {"rate": 1_000_000})[1]
                try:
                    ipr.tc("add", kind=kind, index=1, handle="1:", **kwargs)
                except Exception:
                    return False
            return True

        try:
            _probed[kind] = nsmod.run_in_thread(probe)
        except OSError:
            _probed[kind] = True  # cannot probe (no privilege): let the real request speak
    return _probed[kind]


def _ipr(ns: str | None) -> Any:
    from pyroute2 import IPRoute

    if ns is None:
        return IPRoute()
    # pyroute2 runs the socket through an asyncio datagram transport: SOCK_DGRAM
    fd = nsmod.call_inside(ns, lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 0).detach())
    return IPRoute(fileno=fd)


def apply(ns: str | None, ifname: str, shaping: dict[str, Any] | None) -> None:
    """Replace the root qdisc of `ifname` (or remove it when `shaping` is None)."""
    ipr = _ipr(ns)
    try:
        found = ipr.link_lookup(ifname=ifname)
        if not found:
            raise KernelError(f"interface {ifname} not found in {ns or 'the host namespace'}")
        index = found[0]
        if shaping is None:
            try:
                ipr.tc("del", index=index, handle="1:", root=True)
            except Exception as exc:
                if getattr(exc, "code", None) not in (errno.ENOENT, errno.EINVAL):
                    raise
            return
        kind, kwargs = params(shaping)
        try:
            ipr.tc("replace", kind=kind, index=index, handle="1:", **kwargs)
        except Exception as exc:
            code = getattr(exc, "code", 0)
            raise KernelError(f"cannot shape {ifname} in {ns or 'the host namespace'} with {kind}: "
                              f"{os.strerror(code).lower() if code else exc}") from None
    finally:
        ipr.close()


def root_kind(ns: str | None, ifname: str) -> str | None:
    """The kind of the interface's root qdisc when it is one vethlab sets (tbf, netem)."""
    ipr = _ipr(ns)
    try:
        found = ipr.link_lookup(ifname=ifname)
        if not found:
            return None
        for msg in ipr.get_qdiscs(index=found[0]):
            if msg.get("parent") == 0xFFFFFFFF and msg.get_attr("TCA_KIND") in ("tbf", "netem"):
                return str(msg.get_attr("TCA_KIND"))
        return None
    finally:
        ipr.close()
