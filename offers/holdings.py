"""What each agent has and what each framework holds on it: the allocator's books.

Mesos semantics: offered resources count as allocated until used, declined, rescinded or their
task ends, so an outstanding offer and a running task are both a holding here. Every charge and
credit keeps three things in step, in thousandths: the agent's ``available`` and ``allocated``,
the DRF shares (``Shares``), and the cluster-wide pools quota reads (reservations per role,
unreserved allocations per role, unreserved resources still free). The books also remember
which agents' resources changed since the last cycle, for the incremental cycle. Pure: no I/O,
no clock.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from tepui.offers.roles import DEFAULT_ROLE, is_within
from tepui.offers.shares import Shares
from tepui.sdk.resources import EMPTY, Resources


@dataclass
class AgentState:
    agent_id: str
    total: Resources
    available: Resources
    allocated: dict[tuple[str, str], Resources] = field(default_factory=dict)  # (fid, role) → res
    active: bool = True
    seq: int = 0  # registration order


def _registration(agent: AgentState) -> int:
    return agent.seq


def _add_to(target: dict[str, int], amounts: dict[str, int], sign: int = 1) -> None:
    for name, amount in amounts.items():
        target[name] = target.get(name, 0) + sign * amount


class Holdings:
    """The agents, what each (framework, role) holds on each, and the pools derived from them."""

    def __init__(self, shares: Shares) -> None:
        """``shares`` is told of every change of the pool's totals and of every holding."""
        self._shares = shares
        self.agents: dict[str, AgentState] = {}
        self._reserved_total: dict[str, dict[str, int]] = {}  # role → reserved scalars (all agents)
        self._allocated_unreserved: dict[str, dict[str, int]] = {}  # role → unreserved allocated
        self._free_unreserved: dict[str, int] = {}  # unreserved scalars not allocated, all agents
        self._changed: dict[str, None] = {}  # an ordered set: insertion order, not hashes
        self._agent_seq = itertools.count()

    # --- agents ---------------------------------------------------------------------------

    def add_agent(self, agent_id: str, total: Resources,
                  used: dict[tuple[str, str], Resources] | None = None) -> None:
        agent = AgentState(agent_id, total, total, seq=next(self._agent_seq))
        self.agents[agent_id] = agent
        self._account_total(total, +1)
        _add_to(self._free_unreserved, total.unreserved().fixed_totals())
        for (framework_id, role), resources in (used or {}).items():
            self.charge(agent, framework_id, role, resources)
        self._changed[agent_id] = None

    def remove_agent(self, agent_id: str) -> bool:
        """Returns every holding on the agent and forgets it; False if it was unknown."""
        agent = self.agents.get(agent_id)
        if agent is None:
            return False
        for (framework_id, role), resources in list(agent.allocated.items()):
            self._credit(agent, framework_id, role, resources)
        del self.agents[agent_id]
        self._account_total(agent.total, -1)
        _add_to(self._free_unreserved, agent.total.unreserved().fixed_totals(), -1)
        self._changed.pop(agent_id, None)
        return True

    def grow_agent(self, agent_id: str, extra: Resources) -> None:
        agent = self.agents.get(agent_id)
        if agent is None or not extra:
            return
        self._account_total(extra, +1)
        _add_to(self._free_unreserved, extra.unreserved().fixed_totals())
        agent.total = agent.total + extra
        agent.available = agent.available + extra
        self._changed[agent_id] = None

    def set_active(self, agent_id: str, active: bool) -> None:
        agent = self.agents.get(agent_id)
        if agent is not None:
            agent.active = active
            if active:
                self._changed[agent_id] = None

    def _account_total(self, total: Resources, sign: int) -> None:
        self._shares.add_to_pool(total.fixed_totals(), sign)
        if total.has_reservations:
            for key, amount in total:
                if key.role != DEFAULT_ROLE and isinstance(amount, int):
                    reserved = self._reserved_total.setdefault(key.role, {})
                    reserved[key.name] = reserved.get(key.name, 0) + sign * amount

    # --- the incremental cycle -------------------------------------------------------------

    def changed_agents(self) -> list[AgentState]:
        """The agents whose resources changed since ``clear_changed``, in registration order
        (then shuffled by the cycle: the same order whatever the hashes)."""
        agents = [self.agents[a] for a in self._changed if a in self.agents]
        agents.sort(key=_registration)
        return agents

    def clear_changed(self) -> None:
        self._changed.clear()

    # --- holdings -------------------------------------------------------------------------

    def charge(self, agent: AgentState, framework_id: str, role: str, resources: Resources) -> None:
        """The framework now holds ``resources`` of the agent's available ones in ``role``."""
        available = agent.available
        agent.available = EMPTY if resources is available or resources == available else available - resources
        key = (framework_id, role)
        held = agent.allocated.get(key)
        agent.allocated[key] = resources if held is None else held + resources
        # ``_count(..., +1)`` spelled out: a charge is per offer, and the cycle's cost is calls
        # (so split from the allocator, the cycle costs what it did: 0.95-1.01x, paired rounds of
        # bench/allocator.py's 10,000 agents x 1,000 frameworks in one process)
        amounts = resources.fixed_totals()
        self._shares.allocated(framework_id, role, amounts, count=True)
        unreserved = resources.unreserved().fixed_totals() if resources.has_reservations else amounts
        _add_to(self._allocated_unreserved.setdefault(role, {}), unreserved)
        _add_to(self._free_unreserved, unreserved, -1)

    def recover(self, agent_id: str, framework_id: str, role: str, resources: Resources) -> bool:
        """Returns ``resources`` to the agent's pool; False, changing nothing, when the framework
        does not hold them there (an unknown agent, or nothing returned, is True)."""
        agent = self.agents.get(agent_id)
        if agent is not None and resources:
            held = agent.allocated.get((framework_id, role), EMPTY)
            if not held.contains(resources):
                return False
            self._credit(agent, framework_id, role, resources, checked=True)
            self._changed[agent_id] = None
        return True

    def release(self, framework_id: str, role: str) -> None:
        """Returns whatever the framework holds in ``role`` on every agent (it leaves the role)."""
        for agent in self.agents.values():
            held = agent.allocated.get((framework_id, role))
            if held:
                self._credit(agent, framework_id, role, held)

    def convert(self, agent_id: str, framework_id: str, role: str, consumed: Resources, converted: Resources) -> None:
        """``consumed`` becomes ``converted`` in the agent's total and in the framework's holding
        (RESERVE/UNRESERVE). Raises ``InsufficientResources`` if the framework does not hold
        ``consumed``."""
        agent = self.agents[agent_id]
        key = (framework_id, role)
        held = agent.allocated.get(key, EMPTY) - consumed
        self._count(framework_id, role, consumed, -1)
        self._account_total(agent.total, -1)
        agent.total = agent.total - consumed + converted
        self._account_total(agent.total, +1)
        agent.allocated[key] = held + converted
        self._count(framework_id, role, converted, +1)
        # The resources stay allocated throughout: the books above moved the free pool by
        # what changed reservation status, so put that back.
        _add_to(self._free_unreserved, consumed.unreserved().fixed_totals(), -1)
        _add_to(self._free_unreserved, converted.unreserved().fixed_totals(), +1)

    def _credit(self, agent: AgentState, framework_id: str, role: str, resources: Resources,
                checked: bool = False) -> None:
        key = (framework_id, role)
        held = agent.allocated[key]
        remaining = held.subtract_contained(resources) if checked else held - resources
        if remaining:
            agent.allocated[key] = remaining
        else:
            del agent.allocated[key]
        agent.available = resources if not agent.available else agent.available + resources
        self._count(framework_id, role, resources, -1)

    def _count(self, framework_id: str, role: str, resources: Resources, sign: int) -> None:
        """Moves the shares and the pools by ``resources``, held (+1) or returned (-1)."""
        amounts = resources.fixed_totals()
        if sign < 0:
            amounts = {name: -amount for name, amount in amounts.items()}
        self._shares.allocated(framework_id, role, amounts, count=sign > 0)
        unreserved = resources.unreserved().fixed_totals() if resources.has_reservations else resources.fixed_totals()
        _add_to(self._allocated_unreserved.setdefault(role, {}), unreserved, sign)
        _add_to(self._free_unreserved, unreserved, -sign)

    # --- views ----------------------------------------------------------------------------

    def consumed(self, role: str) -> dict[str, int]:
        """Quota consumption of ``role``'s subtree: allocations plus reservations (thousandths)."""
        out: dict[str, int] = {}
        for table in (self._reserved_total, self._allocated_unreserved):
            for other, amounts in table.items():
                if is_within(other, role):
                    _add_to(out, amounts)
        return out

    def free_unreserved(self) -> dict[str, int]:
        return dict(self._free_unreserved)

    def allocated(self, agent_id: str) -> Resources:
        total = EMPTY
        for resources in self.agents[agent_id].allocated.values():
            total = total + resources
        return total
