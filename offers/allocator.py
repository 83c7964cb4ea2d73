"""The allocator: hierarchical weighted DRF with quotas, reservations, filters and demand.

Pure (DESIGN §2, §5): no I/O, no clock of its own — every time-dependent call takes ``now`` —
and deterministic: a cycle visits its agents in an order shuffled by the ``random.Random`` the
allocator is given (the master seeds it from its configuration), or in registration order
without one; equal weighted shares are exact ties, broken by allocation count, then registration.

One cycle visits agents; each agent's available resources for a role go, whole, to the first
eligible framework of that role, roles taken in hierarchical DRF order (``roles.RoleTree``) and
frameworks in DRF order within their role (``sorter.DRFSorter``). Mesos semantics kept:

* offered resources count as allocated until used, declined, rescinded or their task ends;
* one offer per agent per framework per cycle;
* reserved resources (static ``cpus(eng):4`` or dynamic) go only to their role;
* agents visited in a random order every cycle (Mesos shuffles them: in a fixed order, the
  same framework can lose every new agent to the same rival);
* decline filters per framework, role and agent (``refuse_seconds``, default 5 s, at most a
  year) that refuse only offers *contained in* what was declined, so a bigger offer of the
  agent (others' tasks ended, or an agent split between two roles whole again) gets through;
* suppress / revive per role (revive also clears the role's filters);
* a minimum allocatable size (cpus 0.01 or mem 32 MiB);
* quota: roles below their guarantee are served first, enough unreserved resources stay free
  (headroom) for every unmet guarantee, and no role is offered beyond its limit.

Beyond Mesos:

* cycles are incremental: sorters keep their order across cycles, and an immediate cycle
  (``allocate(now, incremental=True)``) visits only the agents whose resources changed, or all
  when the set of candidates changed (a framework arrived or revived);
* **demand**: a framework that declares what it is waiting to launch is offered only agents
  where one of those shapes fits, and nothing while it declares nothing;
* **exhausted agents last**: in each cycle's shuffled order, agents whose free resources have
  run out of CPUs or memory come after the others (``visit_order``);
* **explain**: why a framework got nothing (``explain.py``).

The allocator is the cycle; it composes components that own their state: ``Holdings``
(``holdings.py``: agents, what each framework holds, the pools quota reads), ``Frameworks``
(``frameworks.py``: roles, suppression, decline filters in ``filters.py``, demand) and
``Shares`` (``shares.py``: the DRF order of roles and of each role's frameworks).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterable

from tepui.offers.filters import DEFAULT_REFUSE_SECONDS, DeclineFilter
from tepui.offers.frameworks import Demand, Frameworks, FrameworkState, demand_fits, fits_by_quantity, role_list
from tepui.offers.holdings import AgentState, Holdings
from tepui.offers.quota import Caps, allocate_with_quota
from tepui.offers.roles import Quota, RoleTree
from tepui.offers.shares import Shares
from tepui.sdk.protocol.values import MAX_REFUSE_SECONDS
from tepui.sdk.resources import Resources, to_fixed

__all__ = [
    "DEFAULT_REFUSE_SECONDS", "MAX_REFUSE_SECONDS", "AgentState", "Allocation", "Allocator", "DeclineFilter",
    "Demand", "FrameworkState", "fits_by_quantity",
]


@dataclass(frozen=True)
class Allocation:
    framework_id: str
    agent_id: str
    role: str
    resources: Resources


class Allocator:
    """Decides which framework is offered which agent's resources.

    Its public calls are the whole API (the master, the simulator, the benchmarks, ``quota``
    and ``explain`` use nothing else); the state lives in the components it composes, each
    given what it reads when built: ``Shares``, ``Holdings(shares)``, ``Frameworks(shares)``.
    What is the allocator's own: the cycle count, the quotas, whether the candidates changed
    since the last cycle, the minimum allocatable size and the agents' shuffle."""

    def __init__(self, min_allocatable: dict[str, float] | None = None, rng: random.Random | None = None) -> None:
        """``rng`` shuffles the agents of every cycle (Mesos); None visits them in registration
        order (tests that pin exact offers). The master always passes one, seeded."""
        self._rng = rng
        minimum = min_allocatable if min_allocatable is not None else {"cpus": 0.01, "mem": 32.0}
        self._min = [(name, to_fixed(value)) for name, value in minimum.items()]
        self._shares = Shares()
        self._holdings = Holdings(self._shares)
        self._frameworks = Frameworks(self._shares)
        self.quotas: dict[str, Quota] = {}
        self._all_dirty = True  # the candidates changed: the next incremental cycle visits every agent
        self.cycles = 0

    @property
    def agents(self) -> dict[str, AgentState]:
        return self._holdings.agents

    @property
    def frameworks(self) -> dict[str, FrameworkState]:
        return self._frameworks.by_id

    @property
    def roles(self) -> RoleTree:
        return self._shares.roles

    # --- agents ---------------------------------------------------------------------------

    def add_agent(self, agent_id: str, total: Resources,
                  used: dict[tuple[str, str], Resources] | None = None) -> None:
        """Adds an agent; ``used`` is what tasks found on it already hold, by (framework, role)."""
        self._holdings.add_agent(agent_id, total, used)

    def remove_agent(self, agent_id: str) -> None:
        if self._holdings.remove_agent(agent_id):
            self._frameworks.forget_agent(agent_id)

    def grow_agent(self, agent_id: str, extra: Resources) -> None:
        """The agent restarted with more resources (``--reconfiguration-policy additive``)."""
        self._holdings.grow_agent(agent_id, extra)

    def deactivate_agent(self, agent_id: str) -> None:
        self._holdings.set_active(agent_id, False)

    def activate_agent(self, agent_id: str) -> None:
        self._holdings.set_active(agent_id, True)

    # --- frameworks -----------------------------------------------------------------------

    def add_framework(self, framework_id: str, roles: Iterable[str], suppressed_roles: Iterable[str] = (),
                      demand: Iterable[Demand] | None = None) -> None:
        if framework_id in self._frameworks.by_id:
            self.update_framework(framework_id, roles, suppressed_roles)
            self.activate_framework(framework_id)
            if demand is not None:
                self._frameworks.declare_demand(framework_id, demand)
            return
        self._frameworks.add(framework_id, roles, suppressed_roles, demand)
        self._all_dirty = True

    def _leave_role(self, framework_id: str, role: str) -> None:
        self._holdings.release(framework_id, role)
        self._frameworks.leave_role(framework_id, role)

    def update_framework(self, framework_id: str, roles: Iterable[str], suppressed_roles: Iterable[str] = ()) -> None:
        framework = self._frameworks.by_id[framework_id]
        wanted = role_list(roles)
        for role in framework.roles:
            if role not in wanted:
                self._leave_role(framework_id, role)
        self._frameworks.set_roles(framework_id, wanted, suppressed_roles)
        self._all_dirty = True

    def remove_framework(self, framework_id: str) -> None:
        """Forgets the framework, returning whatever it still held."""
        framework = self._frameworks.by_id.get(framework_id)
        if framework is None:
            return
        for role in framework.roles:
            self._leave_role(framework_id, role)
        self._frameworks.remove(framework_id)
        self._all_dirty = True

    def activate_framework(self, framework_id: str) -> None:
        if self._frameworks.activate(framework_id):
            self._all_dirty = True

    def deactivate_framework(self, framework_id: str) -> None:
        self._frameworks.deactivate(framework_id)

    def suppress(self, framework_id: str, roles: Iterable[str] = ()) -> None:
        """Only the framework's own roles (``Frameworks.suppress``)."""
        self._frameworks.suppress(framework_id, roles)

    def revive(self, framework_id: str, roles: Iterable[str] = ()) -> None:
        """Mesos: unsuppresses ``roles`` (all when empty) and clears their decline filters."""
        self._frameworks.revive(framework_id, roles)
        self._all_dirty = True

    def declare_demand(self, framework_id: str, demand: Iterable[Demand] | None) -> None:
        """What the framework waits to launch; None returns it to plain Mesos behaviour."""
        self._frameworks.declare_demand(framework_id, demand)
        self._all_dirty = True

    # --- weights and quotas ---------------------------------------------------------------

    def set_weight(self, role: str, weight: float) -> None:
        self._shares.roles.set_weight(role, weight)
        self._all_dirty = True

    def set_quota(self, role: str, quota: Quota | None) -> None:
        if quota is None or (not quota.guarantee and not quota.limit):
            self.quotas.pop(role, None)
        else:
            for name, amount in quota.guarantee.items():
                if quota.limit.get(name, amount) < amount:
                    raise ValueError(f"quota of role {role!r}: guarantee of {name} exceeds its limit")
            self.quotas[role] = quota
        self._all_dirty = True

    def consumed(self, role: str) -> dict[str, int]:
        """Quota consumption of ``role``'s subtree: allocations plus reservations (thousandths)."""
        return self._holdings.consumed(role)

    # --- resources ------------------------------------------------------------------------

    def allocate_used(self, agent_id: str, framework_id: str, role: str, resources: Resources) -> None:
        """Marks resources as held (tasks the master learns about on re-registration)."""
        self._holdings.charge(self._holdings.agents[agent_id], framework_id, role, resources)

    def recover(self, agent_id: str, framework_id: str, role: str, resources: Resources,
                refuse_seconds: float | None = None, now: float = 0.0) -> bool:
        """Returns resources to the agent's pool; with ``refuse_seconds`` also installs a decline
        filter for them (Mesos: negative means the default 5 s; capped at a year; nothing
        returned, nothing to filter).

        Returns False, changing nothing, when the framework does not hold ``resources`` there:
        recovering twice is a caller's bookkeeping bug, and honouring it would mint resources."""
        recovered = self._holdings.recover(agent_id, framework_id, role, resources)
        if refuse_seconds is not None:
            self._frameworks.refuse(framework_id, agent_id, role, resources, refuse_seconds, now)
        return recovered

    def convert(self, agent_id: str, framework_id: str, role: str, consumed: Resources, converted: Resources) -> None:
        """Applies a RESERVE/UNRESERVE (and later CREATE/DESTROY) to resources the framework
        holds: ``consumed`` becomes ``converted`` in the agent's total and in the allocation.
        Raises ``InsufficientResources`` if the framework does not hold ``consumed``."""
        self._holdings.convert(agent_id, framework_id, role, consumed, converted)

    # --- the cycle ------------------------------------------------------------------------

    def allocate(self, now: float, incremental: bool = False) -> list[Allocation]:
        """One allocation cycle. ``incremental`` visits only agents whose resources changed since
        the last cycle (all of them when the candidates changed)."""
        self.cycles += 1
        if incremental and not self._all_dirty:
            agents = self._holdings.changed_agents()
        else:
            agents = list(self._holdings.agents.values())
        agents = self.visit_order(agents)
        self._holdings.clear_changed()
        self._all_dirty = False
        result: list[Allocation] = []
        if self.quotas:
            allocate_with_quota(self, agents, now, result)
        else:
            for agent in agents:
                self.offer_agent(agent, now, result)
        return result

    def visit_order(self, agents: list[AgentState]) -> list[AgentState]:
        """The order a cycle visits ``agents`` in (shuffled in place first):

        * Mesos randomises it every cycle (and again for the second quota stage); without a
          generator, registration order stays;
        * beyond Mesos, *exhausted* agents go last: those whose free resources have run out of
          one of the minimum-allocatable resources that the agent has (every CPU or all the
          memory taken). Their remainder is what frameworks are least likely to use, and
          offering it first would lift whoever is lowest in DRF order just before the agents
          they could use are visited (issue 14: three greedy frameworks ended 60 / 0 / 60, and
          shuffling alone left them anywhere from 24 to 52 of 120 tasks)."""
        if self._rng is not None and len(agents) > 1:
            self._rng.shuffle(agents)
        exhausted = []
        kept = []
        for agent in agents:
            available = agent.available
            if available is not agent.total and self._exhausted(agent.total, available):
                exhausted.append(agent)
            else:
                kept.append(agent)
        return kept + exhausted if exhausted else agents

    def _exhausted(self, total: Resources, available: Resources) -> bool:
        have = available.fixed_totals()
        whole = total.fixed_totals()
        for name, minimum in self._min:
            if have.get(name, 0) < minimum <= whole.get(name, 0):
                return True
        return False

    def offer_agent(self, agent: AgentState, now: float, result: list[Allocation], caps: Caps | None = None,
                    roles: list[str] | None = None, given: set[str] | None = None) -> None:
        """Offers one agent's available resources, role by role in DRF order, appending to
        ``result``; ``given`` holds the frameworks already offered this agent in this cycle (one
        offer each). Public for the quota stages (``quota.allocate_with_quota``), which visit the
        agents twice: once for ``roles`` below their guarantee, once for all, each offer cut to
        the stage's ``caps``."""
        if not agent.active or not self.allocatable(agent.available):
            return
        if given is None:
            given = set()
        pick = self._frameworks.pick
        charge = self._holdings.charge
        for role in roles if roles is not None else self._shares.roles.order():
            available = agent.available
            offered = available.allocatable_to(role) if available.has_reservations else available
            if caps is not None:
                cap = caps.by_role.get(role)
                if cap is None and caps.stage == 1:
                    continue  # reached its guarantee during this stage
                if cap:
                    offered = offered.shrink_unreserved(cap)
            if not self.allocatable(offered):
                continue
            framework = pick(role, agent.agent_id, offered, now, given, self.cycles)
            if framework is None:
                continue
            charge(agent, framework.framework_id, role, offered)
            result.append(Allocation(framework.framework_id, agent.agent_id, role, offered))
            if caps is not None:
                caps.refresh(self)
            if not self.allocatable(agent.available):
                return

    @staticmethod
    def filtered_until(framework: FrameworkState, agent_id: str, role: str, offered: Resources,
                       now: float) -> float | None:
        """When ``offered`` (of the agent, in the role) stops being refused; None if it is not
        (``explain`` quotes the soonest)."""
        return Frameworks.filtered_until(framework, agent_id, role, offered, now)

    @staticmethod
    def demand_fits(framework: FrameworkState, role: str, offered: Resources) -> bool:
        """Whether one of the framework's declared shapes fits ``offered`` (``frameworks.demand_fits``)."""
        return demand_fits(framework, role, offered)

    def minimum_allocatable(self) -> list[tuple[str, int]]:
        """The minimum allocatable size as (resource, thousandths): an offer needs one of them
        (``explain`` quotes it when no agent has that much free)."""
        return list(self._min)

    def allocatable(self, resources: Resources) -> bool:
        totals = resources.fixed_totals()
        for name, minimum in self._min:
            if totals.get(name, 0) >= minimum:
                return True
        return False

    # --- views ----------------------------------------------------------------------------

    def available(self, agent_id: str) -> Resources:
        return self._holdings.agents[agent_id].available

    def allocated(self, agent_id: str) -> Resources:
        return self._holdings.allocated(agent_id)

    def share(self, framework_id: str, role: str | None = None) -> float:
        framework = self._frameworks.by_id[framework_id]
        return self._shares.share(framework_id, [role] if role else framework.roles)

    def weights(self) -> dict[str, float]:
        return self._shares.roles.weights()

    def free_unreserved(self) -> dict[str, int]:
        return self._holdings.free_unreserved()
