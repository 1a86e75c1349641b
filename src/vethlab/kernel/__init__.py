"""Every side effect of vethlab: the `Kernel` protocol (api.py) and its implementations.

Fronts and operations get a kernel from `open_kernel()`, never by naming an
implementation: the one place that chooses it.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported at run time: the CNI plugin's start-up passes through here
if TYPE_CHECKING:
    from .api import Kernel


def open_kernel() -> Kernel:
    """The kernel vethlab runs on: rtnetlink, nftables, /proc and /etc/netns of this
    machine.  Imported on first use (the netlink codec is not free to load); close()
    it when done."""
    from .rtnl import NetlinkKernel

    return NetlinkKernel()
