"""The frameworks the allocator serves, and which of them may take an offer.

A framework subscribes in one or more roles; it takes an offer in a role when it is active, has
not suppressed the role, no live decline filter of its own refuses the offer (``filters.py``),
its declared demand (if any) fits, and it was not yet offered the agent in this cycle. Among
those, the first in the role's DRF order (``Shares``) gets the offer. Pure: no I/O, no clock.

**Demand** (beyond Mesos): a framework that declares what it is waiting to launch is offered
only agents where one of those shapes fits, and nothing while it declares nothing; one that
declares nothing at all (``demand`` None) gets plain Mesos behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from tepui.offers.filters import DEFAULT_REFUSE_SECONDS, DeclineFilter, add_filter, clear_roles, refuses
from tepui.offers.filters import filtered_until as filters_until
from tepui.offers.roles import DEFAULT_ROLE
from tepui.offers.shares import Shares
from tepui.sdk.protocol.values import MAX_REFUSE_SECONDS  # the wire refuses more; kept for direct callers
from tepui.sdk.resources import Resources


@dataclass(frozen=True)
class Demand:
    """A task shape a framework is waiting to launch (``role`` None: any of its roles)."""

    resources: Resources
    count: int = 1
    role: str | None = None


@dataclass
class FrameworkState:
    framework_id: str
    roles: tuple[str, ...]
    active: bool = True
    suppressed: set[str] = field(default_factory=set)
    filters: dict[str, list[DeclineFilter]] = field(default_factory=dict)  # agent_id → its filters
    demand: tuple[Demand, ...] | None = None  # None: not declared (plain Mesos behaviour)
    offered_cycle: dict[str, int] = field(default_factory=dict)  # role → last cycle offered


def fits_by_quantity(offered: Resources, shape: Resources) -> bool:
    have = offered.fixed_totals()
    for name, amount in shape.fixed_totals().items():
        if have.get(name, 0) < amount:
            return False
    for name in shape.names() - set(shape.fixed_totals()):
        if offered.item_count(name) < shape.item_count(name):
            return False
    return True


def demand_fits(framework: FrameworkState, role: str, offered: Resources) -> bool:
    """A shape fits when the offer holds as much of each resource, reserved or not (a task
    in role R can use R's reservations): scalars by amount, ranges and sets by count."""
    for demand in framework.demand or ():
        if demand.count > 0 and demand.role in (None, role) and fits_by_quantity(offered, demand.resources):
            return True
    return False


def role_list(roles: Iterable[str]) -> tuple[str, ...]:
    """A framework's roles: in the order given, once each; none means the default role."""
    return tuple(dict.fromkeys(roles)) or (DEFAULT_ROLE,)


class Frameworks:
    """The frameworks by id: roles, activity, suppressed roles, decline filters, demand."""

    def __init__(self, shares: Shares) -> None:
        """Joins and leaves roles in ``shares``, and reads each role's DRF order from it."""
        self._shares = shares
        self.by_id: dict[str, FrameworkState] = {}

    # --- membership -----------------------------------------------------------------------

    def add(self, framework_id: str, roles: Iterable[str], suppressed_roles: Iterable[str],
            demand: Iterable[Demand] | None) -> None:
        framework = FrameworkState(framework_id, role_list(roles), suppressed=set(suppressed_roles),
                                   demand=tuple(demand) if demand is not None else None)
        self.by_id[framework_id] = framework
        for role in framework.roles:
            self._shares.join(framework_id, role, framework.active)

    def leave_role(self, framework_id: str, role: str) -> None:
        """The caller returned the framework's holdings in ``role`` first; its ``roles`` change
        with ``set_roles``, or it goes with ``remove``."""
        self._shares.leave(framework_id, role)

    def set_roles(self, framework_id: str, wanted: tuple[str, ...], suppressed_roles: Iterable[str]) -> None:
        """Joins the roles in ``wanted`` it is not in yet (the caller left the others)."""
        framework = self.by_id[framework_id]
        for role in wanted:
            if role not in framework.roles:
                self._shares.join(framework_id, role, framework.active)
        framework.roles = wanted
        framework.suppressed = set(suppressed_roles)

    def remove(self, framework_id: str) -> None:
        """After ``leave_role`` for each of its roles."""
        del self.by_id[framework_id]

    def activate(self, framework_id: str) -> bool:
        """True if it was inactive."""
        framework = self.by_id[framework_id]
        if framework.active:
            return False
        framework.active = True
        self._shares.activate(framework_id, framework.roles)
        return True

    def deactivate(self, framework_id: str) -> None:
        framework = self.by_id.get(framework_id)
        if framework is not None and framework.active:
            framework.active = False
            self._shares.deactivate(framework_id, framework.roles)

    # --- what it wants --------------------------------------------------------------------

    def suppress(self, framework_id: str, roles: Iterable[str]) -> None:
        """Only the framework's own roles: a SUPPRESS naming others (any number, any length,
        call after call) must not grow what the allocator keeps per framework."""
        framework = self.by_id[framework_id]
        framework.suppressed |= (set(roles) or set(framework.roles)) & set(framework.roles)

    def revive(self, framework_id: str, roles: Iterable[str]) -> None:
        """Mesos: unsuppresses ``roles`` (all when empty) and clears their decline filters."""
        framework = self.by_id[framework_id]
        revived = set(roles) or set(framework.roles)
        framework.suppressed -= revived
        clear_roles(framework.filters, revived)

    def declare_demand(self, framework_id: str, demand: Iterable[Demand] | None) -> None:
        self.by_id[framework_id].demand = tuple(demand) if demand is not None else None

    def refuse(self, framework_id: str, agent_id: str, role: str, declined: Resources, refuse_seconds: float,
               now: float) -> None:
        """A decline filter for what the framework returned (Mesos: negative means the default
        5 s; capped at a year; nothing returned, or no time, nothing to filter); an unknown
        framework has none. (Inline: a decline is per offer.)"""
        framework = self.by_id.get(framework_id)
        if framework is None:
            return
        if refuse_seconds < 0:
            refuse_seconds = DEFAULT_REFUSE_SECONDS
        refuse_seconds = min(refuse_seconds, MAX_REFUSE_SECONDS)
        if refuse_seconds > 0 and declined:
            entry = DeclineFilter(role, declined, now + refuse_seconds)
            filters = framework.filters.get(agent_id)
            if filters is None:
                framework.filters[agent_id] = [entry]
            else:
                add_filter(filters, entry)

    def forget_agent(self, agent_id: str) -> None:
        for framework in self.by_id.values():
            framework.filters.pop(agent_id, None)

    # --- the cycle ------------------------------------------------------------------------

    def pick(self, role: str, agent_id: str, offered: Resources, now: float, given: set[str],
             cycle: int) -> FrameworkState | None:
        """The first framework of ``role``, in DRF order, that takes ``offered`` of the agent;
        it is recorded as offered in this ``cycle`` and added to ``given`` (the frameworks
        already offered this agent in this cycle: one offer each)."""
        sorter = self._shares.sorters.get(role)
        if sorter is None:
            return None
        by_id = self.by_id
        for key in sorter.order():
            framework = by_id[key[3]]
            if role in framework.suppressed or framework.framework_id in given:
                continue
            filters = framework.filters.get(agent_id)
            if filters is not None and refuses(framework.filters, agent_id, filters, role, offered, now):
                continue
            if framework.demand is not None and not demand_fits(framework, role, offered):
                continue
            framework.offered_cycle[role] = cycle
            given.add(framework.framework_id)
            return framework
        return None

    @staticmethod
    def filtered_until(framework: FrameworkState, agent_id: str, role: str, offered: Resources,
                       now: float) -> float | None:
        """When ``offered`` (of the agent, in the role) stops being refused; None if it is not."""
        return filters_until(framework.filters.get(agent_id, ()), role, offered, now)
