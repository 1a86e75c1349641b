"""The drivers, in planning order.  Adding a kind of resource = its module in
drivers/ and one line here.

Planning order matters where a driver reads what an earlier one planned or found:
namespaces first (they say which nodes are new), the interfaces of every kind
before uplinks (a bridge takes ports), routes after the interfaces (they look at
address deletions).  Execution order is the actions' phases (reconcile/actions.py),
not this list."""

from __future__ import annotations

from ..kernel.api import Kernel
from ..model.desired import Desired
from ..reconcile.observe import Observed
from . import (
    bridge,
    exec,
    firewall,
    hosts,
    link,
    macvlan,
    namespace,
    route,
    service,
    shaping,
    sysctl,
    veth,
    view,
    vxlan,
)
from .base import Driver

DRIVERS: tuple[Driver, ...] = (
    namespace.DRIVER,
    view.DRIVER,
    bridge.DRIVER,
    veth.DRIVER,
    macvlan.DRIVER,
    vxlan.DRIVER,
    link.DRIVER,
    bridge.UPLINKS,
    firewall.DRIVER,
    sysctl.FORWARDING,
    service.DRIVER,
    shaping.DRIVER,
    route.DRIVER,
    sysctl.DRIVER,
    hosts.DRIVER,
    exec.DRIVER,
)


def observe_kinds(kernel: Kernel, desired: Desired, observed: Observed) -> None:
    """Each driver's own reads, after reconcile/observe.py's."""
    for driver in DRIVERS:
        driver.observe(kernel, desired, observed)
