"""The master's pure core, alone: what one task's life costs it, with no sockets or processes.

1,000 agents register and one framework subscribes; each round is an allocation cycle, an ACCEPT
of every offer with one task, then TASK_RUNNING and TASK_FINISHED from the agent, each
acknowledged by the framework — the calls ``bench/launch_throughput.py`` makes the master
handle, without the shell, the transport, the simulator or the framework around it, so a change
to the core shows here above the noise of those (runs of the end-to-end figure at 1,000 agents
spread from 8,400 to 15,100 launches/s in one sitting; this one within ±5%).

    python bench/master_core.py [--reps 5] [--rounds 10]

Prints one line per repetition and last ``us_per_task_life=<best>``. Issue 16 (the core split
into components, typed keys, dispatch tables) measured it before and after in one sitting:
92.5 / 96.8 / 91.5 µs before, 90.5 / 92.0 / 93.2 µs after (docs/performance.md).
"""

from __future__ import annotations

import argparse
import gc
import time

from tepui.master.core import ALLOCATE_NOW, MasterConfig, MasterCore
from tepui.master.events import Received
from tepui.sdk.effects import TimerFired
from tepui.sdk.protocol import agent as am
from tepui.sdk.protocol import scheduler as sm
from tepui.sdk.protocol.values import AgentInfo, CommandInfo, FrameworkInfo, TaskInfo, TaskState, TaskStatus
from tepui.sdk.resources import Resources

AGENTS = 1000
FRAMEWORK = b"framework"


def one_repetition(rounds: int) -> tuple[int, float]:
    """Task lives handled and the seconds the core spent on them (set-up not counted)."""
    core = MasterCore(MasterConfig(master_id="m", offer_timeout=None))
    core.start(0.0)
    agent_resources = Resources.parse("cpus:64;mem:65536").to_wire()
    for i in range(AGENTS):
        info = AgentInfo(hostname=f"h{i}", resources=agent_resources)
        core.handle(Received(b"a%d" % i, am.RegisterAgent(info, "0.1.0")), 0.0)
    peers = {agent_id: record.peer for agent_id, record in core.agents.items()}
    core.handle(Received(FRAMEWORK, sm.Subscribe(FrameworkInfo(user="u", name="bench"))), 0.0)
    framework_id = next(iter(core.frameworks))
    task_resources = Resources.parse("cpus:0.01;mem:1").to_wire()
    lives, spent, now = 0, 0.0, 1.0
    for _ in range(rounds):
        now += 1.0
        started = time.perf_counter()
        effects = core.handle(TimerFired(ALLOCATE_NOW), now)
        offers = [offer for e in effects if getattr(e, "peer", None) == FRAMEWORK and isinstance(e.body, sm.Offers)
                  for offer in e.body.offers]
        launched = []
        for offer in offers:
            task_id = f"t{lives}"
            lives += 1
            task = TaskInfo(name=task_id, task_id=task_id, agent_id=offer.agent_id, resources=task_resources,
                            command=CommandInfo(value="true"))
            core.handle(Received(FRAMEWORK, sm.Accept(framework_id, [offer.id], [sm.Launch([task])])), now)
            launched.append((offer.agent_id, task_id))
        if len(core.frameworks[framework_id].tasks) != len(launched):  # O(1): a launch refused is no cost saved
            raise SystemExit(f"error: {len(launched)} tasks sent, {len(core.frameworks[framework_id].tasks)} launched "
                             "by the core; run tests/master to find what changed")
        for state in (TaskState.RUNNING, TaskState.FINISHED):
            for agent_id, task_id in launched:
                uuid = f"{task_id}-{state.value}".encode()
                status = TaskStatus(task_id=task_id, state=state, agent_id=agent_id, uuid=uuid, timestamp=now)
                core.handle(Received(peers[agent_id], am.StatusUpdate(framework_id, status)), now)
                core.handle(Received(FRAMEWORK, sm.Acknowledge(framework_id, agent_id, task_id, uuid)), now)
        spent += time.perf_counter() - started
        if core.frameworks[framework_id].tasks:
            raise SystemExit("error: tasks left unfinished after TASK_FINISHED; run tests/master to find what changed")
    return lives, spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5, help="repetitions; the best is reported")
    parser.add_argument("--rounds", type=int, default=10, help="allocation cycles per repetition")
    args = parser.parse_args()
    gc.disable()  # the collector's pauses land on whichever call is running: noise, not cost
    best = float("inf")
    for rep in range(args.reps):
        lives, spent = one_repetition(args.rounds)
        per = spent / lives * 1e6
        best = min(best, per)
        print(f"repetition {rep + 1}/{args.reps}: {lives} task lives, {per:.1f} µs each", flush=True)
    print(f"us_per_task_life={best:.1f}")


if __name__ == "__main__":
    main()
