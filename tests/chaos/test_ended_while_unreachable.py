"""A task that ends while its agent is unreachable (found by bench/chaos.py, full size, seed 8,
under a CPU hog): the agent comes back reporting it ended, and the master must finish it.

It used to keep the task in the framework's table as UNREACHABLE, on no agent record: a
reconciliation answered UNREACHABLE for a FINISHED task; when the agent was next away and came
back, the master put the task back on it with its resources and asked about it, and the agent
answered TASK_DROPPED ("its launch never arrived") for work that had run. With an agent full of
real tasks, putting such tasks back overcommitted it and the re-registration handler raised
InsufficientResources half-way (its AgentReregistered never sent, later tasks never put back):
three items of that run stayed UNREACHABLE for good."""

from __future__ import annotations

from tepui.sdk.protocol import scheduler as sm
from tepui.sdk.protocol.values import ReconcileTask, TaskState

from ..harness import Sim


def _away_and_back(sim: Sim, away: float, back: float, ended: tuple[str, ...] | list[str] = ()) -> None:
    """The agent's link is cut until the master marks it unreachable (2 s pings, 5 missed);
    ``ended`` finish meanwhile; then the link heals and the agent re-registers."""
    cut = sim.cut("agent-0")
    sim.run_until(away)
    for task_id in ended:
        sim.finish_task("agent-0", task_id)
    sim.run_until(away + 2.0)
    sim.heal(cut)
    sim.run_until(back)


def test_a_task_that_ended_while_its_agent_was_unreachable_reconciles_to_finished_and_stays_finished() -> None:
    sim = Sim()
    agent_id = sim.framework.offers[0].agent_id
    sim.launch(["t1", "t2"])
    sim.run_until(3.0)
    _away_and_back(sim, 20.0, 120.0, ended=["t1"])
    assert sim.states("t1") == [TaskState.STARTING, TaskState.RUNNING, TaskState.UNREACHABLE, TaskState.FINISHED]
    fid = sim.framework.framework_id or ""
    assert "t1" not in sim.master.frameworks[fid].tasks
    before = len(sim.framework.updates)
    sim.send_from_framework(sm.Reconcile(fid, [ReconcileTask("t1", agent_id)]))
    sim.run_until(121.0)
    assert [s.state for s in sim.framework.updates[before:] if s.task_id == "t1"] == [TaskState.FINISHED]

    _away_and_back(sim, 140.0, 300.0)  # away again: t1 is not put back, nor asked about
    assert sim.states("t1")[-1] == TaskState.FINISHED and TaskState.DROPPED not in sim.states("t1")
    assert sim.states("t2")[-1] == TaskState.RUNNING


def test_tasks_that_ended_while_away_do_not_overcommit_their_agent_when_it_is_away_again() -> None:
    sim = Sim()
    first = [f"a{i}" for i in range(40)]  # 40 x 0.1 cpus: the whole agent (cpus:4)
    sim.launch(first)
    sim.run_until(3.0)
    _away_and_back(sim, 20.0, 120.0, ended=first)
    assert all(sim.states(t)[-1] == TaskState.FINISHED for t in first)
    sim.framework.offers[:] = sim.framework.offers[-1:]  # the current offer: the whole agent again
    second = [f"b{i}" for i in range(40)]
    sim.launch(second)
    sim.run_until(130.0)
    assert all(sim.states(t)[-1] == TaskState.RUNNING for t in second)
    _away_and_back(sim, 150.0, 300.0)  # raised InsufficientResources inside the re-registration
    assert all(sim.states(t)[-1] == TaskState.RUNNING for t in second)
    assert all(TaskState.DROPPED not in sim.states(t) for t in first)
