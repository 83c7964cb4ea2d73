"""Placement constraints: every operator's accept and reject cases, with Marathon semantics."""

from __future__ import annotations

import pytest

from tepui.frameworks.services.constraints import Constraint, ConstraintError, check, validate_constraint


def c(field: str, op: str, value: str | None = None) -> Constraint:
    return Constraint(field, op, value)


A1 = ("agent-1", {"rack": "r1", "zone": "a"})
A2 = ("agent-2", {"rack": "r2", "zone": "a"})
A3 = ("agent-3", {"rack": "r3", "zone": "b"})
BARE = ("agent-4", {})


def run(constraints: list[Constraint], offer: tuple[str, dict[str, str]], placed: list) -> str | None:
    return check(constraints, offer[0], offer[1], placed)


def test_no_constraints_accept() -> None:
    assert run([], A1, [A1, A1]) is None


def test_unique_hostname() -> None:
    assert run([c("hostname", "UNIQUE")], A1, [A2]) is None
    assert run([c("hostname", "UNIQUE")], A1, [A2, A1]) == "constraint hostname UNIQUE: agent-1 already runs an instance"
    assert run([c("@hostname", "UNIQUE")], A1, [A1]) is not None


def test_unique_attribute() -> None:
    assert run([c("zone", "UNIQUE")], A3, [A1]) is None
    assert run([c("zone", "UNIQUE")], A2, [A1]) == "constraint zone UNIQUE: an instance already runs on zone=a"


def test_missing_attribute_rejects_all_but_unlike() -> None:
    for op, value in [("UNIQUE", None), ("CLUSTER", "r1"), ("GROUP_BY", None), ("MAX_PER", "1"), ("LIKE", "r.*"), ("IS", "r1")]:
        assert run([c("rack", op, value)], BARE, []) == f"constraint {c('rack', op, value)}: agent-4 has no attribute rack"
    assert run([c("rack", "UNLIKE", "r1")], BARE, []) is None


def test_cluster_with_value() -> None:
    assert run([c("rack", "CLUSTER", "r1")], A1, []) is None
    assert run([c("rack", "CLUSTER", "r1")], A2, []) == "constraint rack CLUSTER r1: agent-2 (rack=r2) is not on rack=r1"
    assert run([c("hostname", "CLUSTER", "agent-1")], A1, []) is None
    assert run([c("hostname", "CLUSTER", "agent-1")], A2, []) is not None


def test_cluster_without_value_follows_first_instance() -> None:
    assert run([c("rack", "CLUSTER")], A2, []) is None
    assert run([c("rack", "CLUSTER")], A2, [A2]) is None
    reason = run([c("rack", "CLUSTER")], A1, [A2])
    assert reason == "constraint rack CLUSTER: agent-1 (rack=r1) is not on rack=r2 where the instances already run"


def test_group_by_without_count_spreads_evenly() -> None:
    g = [c("rack", "GROUP_BY")]
    assert run(g, A1, []) is None
    assert run(g, A2, [A1]) is None  # new value: always accepted
    # without a count, an already-used value is accepted when its group is (one of) the smallest
    assert run(g, A1, [A1, A2]) is None
    reason = run(g, A1, [A1, A1, A2])
    assert reason == "constraint rack GROUP_BY: rack=r1 already runs 2 instance(s) while the smallest group runs 1"
    assert run(g, A2, [A1, A1, A2]) is None


def test_group_by_with_count_waits_for_all_groups() -> None:
    g = [c("rack", "GROUP_BY", "3")]
    assert run(g, A1, []) is None
    reason = run(g, A1, [A1])
    assert reason == (
        "constraint rack GROUP_BY 3: only 1 of 3 rack values are used yet and rack=r1 already runs 1 instance(s)"
    )
    assert run(g, A2, [A1]) is None
    assert run(g, A1, [A1, A2]) is not None
    assert run(g, A3, [A1, A2]) is None
    assert run(g, A1, [A1, A2, A3]) is None  # all three used, r1 is among the smallest
    assert run(g, A1, [A1, A2, A3, A1]) is not None


def test_max_per() -> None:
    m = [c("rack", "MAX_PER", "2")]
    assert run(m, A1, [A1]) is None
    assert run(m, A1, [A1, A2, A1]) == "constraint rack MAX_PER 2: rack=r1 already runs 2 instance(s)"
    assert run([c("hostname", "MAX_PER", "1")], A1, [A1]) == "constraint hostname MAX_PER 1: hostname=agent-1 already runs 1 instance(s)"


def test_like_is_a_full_match() -> None:
    assert run([c("rack", "LIKE", "r[12]")], A1, []) is None
    assert run([c("rack", "LIKE", "r[12]")], A3, []) == "constraint rack LIKE r[12]: agent-3 (rack=r3) does not match r[12]"
    assert run([c("rack", "LIKE", "r")], A1, []) is not None  # partial match is not enough
    assert run([c("hostname", "LIKE", "agent-[0-9]+")], A1, []) is None


def test_unlike() -> None:
    assert run([c("rack", "UNLIKE", "r[12]")], A3, []) is None
    assert run([c("rack", "UNLIKE", "r[12]")], A1, []) == "constraint rack UNLIKE r[12]: agent-1 (rack=r1) matches r[12]"
    assert run([c("hostname", "UNLIKE", "agent-1")], A1, []) == "constraint hostname UNLIKE agent-1: agent-1 matches agent-1"


def test_is() -> None:
    assert run([c("zone", "IS", "a")], A1, []) is None
    assert run([c("zone", "IS", "a")], A3, []) == "constraint zone IS a: agent-3 (zone=b) is not a"
    assert run([c("zone", "IS", "A")], A1, []) is not None  # exact, case-sensitive


def test_first_failing_constraint_is_named() -> None:
    constraints = [c("zone", "IS", "a"), c("hostname", "UNIQUE")]
    assert run(constraints, A1, [A1]) == "constraint hostname UNIQUE: agent-1 already runs an instance"
    assert run(constraints, A3, [A1]) == "constraint zone IS a: agent-3 (zone=b) is not a"


@pytest.mark.parametrize(
    ("constraint", "message"),
    [
        (c("rack", "UNIQ"), "unknown operator 'UNIQ' (UNIQUE, CLUSTER, GROUP_BY, MAX_PER, LIKE, UNLIKE, IS)"),
        (c("rack", "UNIQUE", "x"), "UNIQUE takes no value"),
        (c("rack", "MAX_PER"), "MAX_PER needs a count"),
        (c("rack", "MAX_PER", "0"), "MAX_PER count must be an integer >= 1"),
        (c("rack", "GROUP_BY", "two"), "GROUP_BY count must be an integer >= 0"),
        (c("rack", "LIKE"), "LIKE needs a value"),
        (c("rack", "LIKE", "r[1"), "invalid regular expression"),
        (c("rack", "IS"), "IS needs a value"),
        (c(" ", "UNIQUE"), "empty field"),
    ],
)
def test_invalid_constraints(constraint: Constraint, message: str) -> None:
    with pytest.raises(ConstraintError, match=None) as info:
        validate_constraint(constraint)
    assert message in str(info.value)
