"""A first pure allocator: weighted DRF over roles, then over the frameworks in a role.

Pure (DESIGN §2, §5): no I/O, no clock of its own — every time-dependent call takes ``now`` —
and deterministic (agents in registration order, ties broken by name), so tests can assert the
exact allocations. The allocator issue replaces the internals (incremental sorters, quotas,
reservations, demand, explanations) behind this same interface.

Mesos semantics kept here:
* offered resources count as allocated to the framework until they are used, declined,
  rescinded or their task ends (``recover``);
* one offer per agent per framework per cycle: an agent's whole available pool for a role
  goes to the framework with the lowest weighted dominant share;
* decline filters (``refuse_seconds``, default 5 s) per framework and agent;
* suppress / revive per role; revive also clears filters;
* a minimum allocatable size (cpus 0.01 or mem 32 MiB) so nobody gets crumbs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from tepui.sdk.resources import EMPTY, Resources, to_fixed

DRF_RESOURCES = ("cpus", "mem", "disk", "gpus")
DEFAULT_REFUSE_SECONDS = 5.0
MAX_REFUSE_SECONDS = 365 * 24 * 3600.0


@dataclass(frozen=True)
class Allocation:
    framework_id: str
    agent_id: str
    role: str
    resources: Resources


@dataclass
class _Agent:
    agent_id: str
    total: Resources
    available: Resources
    allocated: dict[tuple[str, str], Resources] = field(default_factory=dict)  # (fid, role) → res
    active: bool = True


@dataclass
class _Framework:
    framework_id: str
    roles: tuple[str, ...]
    active: bool = True
    suppressed: set[str] = field(default_factory=set)
    filters: dict[str, float] = field(default_factory=dict)  # agent_id → expires at
    allocated: dict[str, int] = field(default_factory=dict)  # resource name → thousandths


class Allocator:
    """Decides which framework is offered which agent's resources."""

    def __init__(self, min_allocatable: dict[str, float] | None = None) -> None:
        minimum = min_allocatable if min_allocatable is not None else {"cpus": 0.01, "mem": 32.0}
        self._min = {name: to_fixed(value) for name, value in minimum.items()}
        self._agents: dict[str, _Agent] = {}
        self._frameworks: dict[str, _Framework] = {}
        self._weights: dict[str, float] = {}
        self._totals: dict[str, int] = {}

    # --- agents ---------------------------------------------------------------------------

    def add_agent(self, agent_id: str, total: Resources, used: dict[tuple[str, str], Resources] | None = None) -> None:
        """Adds an agent; ``used`` is what tasks found on it already hold, by (framework, role)."""
        agent = _Agent(agent_id, total, total)
        self._agents[agent_id] = agent
        self._add_totals(total, +1)
        for (framework_id, role), resources in (used or {}).items():
            self._charge(agent, framework_id, role, resources)

    def remove_agent(self, agent_id: str) -> None:
        agent = self._agents.pop(agent_id, None)
        if agent is None:
            return
        self._add_totals(agent.total, -1)
        for (framework_id, _role), resources in agent.allocated.items():
            self._credit_share(framework_id, resources)
        for framework in self._frameworks.values():
            framework.filters.pop(agent_id, None)

    def deactivate_agent(self, agent_id: str) -> None:
        if agent_id in self._agents:
            self._agents[agent_id].active = False

    def activate_agent(self, agent_id: str) -> None:
        if agent_id in self._agents:
            self._agents[agent_id].active = True

    # --- frameworks -----------------------------------------------------------------------

    def add_framework(self, framework_id: str, roles: Iterable[str], suppressed_roles: Iterable[str] = ()) -> None:
        existing = self._frameworks.get(framework_id)
        if existing is not None:
            existing.roles = tuple(roles)
            existing.active = True
            existing.suppressed = set(suppressed_roles)
            return
        self._frameworks[framework_id] = _Framework(framework_id, tuple(roles), suppressed=set(suppressed_roles))

    def update_framework(self, framework_id: str, roles: Iterable[str], suppressed_roles: Iterable[str] = ()) -> None:
        framework = self._frameworks[framework_id]
        framework.roles = tuple(roles)
        framework.suppressed = set(suppressed_roles)

    def remove_framework(self, framework_id: str) -> None:
        """Forgets the framework; the caller recovers its resources first."""
        self._frameworks.pop(framework_id, None)

    def deactivate_framework(self, framework_id: str) -> None:
        if framework_id in self._frameworks:
            self._frameworks[framework_id].active = False

    def suppress(self, framework_id: str, roles: Iterable[str] = ()) -> None:
        framework = self._frameworks[framework_id]
        framework.suppressed |= set(roles) or set(framework.roles)

    def revive(self, framework_id: str, roles: Iterable[str] = ()) -> None:
        framework = self._frameworks[framework_id]
        wanted = set(roles) or set(framework.roles)
        framework.suppressed -= wanted
        framework.filters.clear()

    def set_weight(self, role: str, weight: float) -> None:
        if weight <= 0:
            raise ValueError(f"weight of role {role!r} must be > 0, got {weight}")
        self._weights[role] = weight

    # --- resources ------------------------------------------------------------------------

    def allocate_used(self, agent_id: str, framework_id: str, role: str, resources: Resources) -> None:
        """Marks resources as held (tasks the master learns about on re-registration)."""
        self._charge(self._agents[agent_id], framework_id, role, resources)

    def recover(
        self,
        agent_id: str,
        framework_id: str,
        role: str,
        resources: Resources,
        refuse_seconds: float | None = None,
        now: float = 0.0,
    ) -> bool:
        """Returns resources to the agent's pool; with ``refuse_seconds`` also installs a decline
        filter (Mesos: negative means the default 5 s; capped at a year).

        Returns False, changing nothing, when the framework does not hold ``resources`` on
        that agent: recovering twice is a caller's bookkeeping bug, and giving anything back
        then would mint resources out of thin air."""
        recovered = True
        agent = self._agents.get(agent_id)
        if agent is not None and resources:
            key = (framework_id, role)
            held = agent.allocated.get(key, EMPTY)
            if held.contains(resources):
                remaining = held - resources
                if remaining:
                    agent.allocated[key] = remaining
                else:
                    agent.allocated.pop(key, None)
                agent.available = agent.available + resources
                self._credit_share(framework_id, resources)
            else:
                recovered = False
        framework = self._frameworks.get(framework_id)
        if framework is not None and refuse_seconds is not None:
            if refuse_seconds < 0:
                refuse_seconds = DEFAULT_REFUSE_SECONDS
            refuse_seconds = min(refuse_seconds, MAX_REFUSE_SECONDS)
            if refuse_seconds > 0:
                framework.filters[agent_id] = now + refuse_seconds
        return recovered

    # --- the cycle ------------------------------------------------------------------------

    def allocate(self, now: float) -> list[Allocation]:
        """One allocation cycle over every agent with something to give."""
        result: list[Allocation] = []
        for agent in self._agents.values():
            if not agent.active or not self._allocatable(agent.available):
                continue
            for role, framework in self._candidates(agent, now):
                offered = agent.available.allocatable_to(role)
                if not self._allocatable(offered):
                    continue
                self._charge(agent, framework.framework_id, role, offered)
                result.append(Allocation(framework.framework_id, agent.agent_id, role, offered))
                if not self._allocatable(agent.available):
                    break
        return result

    def _candidates(self, agent: _Agent, now: float) -> list[tuple[str, _Framework]]:
        """(role, framework) pairs for this agent, lowest weighted dominant share first."""
        pairs: list[tuple[float, float, str, str, _Framework]] = []
        role_shares: dict[str, float] = {}
        for framework in self._frameworks.values():
            if not framework.active:
                continue
            expires = framework.filters.get(agent.agent_id)
            if expires is not None:
                if now < expires:
                    continue
                del framework.filters[agent.agent_id]
            share = self._dominant_share(framework.allocated)
            for role in framework.roles:
                if role in framework.suppressed:
                    continue
                if role not in role_shares:
                    role_shares[role] = self._role_share(role) / self._weights.get(role, 1.0)
                pairs.append((role_shares[role], share, role, framework.framework_id, framework))
        pairs.sort(key=lambda p: (p[0], p[1], p[2], p[3]))
        return [(role, framework) for _rs, _fs, role, _fid, framework in pairs]

    def _role_share(self, role: str) -> float:
        held: dict[str, int] = {}
        for agent in self._agents.values():
            for (_fid, r), resources in agent.allocated.items():
                if r == role:
                    for name, amount in resources.fixed_totals().items():
                        held[name] = held.get(name, 0) + amount
        return self._dominant_share(held)

    def _dominant_share(self, held: dict[str, int]) -> float:
        share = 0.0
        for name in DRF_RESOURCES:
            total = self._totals.get(name, 0)
            if total > 0:
                share = max(share, held.get(name, 0) / total)
        return share

    def _allocatable(self, resources: Resources) -> bool:
        return any(resources.scalar_fixed(name) >= minimum for name, minimum in self._min.items())

    def _charge(self, agent: _Agent, framework_id: str, role: str, resources: Resources) -> None:
        agent.available = agent.available - resources
        key = (framework_id, role)
        agent.allocated[key] = agent.allocated.get(key, EMPTY) + resources
        framework = self._frameworks.get(framework_id)
        if framework is not None:
            for name, amount in resources.fixed_totals().items():
                framework.allocated[name] = framework.allocated.get(name, 0) + amount

    def _credit_share(self, framework_id: str, resources: Resources) -> None:
        framework = self._frameworks.get(framework_id)
        if framework is None:
            return
        for name, amount in resources.fixed_totals().items():
            framework.allocated[name] = framework.allocated.get(name, 0) - amount

    def _add_totals(self, resources: Resources, sign: int) -> None:
        for name, amount in resources.fixed_totals().items():
            self._totals[name] = self._totals.get(name, 0) + sign * amount

    # --- views ----------------------------------------------------------------------------

    def available(self, agent_id: str) -> Resources:
        return self._agents[agent_id].available

    def allocated(self, agent_id: str) -> Resources:
        total = EMPTY
        for resources in self._agents[agent_id].allocated.values():
            total = total + resources
        return total

    def share(self, framework_id: str) -> float:
        return self._dominant_share(self._frameworks[framework_id].allocated)
