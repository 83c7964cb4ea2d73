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
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field
from typing import Iterable, NamedTuple

from tepui.offers.quota import Caps, allocate_with_quota
from tepui.offers.roles import DEFAULT_ROLE, Quota, RoleTree, is_within
from tepui.offers.sorter import DRFSorter
from tepui.sdk.protocol.values import MAX_REFUSE_SECONDS  # the wire refuses more; kept for direct callers
from tepui.sdk.resources import EMPTY, Resources, to_fixed

DEFAULT_REFUSE_SECONDS = 5.0


@dataclass(frozen=True)
class Allocation:
    framework_id: str
    agent_id: str
    role: str
    resources: Resources


@dataclass(frozen=True)
class Demand:
    """A task shape a framework is waiting to launch (``role`` None: any of its roles)."""

    resources: Resources
    count: int = 1
    role: str | None = None


@dataclass
class AgentState:
    agent_id: str
    total: Resources
    available: Resources
    allocated: dict[tuple[str, str], Resources] = field(default_factory=dict)  # (fid, role) → res
    active: bool = True
    seq: int = 0  # registration order


class DeclineFilter(NamedTuple):
    """Mesos's ``RefusedOfferFilter``: until ``expires``, offers of the agent in ``role`` that
    ``declined`` contains are refused. (A tuple: a decline makes one, on the hot path.)"""

    role: str
    declined: Resources
    expires: float


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


def _registration(agent: AgentState) -> int:
    return agent.seq


def _add_to(target: dict[str, int], amounts: dict[str, int], sign: int = 1) -> None:
    for name, amount in amounts.items():
        target[name] = target.get(name, 0) + sign * amount


class Allocator:
    """Decides which framework is offered which agent's resources."""

    def __init__(self, min_allocatable: dict[str, float] | None = None, rng: random.Random | None = None) -> None:
        """``rng`` shuffles the agents of every cycle (Mesos); None visits them in registration
        order (tests that pin exact offers). The master always passes one, seeded."""
        self._rng = rng
        minimum = min_allocatable if min_allocatable is not None else {"cpus": 0.01, "mem": 32.0}
        self._min = [(name, to_fixed(value)) for name, value in minimum.items()]
        self.agents: dict[str, AgentState] = {}
        self.frameworks: dict[str, FrameworkState] = {}
        self.roles = RoleTree()
        self._framework_sorters: dict[str, DRFSorter] = {}
        self.quotas: dict[str, Quota] = {}
        self._totals: dict[str, int] = {}
        self._reserved_total: dict[str, dict[str, int]] = {}  # role → reserved scalars (all agents)
        self._allocated_unreserved: dict[str, dict[str, int]] = {}  # role → unreserved allocated
        self._free_unreserved: dict[str, int] = {}  # unreserved scalars not allocated, all agents
        self._dirty_agents: dict[str, None] = {}  # an ordered set: insertion order, not hashes
        self._agent_seq = itertools.count()
        self._all_dirty = True
        self.cycles = 0

    # --- agents ---------------------------------------------------------------------------

    def add_agent(self, agent_id: str, total: Resources,
                  used: dict[tuple[str, str], Resources] | None = None) -> None:
        """Adds an agent; ``used`` is what tasks found on it already hold, by (framework, role)."""
        agent = AgentState(agent_id, total, total, seq=next(self._agent_seq))
        self.agents[agent_id] = agent
        self._account_total(total, +1)
        _add_to(self._free_unreserved, total.unreserved().fixed_totals())
        for (framework_id, role), resources in (used or {}).items():
            self._charge(agent, framework_id, role, resources)
        self._dirty_agents[agent_id] = None

    def remove_agent(self, agent_id: str) -> None:
        agent = self.agents.get(agent_id)
        if agent is None:
            return
        for (framework_id, role), resources in list(agent.allocated.items()):
            self._credit(agent, framework_id, role, resources)
        del self.agents[agent_id]
        self._account_total(agent.total, -1)
        _add_to(self._free_unreserved, agent.total.unreserved().fixed_totals(), -1)
        for framework in self.frameworks.values():
            framework.filters.pop(agent_id, None)
        self._dirty_agents.pop(agent_id, None)

    def grow_agent(self, agent_id: str, extra: Resources) -> None:
        """The agent restarted with more resources (``--reconfiguration-policy additive``)."""
        agent = self.agents.get(agent_id)
        if agent is None or not extra:
            return
        self._account_total(extra, +1)
        _add_to(self._free_unreserved, extra.unreserved().fixed_totals())
        agent.total = agent.total + extra
        agent.available = agent.available + extra
        self._dirty_agents[agent_id] = None

    def deactivate_agent(self, agent_id: str) -> None:
        if agent_id in self.agents:
            self.agents[agent_id].active = False

    def activate_agent(self, agent_id: str) -> None:
        if agent_id in self.agents:
            self.agents[agent_id].active = True
            self._dirty_agents[agent_id] = None

    def _account_total(self, total: Resources, sign: int) -> None:
        _add_to(self._totals, total.fixed_totals(), sign)
        self.roles.set_totals(self._totals)
        for sorter in self._framework_sorters.values():
            sorter.set_totals(self._totals)
        if total.has_reservations:
            for key, amount in total:
                if key.role != DEFAULT_ROLE and isinstance(amount, int):
                    reserved = self._reserved_total.setdefault(key.role, {})
                    reserved[key.name] = reserved.get(key.name, 0) + sign * amount

    # --- frameworks -----------------------------------------------------------------------

    def add_framework(self, framework_id: str, roles: Iterable[str], suppressed_roles: Iterable[str] = (),
                      demand: Iterable[Demand] | None = None) -> None:
        existing = self.frameworks.get(framework_id)
        if existing is not None:
            self.update_framework(framework_id, roles, suppressed_roles)
            self.activate_framework(framework_id)
            if demand is not None:
                existing.demand = tuple(demand)
            return
        framework = FrameworkState(framework_id, tuple(dict.fromkeys(roles)) or (DEFAULT_ROLE,),
                                   suppressed=set(suppressed_roles),
                                   demand=tuple(demand) if demand is not None else None)
        self.frameworks[framework_id] = framework
        for role in framework.roles:
            self._join_role(framework_id, role)
        self._all_dirty = True

    def _join_role(self, framework_id: str, role: str) -> None:
        self.roles.track(role)
        sorter = self._framework_sorters.get(role)
        if sorter is None:
            sorter = self._framework_sorters[role] = DRFSorter()
            sorter.set_totals(self._totals)
        sorter.add(framework_id)
        if not self.frameworks[framework_id].active:
            sorter.deactivate(framework_id)

    def _leave_role(self, framework_id: str, role: str) -> None:
        """The caller recovered the framework's resources in this role first."""
        for agent in self.agents.values():
            held = agent.allocated.get((framework_id, role))
            if held:
                self._credit(agent, framework_id, role, held)
        sorter = self._framework_sorters[role]
        sorter.remove(framework_id)
        if not len(sorter):
            del self._framework_sorters[role]
        self.roles.untrack(role)

    def update_framework(self, framework_id: str, roles: Iterable[str], suppressed_roles: Iterable[str] = ()) -> None:
        framework = self.frameworks[framework_id]
        wanted = tuple(dict.fromkeys(roles)) or (DEFAULT_ROLE,)
        for role in framework.roles:
            if role not in wanted:
                self._leave_role(framework_id, role)
        for role in wanted:
            if role not in framework.roles:
                self._join_role(framework_id, role)
        framework.roles = wanted
        framework.suppressed = set(suppressed_roles)
        self._all_dirty = True

    def remove_framework(self, framework_id: str) -> None:
        """Forgets the framework, returning whatever it still held."""
        framework = self.frameworks.get(framework_id)
        if framework is None:
            return
        for role in framework.roles:
            self._leave_role(framework_id, role)
        del self.frameworks[framework_id]
        self._all_dirty = True

    def activate_framework(self, framework_id: str) -> None:
        framework = self.frameworks[framework_id]
        if not framework.active:
            framework.active = True
            for role in framework.roles:
                self._framework_sorters[role].activate(framework_id)
            self._all_dirty = True

    def deactivate_framework(self, framework_id: str) -> None:
        framework = self.frameworks.get(framework_id)
        if framework is not None and framework.active:
            framework.active = False
            for role in framework.roles:
                self._framework_sorters[role].deactivate(framework_id)

    def suppress(self, framework_id: str, roles: Iterable[str] = ()) -> None:
        """Only the framework's own roles: a SUPPRESS naming others (any number, any length,
        call after call) must not grow what the allocator keeps per framework."""
        framework = self.frameworks[framework_id]
        framework.suppressed |= (set(roles) or set(framework.roles)) & set(framework.roles)

    def revive(self, framework_id: str, roles: Iterable[str] = ()) -> None:
        """Mesos: unsuppresses ``roles`` (all when empty) and clears their decline filters."""
        framework = self.frameworks[framework_id]
        revived = set(roles) or set(framework.roles)
        framework.suppressed -= revived
        for agent_id, filters in list(framework.filters.items()):
            kept = [f for f in filters if f.role not in revived]
            if kept:
                framework.filters[agent_id] = kept
            else:
                del framework.filters[agent_id]
        self._all_dirty = True

    def declare_demand(self, framework_id: str, demand: Iterable[Demand] | None) -> None:
        """What the framework waits to launch; None returns it to plain Mesos behaviour."""
        self.frameworks[framework_id].demand = tuple(demand) if demand is not None else None
        self._all_dirty = True

    # --- weights and quotas ---------------------------------------------------------------

    def set_weight(self, role: str, weight: float) -> None:
        self.roles.set_weight(role, weight)
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
        out: dict[str, int] = {}
        for table in (self._reserved_total, self._allocated_unreserved):
            for other, amounts in table.items():
                if is_within(other, role):
                    _add_to(out, amounts)
        return out

    # --- resources ------------------------------------------------------------------------

    def allocate_used(self, agent_id: str, framework_id: str, role: str, resources: Resources) -> None:
        """Marks resources as held (tasks the master learns about on re-registration)."""
        self._charge(self.agents[agent_id], framework_id, role, resources)

    def recover(self, agent_id: str, framework_id: str, role: str, resources: Resources,
                refuse_seconds: float | None = None, now: float = 0.0) -> bool:
        """Returns resources to the agent's pool; with ``refuse_seconds`` also installs a decline
        filter for them (Mesos: negative means the default 5 s; capped at a year; nothing
        returned, nothing to filter).

        Returns False, changing nothing, when the framework does not hold ``resources`` there:
        recovering twice is a caller's bookkeeping bug, and honouring it would mint resources."""
        recovered = True
        agent = self.agents.get(agent_id)
        if agent is not None and resources:
            held = agent.allocated.get((framework_id, role), EMPTY)
            if held.contains(resources):
                self._credit(agent, framework_id, role, resources, checked=True)
                self._dirty_agents[agent_id] = None
            else:
                recovered = False
        framework = self.frameworks.get(framework_id)
        if framework is not None and refuse_seconds is not None:
            if refuse_seconds < 0:
                refuse_seconds = DEFAULT_REFUSE_SECONDS
            refuse_seconds = min(refuse_seconds, MAX_REFUSE_SECONDS)
            if refuse_seconds > 0 and resources:
                entry = DeclineFilter(role, resources, now + refuse_seconds)
                filters = framework.filters.get(agent_id)
                if filters is None:
                    framework.filters[agent_id] = [entry]
                else:
                    self._add_filter(filters, entry)
        return recovered

    @staticmethod
    def _add_filter(filters: list[DeclineFilter], new: DeclineFilter) -> None:
        """Mesos: every decline adds a filter and an offer is refused while any filter of its
        role contains it, so a shorter decline never shortens a longer one. A filter that
        another refuses everything of, at least as long, is dropped (the list stays short)."""
        for old in filters:
            if old.role == new.role and old.expires >= new.expires and old.declined.contains(new.declined):
                return
        filters[:] = [old for old in filters if not (
            old.role == new.role and new.expires >= old.expires and new.declined.contains(old.declined))]
        filters.append(new)

    def convert(self, agent_id: str, framework_id: str, role: str, consumed: Resources, converted: Resources) -> None:
        """Applies a RESERVE/UNRESERVE (and later CREATE/DESTROY) to resources the framework
        holds: ``consumed`` becomes ``converted`` in the agent's total and in the allocation.
        Raises ``InsufficientResources`` if the framework does not hold ``consumed``."""
        agent = self.agents[agent_id]
        key = (framework_id, role)
        held = agent.allocated.get(key, EMPTY) - consumed
        self._credit_books(framework_id, role, consumed)
        self._account_total(agent.total, -1)
        agent.total = agent.total - consumed + converted
        self._account_total(agent.total, +1)
        agent.allocated[key] = held + converted
        self._charge_books(framework_id, role, converted)
        # The resources stay allocated throughout: the books above moved the free pool by
        # what changed reservation status, so put that back.
        _add_to(self._free_unreserved, consumed.unreserved().fixed_totals(), -1)
        _add_to(self._free_unreserved, converted.unreserved().fixed_totals(), +1)

    def _charge(self, agent: AgentState, framework_id: str, role: str, resources: Resources) -> None:
        available = agent.available
        agent.available = EMPTY if resources is available or resources == available else available - resources
        key = (framework_id, role)
        held = agent.allocated.get(key)
        agent.allocated[key] = resources if held is None else held + resources
        self._charge_books(framework_id, role, resources)

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
        self._credit_books(framework_id, role, resources)

    def _charge_books(self, framework_id: str, role: str, resources: Resources, sign: int = 1) -> None:
        amounts = resources.fixed_totals()
        if sign < 0:
            amounts = {name: -amount for name, amount in amounts.items()}
        sorter = self._framework_sorters.get(role)
        if sorter is not None:
            sorter.allocated(framework_id, amounts, count=sign > 0)
        self.roles.allocated(role, amounts, count=sign > 0)
        unreserved = resources.unreserved().fixed_totals() if resources.has_reservations else resources.fixed_totals()
        _add_to(self._allocated_unreserved.setdefault(role, {}), unreserved, sign)
        _add_to(self._free_unreserved, unreserved, -sign)

    def _credit_books(self, framework_id: str, role: str, resources: Resources) -> None:
        self._charge_books(framework_id, role, resources, sign=-1)

    # --- the cycle ------------------------------------------------------------------------

    def allocate(self, now: float, incremental: bool = False) -> list[Allocation]:
        """One allocation cycle. ``incremental`` visits only agents whose resources changed since
        the last cycle (all of them when the candidates changed)."""
        self.cycles += 1
        if incremental and not self._all_dirty:
            agents = [self.agents[a] for a in self._dirty_agents if a in self.agents]
            agents.sort(key=_registration)  # then shuffled: the same order whatever the hashes
        else:
            agents = list(self.agents.values())
        agents = self.visit_order(agents)
        self._dirty_agents.clear()
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
        for role in roles if roles is not None else self.roles.order():
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
            framework = self._pick(role, agent.agent_id, offered, now, given)
            if framework is None:
                continue
            self._charge(agent, framework.framework_id, role, offered)
            framework.offered_cycle[role] = self.cycles
            given.add(framework.framework_id)
            result.append(Allocation(framework.framework_id, agent.agent_id, role, offered))
            if caps is not None:
                caps.refresh(self)
            if not self.allocatable(agent.available):
                return

    def _pick(self, role: str, agent_id: str, offered: Resources, now: float, given: set[str]) -> FrameworkState | None:
        sorter = self._framework_sorters.get(role)
        if sorter is None:
            return None
        frameworks = self.frameworks
        for key in sorter.order():
            framework = frameworks[key[3]]
            if role in framework.suppressed or framework.framework_id in given:
                continue
            filters = framework.filters.get(agent_id)
            if filters is not None and self._filtered(framework, agent_id, filters, role, offered, now):
                continue
            if framework.demand is not None and not self.demand_fits(framework, role, offered):
                continue
            return framework
        return None

    @staticmethod
    def _filtered(framework: FrameworkState, agent_id: str, filters: list[DeclineFilter], role: str,
                  offered: Resources, now: float) -> bool:
        """Whether a live filter refuses ``offered``; drops the expired ones on the way."""
        refused = False
        expired = False
        for entry in filters:
            if now >= entry.expires:
                expired = True
            elif entry.role == role and (entry.declined is offered or entry.declined.contains(offered)):
                refused = True
                break
        if expired:
            kept = [entry for entry in filters if now < entry.expires]
            if kept:
                filters[:] = kept
            else:
                del framework.filters[agent_id]
        return refused

    @staticmethod
    def filtered_until(framework: FrameworkState, agent_id: str, role: str, offered: Resources,
                       now: float) -> float | None:
        """When ``offered`` (of the agent, in the role) stops being refused; None if it is not."""
        until = None
        for entry in framework.filters.get(agent_id, ()):
            if now < entry.expires and entry.role == role and entry.declined.contains(offered):
                until = entry.expires if until is None else max(until, entry.expires)
        return until

    @staticmethod
    def demand_fits(framework: FrameworkState, role: str, offered: Resources) -> bool:
        """A shape fits when the offer holds as much of each resource, reserved or not (a task
        in role R can use R's reservations): scalars by amount, ranges and sets by count."""
        for demand in framework.demand or ():
            if demand.count > 0 and demand.role in (None, role) and fits_by_quantity(offered, demand.resources):
                return True
        return False

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
        return self.agents[agent_id].available

    def allocated(self, agent_id: str) -> Resources:
        total = EMPTY
        for resources in self.agents[agent_id].allocated.values():
            total = total + resources
        return total

    def share(self, framework_id: str, role: str | None = None) -> float:
        framework = self.frameworks[framework_id]
        return max(self._framework_sorters[r].share(framework_id) for r in ([role] if role else framework.roles))

    def weights(self) -> dict[str, float]:
        return self.roles.weights()

    def free_unreserved(self) -> dict[str, int]:
        return dict(self._free_unreserved)
