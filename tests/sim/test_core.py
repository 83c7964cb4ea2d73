"""The simulator's pure core on a fake clock: the exact effects of each master message."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from tepui.sdk.effects import CancelTimer, Log, ScheduleTimer, TimerFired
from tepui.sdk.protocol import agent as am
from tepui.sdk.protocol.values import (
    CommandInfo,
    ExecutorInfo,
    FrameworkInfo,
    MasterInfo,
    TaskGroupInfo,
    TaskInfo,
    TaskReason,
    TaskSource,
    TaskState,
    TaskStatus,
)
from tepui.sdk.resources import Resources
from tepui.sim.core import MASTER_CHECK, SimCore
from tepui.sim.events import (
    CloseAgent,
    FinishTask,
    Received,
    Register,
    RetryUpdate,
    SendToMaster,
    SimConfig,
    Start,
    Stop,
    StopDeadline,
)

MASTER = MasterInfo(id="m", address="127.0.0.1:5050", hostname="h", version="0.1.0", epoch=1)
FRAMEWORK = FrameworkInfo(user="u", name="fw", id="F1")
AWARE = FrameworkInfo(user="u", name="fw", id="F1", capabilities=["PARTITION_AWARE", "TASK_KILLING_STATE"])
RESOURCES = "cpus:8;mem:32768;ports:[31000-32000]"


def make(agents: int = 1, **overrides: Any) -> SimCore:
    counter = itertools.count(1)
    config = SimConfig(agents=agents, resources=Resources.parse(RESOURCES), **overrides)
    return SimCore(config, lambda: f"uuid-{next(counter)}".encode())


def registered(core: SimCore, index: int = 0, now: float = 0.0) -> list[Any]:
    core.handle(Start(index), now)
    return core.handle(Received(index, am.AgentRegistered(f"S{index + 1}", MASTER, 15.0), epoch=1), now)


def task(task_id: str = "t1", duration: str | None = None, command: str = "true") -> TaskInfo:
    return TaskInfo(name=task_id, task_id=task_id, agent_id="S1", resources=Resources.of(cpus=1).to_wire(),
                    command=CommandInfo(value=command), labels={} if duration is None else {"tepui.sim/duration": duration})


def run(core: SimCore, info: TaskInfo, now: float = 0.0, index: int = 0,
        framework: FrameworkInfo = FRAMEWORK) -> list[Any]:
    return core.handle(Received(index, am.RunTask(framework, info), epoch=1), now)


def ack(core: SimCore, task_id: str, uuid: bytes, now: float = 0.0, index: int = 0) -> list[Any]:
    return core.handle(Received(index, am.StatusUpdateAck("F1", task_id, uuid), epoch=1), now)


def status(task_id: str, state: TaskState, uuid: bytes, now: float = 0.0, agent_id: str = "S1",
           **fields: Any) -> SendToMaster:
    return SendToMaster(0, am.StatusUpdate("F1", TaskStatus(task_id=task_id, state=state, source=TaskSource.AGENT,
                                                            agent_id=agent_id, timestamp=now, uuid=uuid, **fields)))


def sent(effects: list[Any]) -> list[Any]:
    return [e.body for e in effects if isinstance(e, SendToMaster)]


# --- registration and pings -------------------------------------------------------------------


def test_start_registers_with_its_own_hostname_resources_and_templated_attributes() -> None:
    core = make(agents=12, attributes="rack:r{i%10};zone:z{i%3};n:{i:03d}")
    effects = core.handle(Start(11), 100.0)
    info = effects[0].body.agent_info
    assert effects == [
        SendToMaster(11, am.RegisterAgent(info, "0.1.0-sim")),
        ScheduleTimer(102.0, Register(11)),
    ]
    assert info.hostname == "sim-00012"
    assert info.attributes == {"rack": "r2", "zone": "z0", "n": "012"}
    assert Resources.from_wire(info.resources) == Resources.parse(RESOURCES)
    assert info.id is None


def test_registration_is_retried_with_doubling_backoff_until_answered() -> None:
    core = make()
    core.handle(Start(0), 0.0)
    retry = core.handle(TimerFired(Register(0)), 2.0)
    assert isinstance(sent(retry)[0], am.RegisterAgent)
    assert retry[-1] == ScheduleTimer(6.0, Register(0))
    answer = core.handle(Received(0, am.AgentRegistered("S1", MASTER, 15.0), epoch=1), 6.5)
    assert answer == [CancelTimer(Register(0)), ScheduleTimer(6.5 + 37.5, MASTER_CHECK)]
    assert core.registered == 1
    assert core.handle(TimerFired(Register(0)), 14.0) == []  # a late timer changes nothing


def test_pings_are_answered_with_their_seq_once_registered() -> None:
    core = make()
    core.handle(Start(0), 0.0)
    assert core.handle(Received(0, am.Ping(7), epoch=1), 1.0) == []  # not registered yet
    registered(core)
    assert core.handle(Received(0, am.Ping(8), epoch=1), 1.0) == [SendToMaster(0, am.Pong(8, 0, 0))]
    # A growing cluster pings less often; the simulator judges the master's silence by it.
    core.handle(Received(0, am.Ping(9, 5.0), epoch=1), 1.0)
    assert core.ping_interval == 5.0


def test_messages_from_an_older_master_epoch_are_dropped() -> None:
    core = make()
    registered(core)
    effects = core.handle(Received(0, am.Ping(1), epoch=0), 1.0)
    assert [type(e) for e in effects] == [Log]
    assert core.handle(Received(0, am.Ping(2), epoch=0), 1.0) == []  # logged once, counted always
    assert core.stats["stale_master_message"] == 2


def test_a_newer_epoch_on_any_message_fences_the_older_master_off() -> None:
    core = make()
    registered(core)  # epoch 1
    assert [(type(e.body), e.body.seq) for e in core.handle(Received(0, am.Ping(1), epoch=2), 1.0)] == [(am.Pong, 1)]
    assert core.agents[0].master_epoch == 2
    effects = core.handle(Received(0, am.Ping(2), epoch=1), 2.0)
    assert [type(e) for e in effects] == [Log], "logged (the first time), and no pong"
    assert core.stats["stale_master_message"] == 1
    assert core.agents[0].last_contact == 1.0


def test_agents_are_independent() -> None:
    core = make(agents=3)
    registered(core, 0)
    registered(core, 2)
    assert core.registered == 2
    run(core, task("a", duration="100"), index=2)
    assert core.agents[2].tasks and not core.agents[0].tasks and not core.agents[1].tasks


# --- tasks ------------------------------------------------------------------------------------


def test_a_task_runs_for_its_labelled_duration_then_finishes() -> None:
    core = make()
    registered(core)
    effects = run(core, task("t1", duration="5"), now=10.0)
    assert effects == [
        status("t1", TaskState.RUNNING, b"uuid-1", now=10.0),
        ScheduleTimer(20.0, RetryUpdate(0, "F1", "t1")),
        ScheduleTimer(15.0, FinishTask(0, "F1", "t1")),
    ]
    assert ack(core, "t1", b"uuid-1", now=11.0) == [CancelTimer(RetryUpdate(0, "F1", "t1"))]
    assert core.handle(TimerFired(FinishTask(0, "F1", "t1")), 15.0) == [
        status("t1", TaskState.FINISHED, b"uuid-2", now=15.0, message="Command exited with status 0", exit_code=0),
        ScheduleTimer(25.0, RetryUpdate(0, "F1", "t1")),
    ]
    assert core.running == 0
    assert ack(core, "t1", b"uuid-2", now=16.0) == [CancelTimer(RetryUpdate(0, "F1", "t1"))]
    assert ("F1", "t1") in core.agents[0].completed and not core.agents[0].ended


def test_a_task_without_a_duration_finishes_after_its_running_update_is_acknowledged() -> None:
    core = make()
    registered(core)
    effects = run(core, task("t1"))
    assert sent(effects) == [am.StatusUpdate("F1", effects[0].body.status)]
    assert effects[0].body.status.state == TaskState.RUNNING
    after_ack = ack(core, "t1", b"uuid-1")
    assert [b.status.state for b in sent(after_ack)] == [TaskState.FINISHED]  # one update in flight per task


@pytest.mark.parametrize(("command", "duration"), [
    ("sleep 3", 3.0), ("echo hi && sleep 2.5", 2.5), ("exec sleep 4; true", 4.0), ("sleepy 3", 0.0), ("true", 0.0),
])
def test_the_duration_comes_from_a_sleep_command_without_the_label(command: str, duration: float) -> None:
    core = make()
    registered(core)
    timers = [e for e in run(core, task("t1", command=command), now=1.0) if isinstance(e, ScheduleTimer)
              and isinstance(e.key, FinishTask)]
    assert timers == ([ScheduleTimer(1.0 + duration, FinishTask(0, "F1", "t1"))] if duration else [])


def test_the_label_wins_over_the_command_and_a_bad_one_is_a_task_error() -> None:
    core = make()
    registered(core)
    timers = [e for e in run(core, task("t1", duration="1.5", command="sleep 100")) if isinstance(e, ScheduleTimer)]
    assert ScheduleTimer(1.5, FinishTask(0, "F1", "t1")) in timers
    effects = run(core, task("t2", duration="soon"))
    assert effects == [status("t2", TaskState.ERROR, b"uuid-2", reason=TaskReason.TASK_INVALID,
                              message="label tepui.sim/duration must be a number of seconds"),
                       ScheduleTimer(10.0, RetryUpdate(0, "F1", "t2"))]


def test_a_duplicate_task_id_is_refused_while_running_and_after_it_ended() -> None:
    core = make()
    registered(core)
    run(core, task("t1", duration="5"))
    first = run(core, task("t1", duration="5"))
    assert [type(e) for e in first] == [Log]
    ack(core, "t1", b"uuid-1")
    core.handle(TimerFired(FinishTask(0, "F1", "t1")), 5.0)
    ack(core, "t1", b"uuid-2")
    assert run(core, task("t1")) == []
    assert core.stats["duplicate_task_refused"] == 2
    assert core.stats["tasks_launched"] == 1


# --- status updates ---------------------------------------------------------------------------


def test_an_unacknowledged_update_is_resent_with_doubling_backoff_and_the_same_uuid() -> None:
    core = make()
    registered(core)
    first = run(core, task("t1", duration="100"))
    retry = core.handle(TimerFired(RetryUpdate(0, "F1", "t1")), 10.0)
    assert retry == [first[0], ScheduleTimer(30.0, RetryUpdate(0, "F1", "t1"))]
    assert core.handle(TimerFired(RetryUpdate(0, "F1", "t1")), 30.0)[-1] == ScheduleTimer(70.0, RetryUpdate(0, "F1", "t1"))
    assert core.stats["status_updates_retried"] == 2


def test_a_stale_or_unknown_ack_changes_nothing() -> None:
    core = make()
    registered(core)
    run(core, task("t1", duration="100"))
    assert ack(core, "t1", b"uuid-9") == []
    assert ack(core, "nope", b"uuid-1") == []
    assert core.stats["stale_acks_ignored"] == 2
    assert ("F1", "t1") in core.agents[0].pending


def test_updates_wait_while_unregistered_and_go_out_on_registration() -> None:
    core = make()
    core.handle(Start(0), 0.0)
    effects = run(core, task("t1", duration="100"))
    assert sent(effects) == []  # kept; a retry timer is armed
    answer = core.handle(Received(0, am.AgentRegistered("S1", MASTER, 15.0), epoch=1), 1.0)
    assert [b.status.state for b in sent(answer)] == [TaskState.RUNNING]


# --- kills, frameworks, executors, reconciliation ---------------------------------------------


def test_a_kill_ends_the_task_killed_and_cancels_its_end() -> None:
    core = make()
    registered(core)
    run(core, task("t1", duration="100"))
    ack(core, "t1", b"uuid-1")
    effects = core.handle(Received(0, am.KillTask("F1", "t1"), epoch=1), 3.0)
    assert effects == [
        CancelTimer(FinishTask(0, "F1", "t1")),
        status("t1", TaskState.KILLED, b"uuid-2", now=3.0, message="Killed on request (a simulated task: no process)"),
        ScheduleTimer(13.0, RetryUpdate(0, "F1", "t1")),
    ]
    assert core.running == 0 and core.stats["tasks_killed"] == 1


def test_a_framework_with_the_killing_capability_sees_killing_first() -> None:
    core = make()
    registered(core)
    run(core, task("t1", duration="100"), framework=AWARE)
    ack(core, "t1", b"uuid-1")
    effects = core.handle(Received(0, am.KillTask("F1", "t1"), epoch=1), 3.0)
    assert [b.status.state for b in sent(effects)] == [TaskState.KILLING]
    assert [b.status.state for b in sent(ack(core, "t1", b"uuid-2"))] == [TaskState.KILLED]


@pytest.mark.parametrize(("framework", "state"), [(FRAMEWORK, TaskState.LOST), (AWARE, TaskState.DROPPED)])
def test_killing_an_unknown_task_answers_lost_or_dropped(framework: FrameworkInfo, state: TaskState) -> None:
    core = make()
    registered(core)
    core.frameworks["F1"] = framework
    effects = core.handle(Received(0, am.KillTask("F1", "ghost"), epoch=1), 2.0)
    assert effects[0] == status("ghost", state, b"uuid-1", now=2.0, reason=TaskReason.TASK_UNKNOWN,
                                message="cannot kill: the agent does not know this task")


def test_a_framework_shutdown_drops_its_tasks_and_updates_silently() -> None:
    core = make()
    registered(core)
    run(core, task("t1", duration="100"))
    run(core, task("t2", duration="100"))
    ack(core, "t2", b"uuid-2")
    effects = core.handle(Received(0, am.ShutdownFramework("F1"), epoch=1), 5.0)
    assert effects == [
        CancelTimer(RetryUpdate(0, "F1", "t1")),
        CancelTimer(FinishTask(0, "F1", "t1")),
        CancelTimer(FinishTask(0, "F1", "t2")),
    ]
    agent = core.agents[0]
    assert not agent.tasks and not agent.pending and core.running == 0
    assert sent(run(core, task("t3"))) != []  # the framework may come back with new tasks


def test_a_task_group_runs_and_its_executor_shutdown_kills_its_tasks() -> None:
    core = make()
    registered(core)
    group = TaskGroupInfo(tasks=[task("a", duration="100"), task("b", duration="100")])
    executor = ExecutorInfo(executor_id="E1", type="DEFAULT")
    effects = core.handle(Received(0, am.RunTaskGroup(FRAMEWORK, executor, group), epoch=1), 0.0)
    assert [(b.status.task_id, b.status.state) for b in sent(effects)] == [("a", TaskState.RUNNING),
                                                                           ("b", TaskState.RUNNING)]
    ack(core, "a", b"uuid-1")
    ack(core, "b", b"uuid-2")
    effects = core.handle(Received(0, am.ShutdownExecutor("F1", "E1"), epoch=1), 1.0)
    assert [(b.status.task_id, b.status.state, b.status.reason) for b in sent(effects)] == [
        ("a", TaskState.KILLED, TaskReason.EXECUTOR_TERMINATED), ("b", TaskState.KILLED, TaskReason.EXECUTOR_TERMINATED)]
    assert not core.agents[0].groups


def test_reconciliation_answers_unknown_ids_and_remembers_them() -> None:
    core = make()
    registered(core)
    run(core, task("known", duration="100"), framework=AWARE)
    ack(core, "known", b"uuid-1")
    effects = core.handle(Received(0, am.ReconcileTasks("F1", ["known", "lost"]), epoch=1), 4.0)
    assert effects == [
        status("lost", TaskState.DROPPED, b"uuid-2", now=4.0, reason=TaskReason.RECONCILIATION,
               message="Reconciliation: task unknown to the agent (its launch never arrived)"),
        ScheduleTimer(14.0, RetryUpdate(0, "F1", "lost")),
    ]
    ack(core, "lost", b"uuid-2")
    assert [type(e) for e in run(core, task("lost"))] == [Log]  # a late RUN_TASK is a refused duplicate
    unknown_framework = make()
    registered(unknown_framework)
    told = unknown_framework.handle(Received(0, am.ReconcileTasks("F2", ["x"], FRAMEWORK), epoch=1), 1.0)
    assert [b.status.state for b in sent(told)] == [TaskState.LOST]  # not PARTITION_AWARE


# --- the master going silent, shutting agents down, the end -----------------------------------


def test_a_silent_master_makes_agents_reregister_with_their_tasks() -> None:
    core = make(agents=2)
    registered(core, 0, now=0.0)
    registered(core, 1, now=0.0)
    run(core, task("t1", duration="100"), now=0.0)
    core.handle(Received(1, am.Ping(1), epoch=1), 70.0)  # agent 1 still hears from the master
    effects = core.handle(TimerFired(MASTER_CHECK), 76.0)
    report = sent(effects)[0]
    assert isinstance(report, am.ReregisterAgent)
    assert report.agent_info.id == "S1" and report.agent_info.hostname == "sim-00001"
    assert [(t.task.task_id, t.state) for t in report.tasks] == [("t1", TaskState.RUNNING)]
    assert report.frameworks == [FRAMEWORK]
    assert effects[1:] == [ScheduleTimer(78.0, Register(0)),
                           Log("warning", "master_silent", {"agents": 1, "seconds": 75.0, "action": "re-registering"}),
                           ScheduleTimer(76.0 + 37.5, MASTER_CHECK)]
    assert core.registered == 1


def test_shutdown_agent_kills_tasks_waits_for_acks_then_unregisters_and_closes() -> None:
    core = make()
    registered(core)
    run(core, task("t1", duration="100"))
    ack(core, "t1", b"uuid-1")
    effects = core.handle(Received(0, am.ShutdownAgent("gone"), epoch=1), 2.0)
    assert [b.status.state for b in sent(effects)] == [TaskState.KILLED]
    assert ScheduleTimer(7.0, StopDeadline(0)) in effects
    assert not [e for e in effects if isinstance(e, CloseAgent)]
    assert ack(core, "t1", b"uuid-2") == [
        CancelTimer(RetryUpdate(0, "F1", "t1")),
        SendToMaster(0, am.UnregisterAgent("S1")),
        CancelTimer(StopDeadline(0)),
        CloseAgent(0),
    ]
    assert core.registered == 0
    assert core.handle(Received(0, am.Ping(3), epoch=1), 3.0) == []


def test_shutdown_agent_closes_at_the_deadline_without_acks() -> None:
    core = make()
    registered(core)
    run(core, task("t1", duration="100"))
    core.handle(Received(0, am.ShutdownAgent("gone"), epoch=1), 2.0)
    effects = core.handle(TimerFired(StopDeadline(0)), 7.0)
    assert SendToMaster(0, am.UnregisterAgent("S1")) in effects and effects[-1] == CloseAgent(0)


def test_stop_unregisters_every_registered_agent_when_asked() -> None:
    core = make(agents=3)
    registered(core, 0)
    registered(core, 2)
    core.handle(Start(1), 0.0)
    assert core.handle(Stop(unregister=True), 1.0) == [SendToMaster(0, am.UnregisterAgent("S1")),
                                                       SendToMaster(2, am.UnregisterAgent("S3"))]
    assert core.registered == 0
    other = make()
    registered(other)
    assert other.handle(Stop(unregister=False), 1.0) == []


def test_a_new_leading_master_unregisters_every_running_agent_and_cancels_their_retries_until_their_wave() -> None:
    from tepui.sim.events import MasterChanged

    core = make(agents=3)
    registered(core, 0)
    registered(core, 1)
    core.handle(Start(2), 0.0)  # still waiting for its answer: a Register retry is pending
    assert core.registered == 2
    effects = core.handle(MasterChanged("m2", 5), 1.0)
    assert effects == [CancelTimer(Register(0)), CancelTimer(Register(1)), CancelTimer(Register(2)),
                       Log("info", "master_changed", {"leader": "m2", "epoch": 5, "agents": 3})]
    assert core.registered == 0
    # Its wave: agent 0 re-registers with its id, from the first backoff.
    effects = core.handle(Start(0), 1.2)
    [reregister] = [e.body for e in effects if isinstance(e, SendToMaster)]
    assert isinstance(reregister, am.ReregisterAgent) and reregister.agent_info.id == "S1"
    assert ScheduleTimer(1.2 + SimConfig(agents=1, resources=Resources.parse(RESOURCES)).registration_backoff,
                         Register(0)) in effects
    core.handle(Received(0, am.AgentReregistered("S1", MASTER, 15.0), epoch=5), 1.3)
    assert core.registered == 1 and core.agents[0].master_epoch == 5
