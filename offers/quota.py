"""Quota-aware allocation: guarantees first, headroom held back, limits never exceeded.

Engaged only when some role has a quota, so the common path pays nothing for it.

Two stages per cycle (Mesos's hierarchical allocator does the same):

1. Roles below their guarantee, in DRF order, are offered resources cut down to what they
   still miss (and to their limits).
2. Every role is then served as usual, with each offer's unreserved scalars cut down so that
   (a) no quota limit on the role's lineage is exceeded and (b) enough unreserved resources
   stay free for every *other* role's unmet guarantee — even a role with no framework at all
   keeps its guarantee available ("held back even when idle").

Caps are per role and per scalar, in thousandths, and are recomputed after every allocation
(``Caps.refresh``): quota roles are few, and correctness beats cleverness here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tepui.offers.roles import is_within, lineage
if TYPE_CHECKING:
    from tepui.offers.allocator import Allocation, Allocator, AgentState

def unmet_guarantee(allocator: Allocator, scope: str) -> dict[str, int]:
    quota = allocator.quotas.get(scope)
    if quota is None or not quota.guarantee:
        return {}
    consumed = allocator.consumed(scope)
    return {name: amount - consumed.get(name, 0) for name, amount in quota.guarantee.items()
            if amount > consumed.get(name, 0)}


def limit_room(allocator: Allocator, role: str) -> dict[str, int]:
    """How much more of each limited scalar ``role`` may consume (lineage-wide minimum)."""
    room: dict[str, int] = {}
    for scope in lineage(role):
        quota = allocator.quotas.get(scope)
        if quota is None or not quota.limit:
            continue
        consumed = allocator.consumed(scope)
        for name, limit in quota.limit.items():
            left = max(0, limit - consumed.get(name, 0))
            room[name] = min(room.get(name, left), left)
    return room


def _min_into(target: dict[str, int], caps: dict[str, int]) -> None:
    for name, cap in caps.items():
        target[name] = min(target.get(name, cap), cap)


def stage_one_caps(allocator: Allocator) -> dict[str, dict[str, int]]:
    """Roles below a guarantee → what they still miss (and limits)."""
    caps: dict[str, dict[str, int]] = {}
    unmet = {scope: unmet_guarantee(allocator, scope) for scope in allocator.quotas}
    for role in allocator.roles.order():
        missing: dict[str, int] = {}
        for scope in lineage(role):
            if unmet.get(scope):
                _min_into(missing, unmet[scope])
        if missing:
            _min_into(missing, limit_room(allocator, role))
            caps[role] = missing
    return caps


def stage_two_caps(allocator: Allocator) -> dict[str, dict[str, int]]:
    """Every role → limits on its lineage and the headroom others' guarantees need."""
    unmet = {scope: unmet_guarantee(allocator, scope) for scope in allocator.quotas}
    free = allocator.free_unreserved()
    caps: dict[str, dict[str, int]] = {}
    for role in allocator.roles.order():
        cap = limit_room(allocator, role)
        others: dict[str, int] = {}
        for scope, missing in unmet.items():
            if missing and not is_within(role, scope):
                for name, amount in missing.items():
                    others[name] = others.get(name, 0) + amount
        if others:
            _min_into(cap, {name: max(0, free.get(name, 0) - amount) for name, amount in others.items()})
        if cap:
            caps[role] = cap
    return caps


@dataclass
class Caps:
    """Per-role caps of one stage, recomputed after every allocation (consumption and free
    pools move). In stage one a role without caps is not served at all."""

    stage: int
    by_role: dict[str, dict[str, int]] = field(default_factory=dict)

    def refresh(self, allocator: Allocator) -> None:
        self.by_role = stage_one_caps(allocator) if self.stage == 1 else stage_two_caps(allocator)


def allocate_with_quota(allocator: Allocator, agents: list[AgentState], now: float,
                        result: list[Allocation]) -> None:
    given: dict[str, set[str]] = {agent.agent_id: set() for agent in agents}
    first = Caps(1)
    first.refresh(allocator)
    if first.by_role:
        below = [role for role in allocator.roles.order() if role in first.by_role]
        for agent in agents:
            allocator._visit(agent, now, result, first, roles=below, given=given[agent.agent_id])
    second = Caps(2)
    second.refresh(allocator)
    for agent in agents:
        allocator._visit(agent, now, result, second, given=given[agent.agent_id])
