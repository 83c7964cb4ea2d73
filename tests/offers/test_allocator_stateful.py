"""The allocator under random sequences of cluster events, checked against a model after every
step (hypothesis ``RuleBasedStateMachine``).

The model is what a master knows: the agents' totals (changed by dynamic reservations), the
outstanding offers and live tasks (each held by one framework in one role on one agent), each
framework's roles, activity, suppressed roles, declared demand and decline filters, and the
quotas in force. The allocator is driven only through its public calls, on a fake clock that
only moves forward.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from tepui.offers.allocator import MAX_REFUSE_SECONDS, Allocation, Allocator, Demand
from tepui.offers.roles import Quota, is_within
from tepui.sdk.resources import EMPTY, ResourceKey, Resources

ROLES = ("*", "eng", "eng/backend", "eng/frontend", "ads")
RESERVATION_ROLES = ("eng", "eng/backend", "ads")
QUOTA_NAMES = ("cpus", "mem")
MIN_CPUS, MIN_MEM = 10, 32_000  # the allocator's default minimum, in thousandths
MAX_AGENTS = 6
MAX_FRAMEWORKS = 6


@dataclass
class Holding:
    """An outstanding offer or a live task: resources one framework holds in one role."""

    framework_id: str
    agent_id: str
    role: str
    resources: Resources


@dataclass
class FrameworkModel:
    roles: tuple[str, ...]
    suppressed: set[str] = field(default_factory=set)
    active: bool = True
    demand: tuple[Demand, ...] | None = None
    # agent → (role, declined, expires): offers of the agent in the role that ``declined``
    # contains are refused while now < expires (Mesos's RefusedOfferFilter)
    filters: dict[str, list[tuple[str, Resources, float]]] = field(default_factory=dict)


def fmt(thousandths: int) -> str:
    return f"{thousandths / 1000:.3f}"


# --- strategies ---------------------------------------------------------------------------------

@st.composite
def agent_totals(draw: st.DrawFn) -> Resources:
    """Random scalars with up to three decimals, a port range, sometimes static reservations."""
    cpus = draw(st.integers(0, 16_000))
    mem = draw(st.one_of(st.integers(0, 100_000), st.integers(0, 16_384_000)))
    disk = draw(st.integers(0, 50_000_000))
    begin = draw(st.integers(31_000, 31_100))
    end = begin + draw(st.integers(0, 20))
    parts = [f"cpus:{fmt(cpus)}", f"mem:{fmt(mem)}", f"disk:{fmt(disk)}", f"ports:[{begin}-{end}]"]
    for role in draw(st.lists(st.sampled_from(RESERVATION_ROLES), max_size=2, unique=True)):
        parts.append(f"cpus({role}):{fmt(draw(st.integers(0, 4_000)))}")
        if draw(st.booleans()):
            parts.append(f"mem({role}):{fmt(draw(st.integers(0, 2_048_000)))}")
    return Resources.parse(";".join(parts))


@st.composite
def demand_lists(draw: st.DrawFn) -> list[Demand] | None:
    if draw(st.booleans()):
        return None
    shapes = []
    for _ in range(draw(st.integers(0, 3))):
        shape = Resources.parse(f"cpus:{fmt(draw(st.integers(0, 8_000)))};mem:{fmt(draw(st.integers(0, 8_192_000)))}")
        shapes.append(Demand(shape, draw(st.integers(0, 2)), draw(st.sampled_from((None, *ROLES)))))
    return shapes


REFUSE = st.one_of(st.none(), st.sampled_from([0, 0.0, -1.0, 0.5, 1, 5.0, 30.0, 1e9]))
SCALAR_AMOUNTS = {"cpus": st.integers(0, 40_000), "mem": st.integers(0, 40_000_000)}


# --- helpers ------------------------------------------------------------------------------------

def subset_of(draw: st.DrawFn, resources: Resources) -> Resources:
    """A random part of ``resources``: some of each scalar, a sub-range of one port range."""
    items: dict[ResourceKey, object] = {}
    for key, amount in resources:
        if isinstance(amount, int):
            items[key] = draw(st.integers(0, amount))
        elif isinstance(amount, tuple) and draw(st.booleans()):
            begin, end = draw(st.sampled_from(amount))
            low = draw(st.integers(begin, end))
            items[key] = ((low, draw(st.integers(low, end))),)
    return Resources(items)  # type: ignore[arg-type]


def meets_minimum(resources: Resources) -> bool:
    totals = resources.fixed_totals()
    return totals.get("cpus", 0) >= MIN_CPUS or totals.get("mem", 0) >= MIN_MEM


def nonzero(amounts: dict[str, int]) -> dict[str, int]:
    return {name: amount for name, amount in amounts.items() if amount}


def demand_fits(demand: tuple[Demand, ...], role: str, offered: Resources) -> bool:
    """Quantities, whatever the reservation: a task in a role can use the role's reservations."""
    have = offered.fixed_totals()
    return any(d.count > 0 and d.role in (None, role)
               and all(have.get(name, 0) >= amount for name, amount in d.resources.fixed_totals().items())
               and all(offered.item_count(n) >= d.resources.item_count(n)
                       for n in d.resources.names() - set(d.resources.fixed_totals()))
               for d in demand)


# --- the machine --------------------------------------------------------------------------------

class AllocatorMachine(RuleBasedStateMachine):
    """Invariants, checked after every step:

    * **conservation**: for every agent, ``available + Σ allocated == total`` exactly, the total
      equals the model's (dynamic reservations included), and no amount is negative;
    * **model agreement**: the model's outstanding offers + live tasks on each agent, per
      (framework, role), equal the allocator's ``allocated`` for that agent;
    * **reservations reach only their role**: every held amount reserved for a role is held in
      exactly that role (checked on every ``allocate`` result and on every holding);
    * **quota consumption bookkeeping**: ``consumed(role)`` equals what the model computes —
      the unreserved scalars held in the role's subtree plus every reservation (allocated or
      not) for a role in the subtree.

    And on every ``allocate(now)`` result:

    * **quota limits**: for every role R with a limit L on scalar n (quota in force during the
      cycle), with C(R, n) the model's consumption above taken just before and just after the
      cycle: ``C_after(R, n) <= max(L(n), C_before(R, n))``. That is: a cycle never takes a
      subtree from within its limit to above it, and never increases a consumption that
      already exceeds a (lowered) limit;
    * one offer per (framework, agent) per cycle; the cycle's offers on an agent are contained
      in what that agent had available before the cycle;
    * no allocation to a framework that is inactive, not in the role, suppressed for the role,
      refused by a live filter (one of the same agent and role, ``now < expiry``, whose declined
      resources contain the offer), or whose declared demand has no shape (count > 0, role None
      or the offer's role) contained in the offered resources;
    * every allocation is non-empty and meets the minimum (cpus >= 0.01 or mem >= 32).
    """

    def __init__(self) -> None:
        super().__init__()
        self.allocator = Allocator()
        self.now = 0.0
        self.totals: dict[str, Resources] = {}
        self.frameworks: dict[str, FrameworkModel] = {}
        self.offers: dict[int, Holding] = {}
        self.tasks: dict[int, Holding] = {}
        self.quotas: dict[str, Quota] = {}
        self.next_agent = 0
        self.next_framework = 0
        self.next_holding = 0

    # --- model helpers ----------------------------------------------------------------------

    def holdings(self) -> list[Holding]:
        return [*self.offers.values(), *self.tasks.values()]

    def model_consumed(self, scope: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for holding in self.holdings():
            if is_within(holding.role, scope):
                for name, amount in holding.resources.unreserved().fixed_totals().items():
                    out[name] = out.get(name, 0) + amount
        for total in self.totals.values():
            for key, amount in total:
                if key.role != "*" and is_within(key.role, scope) and isinstance(amount, int):
                    out[key.name] = out.get(key.name, 0) + amount
        return nonzero(out)

    def add_holding(self, table: dict[int, Holding], holding: Holding) -> None:
        table[self.next_holding] = holding
        self.next_holding += 1

    def install_filter(self, framework_id: str, agent_id: str, role: str, declined: Resources,
                       refuse: float | None) -> None:
        """Mesos semantics: every decline adds a filter of its role for what was declined, and an
        offer stays refused while any filter contains it (the longest wins); negative means the
        default 5 s; capped at a year; 0, or nothing declined, installs nothing."""
        if refuse is None:
            return
        if refuse < 0:
            refuse = 5.0
        refuse = min(refuse, MAX_REFUSE_SECONDS)
        if refuse > 0 and declined:
            self.frameworks[framework_id].filters.setdefault(agent_id, []).append((role, declined, self.now + refuse))

    def recover(self, holding: Holding, resources: Resources, refuse: float | None) -> None:
        assert self.allocator.recover(holding.agent_id, holding.framework_id, holding.role, resources,
                                      refuse_seconds=refuse, now=self.now)
        self.install_filter(holding.framework_id, holding.agent_id, holding.role, resources, refuse)

    @initialize(totals=st.lists(agent_totals(), min_size=1, max_size=3),
                roles=st.lists(st.lists(st.sampled_from(ROLES), min_size=1, max_size=2, unique=True),
                               min_size=1, max_size=3),
                seed=st.one_of(st.none(), st.integers(0, 2**32 - 1)))
    def a_small_cluster(self, totals: list[Resources], roles: list[list[str]], seed: int | None) -> None:
        """Starts with agents and plain frameworks, so that most steps act on live offers; the
        agents of each cycle in registration order, or shuffled by a seeded generator."""
        self.allocator = Allocator(rng=random.Random(seed) if seed is not None else None)
        for total in totals:
            self.add_agent(total)
        for framework_roles in roles:
            framework_id = f"f{self.next_framework}"
            self.next_framework += 1
            self.allocator.add_framework(framework_id, framework_roles)
            self.frameworks[framework_id] = FrameworkModel(tuple(framework_roles))

    # --- agents -----------------------------------------------------------------------------

    @precondition(lambda self: len(self.totals) < MAX_AGENTS)
    @rule(total=agent_totals())
    def add_agent(self, total: Resources) -> None:
        agent_id = f"a{self.next_agent}"
        self.next_agent += 1
        self.allocator.add_agent(agent_id, total)
        self.totals[agent_id] = total

    @precondition(lambda self: self.totals)
    @rule(data=st.data())
    def remove_agent(self, data: st.DataObject) -> None:
        agent_id = data.draw(st.sampled_from(sorted(self.totals)))
        self.allocator.remove_agent(agent_id)
        del self.totals[agent_id]
        for table in (self.offers, self.tasks):
            for key in [k for k, h in table.items() if h.agent_id == agent_id]:
                del table[key]
        for framework in self.frameworks.values():
            framework.filters.pop(agent_id, None)

    # --- frameworks -------------------------------------------------------------------------

    @precondition(lambda self: len(self.frameworks) < MAX_FRAMEWORKS)
    @rule(roles=st.lists(st.sampled_from(ROLES), min_size=1, max_size=2, unique=True),
          data=st.data(), demand=demand_lists())
    def add_framework(self, roles: list[str], data: st.DataObject, demand: list[Demand] | None) -> None:
        framework_id = f"f{self.next_framework}"
        self.next_framework += 1
        suppressed = data.draw(st.lists(st.sampled_from(roles), unique=True, max_size=1))
        self.allocator.add_framework(framework_id, roles, suppressed_roles=suppressed, demand=demand)
        self.frameworks[framework_id] = FrameworkModel(
            tuple(roles), set(suppressed), demand=tuple(demand) if demand is not None else None)

    def pick_framework(self, data: st.DataObject) -> str:
        return data.draw(st.sampled_from(sorted(self.frameworks)))

    @precondition(lambda self: self.frameworks)
    @rule(data=st.data())
    def remove_framework(self, data: st.DataObject) -> None:
        framework_id = self.pick_framework(data)
        self.allocator.remove_framework(framework_id)
        del self.frameworks[framework_id]
        for table in (self.offers, self.tasks):
            for key in [k for k, h in table.items() if h.framework_id == framework_id]:
                del table[key]

    @precondition(lambda self: self.frameworks)
    @rule(data=st.data(), active=st.booleans())
    def set_active(self, data: st.DataObject, active: bool) -> None:
        framework_id = self.pick_framework(data)
        if active:
            self.allocator.activate_framework(framework_id)
        else:
            self.allocator.deactivate_framework(framework_id)
        self.frameworks[framework_id].active = active

    @precondition(lambda self: self.frameworks)
    @rule(data=st.data())
    def suppress(self, data: st.DataObject) -> None:
        framework_id = self.pick_framework(data)
        framework = self.frameworks[framework_id]
        roles = data.draw(st.lists(st.sampled_from(framework.roles), unique=True))
        self.allocator.suppress(framework_id, roles)
        framework.suppressed |= set(roles) or set(framework.roles)

    @precondition(lambda self: self.frameworks)
    @rule(data=st.data())
    def revive(self, data: st.DataObject) -> None:
        framework_id = self.pick_framework(data)
        framework = self.frameworks[framework_id]
        roles = data.draw(st.lists(st.sampled_from(framework.roles), unique=True))
        self.allocator.revive(framework_id, roles)
        revived = set(roles) or set(framework.roles)
        framework.suppressed -= revived
        for agent_id in framework.filters:
            framework.filters[agent_id] = [f for f in framework.filters[agent_id] if f[0] not in revived]

    @precondition(lambda self: self.frameworks)
    @rule(data=st.data(), demand=demand_lists())
    def declare_demand(self, data: st.DataObject, demand: list[Demand] | None) -> None:
        framework_id = self.pick_framework(data)
        self.allocator.declare_demand(framework_id, demand)
        self.frameworks[framework_id].demand = tuple(demand) if demand is not None else None

    # --- weights and quotas -----------------------------------------------------------------

    @rule(role=st.sampled_from(ROLES), weight=st.sampled_from([0.25, 0.5, 1.0, 2.0, 3.5]))
    def set_weight(self, role: str, weight: float) -> None:
        self.allocator.set_weight(role, weight)

    @rule(role=st.sampled_from(ROLES), data=st.data())
    def set_quota(self, role: str, data: st.DataObject) -> None:
        limit = {n: data.draw(SCALAR_AMOUNTS[n]) for n in data.draw(st.lists(st.sampled_from(QUOTA_NAMES), unique=True))}
        guarantee = {}
        for name in data.draw(st.lists(st.sampled_from(QUOTA_NAMES), unique=True)):
            ceiling = limit.get(name)
            guarantee[name] = data.draw(st.integers(0, ceiling) if ceiling is not None else SCALAR_AMOUNTS[name])
        quota = Quota(guarantee=guarantee, limit=limit)
        self.allocator.set_quota(role, quota)
        if guarantee or limit:
            self.quotas[role] = quota
        else:
            self.quotas.pop(role, None)

    @rule(role=st.sampled_from(ROLES), name=st.sampled_from(QUOTA_NAMES), limit=st.integers(0, 10_000),
          excess=st.integers(1, 10_000))
    def set_quota_guarantee_above_limit(self, role: str, name: str, limit: int, excess: int) -> None:
        before = dict(self.allocator.quotas)
        with pytest.raises(ValueError, match=re.escape(repr(role))):
            self.allocator.set_quota(role, Quota(guarantee={name: limit + excess}, limit={name: limit}))
        assert self.allocator.quotas == before

    @rule(role=st.sampled_from(ROLES))
    def clear_quota(self, role: str) -> None:
        self.allocator.set_quota(role, None)
        self.quotas.pop(role, None)

    # --- the cycle --------------------------------------------------------------------------

    @rule(dt_ms=st.integers(0, 8_000), incremental=st.booleans())
    def cycle(self, dt_ms: int, incremental: bool) -> None:
        self.run_cycle(dt_ms, incremental)

    @rule(dt_ms=st.integers(0, 2_000))
    def batch_cycle(self, dt_ms: int) -> None:
        """The 1 s batch cycle (a second rule, so that cycles are frequent)."""
        self.run_cycle(dt_ms, False)

    def run_cycle(self, dt_ms: int, incremental: bool) -> None:
        self.now += dt_ms / 1000
        now = self.now
        limited = {role: q.limit for role, q in self.quotas.items() if q.limit}
        before = {role: self.model_consumed(role) for role in limited}
        available_before = {aid: agent.available for aid, agent in self.allocator.agents.items()}

        allocations = self.allocator.allocate(now, incremental=incremental)

        pairs = [(a.framework_id, a.agent_id) for a in allocations]
        assert len(pairs) == len(set(pairs)), f"two offers for one (framework, agent) in a cycle: {allocations}"
        offered_per_agent: dict[str, Resources] = {}
        for allocation in allocations:
            self.check_allocation(allocation, now)
            offered_per_agent[allocation.agent_id] = offered_per_agent.get(allocation.agent_id, EMPTY) + allocation.resources
            self.add_holding(self.offers, Holding(allocation.framework_id, allocation.agent_id, allocation.role,
                                                  allocation.resources))
        for agent_id, offered in offered_per_agent.items():
            assert available_before[agent_id].contains(offered), (agent_id, offered, available_before[agent_id])

        for role, limit in limited.items():
            after = self.model_consumed(role)
            for name, amount in limit.items():
                ceiling = max(amount, before[role].get(name, 0))
                assert after.get(name, 0) <= ceiling, (
                    f"quota limit of {role!r} on {name}: {amount}, consumption went "
                    f"{before[role].get(name, 0)} -> {after.get(name, 0)}: {allocations}")

    def check_allocation(self, allocation: Allocation, now: float) -> None:
        resources, role = allocation.resources, allocation.role
        assert resources, f"empty allocation {allocation}"
        assert meets_minimum(resources), f"allocation below the minimum: {allocation}"
        for key, _amount in resources.reserved():
            assert key.role == role, f"{key.name} reserved for {key.role!r} offered in role {role!r}"
        framework = self.frameworks.get(allocation.framework_id)
        assert framework is not None, f"allocation to an unknown framework: {allocation}"
        assert allocation.agent_id in self.totals
        assert role in framework.roles, f"allocation in a role the framework is not in: {allocation}"
        assert framework.active, f"allocation to an inactive framework: {allocation}"
        assert role not in framework.suppressed, f"allocation in a suppressed role: {allocation}"
        for filter_role, declined, expires in framework.filters.get(allocation.agent_id, ()):
            assert not (filter_role == role and now < expires and declined.contains(resources)), (
                f"allocation through a filter of {declined} in {filter_role!r} until {expires} at {now}: {allocation}")
        if framework.demand is not None:
            assert demand_fits(framework.demand, role, resources), (
                f"allocation fits no declared shape {framework.demand}: {allocation}")

    # --- what frameworks do with offers -----------------------------------------------------

    def pick(self, data: st.DataObject, table: dict[int, Holding]) -> int:
        return data.draw(st.sampled_from(sorted(table)))

    @precondition(lambda self: self.offers)
    @rule(data=st.data(), refuse=REFUSE)
    def launch(self, data: st.DataObject, refuse: float | None) -> None:
        """Launches a task on part of an offer; the rest returns, with a filter when asked."""
        self.launch_part(data, self.pick(data, self.offers), refuse)

    def launch_part(self, data: st.DataObject, key: int, refuse: float | None) -> None:
        offer = self.offers.pop(key)
        task = subset_of(data.draw, offer.resources)
        if task:
            self.add_holding(self.tasks, Holding(offer.framework_id, offer.agent_id, offer.role, task))
        self.recover(offer, offer.resources - task, refuse)

    @precondition(lambda self: self.offers)
    @rule(data=st.data(), refuse=REFUSE)
    def decline(self, data: st.DataObject, refuse: float | None) -> None:
        offer = self.offers.pop(self.pick(data, self.offers))
        self.recover(offer, offer.resources, refuse)

    @precondition(lambda self: self.offers)
    @rule(data=st.data())
    def answer_every_offer(self, data: st.DataObject) -> None:
        """What a busy scheduler does between two cycles: each outstanding offer is kept,
        partly launched, declined, or partly reserved (for a role other than ``*``)."""
        for key in sorted(self.offers):
            action = data.draw(st.sampled_from(["keep", "launch", "decline", "reserve"]))
            if action == "reserve" and key in self.reservable():
                self.reserve_part(data, key)
            elif action == "launch":
                self.launch_part(data, key, data.draw(REFUSE))
            elif action == "decline":
                offer = self.offers.pop(key)
                self.recover(offer, offer.resources, data.draw(REFUSE))

    @precondition(lambda self: self.tasks)
    @rule(data=st.data())
    def end_task(self, data: st.DataObject) -> None:
        task = self.tasks.pop(self.pick(data, self.tasks))
        self.recover(task, task.resources, None)

    def reservable(self) -> list[int]:
        return sorted(k for k, h in self.offers.items() if h.role != "*"
                      and any(isinstance(a, int) for _k, a in h.resources.unreserved()))

    def unreservable(self) -> list[int]:
        return sorted(k for k, h in self.offers.items()
                      if any(k2.reservation == "DYNAMIC" for k2, _a in h.resources))

    def apply_conversion(self, key: int, consumed: Resources, converted: Resources) -> None:
        offer = self.offers[key]
        self.allocator.convert(offer.agent_id, offer.framework_id, offer.role, consumed, converted)
        offer.resources = offer.resources - consumed + converted
        self.totals[offer.agent_id] = self.totals[offer.agent_id] - consumed + converted

    @precondition(lambda self: self.reservable())
    @rule(data=st.data())
    def reserve(self, data: st.DataObject) -> None:
        """RESERVE: part of a held unreserved offer becomes dynamically reserved for its role."""
        self.reserve_part(data, data.draw(st.sampled_from(self.reservable())))

    def reserve_part(self, data: st.DataObject, key: int) -> None:
        offer = self.offers[key]
        scalars = [(k, a) for k, a in offer.resources.unreserved() if isinstance(a, int)]
        name_key, amount = data.draw(st.sampled_from(scalars))
        part = data.draw(st.integers(1, amount))
        consumed = Resources({name_key: part})
        converted = Resources({ResourceKey(name_key.name, offer.role, "DYNAMIC"): part})
        self.apply_conversion(key, consumed, converted)

    @precondition(lambda self: self.unreservable())
    @rule(data=st.data())
    def unreserve(self, data: st.DataObject) -> None:
        """UNRESERVE: part of a held dynamic reservation becomes unreserved again."""
        key = data.draw(st.sampled_from(self.unreservable()))
        offer = self.offers[key]
        dynamic = [(k, a) for k, a in offer.resources if k.reservation == "DYNAMIC"]
        name_key, amount = data.draw(st.sampled_from(dynamic))
        part = data.draw(st.integers(1, amount))  # type: ignore[arg-type]
        self.apply_conversion(key, Resources({name_key: part}), Resources({ResourceKey(name_key.name): part}))

    # --- invariants -------------------------------------------------------------------------

    @invariant()
    def no_agent_is_over_allocated(self) -> None:
        assert set(self.allocator.agents) == set(self.totals)
        for agent_id, agent in self.allocator.agents.items():
            held = EMPTY
            for resources in agent.allocated.values():
                held = held + resources
            assert agent.total == self.totals[agent_id], agent_id
            assert agent.available + held == agent.total, (agent_id, agent.available, held, agent.total)
            for _key, amount in agent.available:
                assert not isinstance(amount, int) or amount >= 0

    @invariant()
    def model_holdings_match_allocated(self) -> None:
        expected: dict[str, dict[tuple[str, str], Resources]] = {aid: {} for aid in self.totals}
        for holding in self.holdings():
            per_agent = expected[holding.agent_id]
            key = (holding.framework_id, holding.role)
            per_agent[key] = per_agent.get(key, EMPTY) + holding.resources
        for agent_id, agent in self.allocator.agents.items():
            assert agent.allocated == expected[agent_id], agent_id

    @invariant()
    def reservations_are_held_only_in_their_role(self) -> None:
        for agent in self.allocator.agents.values():
            for (_framework_id, role), resources in agent.allocated.items():
                for key, _amount in resources.reserved():
                    assert key.role == role, (agent.agent_id, role, resources)

    @invariant()
    def quota_consumption_is_allocations_plus_reservations(self) -> None:
        for role in {*ROLES, *self.quotas}:
            assert nonzero(self.allocator.consumed(role)) == self.model_consumed(role), role


AllocatorMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestAllocatorStateful = AllocatorMachine.TestCase


# --- found by the machine's semantics, pinned as examples ---------------------------------------

def test_a_shorter_decline_does_not_shorten_a_longer_filter() -> None:
    """The same resources declined for an hour, then (held again: a task found on the agent's
    re-registration) for a second: still refused at t=12, whichever decline came first."""
    whole = Resources.parse("cpus:2;mem:512")
    for durations in ((3600, 1), (1, 3600)):
        allocator = Allocator()
        allocator.add_agent("a1", whole)
        allocator.add_framework("f", ["*"])
        [offer] = allocator.allocate(0.0)
        allocator.recover("a1", "f", "*", offer.resources, refuse_seconds=durations[0], now=2.0)
        allocator.allocate_used("a1", "f", "*", whole)
        allocator.recover("a1", "f", "*", whole, refuse_seconds=durations[1], now=2.0)
        assert allocator.allocate(12.0) == [], durations
        assert len(allocator.frameworks["f"].filters["a1"]) == 1  # the shorter one is redundant
        assert allocator.allocate(3602.0) == [Allocation("f", "a1", "*", whole)]
