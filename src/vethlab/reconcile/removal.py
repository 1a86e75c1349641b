"""Find and remove what a lab left in the kernel, by ownership markers only.

Never by name pattern (Mininet's `mn -c` deletes by pattern and has broken users'
hosts).  A namespace is a lab's when its lo carries the lab's marker; an interface
in the host namespace when its alias does.  Routes and sysctls in the host
namespace are undone from the lab's state (a route additionally must still carry
vethlab's protocol number).  A firewall table is the lab's when it carries the lab's
marker chain (its name alone proves nothing), a directory /etc/netns/NODE when it
holds the lab's `.vethlab` marker file; temporary files a killed run left in
/etc/netns carry the lab's name in theirs.

Removal goes in the order that lets the kernel batch (`remove_in_kernel_order`):
bridges (one request detaches all their ports), namespaces, then a bounded wait
until their host-side veth ends have vanished with them (on the kernel's link
events, subscribed to before anything is deleted: `Vanishing`), then tables and
files.  Measured on a 2-core VM, kernel 6.18, star of 200 namespaces
on a host bridge: deleting the 200 host-side veths one by one takes 4.4 s (each
RTM_DELLINK waits for its own RCU grace period); deleting the namespaces and
waiting for the ports to vanish takes 0.17 s (the kernel destroys dying
namespaces' devices in batches, one grace period for all).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import field
from functools import partial

from ..deferred import dataclass
from ..errors import KernelError
from ..kernel.api import Kernel, LinkInfo, Netns, Removals, Route
from ..model.routes import route_matches
from ..ownership import (
    ROUTE_PROTO,
    cni_network_of,
    lab_of,
    lab_of_node_entry,
    marker,
    netns_tag,
    parse_netns_tag,
    table_owner,
)
from ..state import store
from . import progress


@dataclass
class Leftovers:
    namespaces: dict[str, str] = field(default_factory=dict)  # netns -> lab
    host_interfaces: dict[str, str] = field(default_factory=dict)  # ifname -> lab
    stale_files: list[str] = field(default_factory=list)  # dead /run/netns files known to be a lab's
    birth_markers: list[tuple[str, str]] = field(default_factory=list)  # (lab, netns)
    stopped: dict[str, int] = field(default_factory=dict)  # node (or namespace) -> processes ended by remove()
    tables: dict[str, str] = field(default_factory=dict)  # firewall table in the host namespace -> lab
    node_dirs: dict[str, str] = field(default_factory=dict)  # /etc/netns/NS marked as a lab's -> lab
    temp_files: list[tuple[str, str]] = field(default_factory=list)  # (lab, entry of /etc/netns)
    host_links: dict[str, LinkInfo] = field(default_factory=dict)  # the host's links as `find` saw them
    views: dict[str, str] = field(default_factory=dict)  # netns -> lab: nodes' mount+UTS namespaces (nodefs)
    # host ends of containers a runtime joined to the lab (CNI plugin): their peers
    # live in the runtime's namespaces, so they do not go with the lab's
    joined_ends: dict[str, str] = field(default_factory=dict)  # ifname -> lab
    alive: set[str] = field(default_factory=set)  # namespaces mounted in /run/netns as `find` saw them

    def labs(self) -> set[str]:
        return (set(self.namespaces.values()) | set(self.host_interfaces.values())
                | {lab for lab, _ in self.birth_markers}
                | set(self.tables.values()) | set(self.node_dirs.values()) | {lab for lab, _ in self.temp_files}
                | set(self.views.values()) | set(self.joined_ends.values()))

    def __bool__(self) -> bool:
        return bool(self.namespaces or self.host_interfaces or self.stale_files or self.birth_markers
                    or self.tables or self.node_dirs or self.temp_files or self.views or self.joined_ends)


def find(kernel: Kernel, labs: set[str] | None = None, candidates: list[str] | None = None,
         state: store.LabState | None = None) -> Leftovers:
    """Objects marked as belonging to `labs` (all labs when None).  `candidates`
    limits the namespaces looked at (the state's list, when it is known complete).

    With a complete `state` of the one lab asked for, a namespace whose nsfs inode
    is the one recorded when it was made is the lab's without entering it, and the
    host is searched for firewall tables only if the state has some.  Processes are
    not looked for here: `remove` ends those inside the namespaces found.

    The host ends of containers joined to one of `labs` through the CNI plugin
    (marked `vethlab-cni:lab:LAB`) are the lab's footprint too, found when labs are
    named (`down`), never when searching for leftovers of any lab (`clean`'s look
    round: a runtime's container alone does not make a lab)."""
    found = Leftovers()
    names = candidates if candidates is not None else kernel.list_namespaces()
    live = found.alive = kernel.alive_namespaces()
    alive = [n for n in names if n in live]
    trusted = state is not None and state.complete and labs is not None and len(labs) == 1
    known = state.netns_ids if trusted and state is not None else {}
    unproven = [n for n in alive if not (n in known and kernel.namespace_id(n) == known[n])]
    if unproven:
        kernel.open_namespaces(unproven)
    only = next(iter(labs)) if labs and len(labs) == 1 else None
    for ns in alive:
        lab = only if ns not in unproven else lab_of(kernel.namespace_owner(ns))
        if lab and (labs is None or lab in labs):
            found.namespaces[ns] = lab
    for link in kernel.links(None, addresses=False):
        found.host_links[link.ifname] = link
        lab = lab_of(link.alias)
        if lab and (labs is None or lab in labs):
            found.host_interfaces[link.ifname] = lab
        joined = cni_network_of(link.alias)
        if labs is not None and joined and joined.startswith("lab:") and joined[4:] in labs and link.kind == "veth":
            found.joined_ends[link.ifname] = joined[4:]
    if not trusted or (state is not None and any(ns is None for ns in state.firewall_nodes.values())):
        for table, chains in kernel.firewall_tables(None).items():
            lab = table_owner(table, chains)
            if lab and (labs is None or lab in labs):
                found.tables[table] = lab
    # /etc/netns: every marked directory, and temporary entries of a killed run.  With
    # the state's list of namespaces, only those not found alive are read here (the
    # directory of a live one goes with it, checked then): a 1000-node `down` reads
    # no marker twice.
    unread = None if candidates is None else [ns for ns in candidates if ns not in found.namespaces]
    for ns, owner in kernel.node_files_owners(unread).items():
        lab = lab_of(owner)
        if lab and (labs is None or lab in labs):
            found.node_dirs[ns] = lab
    found.temp_files = [(lab, name) for mark, name in kernel.node_temp_files(unread)
                        if (lab := lab_of_node_entry(mark, name)) is not None and (labs is None or lab in labs)]
    # nodes' views, by the owner file of each (one listdir: none, nothing more); one
    # without a readable owner (killed before writing it) is the lab's whose node it is
    for ns, (owner, _digest) in kernel.views().items():
        lab = lab_of(owner) if owner else (only if only and candidates is not None and ns in candidates else None)
        if lab and (labs is None or lab in labs):
            found.views[ns] = lab
    for lab, ns, linked in birth_tags(kernel):
        if labs is None or lab in labs:
            found.birth_markers.append((lab, ns))
            if linked and not kernel.namespace_alive(ns):
                found.stale_files.append(ns)
    return found


def birth_tags(kernel: Kernel) -> list[tuple[str, str, bool]]:
    """(lab, netns, still linked to the namespace file) of every namespace birth tag
    under /run/netns whose name passes the naming rules."""
    return [(*parsed, linked) for tag, linked in kernel.namespace_tags() if (parsed := parse_netns_tag(tag))]


def stale_files_of(state: store.LabState, kernel: Kernel, alive: set[str] | None = None) -> list[str]:
    """/run/netns files the lab made that no longer have a namespace behind them
    (a disk-backed /run after a reboot): `ip netns exec` answers EINVAL on them.
    `alive`: the namespaces mounted, if just read (`find`'s: a 1000-node mountinfo
    costs ~3 ms to read again)."""
    if alive is None:
        alive = kernel.alive_namespaces()  # one read of mountinfo, not an open per node
    return [ns for ns in state.nodes.values() if ns and ns not in alive and kernel.namespace_exists(ns)]


#: SIGTERM, then SIGKILL after this long (`docker stop` waits 10 s; a lab's
#: services are test servers, and `down` should not hang on one that ignores TERM)
STOP_GRACE = 3.0
#: rounds of look-and-signal: a process forked between the look and the signal is
#: caught by the next look
STOP_ROUNDS = 5


def stop_processes(kernel: Kernel, found: Leftovers, states: dict[str, store.LabState],
                   grace: float = STOP_GRACE) -> None:
    """End every process inside the lab's namespaces in `found` (services, their
    escaped children, shells opened with `ip netns exec`), and the services the
    states recorded (pid, start time and namespace inode must all still match).
    Never the namespace vethlab runs in; nothing else.  Counts go to found.stopped."""
    from .services import records

    recorded = [(rec.pid, rec.started, rec.netns_id) for state in states.values()
                for _node, rec in records(state.services) if rec.pid > 0 and rec.netns_id]
    node_of = {ns: node for state in states.values() for node, ns in state.nodes.items() if ns}
    for _round in range(STOP_ROUNDS):
        procs = kernel.lab_processes(sorted(found.namespaces), recorded)
        if not any(procs.values()):
            return
        for ns, items in procs.items():
            where = node_of.get(ns, ns) or "(namespace removed)"
            found.stopped[where] = found.stopped.get(where, 0) + len(items)
        kernel.stop_processes([(pid, started) for items in procs.values() for pid, started, _label in items], grace)
    left = kernel.lab_processes(sorted(found.namespaces), recorded)
    if any(left.values()):
        raise KernelError("processes still running in "
                          + ", ".join(f"{node_of.get(ns, ns)} (pids {', '.join(str(p[0]) for p in items)})"
                                      for ns, items in left.items() if items))


def stopped_text(stopped: dict[str, int]) -> str:
    """"stopped 3 processes in nodes a, b" (empty when none were)."""
    total = sum(stopped.values())
    if not total:
        return ""
    nodes = sorted(stopped)
    return (f"stopped {total} process{'es' if total != 1 else ''} in node{'s' if len(nodes) != 1 else ''} "
            + ", ".join(nodes))


def remove(kernel: Kernel, found: Leftovers, states: dict[str, store.LabState],
           seen_by: Removals | None = None) -> list[str]:
    """Remove everything in `found` and undo host changes recorded in `states`.
    Keeps going past errors and returns them all.  `seen_by`: link deletions in the
    host subscribed to before `find` read the host's links (see `Vanishing`)."""
    errors: list[str] = []

    def attempt(what: str, fn: object, *args: object) -> None:
        try:
            fn(*args)  # type: ignore[operator]
        except Exception as exc:
            errors.append(f"{what}: {exc}")

    # processes first: a process inside a namespace keeps it alive after its file is gone
    attempt("processes", stop_processes, kernel, found, states)
    for state in states.values():
        for key, original in state.uplinks.items():
            ifname = key.split(":", 1)[1]
            attempt(f"uplink {ifname}", partial(kernel.set_link, original.get("netns"), ifname, master="",
                                                 up=bool(original.get("up", False))))
        attempt("uplinks", kernel.flush)
    for state in states.values():
        host_routes = [r for r in kernel.routes(None) if r.proto == ROUTE_PROTO] if state.host_routes else []
        for data in state.host_routes:
            want = Route(**data)
            for have in host_routes:
                if route_matches(want, have):
                    attempt(f"route {want.dst}", kernel.delete_route, None, have)
        for key, value in state.host_sysctls.items():
            attempt(f"sysctl {key}", kernel.write_sysctl, None, key, value)
    for ns, lab in found.views.items():  # after the processes: nothing runs in them any more
        attempt(f"view of namespace {ns}", kernel.remove_view, ns, marker(lab))
    remove_in_kernel_order(kernel, found, attempt, seen_by)
    for table in found.tables:
        attempt(f"firewall table {table}", kernel.firewall_delete, None, table)
    for ns in dict.fromkeys(found.stale_files):
        attempt(f"stale file /run/netns/{ns}", kernel.delete_namespace, ns)
    for ns, lab in found.node_dirs.items():  # those of stale files and of namespaces already gone
        if ns not in found.namespaces:
            attempt(f"/etc/netns/{ns}", kernel.remove_node_files, ns, marker(lab))
    for _lab, name in found.temp_files:
        attempt(f"/etc/netns/{name}", kernel.remove_node_temp_file, name)
    for lab, ns in found.birth_markers:
        attempt(f"marker of namespace {ns}", kernel.remove_namespace_tag, netns_tag(lab, ns))
    return errors


# How long to wait for host-side veth ends to vanish with their namespaces before
# deleting the rest one by one.  The kernel destroys 1000 namespaces' devices in
# ~0.6 s here; a namespace still held by some process never takes its veths along,
# so the bound is what such a namespace costs, never what a correct `down` costs.
VANISH_TIMEOUT = 10.0
VANISH_TIMEOUT_PER_INTERFACE = 0.01


def remove_in_kernel_order(kernel: Kernel, found: Leftovers, attempt: Callable[..., None],
                           seen_by: Removals | None = None) -> None:
    """Bridges, then namespaces, then wait until the host ends of their veths are
    gone, then delete the host interfaces still there (anything that did not vanish).

    A host-side veth whose peer lives in a lab namespace dies with that namespace,
    in one batch with all the others; deleting it first would cost one RCU grace
    period per interface.  Deleting its bridge first detaches every port in one
    request, which the namespaces' batch then does not have to do port by port:
    medians of 3 here, 1000-member star, 2.2 s instead of 2.6 s; 200 members,
    0.28 s instead of 0.47 s (bench/README.md).

    Re-measured 2026-12-02 with the faster namespace deletion (netns.delete_many),
    in-process, bridge delete to ports gone, interleaved, medians (load 4-7):
    200-member star, this order 170 ms (n=11), namespaces first then the bridge 163
    ms, the bridge deleted from a thread beside the umounts 234 ms (n=5: the dying
    namespaces take the RTNL lock from it and it then lets its ports go one by
    one: 0.77 s once), `ip -b` of the same (a process of its own) 196 ms (n=5);
    1000-member star, this order 1.03 s, namespaces first 1.12 s (n=3).  So this
    order stays: it is as close to `ip -batch` as this machine can tell."""
    host = found.host_links or {link.ifname: link for link in kernel.links(None, addresses=False)}
    bridges = [name for name in found.host_interfaces if name in host and host[name].kind == "bridge"]
    vanishing = dies_with_namespaces(host, found.host_interfaces) if found.namespaces else []
    with Vanishing(kernel, {name: host[name].index for name in vanishing}, seen_by=seen_by) as expected:
        for ifname in bridges:
            attempt(f"bridge {ifname}", kernel.delete_link, None, ifname)
        if bridges:
            attempt("bridges", kernel.flush)
        delete_namespaces(kernel, list(found.namespaces), attempt,
                          {ns: marker(lab) for ns, lab in found.namespaces.items()})
        left = expected.wait(VANISH_TIMEOUT + VANISH_TIMEOUT_PER_INTERFACE * len(vanishing))
    rest = [name for name in found.host_interfaces
            if name not in bridges and (name not in vanishing or name in left)] + list(found.joined_ends)
    progress.report("removing tables and files", force=True)
    for ifname in rest:
        attempt(f"interface {ifname}", kernel.delete_link, None, ifname)
    if rest:
        attempt("interfaces", kernel.flush)


def delete_namespaces(kernel: Kernel, names: list[str], attempt: Callable[..., None],
                      owners: dict[str, str]) -> set[str]:
    """Delete namespaces (and the /etc/netns files their lab made) all at once; the ones deleted."""
    progress.report(f"deleting {len(names)} namespaces", force=True)
    failed = kernel.delete_namespaces(names, owners) if names else {}
    for ns, exc in failed.items():
        attempt(f"namespace {ns}", _raise, exc)
    return set(names) - set(failed)


def _raise(exc: Exception) -> None:
    raise exc


def dies_with_namespaces(host: dict[str, LinkInfo], names: Iterable[str]) -> list[str]:
    """Of the host interfaces `names`, the veths whose peer is not in the host (so
    in a namespace: deleting the lab's namespaces takes them along)."""
    by_index = {link.index: link for link in host.values()}
    out = []
    for name in names:
        link = host.get(name)
        if link is None or link.kind != "veth" or link.peer_index is None:
            continue
        peer = by_index.get(link.peer_index)
        if peer is not None and peer.kind == "veth" and peer.peer_index == link.index:
            continue  # both ends in the host: nothing takes it along
        out.append(name)
    return out


def wait_gone(kernel: Kernel, interfaces: dict[str, int], timeout: float, ns: Netns = None) -> set[str]:
    """Wait until none of `interfaces` (name -> ifindex) is left in `ns` (the host by
    default) or `timeout` passes; return the names still there (see `Vanishing`,
    here subscribed after the deletions: as correct, its one look may just meet a
    link table still changing)."""
    with Vanishing(kernel, interfaces, ns) as expected:
        return expected.wait(timeout)


class Vanishing:
    """Interfaces (name -> ifindex) of namespace `ns` expected to go, followed on the
    kernel's link events, as the floor's teardown does: made before the deletions
    that take them along, it subscribes to RTM_DELLINK and then reads once which of
    them are there (anything gone before that read is absent from it, anything gone
    after it is an event; read while nothing is being deleted yet, the dump is not
    interrupted by the changes and redone); `wait` then reads events only.  A link
    counts as gone when its index is: a new interface that took the name is not the
    one we wait for.  Events lost to a full receive buffer: look again, wait on.

    Polling instead cost up to one sleep interval after the last interface went and
    one whole link dump per round, each contending with the kernel's namespace
    cleanup (200-member star: 84 ms of `down`'s 320 ms, 41 ms of it asleep)."""

    def __init__(self, kernel: Kernel, interfaces: dict[str, int], ns: Netns = None,
                 seen_by: Removals | None = None) -> None:
        """`seen_by`: a subscription (the caller's, left open) made before `interfaces`
        were read from the kernel: they were there then, and anything gone since is an
        event in it, so no look of its own is needed (a 1000-port star: one dump of
        ~70 ms fewer)."""
        self.total = len(interfaces)
        self.interfaces = interfaces
        self.own = seen_by is None
        self.watch: Removals | None = seen_by if seen_by is not None else \
            (kernel.link_removals(ns) if interfaces else None)
        self.left: dict[int, str] = {}
        if seen_by is not None:
            self.left = {index: name for name, index in interfaces.items()}
        elif self.watch is not None:
            try:
                self._look(self.watch)
            except BaseException:
                self.close()
                raise

    def _look(self, watch: Removals) -> None:
        present = watch.present()
        self.left = {index: name for name, index in self.interfaces.items() if index in present}

    def wait(self, timeout: float) -> set[str]:
        """Until none is left or `timeout` passes: the names still there."""
        deadline = time.monotonic() + timeout
        watch = self.watch
        while watch is not None:
            progress.report(f"waiting for {self.total} interfaces to go with their namespaces",
                            self.total - len(self.left), self.total, "gone")
            remaining = deadline - time.monotonic()
            if not self.left or remaining <= 0:
                break
            removed = watch.gone(remaining)
            if removed is None:  # events were dropped: look again
                self._look(watch)
                continue
            for index in removed:
                self.left.pop(index, None)
        return set(self.left.values())

    def close(self) -> None:
        if self.watch is not None and self.own:
            self.watch.close()
        self.watch = None

    def __enter__(self) -> Vanishing:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
