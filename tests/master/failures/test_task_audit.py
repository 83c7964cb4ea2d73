"""The master's anti-entropy with its agents (master/failures/task_audit.py, master/failures/partitions.py): pong
digests compared with launch marks, audits asked until answered, the answers applied, kills
sent again. Exact effects on a fake clock."""

from __future__ import annotations

from tepui.master.core import PING, MasterCore
from tepui.master.events import Received
from tepui.sdk.effects import TimerFired
from tepui.sdk.protocol import agent as am
from tepui.sdk.protocol import scheduler as sm
from tepui.sdk.protocol.values import TaskReason, TaskSource, TaskState

from tests.master.test_core import AGENT, FW, launched, make_core, offer_cycle, sends, task

T1 = ("m-F0001", "t1")


def pong(seq: int, *keys: tuple[str, str]) -> am.Pong:
    return am.Pong(seq, len(keys), am.task_set_digest(keys))


def pinged(core: MasterCore, now: float) -> int:
    """Fires the ping timer; returns the ping's seq."""
    [ping] = [b for b in sends(core.handle(TimerFired(PING), now), AGENT) if isinstance(b, am.Ping)]
    return ping.seq


def audits(effects: list) -> list[am.AuditTasks]:
    return [b for b in sends(effects, AGENT) if isinstance(b, am.AuditTasks)]


def unreachable_with_t1() -> MasterCore:
    """A PARTITION_AWARE framework's t1 on an agent that went silent: t1 is UNREACHABLE."""
    from tests.master.test_core import register_agent, subscribe
    core = make_core(offer_timeout=None)
    register_agent(core)
    subscribe(core, capabilities=["PARTITION_AWARE"])
    offer = offer_cycle(core, 1.0)[0].offers[0]
    core.handle(Received(FW, sm.Accept("m-F0001", [offer.id], [sm.Launch([task("t1")])])), 1.0)
    core.handle(TimerFired(PING), 11.5)
    return core


def test_the_digest_is_the_sum_of_crc32s_and_ignores_order() -> None:
    assert am.task_set_digest([]) == 0
    assert am.task_set_digest([("f", "a"), ("f", "b")]) == am.task_set_digest([("f", "b"), ("f", "a")])
    assert am.task_set_digest([("f", "a")]) != am.task_set_digest([("f", "b")])
    # The protocol's definition, for clients in other languages: CRC-32 of b"f\0a" is 0x89ae3f4e;
    # with b"f\0b" the sum wraps modulo 2**32.
    assert am.task_set_digest([("f", "a")]) == 0x89AE3F4E
    assert am.task_set_digest([("f", "a"), ("f", "b")]) == 0x9A55AE42


def test_agreeing_pongs_start_no_audit() -> None:
    core = make_core()
    launched(core)
    seq = pinged(core, 2.0)
    assert audits(core.handle(Received(AGENT, pong(seq, T1)), 2.1)) == []
    assert core.counters["task_digest_mismatches"] == 0


def test_a_task_launched_after_the_ping_is_not_expected_in_its_pong() -> None:
    """The RUN_TASK sent after the ping reaches the agent after it: its pong cannot count it."""
    core = make_core()
    from tests.master.test_core import register_agent, subscribe
    register_agent(core)
    subscribe(core)
    seq = pinged(core, 0.9)
    offer = offer_cycle(core, 1.0)[0].offers[0]
    core.handle(Received(FW, sm.Accept("m-F0001", [offer.id], [sm.Launch([task("t1")])])), 1.0)
    for now in (1.1, 1.2):
        assert audits(core.handle(Received(AGENT, pong(seq)), now)) == []
    assert core.counters["task_digest_mismatches"] == 0


def test_two_disagreeing_pongs_in_a_row_start_one_audit_asked_again_until_answered() -> None:
    core = make_core()
    launched(core)
    seq = pinged(core, 2.0)
    assert audits(core.handle(Received(AGENT, pong(seq)), 2.1)) == [], "one disagreement may be an update on its way"
    seq = pinged(core, 4.0)
    [audit] = audits(core.handle(Received(AGENT, pong(seq)), 4.1))
    assert audit == am.AuditTasks(audit.seq, {"m-F0001": ["t1"]}, [core.frameworks["m-F0001"].info])
    seq = pinged(core, 6.0)
    assert audits(core.handle(Received(AGENT, pong(seq)), 6.1)) == [], "one audit at a time"
    effects = core.handle(TimerFired(PING), 8.0)
    [again] = audits(effects)
    assert again.seq > audit.seq and again.tasks == audit.tasks
    assert core.counters["task_audits"] == 1 and core.counters["task_audits_retried"] == 1
    core.handle(Received(AGENT, am.TaskAudit(again.seq, [])), 8.1)
    assert audits(core.handle(TimerFired(PING), 10.0)) == [], "answered: not asked again"


def test_an_audit_answer_brings_an_unreachable_task_back_and_tells_the_framework() -> None:
    core = make_core()
    launched(core)
    core.agents["m-S0001"].tasks[T1].state = TaskState.UNREACHABLE
    report = am.TaskReport("m-F0001", task("t1"), TaskState.RUNNING)
    effects = core.handle(Received(AGENT, am.TaskAudit(1, [report])), 3.0)
    [update] = sends(effects, FW)
    assert (update.status.task_id, update.status.state, update.status.reason, update.status.source) == (
        "t1", TaskState.RUNNING, TaskReason.RECONCILIATION, TaskSource.MASTER)
    assert core.frameworks["m-F0001"].tasks["t1"].state == TaskState.RUNNING


def test_an_audit_answer_ends_a_task_whose_final_update_was_acknowledged_long_ago() -> None:
    core = make_core()
    launched(core)
    core.agents["m-S0001"].tasks[T1].state = TaskState.UNREACHABLE
    ended = am.TaskReport("m-F0001", task("t1"), TaskState.FINISHED)
    effects = core.handle(Received(AGENT, am.TaskAudit(1, [], [ended])), 3.0)
    [update] = sends(effects, FW)
    assert (update.status.state, update.status.reason, update.status.uuid) == (
        TaskState.FINISHED, TaskReason.RECONCILIATION, None)
    assert "t1" not in core.frameworks["m-F0001"].tasks and not core.agents["m-S0001"].tasks
    assert core.counters["tasks_ended_by_audit"] == 1 and core.counters["recover_mismatch"] == 0


def test_an_ended_task_whose_final_update_is_on_its_way_frees_its_resources_silently() -> None:
    core = make_core()
    launched(core)
    waiting = am.TaskReport("m-F0001", task("t1"), TaskState.FINISHED)
    effects = core.handle(Received(AGENT, am.TaskAudit(1, [waiting])), 3.0)
    assert sends(effects, FW) == [], "the agent's reliable update tells the framework, once"
    assert not core.agents["m-S0001"].tasks


def test_tasks_of_a_removed_framework_the_agent_still_runs_get_a_second_shutdown() -> None:
    core = make_core()
    launched(core)
    core.handle(Received(FW, sm.Teardown("m-F0001")), 2.0)
    reports = [am.TaskReport("m-F0001", task(t), TaskState.RUNNING) for t in ("t1", "t2")]
    effects = core.handle(Received(AGENT, am.TaskAudit(1, reports)), 3.0)
    assert sends(effects, AGENT) == [am.ShutdownFramework("m-F0001")], "once, however many tasks"
    assert "m-F0001" not in core.frameworks, "not brought back as a placeholder"


def test_a_kill_is_sent_again_every_ping_interval_until_the_task_ends() -> None:
    core = make_core()
    launched(core)
    core.handle(Received(FW, sm.Kill("m-F0001", "t1")), 1.5)
    assert [b for b in sends(core.handle(TimerFired(PING), 2.0), AGENT) if isinstance(b, am.KillTask)] == []
    resent = [b for b in sends(core.handle(TimerFired(PING), 4.0), AGENT) if isinstance(b, am.KillTask)]
    assert resent == [am.KillTask("m-F0001", "t1")]
    from tepui.sdk.protocol.values import TaskStatus
    killed = TaskStatus(task_id="t1", state=TaskState.KILLED, agent_id="m-S0001", uuid=b"u")
    core.handle(Received(AGENT, am.StatusUpdate("m-F0001", killed)), 4.5)
    assert [b for b in sends(core.handle(TimerFired(PING), 8.0), AGENT) if isinstance(b, am.KillTask)] == []


def test_a_kill_of_a_task_that_ended_is_answered_with_its_end_not_unknown() -> None:
    """A chaos run: a framework killed a task whose STARTING it never heard (launch timeout)
    after the master had it FINISHED; "unknown" would have had it relaunch finished work."""
    core = make_core()
    launched(core)
    from tepui.sdk.protocol.values import TaskStatus
    finished = TaskStatus(task_id="t1", state=TaskState.FINISHED, agent_id="m-S0001", uuid=b"u")
    core.handle(Received(AGENT, am.StatusUpdate("m-F0001", finished)), 2.0)
    [answer] = sends(core.handle(Received(FW, sm.Kill("m-F0001", "t1")), 3.0), FW)
    assert (answer.status.state, answer.status.reason, answer.status.uuid) == (
        TaskState.FINISHED, TaskReason.RECONCILIATION, None)
    [unknown] = sends(core.handle(Received(FW, sm.Kill("m-F0001", "never")), 3.0), FW)
    assert unknown.status.state == TaskState.LOST, "a task it never had is still unknown (LOST: not PARTITION_AWARE)"


def test_a_returning_agent_too_small_for_its_tasks_holds_them_without_resources_instead_of_raising() -> None:
    """A chaos run overcommitted an agent when tasks came back from unreachable: allocate_used
    raised half-way through the re-registration and tasks stayed UNREACHABLE for good."""
    from tepui.sdk.protocol.values import AgentInfo
    from tests.master.test_core import AGENT_RES
    core = unreachable_with_t1()
    framework = core.frameworks["m-F0001"]
    assert framework.tasks["t1"].state == TaskState.UNREACHABLE
    info = AgentInfo(hostname="a1", resources=AGENT_RES.to_wire(), id="m-S0001")
    # It comes back running a task that takes the whole agent, and does not report t1.
    big = task("big", resources=AGENT_RES)
    effects = core.handle(Received(AGENT, am.ReregisterAgent(info, "v", [
        am.TaskReport("m-F0001", big, TaskState.RUNNING)])), 20.0)
    assert any(isinstance(b, am.AgentReregistered) for b in sends(effects, AGENT)), "the handler completed"
    assert core.counters["tasks_held_without_resources"] == 1
    [audit] = audits(effects)
    assert sorted(audit.tasks["m-F0001"]) == ["big", "t1"], "every task it holds there, t1 included"
    # Its DROPPED answer ends it and returns nothing it did not hold.
    from tepui.sdk.protocol.values import TaskStatus
    dropped = TaskStatus(task_id="t1", state=TaskState.DROPPED, agent_id="m-S0001", uuid=b"d")
    core.handle(Received(AGENT, am.StatusUpdate("m-F0001", dropped)), 21.0)
    assert core.counters["recover_mismatch"] == 0 and "t1" not in framework.tasks


def test_a_kill_during_the_failover_window_waits_for_the_agent_instead_of_answering_unknown() -> None:
    """A full-size chaos seed: after a master restart the framework killed a task whose agent had
    not re-registered yet; "unknown" made it relaunch, and the task then ran: work ran twice."""
    from tepui.master.core import MasterConfig
    from tepui.master.durability.registry import Recovered
    from tepui.sdk.protocol.values import AgentInfo, FrameworkInfo
    framework = FrameworkInfo(user="u", name="f", id="F1", failover_timeout=60.0, capabilities=["PARTITION_AWARE"])
    core = MasterCore(MasterConfig(master_id="m2"))
    core.recover(Recovered(agents={"S1": AgentInfo(hostname="a", resources=[], id="S1")},
                           frameworks={"F1": framework}), 0.0)
    core.start(0.0)
    core.handle(Received(FW, sm.Subscribe(framework)), 1.0)
    assert sends(core.handle(Received(FW, sm.Kill("F1", "t1", "S1")), 2.0), FW) == []
    assert sends(core.handle(Received(FW, sm.Kill("F1", "t1")), 2.0), FW) == []
    assert core.counters["kills_deferred"] == 2
    [answer] = sends(core.handle(Received(FW, sm.Kill("F1", "t1", "S9")), 2.0), FW)
    assert answer.status.state == TaskState.UNKNOWN, "an agent the registry never knew: unknown"


def test_a_kill_of_a_task_on_an_unreachable_agent_answers_unreachable_not_unknown() -> None:
    core = unreachable_with_t1()
    [answer] = sends(core.handle(Received(FW, sm.Kill("m-F0001", "t1")), 12.0), FW)
    assert (answer.status.state, answer.status.reason) == (TaskState.UNREACHABLE, TaskReason.RECONCILIATION)
