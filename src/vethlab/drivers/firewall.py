"""Firewall: one nftables table per namespace that holds networks (NAT, published
ports, isolation), built from the ruleset in model/firewall.py and replaced as one
JSON batch when its digest chain says the rules differ.  A table named like the
lab's that lacks its marker chain is not vethlab's: a conflict, never taken over."""

from __future__ import annotations

from dataclasses import field
from typing import Any

from ..deferred import dataclass
from ..model.firewall import DIGEST_CHAIN_PREFIX, batch, digest, rules
from ..ownership import table_marker, table_name, table_owner
from ..reconcile.actions import ApplyContext, PlanContext, SelfChecked
from ..reconcile.journal import Step, inside
from ..topology.schema import HOST
from .base import Driver


@dataclass(frozen=True)
class ApplyFirewall(SelfChecked):  # the digest chain says on the next plan
    VERB = "modify"
    KIND = "firewall"
    PHASE = "firewall"
    replace: bool
    batch: dict[str, Any] = field(hash=False, compare=False)

    def apply(self, ctx: ApplyContext) -> Step | None:
        k, ns, table = ctx.kernel, self.netns, table_name(ctx.lab)
        k.firewall_apply(ns, self.batch, f"apply the firewall of lab {ctx.lab} in {self.node}")
        if self.replace:
            return None
        return Step(self.target, lambda: k.firewall_delete(ns, table), dies_with=inside(ns))


@dataclass(frozen=True)
class DeleteFirewall(SelfChecked):  # the next plan finds no table
    VERB = "delete"
    KIND = "firewall"
    PHASE = "delete-late"

    def apply(self, ctx: ApplyContext) -> Step | None:
        ctx.kernel.firewall_delete(self.netns, table_name(ctx.lab))
        return None


class FirewallDriver(Driver):
    kind = "firewall"

    def conflicts(self, ctx: PlanContext) -> list[str]:
        lab, table = ctx.desired.lab, table_name(ctx.desired.lab)
        problems = []
        for name, chains in ctx.observed.firewalls.items():
            # in a lab's own namespace everything is the lab's; elsewhere the name proves nothing
            if chains is not None and name == HOST and name in ctx.desired.firewalls and \
                    table_owner(table, chains) != lab:
                problems.append(f"firewall table inet {table} already exists in the host namespace and is not "
                                f"vethlab's (it lacks the chain {table_marker(lab)} vethlab marks its tables "
                                "with)")
        return problems

    def plan(self, ctx: PlanContext) -> None:
        desired, table = ctx.desired, table_name(ctx.desired.lab)
        needed = {node: nets for node, nets in desired.firewalls.items() if any(rules(nets).values())}
        for node, networks in needed.items():
            chains = ctx.observed.firewalls.get(node)
            if chains is not None and DIGEST_CHAIN_PREFIX + digest(networks) in chains:
                continue
            reason = "firewall table is missing" if chains is None else "firewall rules differ from the file"
            ctx.plan.add(ApplyFirewall(f"{node}: table inet {table}", reason, node, desired.netns(node),
                                       chains is not None, batch(desired.lab, networks, chains is not None)))
        for node, ns in ctx.memory.firewall_nodes.items():
            have = ctx.observed.firewalls.get(node)
            if node not in needed and have is not None and table_owner(table, have) == desired.lab:
                ctx.plan.add(DeleteFirewall(f"{node}: table inet {table}", "no network of the lab is left in this "
                                            "node", node, ns))


DRIVER = FirewallDriver()
