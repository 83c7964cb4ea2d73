"""The allocator's components on their own: Shares, Holdings, Frameworks and the decline filters,
each built with what it reads and checked by exact values."""

from __future__ import annotations

from tepui.offers.filters import DeclineFilter, add_filter
from tepui.offers.frameworks import Demand, Frameworks
from tepui.offers.holdings import Holdings
from tepui.offers.shares import Shares
from tepui.sdk.resources import Resources

AGENT = Resources.parse("cpus:4;mem:4096")
HALF = Resources.parse("cpus:2;mem:2048")


def test_a_role_sorter_goes_with_its_last_framework_and_a_new_one_gets_the_pool() -> None:
    shares = Shares()
    shares.add_to_pool({"cpus": 4000, "mem": 4_096_000}, +1)
    shares.join("f1", "eng", active=True)
    shares.join("f2", "eng", active=False)
    assert shares.sorters["eng"].names_in_order() == ["f1"]  # f2 is inactive
    shares.allocated("f1", "eng", {"cpus": 2000}, count=True)
    assert shares.share("f1", ["eng"]) == 0.5
    shares.leave("f1", "eng")
    shares.leave("f2", "eng")
    assert "eng" not in shares.sorters and shares.roles.order() == []
    shares.join("f3", "ads", active=True)
    shares.allocated("f3", "ads", {"cpus": 1000}, count=True)
    assert shares.share("f3", ["ads"]) == 0.25  # the pool's totals, not zero


def test_holdings_refuse_to_recover_what_is_not_held_and_change_nothing() -> None:
    shares = Shares()
    holdings = Holdings(shares)
    shares.join("f", "*", active=True)
    holdings.add_agent("a1", AGENT)
    holdings.charge(holdings.agents["a1"], "f", "*", HALF)
    holdings.clear_changed()
    assert holdings.free_unreserved() == {"cpus": 2000, "mem": 2_048_000}
    assert not holdings.recover("a1", "f", "*", AGENT)
    assert holdings.agents["a1"].available == HALF and holdings.changed_agents() == []
    assert holdings.free_unreserved() == {"cpus": 2000, "mem": 2_048_000}
    assert holdings.consumed("*") == {"cpus": 2000, "mem": 2_048_000}
    assert holdings.recover("a1", "f", "*", HALF)
    assert holdings.agents["a1"].allocated == {} and holdings.changed_agents() == [holdings.agents["a1"]]
    assert holdings.free_unreserved() == {"cpus": 4000, "mem": 4_096_000}
    assert shares.share("f", ["*"]) == 0.0


def test_changed_agents_come_in_registration_order() -> None:
    holdings = Holdings(Shares())
    for agent_id in ("a1", "a2", "a3"):
        holdings.add_agent(agent_id, AGENT)
    holdings.clear_changed()
    holdings.grow_agent("a3", HALF)
    holdings.set_active("a1", False)  # deactivating changes nothing offerable
    holdings.set_active("a2", True)
    assert [a.agent_id for a in holdings.changed_agents()] == ["a2", "a3"]


def test_pick_skips_suppressed_filtered_and_unfitting_frameworks_and_records_the_offer() -> None:
    shares = Shares()
    shares.add_to_pool({"cpus": 4000, "mem": 4_096_000}, +1)
    frameworks = Frameworks(shares)
    frameworks.add("suppressed", ["*"], ["*"], None)
    frameworks.add("filtered", ["*"], [], None)
    frameworks.add("too-small", ["*"], [], [Demand(Resources.parse("cpus:8"))])
    frameworks.add("taker", ["*"], [], None)
    frameworks.refuse("filtered", "a1", "*", AGENT, 10.0, now=0.0)
    given: set[str] = set()
    taker = frameworks.pick("*", "a1", AGENT, 1.0, given, cycle=7)
    assert taker is not None and taker.framework_id == "taker"
    assert given == {"taker"} and taker.offered_cycle == {"*": 7}
    assert frameworks.pick("*", "a1", AGENT, 1.0, given, cycle=7) is None  # one offer per agent
    assert frameworks.filtered_until(frameworks.by_id["filtered"], "a1", "*", HALF, 1.0) == 10.0
    found = frameworks.pick("*", "a1", AGENT, 10.0, set(), cycle=8)  # the filter expired
    assert found is not None and found.framework_id == "filtered"
    assert frameworks.by_id["filtered"].filters == {}  # and went on the way


def test_a_filter_covered_by_a_longer_one_is_dropped_and_a_shorter_one_never_shortens() -> None:
    filters = [DeclineFilter("*", HALF, 5.0)]
    add_filter(filters, DeclineFilter("*", AGENT, 10.0))  # refuses everything the first did, longer
    assert filters == [DeclineFilter("*", AGENT, 10.0)]
    add_filter(filters, DeclineFilter("*", HALF, 3.0))  # already refused, for longer
    add_filter(filters, DeclineFilter("eng", HALF, 3.0))  # another role
    assert filters == [DeclineFilter("*", AGENT, 10.0), DeclineFilter("eng", HALF, 3.0)]
