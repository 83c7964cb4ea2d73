"""The stage DAG: cycles named, unknown and self dependencies refused, n_to_n sizes checked, a
deterministic topological order, and the upstream indices a task waits for."""

from __future__ import annotations

import pytest

from tepui.frameworks.batch.dag import DagError, check_dag, find_cycle, stage_order, upstream_indices


def test_order_puts_upstreams_first_and_ties_in_declaration_order() -> None:
    names = ["report", "map", "reduce", "lint"]
    edges = [[("reduce", "any_finished")], [], [("map", "all_succeeded")], []]
    check_dag(names, [1, 8, 1, 1], edges)
    assert stage_order(names, edges) == ("map", "reduce", "report", "lint")
    diamond = [[], [("a", "all_succeeded")], [("a", "all_succeeded")], [("c", "all_succeeded"), ("b", "all_succeeded")]]
    assert stage_order(["a", "b", "c", "d"], diamond) == ("a", "b", "c", "d")


def test_a_long_chain_is_ordered_without_recursion() -> None:
    names = [f"s{i}" for i in range(5000)]
    edges = [[]] + [[(f"s{i - 1}", "all_succeeded")] for i in range(1, 5000)]
    assert find_cycle(names, edges) == []
    assert stage_order(names, edges) == tuple(names)


def test_the_cycle_is_named() -> None:
    names = ["a", "b", "c", "d"]
    edges = [[], [("d", "all_succeeded")], [("b", "all_succeeded")], [("c", "all_succeeded")]]
    assert find_cycle(names, edges) == ["b", "d", "c", "b"]
    with pytest.raises(DagError) as info:
        check_dag(names, [1, 1, 1, 1], edges)
    assert info.value.field == "stages[1].depends_on"
    assert info.value.message == "dependency cycle b -> d -> c -> b: remove one of these edges"


@pytest.mark.parametrize(
    ("edges", "arrays", "field", "message"),
    [
        ([[("a", "all_succeeded")], []], [1, 1], "stages[0].depends_on[0].stage", "stage 'a' cannot depend on itself"),
        ([[], [("x", "all_succeeded")]], [1, 1], "stages[1].depends_on[0].stage", "no stage named 'x' in this job (stages: a)"),
        ([[], [("a", "all_succeeded"), ("a", "any_finished")]], [1, 1], "stages[1].depends_on[1].stage",
         "'a' is listed twice: keep one entry per upstream stage"),
        ([[], [("a", "afterok")]], [1, 1], "stages[1].depends_on[0].condition",
         "unknown condition 'afterok' (all_succeeded, any_finished, n_to_n)"),
        ([[], [("a", "n_to_n")]], [8, 4], "stages[1].depends_on[0].condition",
         "n_to_n pairs index i with index i of 'a', so both need the same array: 'b' has array 4, 'a' has array 8"),
    ],
)
def test_invalid_graphs(edges: list[list[tuple[str, str]]], arrays: list[int], field: str, message: str) -> None:
    with pytest.raises(DagError) as info:
        check_dag(["a", "b"], arrays, edges)
    assert (info.value.field, info.value.message) == (field, message)


def test_upstream_indices() -> None:
    arrays = {"map": 8, "setup": 1}
    edges = [("map", "n_to_n"), ("setup", "all_succeeded")]
    assert upstream_indices(edges, arrays, 3) == {"map": range(3, 4), "setup": range(0, 1)}
    assert upstream_indices([("map", "any_finished")], arrays, 0) == {"map": range(0, 8)}
    assert upstream_indices([], arrays, 0) == {}
