"""Quota-aware allocation: guarantees first, headroom held back, limits never exceeded.

Engaged only when some role has a quota, so the common path pays nothing for it.

Two stages per cycle (Mesos's hierarchical allocator does the same):

1. Roles below their guarantee, in DRF order, are offered resources cut down to what they
   still miss (and to their limits).
2. Every role is then served as usual, with each offer's unreserved scalars cut down so that
   (a) no quota limit on the role's lineage is exceeded and (b) enough unreserved resources
   stay free for every *other* role's unmet guarantee — even a role with no framework at all
   keeps its guarantee available ("held back even when idle").

When stage one served anyone, stage two visits the agents in a fresh order
(``Allocator.visit_order``: shuffled again, as Mesos does, because stage one tends to take from
the front of the list).

Caps are per role and per scalar, in thousandths, and are recomputed after every allocation
(``Caps.refresh``): quota roles are few, and correctness beats cleverness here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tepui.offers.roles import is_within, lineage
if TYPE_CHECKING:
    from tepui.offers.allocator import Allocation, Allocator
    from tepui.offers.holdings import AgentState

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


def _required(allocator: Allocator, unmet: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """What each quota scope still needs held back, nested scopes counted once: a parent's
    consumption already includes its children's, so it needs the larger of its own unmet
    guarantee and the sum of what its quota'd descendants need."""
    scopes = sorted(allocator.quotas, key=lambda r: -r.count("/"))  # deepest first
    required: dict[str, dict[str, int]] = {}
    for scope in scopes:
        children: dict[str, int] = {}
        for other, need in required.items():
            if other != scope and is_within(other, scope) and not any(
                    mid != scope and is_within(other, mid) and is_within(mid, scope) and mid != other
                    for mid in required):
                for name, amount in need.items():
                    children[name] = children.get(name, 0) + amount
        own = unmet.get(scope, {})
        required[scope] = {name: max(own.get(name, 0), children.get(name, 0))
                           for name in set(own) | set(children)
                           if max(own.get(name, 0), children.get(name, 0)) > 0}
    return required


def headroom_for(allocator: Allocator, role: str, required: dict[str, dict[str, int]]) -> dict[str, int]:
    """How much unreserved of each scalar ``role`` may take and still leave every quota scope
    that does not contain it what it needs. Only the outermost such scopes count (their
    requirement already covers their quota'd descendants)."""
    outside = [scope for scope in required if not is_within(role, scope)]
    outermost = [scope for scope in outside
                 if not any(other != scope and is_within(scope, other) for other in outside)]
    held_back: dict[str, int] = {}
    for scope in outermost:
        for name, amount in required[scope].items():
            held_back[name] = held_back.get(name, 0) + amount
    free = allocator.free_unreserved()
    return {name: max(0, free.get(name, 0) - amount) for name, amount in held_back.items() if amount > 0}


def stage_one_caps(allocator: Allocator) -> dict[str, dict[str, int]]:
    """Roles below a guarantee → what they still miss, within limits, and without eating into
    what other scopes' guarantees need for the scalars outside their own guarantee."""
    unmet = {scope: unmet_guarantee(allocator, scope) for scope in allocator.quotas}
    required = _required(allocator, unmet)
    caps: dict[str, dict[str, int]] = {}
    for role in allocator.roles.order():
        missing: dict[str, int] = {}
        for scope in lineage(role):
            if unmet.get(scope):
                _min_into(missing, unmet[scope])
        if missing:
            room = headroom_for(allocator, role, required)
            _min_into(missing, {name: cap for name, cap in room.items() if name not in missing})
            _min_into(missing, limit_room(allocator, role))
            caps[role] = missing
    return caps


def stage_two_caps(allocator: Allocator) -> dict[str, dict[str, int]]:
    """Every role → limits on its lineage and the headroom others' guarantees need."""
    unmet = {scope: unmet_guarantee(allocator, scope) for scope in allocator.quotas}
    required = _required(allocator, unmet)
    caps: dict[str, dict[str, int]] = {}
    for role in allocator.roles.order():
        cap = limit_room(allocator, role)
        _min_into(cap, headroom_for(allocator, role, required))
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
            allocator.offer_agent(agent, now, result, first, roles=below, given=given[agent.agent_id])
    second = Caps(2)
    second.refresh(allocator)
    if first.by_role:
        agents = allocator.visit_order(list(agents))
    for agent in agents:
        allocator.offer_agent(agent, now, result, second, given=given[agent.agent_id])
