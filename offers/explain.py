"""Why did a framework get no offer? The allocator's answer, per role.

Marathon users waited years for this (marathon#1090, #1728: "why is my app not starting?").
The explanation is computed on demand from the allocator's current state, not recorded on the
hot path, so it costs nothing until someone asks. The checks run in the order an operator
would fix things: the framework's own switches first, then quota, then the cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tepui.offers.quota import limit_room
from tepui.sdk.resources import SCALE

if TYPE_CHECKING:
    from tepui.offers.allocator import Allocator


@dataclass(frozen=True)
class Explanation:
    role: str
    # OFFERED | INACTIVE | SUPPRESSED | NO_DEMAND | QUOTA_LIMIT | DEMAND_NEVER_FITS | NO_RESOURCES |
    # FILTERED | DEMAND_FITS_NOWHERE | WAITING
    reason: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"role": self.role, "reason": self.reason, "message": self.message}


def explain(allocator: Allocator, framework_id: str, now: float) -> list[Explanation]:
    framework = allocator.frameworks.get(framework_id)
    if framework is None:
        return []
    out = []
    for role in framework.roles:
        out.append(_explain_role(allocator, framework_id, role, now))
    return out


def _explain_role(allocator: Allocator, framework_id: str, role: str, now: float) -> Explanation:
    framework = allocator.frameworks[framework_id]
    if framework.offered_cycle.get(role) == allocator.cycles:
        return Explanation(role, "OFFERED", f"offered resources in the last cycle (#{allocator.cycles})")
    if not framework.active:
        return Explanation(role, "INACTIVE", "the framework is disconnected; offers resume when it re-subscribes")
    if role in framework.suppressed:
        return Explanation(role, "SUPPRESSED", f"the framework suppressed offers for role {role!r}; REVIVE to get offers")
    if framework.demand is not None and not any(d.count > 0 and d.role in (None, role) for d in framework.demand):
        return Explanation(role, "NO_DEMAND", "the framework declared no pending tasks for this role")
    room = limit_room(allocator, role)
    exhausted = sorted(name for name, left in room.items() if left <= 0)
    if exhausted:
        return Explanation(role, "QUOTA_LIMIT", f"quota limit reached for role {role!r} (or a parent) on "
                           + ", ".join(exhausted))
    if framework.demand is not None and allocator.agents and not any(
            allocator.demand_fits(framework, role, a.total.allocatable_to(role)) for a in allocator.agents.values()):
        largest = max((a.total.allocatable_to(role) for a in allocator.agents.values()),
                      key=lambda r: (r.scalar("cpus"), r.scalar("mem")))
        return Explanation(role, "DEMAND_NEVER_FITS", "no agent is large enough for any declared task shape, "
                           f"even when idle (the largest offers {largest.filter(lambda k: k.name != 'ports')})")
    candidates = [a for a in allocator.agents.values()
                  if a.active and allocator.allocatable(a.available.allocatable_to(role))]
    if not candidates:
        minimum = " or ".join(f"{name} {amount / SCALE:g}" for name, amount in allocator.minimum_allocatable())
        return Explanation(role, "NO_RESOURCES", f"no agent has free resources for role {role!r} "
                           f"(at least {minimum}); all are offered or in use")
    until = {a.agent_id: allocator.filtered_until(framework, a.agent_id, role, a.available.allocatable_to(role), now)
             for a in candidates}
    unfiltered = [a for a in candidates if until[a.agent_id] is None]
    if not unfiltered:
        soonest = min(t for t in until.values() if t is not None) - now
        return Explanation(role, "FILTERED", f"all {len(candidates)} agents with free resources were declined by "
                           f"this framework; the first filter expires in {soonest:.1f} s (or REVIVE)")
    if framework.demand is not None:
        fitting = [a for a in unfiltered if allocator.demand_fits(framework, role, a.available.allocatable_to(role))]
        if not fitting:
            return Explanation(role, "DEMAND_FITS_NOWHERE", f"none of the declared task shapes fits on any of the "
                               f"{len(unfiltered)} agents with free resources")
    return Explanation(role, "WAITING", "frameworks with a lower dominant share were served first; "
                       "resources free up as their offers are declined or their tasks end")
