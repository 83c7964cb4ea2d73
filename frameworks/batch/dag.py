"""The DAG of a job's stages: checks, topological order, and which upstream tasks a task waits for.

Why its own module: the spec validates the graph once at submission, and the core asks the same
graph at run time "which stages may start now?" and "which upstream indices does index i of an
``n_to_n`` stage wait for?". Both need one answer, computed from the stages' names, their arrays
and their ``depends_on`` alone, so these functions take plain tuples and never the spec Structs
(no import cycle with :mod:`spec`) and touch no clock, store or network.

Conditions (see docs/batch.md, "Job spec"):

* ``all_succeeded``: every task of the upstream stage succeeded (Slurm ``afterok``, AWS Batch's
  default, Argo ``dependencies``). If the upstream fails, the dependent stage can never run; the
  core marks it ``upstream_failed`` instead of leaving it pending (Slurm's
  ``DependencyNeverSatisfied`` is a known complaint).
* ``any_finished``: the upstream stage has finished, whatever its outcome (Slurm ``afterany``,
  Argo ``X.Succeeded || X.Failed``): a cleanup or report stage.
* ``n_to_n``: index *i* waits only for index *i* of the upstream to succeed (AWS Batch
  ``N_TO_N``, Slurm ``aftercorr``); both stages must have the same ``array``.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence

__all__ = [
    "CONDITIONS",
    "DagError",
    "Edge",
    "check_dag",
    "find_cycle",
    "stage_order",
    "upstream_indices",
]

CONDITIONS: tuple[str, ...] = ("all_succeeded", "any_finished", "n_to_n")

#: One ``depends_on`` entry of a stage: (upstream stage name, condition).
Edge = tuple[str, str]


class DagError(ValueError):
    """A graph the core cannot run. ``field`` is the spec path to fix (``stages[2].depends_on[0]``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def check_dag(names: Sequence[str], arrays: Sequence[int], edges: Sequence[Sequence[Edge]]) -> None:
    """Raises :class:`DagError` for an unknown stage, a self-dependency, a stage named twice in
    one ``depends_on``, an ``n_to_n`` between stages of different ``array`` sizes, or a cycle
    (the message names it: ``a -> b -> a``). Stage ``i`` is ``names[i]``, ``arrays[i]``, ``edges[i]``."""
    index = {name: i for i, name in enumerate(names)}
    for i, stage_edges in enumerate(edges):
        seen: set[str] = set()
        for j, (upstream, condition) in enumerate(stage_edges):
            path = f"stages[{i}].depends_on[{j}]"
            if upstream == names[i]:
                raise DagError(f"{path}.stage", f"stage {upstream!r} cannot depend on itself")
            if upstream not in index:
                known = ", ".join(n for n in names if n != names[i]) or "none"
                raise DagError(f"{path}.stage", f"no stage named {upstream!r} in this job (stages: {known})")
            if upstream in seen:
                raise DagError(f"{path}.stage", f"{upstream!r} is listed twice: keep one entry per upstream stage")
            seen.add(upstream)
            if condition not in CONDITIONS:
                raise DagError(f"{path}.condition", f"unknown condition {condition!r} ({', '.join(CONDITIONS)})")
            if condition == "n_to_n" and arrays[index[upstream]] != arrays[i]:
                raise DagError(
                    f"{path}.condition",
                    f"n_to_n pairs index i with index i of {upstream!r}, so both need the same array: "
                    f"{names[i]!r} has array {arrays[i]}, {upstream!r} has array {arrays[index[upstream]]}",
                )
    cycle = find_cycle(names, edges)
    if cycle:
        first = index[cycle[0]]
        raise DagError(f"stages[{first}].depends_on", "dependency cycle " + " -> ".join(cycle) + ": remove one of these edges")


def find_cycle(names: Sequence[str], edges: Sequence[Sequence[Edge]]) -> list[str]:
    """A cycle as the stage names along it, first repeated at the end (``[a, b, a]``), or ``[]``.
    Follows "depends on" edges; iterative, so a long chain of stages cannot exhaust the stack."""
    index = {name: i for i, name in enumerate(names)}
    colour = [0] * len(names)  # 0 unvisited, 1 on the current path, 2 done
    for root in range(len(names)):
        if colour[root]:
            continue
        path: list[int] = [root]
        cursors = [0]
        colour[root] = 1
        while path:
            node = path[-1]
            targets = [index[u] for u, _ in edges[node] if u in index]
            if cursors[-1] < len(targets):
                nxt = targets[cursors[-1]]
                cursors[-1] += 1
                if colour[nxt] == 1:
                    loop = path[path.index(nxt):] + [nxt]
                    return [names[n] for n in loop]
                if colour[nxt] == 0:
                    colour[nxt] = 1
                    path.append(nxt)
                    cursors.append(0)
            else:
                colour[node] = 2
                path.pop()
                cursors.pop()
    return []


def stage_order(names: Sequence[str], edges: Sequence[Sequence[Edge]]) -> tuple[str, ...]:
    """The stages in an order where every stage follows all its upstreams; among stages that are
    ready together, the one declared first comes first, so the order is deterministic and reads
    like the file. Assumes :func:`check_dag` passed."""
    index = {name: i for i, name in enumerate(names)}
    waiting = [len(e) for e in edges]
    downstream: list[list[int]] = [[] for _ in names]
    for i, stage_edges in enumerate(edges):
        for upstream, _ in stage_edges:
            downstream[index[upstream]].append(i)
    ready = [i for i, n in enumerate(waiting) if n == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(names[i])
        for d in downstream[i]:
            waiting[d] -= 1
            if waiting[d] == 0:
                heapq.heappush(ready, d)
    return tuple(order)


def upstream_indices(edges: Sequence[Edge], arrays: Mapping[str, int], index: int) -> dict[str, range]:
    """For task ``index`` of a stage whose ``depends_on`` is ``edges``: each upstream stage and the
    range of its indices this task waits for — ``range(i, i + 1)`` under ``n_to_n``, the whole
    array otherwise. A range, not a list, so a 100,000-task upstream costs nothing to describe."""
    return {
        upstream: range(index, index + 1) if condition == "n_to_n" else range(arrays[upstream])
        for upstream, condition in edges
    }
