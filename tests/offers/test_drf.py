"""Weighted, hierarchical DRF on a fake clock: the paper's golden example, weights, roles,
demand, incremental cycles and explanations."""

from __future__ import annotations

from fractions import Fraction

import pytest

from tepui.offers.allocator import Allocation, Allocator, Demand
from tepui.offers.explain import explain
from tepui.offers.roles import InvalidRole, Quota, ancestors, validate_role
from tepui.sdk.resources import Resources


def drf_paper_run(first: str) -> list[tuple[str, Fraction, Fraction]]:
    """Progressive filling through offers: each framework launches one task per offer and
    returns the rest (no filter); the allocator decides who is offered next."""
    cluster = Resources.parse("cpus:9;mem:18432")
    tasks = {"A": Resources.parse("cpus:1;mem:4096"), "B": Resources.parse("cpus:3;mem:1024")}
    allocator = Allocator()
    allocator.add_agent("a1", cluster)
    for name in (first, "A" if first == "B" else "B"):
        allocator.add_framework(name, ["*"])
    held = {"A": Resources(), "B": Resources()}
    trace = []
    for step in range(10):
        allocations = allocator.allocate(float(step))
        if not allocations:
            break
        [offer] = allocations
        task = tasks[offer.framework_id]
        if not offer.resources.contains(task):
            # The next task does not fit: progressive filling stops for this framework.
            allocator.recover("a1", offer.framework_id, "*", offer.resources, refuse_seconds=3600, now=float(step))
            continue
        held[offer.framework_id] = held[offer.framework_id] + task
        allocator.recover("a1", offer.framework_id, "*", offer.resources - task, refuse_seconds=0, now=float(step))
        shares = {n: max(Fraction(int(held[n].scalar("cpus")), 9), Fraction(int(held[n].scalar("mem")), 18432))
                  for n in held}
        trace.append((offer.framework_id, shares["A"], shares["B"]))
    return trace


def test_drf_paper_worked_example_step_by_step() -> None:
    """PERFORMANCE_ANCHORS §8: with B first on the tie, B A A B A; both end at 2/3."""
    assert drf_paper_run(first="B") == [
        ("B", Fraction(0), Fraction(1, 3)),
        ("A", Fraction(2, 9), Fraction(1, 3)),
        ("A", Fraction(4, 9), Fraction(1, 3)),
        ("B", Fraction(4, 9), Fraction(2, 3)),
        ("A", Fraction(2, 3), Fraction(2, 3)),
    ]


def test_drf_paper_example_final_allocation_does_not_depend_on_the_tie_break() -> None:
    trace = drf_paper_run(first="A")
    assert [name for name, *_ in trace].count("A") == 3 and [name for name, *_ in trace].count("B") == 2
    assert trace[-1][1:] == (Fraction(2, 3), Fraction(2, 3))


def one_agent_each(allocator: Allocator, count: int) -> None:
    for i in range(count):
        allocator.add_agent(f"a{i:02d}", Resources.parse("cpus:1;mem:1024"))


def test_weight_two_gets_twice_the_dominant_share() -> None:
    allocator = Allocator()
    one_agent_each(allocator, 12)
    allocator.add_framework("heavy", ["gold"])
    allocator.add_framework("light", ["silver"])
    allocator.set_weight("gold", 2.0)
    got = [a.framework_id for a in allocator.allocate(0.0)]
    assert got.count("heavy") == 8 and got.count("light") == 4
    assert allocator.share("heavy") == pytest.approx(2 * allocator.share("light"))


def test_weight_changes_at_run_time() -> None:
    allocator = Allocator()
    one_agent_each(allocator, 9)
    allocator.add_framework("x", ["r1"])
    allocator.add_framework("y", ["r2"])
    allocator.set_weight("r2", 2.0)
    got = [a.framework_id for a in allocator.allocate(0.0)]
    assert (got.count("x"), got.count("y")) == (3, 6)


def test_hierarchical_roles_share_at_every_level() -> None:
    """eng and ads split the cluster evenly; inside eng, backend and frontend split eng's half."""
    allocator = Allocator()
    one_agent_each(allocator, 8)
    allocator.add_framework("be", ["eng/backend"])
    allocator.add_framework("fe", ["eng/frontend"])
    allocator.add_framework("ad", ["ads"])
    got = [a.framework_id for a in allocator.allocate(0.0)]
    assert {name: got.count(name) for name in ("be", "fe", "ad")} == {"be": 2, "fe": 2, "ad": 4}
    assert allocator.roles.order()  # every role still ordered


def test_role_with_frameworks_and_children_competes_with_them() -> None:
    allocator = Allocator()
    one_agent_each(allocator, 8)
    allocator.add_framework("parent", ["eng"])
    allocator.add_framework("child", ["eng/backend"])
    allocator.add_framework("other", ["ads"])
    got = [a.framework_id for a in allocator.allocate(0.0)]
    assert {name: got.count(name) for name in ("parent", "child", "other")} == {"parent": 2, "child": 2, "other": 4}


def test_multi_role_framework_gets_one_offer_per_agent_per_cycle() -> None:
    allocator = Allocator()
    allocator.add_agent("a1", Resources.parse("cpus:2;mem:1024;cpus(ads):2;mem(ads):512"))
    allocator.add_framework("multi", ["*", "ads"])
    allocations = allocator.allocate(0.0)
    assert len(allocations) == 1
    second = allocator.allocate(1.0)
    assert [(a.framework_id, a.role) for a in second] == [("multi", allocations[0].role == "*" and "ads" or "*")]


def test_demand_offers_only_agents_where_a_shape_fits() -> None:
    allocator = Allocator()
    allocator.add_agent("small", Resources.parse("cpus:1;mem:512"))
    allocator.add_agent("big", Resources.parse("cpus:8;mem:8192"))
    allocator.add_framework("picky", ["*"], demand=[Demand(Resources.parse("cpus:4;mem:4096"))])
    assert allocator.allocate(0.0) == [Allocation("picky", "big", "*", Resources.parse("cpus:8;mem:8192"))]


def test_declared_empty_demand_means_no_offers_and_no_ping_pong() -> None:
    allocator = Allocator()
    allocator.add_agent("a1", Resources.parse("cpus:4;mem:4096"))
    allocator.add_framework("idle", ["*"], demand=[])
    allocator.add_framework("plain", ["*"])  # declared nothing: plain Mesos behaviour
    assert [a.framework_id for a in allocator.allocate(0.0)] == ["plain"]
    [why] = explain(allocator, "idle", 0.0)
    assert why.reason == "NO_DEMAND"


def test_demand_can_be_redeclared_and_cleared() -> None:
    allocator = Allocator()
    allocator.add_agent("a1", Resources.parse("cpus:4;mem:4096"))
    allocator.add_framework("f", ["*"], demand=[Demand(Resources.parse("cpus:16"))])
    assert allocator.allocate(0.0) == []
    [why] = explain(allocator, "f", 0.0)
    assert why.reason == "DEMAND_NEVER_FITS" and "cpus:4" in why.message
    allocator.declare_demand("f", [Demand(Resources.parse("cpus:2"))])
    assert len(allocator.allocate(1.0)) == 1


def test_demand_that_fits_an_idle_agent_but_not_the_free_part_is_told_apart() -> None:
    allocator = Allocator()
    allocator.add_agent("a1", Resources.parse("cpus:4;mem:4096"))
    allocator.add_framework("busy", ["*"])
    [offer] = allocator.allocate(0.0)
    allocator.recover("a1", "busy", "*", Resources.parse("cpus:3;mem:1024"))  # holds cpus:1
    allocator.add_framework("f", ["*"], demand=[Demand(Resources.parse("cpus:4"))])
    assert [a.framework_id for a in allocator.allocate(1.0)] == ["busy"]
    assert explain(allocator, "f", 1.0)[0].reason == "NO_RESOURCES"
    allocator.recover("a1", "busy", "*", Resources.parse("cpus:3;mem:1024"), refuse_seconds=60, now=1.0)
    assert allocator.allocate(2.0) == []
    assert explain(allocator, "f", 2.0)[0].reason == "DEMAND_FITS_NOWHERE"


def test_incremental_cycle_visits_only_changed_agents() -> None:
    allocator = Allocator()
    one_agent_each(allocator, 3)
    allocator.add_framework("f", ["*"])
    offers = allocator.allocate(0.0)
    assert len(offers) == 3
    allocator.recover("a01", "f", "*", offers[1].resources, refuse_seconds=0)
    # a00 and a02 are not freed; the incremental cycle looks at a01 only.
    assert allocator.allocate(1.0, incremental=True) == [Allocation("f", "a01", "*", offers[1].resources)]
    assert allocator.allocate(2.0, incremental=True) == []


def test_explanations_in_the_order_an_operator_fixes_things() -> None:
    allocator = Allocator()
    allocator.add_agent("a1", Resources.parse("cpus:1;mem:1024"))
    allocator.add_framework("f", ["*"])
    allocator.add_framework("g", ["*"])
    allocator.allocate(0.0)
    assert [e.reason for e in explain(allocator, "f", 0.0)] == ["OFFERED"]
    assert [e.reason for e in explain(allocator, "g", 0.0)] == ["NO_RESOURCES"]
    assert "(at least cpus 0.01 or mem 32)" in explain(allocator, "g", 0.0)[0].message
    allocator.remove_framework("g")
    allocator.recover("a1", "f", "*", Resources.parse("cpus:1;mem:1024"), refuse_seconds=30, now=0.0)
    allocator.allocate(1.0)
    [filtered] = explain(allocator, "f", 1.0)
    assert filtered.reason == "FILTERED" and "expires in 29.0 s" in filtered.message
    allocator.suppress("f")
    assert explain(allocator, "f", 1.0)[0].reason == "SUPPRESSED"
    allocator.deactivate_framework("f")
    assert explain(allocator, "f", 1.0)[0].reason == "INACTIVE"
    allocator.add_framework("g", ["*"])
    allocator.set_quota("*", Quota(limit={"cpus": 0}))
    assert explain(allocator, "g", 1.0)[0].reason == "QUOTA_LIMIT"


def test_role_names_follow_mesos_rules() -> None:
    for good in ("*", "eng", "eng/backend", "a.b-c_d"):
        assert validate_role(good) == good
    for bad in ("", "/eng", "eng/", "eng//x", "./x", "eng/..", "-x", "has space", "x" * 300):
        with pytest.raises(InvalidRole):
            validate_role(bad)
    assert ancestors("a/b/c") == ["a/b", "a"] and ancestors("*") == []
