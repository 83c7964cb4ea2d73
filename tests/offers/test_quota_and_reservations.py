"""Quota guarantees and limits, static and dynamic reservations: exact offers on a fake clock."""

from __future__ import annotations

import pytest

from tepui.offers.allocator import Allocation, Allocator, Demand
from tepui.offers.roles import Quota
from tepui.sdk.resources import EMPTY, ResourceKey, Resources, to_fixed


def dynamic(role: str, **scalars: float) -> Resources:
    """Scalars dynamically reserved for ``role`` (what RESERVE converts unreserved ones into)."""
    return Resources({ResourceKey(name, role, "DYNAMIC"): to_fixed(value) for name, value in scalars.items()})


def consumed(allocator: Allocator, role: str) -> dict[str, int]:
    """Quota consumption of the role's subtree, zero amounts left out."""
    return {name: amount for name, amount in allocator.consumed(role).items() if amount}


def assert_consistent(allocator: Allocator, agent_id: str) -> None:
    agent = allocator.agents[agent_id]
    held = EMPTY
    for resources in agent.allocated.values():
        held = held + resources
    assert agent.available + held == agent.total


# --- quota guarantees ---------------------------------------------------------------------------

def test_an_idle_guarantee_is_held_back_then_offered_to_its_role() -> None:
    allocator = Allocator()
    allocator.add_agent("a1", Resources.parse("cpus:10;mem:4096"))
    allocator.set_quota("eng", Quota(guarantee={"cpus": 4000, "mem": 1_024_000}))
    allocator.add_framework("ads-fw", ["ads"])
    # eng has no framework yet, but its guarantee stays free: the headroom.
    assert allocator.allocate(0.0) == [Allocation("ads-fw", "a1", "ads", Resources.parse("cpus:6;mem:3072"))]
    assert allocator.allocate(1.0) == []  # ads may not take the headroom on a later cycle either

    allocator.add_framework("eng-fw", ["eng"])
    [offer] = allocator.allocate(2.0)
    assert (offer.framework_id, offer.agent_id, offer.role) == ("eng-fw", "a1", "eng")
    totals = offer.resources.fixed_totals()
    assert totals["cpus"] >= 4000 and totals["mem"] >= 1_024_000
    assert offer.resources == Resources.parse("cpus:4;mem:1024")
    assert consumed(allocator, "eng") == {"cpus": 4000, "mem": 1_024_000}


def test_the_headroom_spans_agents() -> None:
    """The guarantee is held back across the cluster, not on every agent."""
    allocator = Allocator()
    allocator.add_agent("a1", Resources.parse("cpus:4;mem:1024"))
    allocator.add_agent("a2", Resources.parse("cpus:4;mem:1024"))
    allocator.set_quota("eng", Quota(guarantee={"cpus": 4000, "mem": 1_024_000}))
    allocator.add_framework("ads-fw", ["ads"])
    assert allocator.allocate(0.0) == [Allocation("ads-fw", "a1", "ads", Resources.parse("cpus:4;mem:1024"))]
    allocator.add_framework("eng-fw", ["eng"])
    assert allocator.allocate(1.0) == [Allocation("eng-fw", "a2", "eng", Resources.parse("cpus:4;mem:1024"))]


def test_a_role_below_its_guarantee_is_served_first_and_cut_to_what_it_misses() -> None:
    allocator = Allocator()
    allocator.add_agent("a1", Resources.parse("cpus:10;mem:4096"))
    allocator.add_framework("ads-fw", ["ads"])  # registered first, so first in plain DRF order
    allocator.add_framework("eng-fw", ["eng"])
    allocator.set_quota("eng", Quota(guarantee={"cpus": 3000}))
    allocations = allocator.allocate(0.0)
    assert allocations[0] == Allocation("eng-fw", "a1", "eng", Resources.parse("cpus:3;mem:4096"))
    assert allocations[1:] == [Allocation("ads-fw", "a1", "ads", Resources.parse("cpus:7"))]


def test_stage_one_does_not_take_another_roles_guarantee() -> None:
    allocator = Allocator()
    allocator.add_agent("a1", Resources.parse("cpus:10;mem:4096"))
    allocator.set_quota("eng", Quota(guarantee={"cpus": 4000}))
    allocator.set_quota("ads", Quota(guarantee={"mem": 2_048_000}))
    allocator.add_framework("eng-fw", ["eng"])
    allocator.add_framework("ads-fw", ["ads"])
    offered = {a.framework_id: a.resources for a in allocator.allocate(0.0)}
    # Actual: eng-fw is offered cpus:4;mem:4096 and ads-fw only cpus:6 — no mem at all.
    assert offered["ads-fw"].scalar_fixed("mem") >= 2_048_000


def test_nested_guarantees_are_not_held_back_twice() -> None:
    allocator = Allocator()
    allocator.add_agent("a1", Resources.parse("cpus:10;mem:4096"))
    allocator.set_quota("eng", Quota(guarantee={"cpus": 4000}))
    allocator.set_quota("eng/backend", Quota(guarantee={"cpus": 2000}))
    allocator.add_framework("ads-fw", ["ads"])
    # eng's 4 cpus include eng/backend's 2: holding back 4 is enough. Actual: cpus:4;mem:4096.
    assert allocator.allocate(0.0) == [Allocation("ads-fw", "a1", "ads", Resources.parse("cpus:6;mem:4096"))]


# --- quota limits -------------------------------------------------------------------------------

def test_a_limit_chops_the_offer_and_holds_until_resources_return() -> None:
    allocator = Allocator()
    allocator.add_agent("a1", Resources.parse("cpus:10;mem:4096"))
    allocator.set_quota("eng", Quota(limit={"cpus": 4000}))
    allocator.add_framework("f", ["eng"])
    [offer] = allocator.allocate(0.0)
    assert offer == Allocation("f", "a1", "eng", Resources.parse("cpus:4;mem:4096"))
    assert allocator.allocate(1.0) == []  # 6 cpus free, but eng holds its limit
    assert allocator.available("a1") == Resources.parse("cpus:6")

    # A task takes part of the offer; the rest returns: the role may have it again, no more.
    task = Resources.parse("cpus:1;mem:1024")
    assert allocator.recover("a1", "f", "eng", offer.resources - task, refuse_seconds=0, now=2.0)
    assert allocator.allocate(2.0) == [Allocation("f", "a1", "eng", Resources.parse("cpus:3;mem:3072"))]
    assert allocator.allocate(3.0) == []
    assert consumed(allocator, "eng") == {"cpus": 4000, "mem": 4_096_000}

    # The task ends: its resources return and its cpu may be offered again, still within the limit.
    assert allocator.recover("a1", "f", "eng", task, now=4.0)
    assert allocator.allocate(4.0) == [Allocation("f", "a1", "eng", Resources.parse("cpus:1;mem:1024"))]
    assert allocator.available("a1") == Resources.parse("cpus:6")


def test_a_lowered_limit_stops_further_offers_without_taking_any_back() -> None:
    allocator = Allocator()
    allocator.add_agent("a1", Resources.parse("cpus:4;mem:1024"))
    allocator.add_agent("a2", Resources.parse("cpus:4"))
    allocator.add_framework("f", ["eng"])
    offer, second = allocator.allocate(0.0)
    assert offer == Allocation("f", "a1", "eng", Resources.parse("cpus:4;mem:1024"))
    assert second == Allocation("f", "a2", "eng", Resources.parse("cpus:4"))
    assert allocator.recover("a2", "f", "eng", second.resources)
    allocator.set_quota("eng", Quota(limit={"cpus": 2000}))
    assert allocator.allocate(1.0) == []  # consumes 4 > 2: nothing more, and nothing rescinded
    assert allocator.agents["a1"].allocated == {("f", "eng"): offer.resources}


def test_a_limit_on_a_parent_caps_its_children() -> None:
    allocator = Allocator()
    allocator.add_agent("a1", Resources.parse("cpus:10;mem:4096"))
    allocator.set_quota("eng", Quota(limit={"cpus": 4000}))
    allocator.add_framework("backend", ["eng/backend"])
    assert allocator.allocate(0.0) == [Allocation("backend", "a1", "eng/backend", Resources.parse("cpus:4;mem:4096"))]
    assert consumed(allocator, "eng") == {"cpus": 4000, "mem": 4_096_000}
    # A sibling under the same parent shares the parent's limit; another role does not.
    allocator.add_framework("frontend", ["eng/frontend"])
    assert allocator.allocate(1.0) == []
    allocator.add_framework("ads", ["ads"])
    assert allocator.allocate(2.0) == [Allocation("ads", "a1", "ads", Resources.parse("cpus:6"))]


def test_a_limit_counts_reservations() -> None:
    """Consumption is allocations plus reservations: a role whose reservations reach its limit is
    offered its reservations and no unreserved cpus."""
    allocator = Allocator()
    allocator.add_agent("a1", Resources.parse("cpus:8;mem:1024;cpus(eng):4"))
    allocator.set_quota("eng", Quota(limit={"cpus": 4000}))
    allocator.add_framework("f", ["eng"])
    assert consumed(allocator, "eng") == {"cpus": 4000}
    assert allocator.allocate(0.0) == [Allocation("f", "a1", "eng", Resources.parse("mem:1024;cpus(eng):4"))]


def test_a_guarantee_above_its_limit_is_refused_naming_the_role() -> None:
    allocator = Allocator()
    allocator.set_quota("eng/backend", Quota(guarantee={"cpus": 1000}, limit={"cpus": 2000}))
    with pytest.raises(ValueError, match=r"'eng/backend'.*cpus"):
        allocator.set_quota("eng/backend", Quota(guarantee={"cpus": 3000, "mem": 10}, limit={"cpus": 2000}))
    assert allocator.quotas == {"eng/backend": Quota(guarantee={"cpus": 1000}, limit={"cpus": 2000})}
    with pytest.raises(ValueError, match="'ads'"):
        allocator.set_quota("ads", Quota(guarantee={"mem": 1_000_001}, limit={"mem": 1_000_000}))
    assert "ads" not in allocator.quotas


# --- static reservations ------------------------------------------------------------------------

def test_static_reservations_reach_only_their_exact_role() -> None:
    allocator = Allocator()
    total = Resources.parse("cpus:2;mem:512;cpus(eng):4;mem(eng):1024")
    unreserved = Resources.parse("cpus:2;mem:512")
    reserved = Resources.parse("cpus(eng):4;mem(eng):1024")
    allocator.add_agent("a1", total)
    for framework_id, role in (("star", "*"), ("backend", "eng/backend"), ("ads", "ads")):
        allocator.add_framework(framework_id, [role])
    served = []
    for step in range(6):  # every other-role framework gets its turn: none is offered the reservation
        [offer] = allocator.allocate(float(step))
        assert offer.resources == unreserved
        served.append(offer.framework_id)
        assert allocator.available("a1") == reserved
        assert allocator.recover("a1", offer.framework_id, offer.role, offer.resources, refuse_seconds=0)
    assert set(served) == {"star", "backend", "ads"}

    allocator.add_framework("eng", ["eng"])
    allocations = allocator.allocate(10.0)
    [eng] = [a for a in allocations if a.framework_id == "eng"]
    assert eng.role == "eng" and eng.resources.contains(reserved)
    assert all(not a.resources.reserved() for a in allocations if a.framework_id != "eng")
    assert_consistent(allocator, "a1")


# --- dynamic reservations -----------------------------------------------------------------------

def test_dynamic_reservation_is_reoffered_only_to_its_role_until_unreserved() -> None:
    allocator = Allocator()
    allocator.add_agent("a1", Resources.parse("cpus:8;mem:4096"))
    allocator.add_framework("e", ["eng"])
    allocator.add_framework("x", ["*"])
    [offer] = allocator.allocate(0.0)
    assert offer == Allocation("e", "a1", "eng", Resources.parse("cpus:8;mem:4096"))

    # RESERVE cpus:2;mem:512 of the offer for eng.
    allocator.convert("a1", "e", "eng", Resources.parse("cpus:2;mem:512"), dynamic("eng", cpus=2, mem=512))
    held = Resources.parse("cpus:6;mem:3584") + dynamic("eng", cpus=2, mem=512)
    assert allocator.agents["a1"].total == held
    assert allocator.agents["a1"].allocated == {("e", "eng"): held}
    assert consumed(allocator, "eng") == {"cpus": 8000, "mem": 4_096_000}
    assert_consistent(allocator, "a1")

    # Decline everything with a 10 s filter: the unreserved part goes to x, the reserved part waits.
    assert allocator.recover("a1", "e", "eng", held, refuse_seconds=10, now=0.0)
    assert allocator.allocate(1.0) == [Allocation("x", "a1", "*", Resources.parse("cpus:6;mem:3584"))]
    assert allocator.available("a1") == dynamic("eng", cpus=2, mem=512)
    assert consumed(allocator, "eng") == {"cpus": 2000, "mem": 512_000}  # reservations count while idle
    allocator.add_framework("d", ["ads"])
    allocator.add_framework("b", ["eng/backend"])
    assert allocator.allocate(9.999) == []
    assert allocator.allocate(10.0) == [Allocation("e", "a1", "eng", dynamic("eng", cpus=2, mem=512))]

    # UNRESERVE: the resources are everyone's again, the agent's total is as it started.
    allocator.convert("a1", "e", "eng", dynamic("eng", cpus=2, mem=512), Resources.parse("cpus:2;mem:512"))
    assert allocator.agents["a1"].total == Resources.parse("cpus:8;mem:4096")
    assert consumed(allocator, "eng") == {"cpus": 2000, "mem": 512_000}  # still held, now unreserved
    assert_consistent(allocator, "a1")
    assert allocator.recover("a1", "e", "eng", Resources.parse("cpus:2;mem:512"), refuse_seconds=60, now=11.0)
    assert consumed(allocator, "eng") == {}
    # d (ads) and b (eng/backend) hold nothing: the lowest shares; d registered first.
    assert allocator.allocate(11.0) == [Allocation("d", "a1", "ads", Resources.parse("cpus:2;mem:512"))]
    assert_consistent(allocator, "a1")


def test_convert_refuses_what_the_framework_does_not_hold() -> None:
    allocator = Allocator()
    allocator.add_agent("a1", Resources.parse("cpus:2;mem:512"))
    allocator.add_framework("e", ["eng"])
    allocator.allocate(0.0)
    with pytest.raises(ValueError):
        allocator.convert("a1", "e", "eng", Resources.parse("cpus:3"), dynamic("eng", cpus=3))
    assert allocator.agents["a1"].total == Resources.parse("cpus:2;mem:512")
    assert allocator.agents["a1"].allocated == {("e", "eng"): Resources.parse("cpus:2;mem:512")}


def test_reserving_keeps_the_free_pool_exact() -> None:
    allocator = Allocator()
    allocator.add_agent("a1", Resources.parse("cpus:10;mem:1000"))
    allocator.add_framework("e", ["eng"])
    allocator.allocate(0.0)
    allocator.convert("a1", "e", "eng", Resources.parse("cpus:2"), dynamic("eng", cpus=2))
    # Every unreserved scalar is held by e: nothing is free. Actual: {"cpus": 2000, "mem": 0}.
    assert allocator.free_unreserved() == {"cpus": 0, "mem": 0}


def test_a_reservation_does_not_open_a_hole_in_the_headroom() -> None:
    allocator = Allocator()
    allocator.add_agent("a1", Resources.parse("cpus:10;mem:4096"))
    allocator.add_framework("e", ["eng"])
    allocator.allocate(0.0)
    allocator.convert("a1", "e", "eng", Resources.parse("cpus:4"), dynamic("eng", cpus=4))
    allocator.recover("a1", "e", "eng", Resources.parse("cpus:6;mem:4096"), refuse_seconds=1000, now=0.0)
    allocator.set_quota("ads", Quota(guarantee={"cpus": 6000}))  # exactly the 6 free unreserved cpus
    allocator.add_framework("x", ["*"])
    # Actual: cpus:4;mem:4096, leaving ads's guarantee 4 cpus short.
    assert allocator.allocate(1.0) == [Allocation("x", "a1", "*", Resources.parse("mem:4096"))]


# --- demand and reservations --------------------------------------------------------------------

def test_declared_demand_fits_resources_reserved_for_the_role() -> None:
    allocator = Allocator()
    allocator.add_agent("a1", Resources.parse("cpus(eng):4;mem(eng):1024"))
    allocator.add_framework("e", ["eng"], demand=[Demand(Resources.parse("cpus:1;mem:128"), role="eng")])
    assert allocator.allocate(0.0) == [Allocation("e", "a1", "eng", Resources.parse("cpus(eng):4;mem(eng):1024"))]
