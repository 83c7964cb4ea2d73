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


def test_4_an_accept_delivered_twice_launches_once_and_never_reports_its_tasks_dropped() -> None:
    """The network (or a retry) delivers one ACCEPT twice: the second copy names an offer
    already used. Answering TASK_DROPPED for its tasks would be a lie the framework acts on
    (it would launch the work again while the first copy runs)."""
    sim = Sim()
    sim.rules.append(lambda s, d, b: "duplicate" if isinstance(b, sm.Accept) else None)
    sim.launch(["t1"])
    sim.run_until(3.0)
    assert sim.states("t1") == [TaskState.STARTING, TaskState.RUNNING]
    assert sim.launches == [("agent-0", "t1")]
    assert sim.master.counters["duplicate_launches_ignored"] == 1


def test_24_a_task_that_ended_around_a_failover_reconciles_to_its_real_end_not_unknown() -> None:
    """Its agent's updates were cut off, the task ended, the master failed over: once the agent
    has re-registered (reporting the ended task whose updates wait for acknowledgement), a
    reconciliation answers FINISHED, not UNKNOWN (which reads as "never launched")."""
    from tepui.sdk.protocol.values import ReconcileTask

    sim = Sim()
    agent_id = sim.framework.offers[0].agent_id
    cut = sim.cut_one_way("agent-0", "master")
    sim.launch(["t1"])
    sim.run_until(3.0)
    sim.finish_task("agent-0", "t1")
    sim.run_until(4.0)
    sim.restart_master()
    sim.heal(cut)
    sim.run_until(80.0)
    assert agent_id in sim.master.agents
    fid = sim.framework.framework_id or ""
    sim.send_from_framework(sm.Subscribe(sim.framework.info.__class__(
        user="u", name="sim", id=fid, capabilities=["PARTITION_AWARE"], failover_timeout=3600.0)))
    sim.run_until(81.0)
    before = len(sim.framework.updates)
    sim.send_from_framework(sm.Reconcile(fid, [ReconcileTask("t1", agent_id)]))
    sim.run_until(82.0)
    assert [s.state for s in sim.framework.updates[before:] if s.task_id == "t1"] == [TaskState.FINISHED]
    sim.run_until(2000.0)
    assert sim.states("t1")[-1] == TaskState.FINISHED and sim.launches == [("agent-0", "t1")]
    assert not sim.agents["agent-0"].pending, "the updates that waited were delivered and acknowledged"
