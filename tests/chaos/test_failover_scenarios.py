"""RELIABILITY.md scenario 11 on the in-process harness: a framework that fails over receives,
in its new instance, the update its old instance never acknowledged."""

from __future__ import annotations

from tepui.master.events import PeerUnreachable
from tepui.sdk.protocol import scheduler as sm
from tepui.sdk.protocol.values import TaskState

from ..harness import Sim


def test_11_a_framework_that_fails_over_receives_the_unacknowledged_update_in_its_new_instance() -> None:
    sim = Sim()
    sim.framework.acknowledge = False  # the first instance dies before acknowledging anything
    sim.launch(["t1"])
    sim.run_until(2.0)
    fid = sim.framework.framework_id or ""
    agent = sim.agents["agent-0"]
    [unacknowledged] = list(agent.pending[(fid, "t1")].queue)[:1]
    assert unacknowledged.state == TaskState.STARTING
    sim._do("master", sim.master.handle(PeerUnreachable(sim.framework.peer), sim.now))
    sim.run_until(5.0)
    assert agent.pending[(fid, "t1")].queue[0].uuid == unacknowledged.uuid, "kept while nobody acknowledges"

    # The new instance subscribes with the same framework id (within its failover timeout).
    sim.framework.updates.clear()
    sim.framework.acknowledge = True
    sim.send_from_framework(sm.Subscribe(sim.framework.info.__class__(
        user="u", name="sim", id=fid, capabilities=["PARTITION_AWARE"], failover_timeout=3600.0)))
    sim.run_until(60.0)  # the agent's next retry (10 s, then 20 s) reaches the new instance
    received = [(s.state, s.uuid) for s in sim.framework.updates if s.task_id == "t1"]
    assert received[0] == (TaskState.STARTING, unacknowledged.uuid), received
    assert [state for state, _ in received] == [TaskState.STARTING, TaskState.RUNNING]
    assert not agent.pending, "the new instance acknowledged both"
    assert sim.running, "the task kept running through the failover"
