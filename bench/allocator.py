"""Allocator cycle time, in the shape of Mesos's ``HierarchicalAllocator_BENCHMARK_Test.DeclineOffers``.

Every agent offers ``cpus:24;mem:4096;disk:4096;ports:[31000-32000]``; every framework (one
role) declines everything it is offered with a long filter, so each round every agent goes to a
framework that has not yet declined it. Each round times one full ``allocate()`` call; declines
happen between rounds and are timed apart. Mesos (C++, after its 2018 optimisation): 1.06 s
per cycle for 10,000 agents x 1,000 frameworks; 3.2 s before (PERFORMANCE_ANCHORS 2.1).

``--incremental``: after the rounds, one agent's resources are freed (one task ends) and one
immediate, incremental cycle allocates them; timed over many repetitions.

The allocator is built as the master builds it: agents shuffled every cycle by a generator
seeded with ``--seed`` (the master's ``allocation_seed``, default 0).

    python bench/allocator.py --agents 10000 --frameworks 1000
    python bench/allocator.py --agents 10000 --frameworks 1000 --incremental
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import time

from tepui.offers.allocator import Allocator
from tepui.sdk.resources import Resources

AGENT = "cpus:24;mem:4096;disk:4096;ports:[31000-32000]"


def build(agents: int, frameworks: int, seed: int) -> Allocator:
    allocator = Allocator(rng=random.Random(seed))
    total = Resources.parse(AGENT)
    start = time.perf_counter()
    for i in range(frameworks):
        allocator.add_framework(f"framework-{i}", ["*"])
    added_frameworks = time.perf_counter()
    for i in range(agents):
        allocator.add_agent(f"agent-{i}", total)
    added_agents = time.perf_counter()
    print(f"added {frameworks} frameworks in {added_frameworks - start:.3f} s, "
          f"{agents} agents in {added_agents - added_frameworks:.3f} s")
    return allocator


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument("--frameworks", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--incremental", action="store_true")
    parser.add_argument("--seed", type=int, default=0, help="seeds the agents' shuffle (default 0, as the master)")
    args = parser.parse_args()
    allocator = build(args.agents, args.frameworks, args.seed)
    gc.collect()
    gc.freeze()  # the allocator's long-lived state need not be traversed by every collection
    now = 0.0
    cycles = []
    for round_no in range(args.rounds):
        start = time.perf_counter()
        allocations = allocator.allocate(now)
        took = time.perf_counter() - start
        cycles.append(took)
        start = time.perf_counter()
        for allocation in allocations:
            allocator.recover(allocation.agent_id, allocation.framework_id, allocation.role,
                              allocation.resources, refuse_seconds=3600.0, now=now)
        declined = time.perf_counter() - start
        print(f"round {round_no}: allocate() made {len(allocations)} offers in {took:.3f} s; "
              f"{len(allocations)} declines took {declined:.3f} s", flush=True)
        now += 1.0
    median = statistics.median(cycles)
    print(f"full cycle: median {median:.4f} s over {args.rounds} rounds "
          f"({args.agents} agents x {args.frameworks} frameworks)")
    if not args.incremental:
        print(f"cycle_seconds={median:.4f}")
        return
    # One task's resources come back on one agent; the immediate cycle offers just them.
    allocator.revive("framework-0")
    allocator.allocate(now)
    task = Resources.parse("cpus:1;mem:128")
    times = []
    for i in range(200):
        held = [(k, r) for k, r in allocator.agents["agent-7"].allocated.items()]
        (framework_id, role), resources = held[0]
        allocator.recover("agent-7", framework_id, role, task if resources.contains(task) else resources)
        start = time.perf_counter()
        allocations = allocator.allocate(now, incremental=True)
        times.append(time.perf_counter() - start)
        assert len(allocations) == 1, allocations
    incremental = statistics.median(times)
    print(f"incremental cycle (one agent freed, one offer): median {incremental * 1000:.3f} ms over 200")
    print(f"incremental_seconds={incremental:.6f}")


if __name__ == "__main__":
    main()
