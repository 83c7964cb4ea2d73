"""Rolling-upgrade and scaling planner: Marathon's minimum_health_capacity / maximum_over_capacity."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tepui.frameworks.services.deployment import (
    Instance,
    Plan,
    UpgradeStrategy,
    bounds,
    is_available,
    plan_step,
)

OLD, NEW = "v1", "v2"


def running(n: int, version: str = OLD, start: int = 0, healthy: bool = True) -> list[Instance]:
    return [Instance(id=f"{version}-{start + k}", version=version, healthy=healthy,
                     ready=healthy, started_at=float(start + k)) for k in range(n)]


class Cluster:
    """A fake cluster: applies plans; new instances become healthy on the next tick."""

    def __init__(self, instances: list[Instance]) -> None:
        self.instances = list(instances)
        self.clock = 1000.0
        self.ids = itertools.count()

    def apply(self, plan: Plan, version: str) -> None:
        # Kills take effect at once; launched instances start unhealthy.
        self.instances = [i for i in self.instances if i.id not in plan.kill]
        for _ in range(plan.start):
            self.clock += 1
            self.instances.append(Instance(id=f"{version}-n{next(self.ids)}", version=version,
                                           healthy=False, ready=False, started_at=self.clock))

    def tick(self) -> None:
        self.instances = [replace(i, healthy=True, ready=True) for i in self.instances]

    def healthy(self) -> int:
        return sum(1 for i in self.instances if i.healthy)


def run(cluster: Cluster, n: int, version: str, strategy: UpgradeStrategy,
        max_steps: int = 100) -> list[int]:
    """Drive a deployment to the end; returns healthy counts after each step's kills."""
    b = bounds(n, strategy)
    healthy_seen = []
    for _ in range(max_steps):
        plan = plan_step(n, version, cluster.instances, strategy)
        if plan.finished:
            return healthy_seen
        before = sum(1 for i in cluster.instances if is_available(i, version))
        cluster.apply(plan, version)
        healthy_seen.append(cluster.healthy())
        assert cluster.healthy() >= min(b.min_healthy, before)
        assert len(cluster.instances) <= b.max_capacity
        cluster.tick()
    raise AssertionError("deployment did not finish")


def test_bounds_defaults_and_marathon_rounding() -> None:
    assert bounds(5, UpgradeStrategy()) == bounds(5, UpgradeStrategy(1.0, 1.0))
    b = bounds(5, UpgradeStrategy())
    assert (b.min_healthy, b.max_capacity) == (5, 10)
    b = bounds(5, UpgradeStrategy(0.6, 0.0))
    assert (b.min_healthy, b.max_capacity) == (3, 5)
    b = bounds(5, UpgradeStrategy(0.5, 0.5))  # ceil(2.5) = 3, floor(2.5) = 2
    assert (b.min_healthy, b.max_capacity) == (3, 7)
    b = bounds(10, UpgradeStrategy(0.7, 0.0))  # 0.7 * 10 is 7.000000000000001 in floats
    assert b.min_healthy == 7


def test_degenerate_strategy_allows_one_extra_instance() -> None:
    assert bounds(5, UpgradeStrategy(1.0, 0.0)).max_capacity == 6
    assert bounds(5, UpgradeStrategy(1.0, 0.1)).max_capacity == 6  # floor(0.5) = 0
    assert bounds(0, UpgradeStrategy()).max_capacity == 1


@pytest.mark.parametrize("bad", [-0.1, 1.5, math.nan])
def test_invalid_strategy_rejected(bad: float) -> None:
    with pytest.raises(ValueError):
        UpgradeStrategy(minimum_health_capacity=bad)
    with pytest.raises(ValueError):
        UpgradeStrategy(maximum_over_capacity=bad)


def test_first_step_with_defaults_starts_a_full_new_set_and_kills_nothing() -> None:
    plan = plan_step(5, NEW, running(5), UpgradeStrategy())
    assert plan.start == 5 and plan.kill == () and not plan.finished


def test_first_step_kills_oldest_down_to_the_floor() -> None:
    plan = plan_step(5, NEW, running(5), UpgradeStrategy(0.6, 0.0))
    assert plan.kill == ("v1-0", "v1-1")
    assert plan.start == 2


def test_unhealthy_old_killed_first_and_free() -> None:
    current = running(5)
    current[3] = replace(current[3], healthy=False, ready=False)
    plan = plan_step(5, NEW, current, UpgradeStrategy(0.6, 0.0))
    # v1-3 is unhealthy (free), then 4 healthy - floor 3 = 1 healthy kill, the oldest.
    assert plan.kill == ("v1-3", "v1-0")


def test_new_instances_gate_on_ready() -> None:
    current = running(5) + [Instance("v2-a", NEW, healthy=True, ready=False, started_at=9)]
    plan = plan_step(5, NEW, current, UpgradeStrategy(1.0, 0.0))
    assert plan.kill == ()  # healthy but not ready does not count
    plan = plan_step(5, NEW, [*current[:5], replace(current[5], ready=True)],
                     UpgradeStrategy(1.0, 0.0))
    assert plan.kill == ("v1-0",)


def test_killing_instances_are_not_chosen_again_nor_counted() -> None:
    current = [replace(i, killing=True) if i.id in ("v1-0", "v1-1") else i for i in running(5)]
    plan = plan_step(5, NEW, current, UpgradeStrategy(0.6, 0.0))
    assert plan.kill == ()  # 3 available left, floor is 3
    assert plan.start == 2  # 3 meant to run, ceiling 5


def test_finished_only_with_exactly_n_new_available() -> None:
    assert plan_step(3, NEW, running(3, NEW)).finished
    assert not plan_step(3, NEW, running(3, NEW, healthy=False)).finished
    assert not plan_step(3, NEW, running(3, NEW) + running(1)).finished
    dying = [replace(running(1, NEW, start=5)[0], killing=True)]
    assert not plan_step(3, NEW, running(3, NEW) + dying).finished


def test_simulation_five_instances_minimum_health_06() -> None:
    """Issue 7's acceptance scenario: never fewer than 3 healthy, and it finishes."""
    for over in (0.0, 0.2, 1.0):
        cluster = Cluster(running(5))
        seen = run(cluster, 5, NEW, UpgradeStrategy(0.6, over))
        assert min(seen) >= 3
        assert len(cluster.instances) == 5
        assert all(i.version == NEW and i.healthy for i in cluster.instances)


def test_simulation_degenerate_one_at_a_time() -> None:
    cluster = Cluster(running(5))
    seen = run(cluster, 5, NEW, UpgradeStrategy(1.0, 0.0))
    assert min(seen) >= 5
    assert len(seen) >= 5  # one extra instance at a time


def test_scale_up_and_down_without_version_change() -> None:
    plan = plan_step(5, OLD, running(3))
    assert plan.start == 2 and plan.kill == ()
    current = running(5)
    current[1] = replace(current[1], healthy=False, ready=False)
    plan = plan_step(2, OLD, current)
    # Unhealthy first, then youngest first (Marathon's YOUNGEST_FIRST).
    assert plan.kill == ("v1-1", "v1-4", "v1-3")
    assert plan.start == 0
    assert plan_step(0, OLD, running(2)).kill == ("v1-1", "v1-0")
    assert plan_step(0, OLD, []).finished


def test_scale_down_during_upgrade_drops_surplus_new() -> None:
    current = running(2) + running(4, NEW, start=10)
    plan = plan_step(3, NEW, current, UpgradeStrategy(1.0, 1.0))
    assert plan.kill == ("v2-13", "v1-0", "v1-1")
    assert plan.start == 0


def test_plan_is_deterministic() -> None:
    current = running(4) + running(2, NEW, start=7, healthy=False)
    s = UpgradeStrategy(0.5, 0.25)
    assert plan_step(5, NEW, current, s) == plan_step(5, NEW, list(reversed(current)), s)


instance_st = st.builds(
    Instance,
    id=st.text(alphabet="abcdef", min_size=1, max_size=4),
    version=st.sampled_from([OLD, NEW, "v0"]),
    healthy=st.booleans(),
    ready=st.booleans(),
    started_at=st.floats(min_value=0, max_value=100),
    killing=st.booleans(),
)
strategy_st = st.builds(UpgradeStrategy,
                        st.floats(min_value=0, max_value=1),
                        st.floats(min_value=0, max_value=1))


@settings(max_examples=300, deadline=None)
@given(n=st.integers(min_value=0, max_value=12),
       current=st.lists(instance_st, max_size=15, unique_by=lambda i: i.id),
       strategy=strategy_st)
def test_step_invariants(n: int, current: list[Instance], strategy: UpgradeStrategy) -> None:
    plan = plan_step(n, NEW, current, strategy)
    b = plan.bounds
    ids = {i.id for i in current}
    assert set(plan.kill) <= ids and len(set(plan.kill)) == len(plan.kill)
    assert not any(i.killing for i in current if i.id in plan.kill)
    assert plan.start >= 0
    after = [i for i in current if i.id not in plan.kill and not i.killing]
    available_before = sum(1 for i in current if is_available(i, NEW))
    available_after = sum(1 for i in after if is_available(i, NEW))
    assert available_after >= min(b.min_healthy, available_before)
    # Healthy instances (old or new) never drop below the floor if it was met.
    healthy_after = sum(1 for i in after if i.healthy)
    assert healthy_after >= min(b.min_healthy, available_before)
    # The ceiling: Marathon's, or one more in the degenerate case only.
    ceiling = n + math.floor(round(n * strategy.maximum_over_capacity, 9))
    if b.min_healthy < ceiling:
        assert b.max_capacity == ceiling
    else:
        assert b.max_capacity == b.min_healthy + 1
    if plan.start:
        assert len(after) + plan.start <= b.max_capacity
    assert len([i for i in after if i.version == NEW]) + plan.start <= n
    assert b.min_healthy == math.ceil(round(n * strategy.minimum_health_capacity, 9))
    if plan.finished:
        assert plan.start == 0 and plan.kill == ()


@settings(max_examples=200, deadline=None)
@given(n=st.integers(min_value=0, max_value=12), old=st.integers(min_value=0, max_value=12),
       sick=st.integers(min_value=0, max_value=12), strategy=strategy_st)
def test_deployment_always_finishes(n: int, old: int, sick: int, strategy: UpgradeStrategy) -> None:
    current = running(old) + [replace(i, healthy=False, ready=False)
                              for i in running(sick, version="v0", start=50)]
    cluster = Cluster(current)
    run(cluster, n, NEW, strategy, max_steps=4 * (n + old + sick) + 5)
    assert len(cluster.instances) == n
    assert all(i.version == NEW and i.healthy and i.ready for i in cluster.instances)
