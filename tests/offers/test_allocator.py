"""The first pure allocator: exact allocations on a fake clock."""

from __future__ import annotations

import pytest

from tepui.offers.allocator import Allocation, Allocator
from tepui.sdk.resources import Resources

AGENT = Resources.parse("cpus:4;mem:4096;ports:[31000-31010]")


def test_one_agent_goes_whole_to_one_framework_per_cycle() -> None:
    allocator = Allocator()
    allocator.add_agent("a1", AGENT)
    allocator.add_framework("f1", ["*"])
    allocator.add_framework("f2", ["*"])
    assert allocator.allocate(0.0) == [Allocation("f1", "a1", "*", AGENT)]
    assert allocator.allocate(1.0) == []  # nothing left


def test_lowest_dominant_share_goes_first() -> None:
    allocator = Allocator()
    allocator.add_agent("a1", AGENT)
    allocator.add_agent("a2", AGENT)
    allocator.add_framework("f1", ["*"])
    allocator.add_framework("f2", ["*"])
    allocator.allocate_used("a1", "f1", "*", Resources.of(cpus=2))  # f1 already holds 2/8 cpus
    allocations = allocator.allocate(0.0)
    assert [(a.framework_id, a.agent_id) for a in allocations] == [("f2", "a1"), ("f1", "a2")]
    assert allocations[0].resources == AGENT - Resources.of(cpus=2)


def test_decline_filter_expires_exactly() -> None:
    allocator = Allocator()
    allocator.add_agent("a1", AGENT)
    allocator.add_framework("f1", ["*"])
    [offer] = allocator.allocate(0.0)
    allocator.recover("a1", "f1", "*", offer.resources, refuse_seconds=5.0, now=0.0)
    assert allocator.allocate(4.999) == []
    assert allocator.allocate(5.0) == [Allocation("f1", "a1", "*", AGENT)]


def test_negative_refuse_seconds_means_the_default_five() -> None:
    allocator = Allocator()
    allocator.add_agent("a1", AGENT)
    allocator.add_framework("f1", ["*"])
    [offer] = allocator.allocate(0.0)
    allocator.recover("a1", "f1", "*", offer.resources, refuse_seconds=-1, now=10.0)
    assert allocator.allocate(14.9) == [] and len(allocator.allocate(15.0)) == 1


def test_filtered_framework_lets_the_next_one_have_the_agent() -> None:
    allocator = Allocator()
    allocator.add_agent("a1", AGENT)
    allocator.add_framework("f1", ["*"])
    allocator.add_framework("f2", ["*"])
    [offer] = allocator.allocate(0.0)
    allocator.recover("a1", offer.framework_id, "*", offer.resources, refuse_seconds=60, now=0.0)
    assert [a.framework_id for a in allocator.allocate(1.0)] == ["f2"]


def test_suppress_and_revive() -> None:
    allocator = Allocator()
    allocator.add_agent("a1", AGENT)
    allocator.add_framework("f1", ["*"])
    allocator.suppress("f1")
    assert allocator.allocate(0.0) == []
    allocator.revive("f1")
    assert len(allocator.allocate(0.0)) == 1


def test_suppressing_roles_the_framework_does_not_have_keeps_nothing() -> None:
    """A SUPPRESS is a client's call: roles it names that are not the framework's (any number,
    call after call) must not grow what the allocator keeps (issue 15)."""
    allocator = Allocator()
    allocator.add_framework("f1", ["a"])
    allocator.suppress("f1", ["x" * 1000, "y"])
    allocator.suppress("f1", ["a", "z"])
    assert allocator.frameworks["f1"].suppressed == {"a"}


def test_reserved_resources_go_only_to_their_role() -> None:
    allocator = Allocator()
    total = Resources.parse("cpus:2;mem:512;cpus(eng):2;mem(eng):512")
    allocator.add_agent("a1", total)
    allocator.add_framework("ads", ["ads"])
    [ads] = allocator.allocate(0.0)
    assert ads.resources == Resources.parse("cpus:2;mem:512")
    allocator.add_framework("eng", ["eng"])
    [eng] = allocator.allocate(0.0)
    assert (eng.framework_id, eng.role, eng.resources) == ("eng", "eng", Resources.parse("cpus(eng):2;mem(eng):512"))


def test_crumbs_below_the_minimum_are_not_offered() -> None:
    allocator = Allocator()
    allocator.add_agent("a1", Resources.parse("cpus:0.005;mem:16;ports:[1-2]"))
    allocator.add_framework("f1", ["*"])
    assert allocator.allocate(0.0) == []


def test_recover_is_exact_and_never_mints_resources() -> None:
    allocator = Allocator()
    allocator.add_agent("a1", AGENT)
    allocator.add_framework("f1", ["*"])
    [offer] = allocator.allocate(0.0)
    task = Resources.parse("cpus:0.1;mem:32;ports:[31005-31005]")
    for _ in range(3):
        allocator.recover("a1", "f1", "*", offer.resources - task)
        allocator.recover("a1", "f1", "*", offer.resources - task)  # a duplicate recover
        assert allocator.available("a1") == AGENT - task
        assert allocator.allocated("a1") == task
        allocator.recover("a1", "f1", "*", task)
        assert allocator.available("a1") == AGENT
        [offer] = allocator.allocate(100.0)


def test_removing_an_agent_drops_its_share() -> None:
    allocator = Allocator()
    allocator.add_agent("a1", AGENT)
    allocator.add_framework("f1", ["*"])
    allocator.allocate(0.0)
    assert allocator.share("f1") == pytest.approx(1.0)
    allocator.remove_agent("a1")
    assert allocator.share("f1") == 0.0


def test_inactive_framework_and_weights() -> None:
    allocator = Allocator()
    allocator.add_agent("a1", AGENT)
    allocator.add_framework("f1", ["*"])
    allocator.deactivate_framework("f1")
    assert allocator.allocate(0.0) == []
    with pytest.raises(ValueError, match="must be > 0"):
        allocator.set_weight("*", 0)


def test_minimum_allocatable_is_reported_in_thousandths() -> None:
    assert Allocator().minimum_allocatable() == [("cpus", 10), ("mem", 32_000)]
    assert Allocator(min_allocatable={"gpus": 1}).minimum_allocatable() == [("gpus", 1_000)]
