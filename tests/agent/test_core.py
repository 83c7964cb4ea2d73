"""The agent's pure core on a fake clock: registration, tasks, kills, reliable updates."""

from __future__ import annotations

import itertools
from typing import Any

from tepui.agent.core import MASTER_CHECK, REGISTER, AgentConfig, AgentCore
from tepui.agent.events import (
    Exit,
    KillEscalation,
    LaunchProcess,
    Received,
    RetryUpdate,
    SendToMaster,
    Shutdown,
    SignalProcess,
    Start,
    StopDeadline,
    TaskExited,
    TaskLaunchFailed,
    TaskSpawned,
)
from tepui.sdk.effects import CancelTimer, Log, ScheduleTimer, TimerFired
from tepui.sdk.protocol import agent as am
from tepui.sdk.protocol.values import (
    CommandInfo,
    ExecutorInfo,
    FrameworkInfo,
    KillPolicy,
    MasterInfo,
    TaskInfo,
    TaskReason,
    TaskState,
)
from tepui.sdk.resources import Resources

MASTER = MasterInfo(id="m", address="127.0.0.1:5050", hostname="h", version="0.1.0", epoch=1)
FRAMEWORK = FrameworkInfo(user="u", name="fw", id="F1")


def core(**overrides: Any) -> AgentCore:
    counter = itertools.count(1)
    config = AgentConfig(hostname="a1", resources=Resources.parse("cpus:2;mem:1024"), work_dir="/w", **overrides)
    return AgentCore(config, lambda: f"uuid-{next(counter)}".encode())


def to_master(effects: list[Any]) -> list[Any]:
    return [e.body for e in effects if isinstance(e, SendToMaster)]


def statuses(effects: list[Any]) -> list[tuple[str, TaskState, bytes | None]]:
    return [(b.status.task_id, b.status.state, b.status.uuid) for b in to_master(effects)
            if isinstance(b, am.StatusUpdate)]


def registered(agent: AgentCore, now: float = 0.0) -> None:
    agent.handle(Start(), now)
    agent.handle(Received(am.AgentRegistered("S1", MASTER, 15.0), epoch=1), now)


def task(task_id: str = "t1", command: str = "sleep 1", **kw: Any) -> TaskInfo:
    return TaskInfo(name=task_id, task_id=task_id, agent_id="S1", resources=Resources.of(cpus=1).to_wire(),
                    command=CommandInfo(value=command, environment={"A": "1"}), **kw)


def run(agent: AgentCore, info: TaskInfo, now: float = 1.0) -> list[Any]:
    return agent.handle(Received(am.RunTask(FRAMEWORK, info), epoch=1), now)


def ack(agent: AgentCore, task_id: str, uuid: bytes, now: float) -> list[Any]:
    return agent.handle(Received(am.StatusUpdateAck("F1", task_id, uuid), epoch=1), now)


def test_start_registers_and_retries_with_doubling_backoff() -> None:
    agent = core()
    effects = agent.handle(Start(), 0.0)
    [register] = to_master(effects)
    assert isinstance(register, am.RegisterAgent) and register.agent_info.hostname == "a1"
    assert ScheduleTimer(1.0, REGISTER) in effects
    effects = agent.handle(TimerFired(REGISTER), 1.0)
    assert ScheduleTimer(3.0, REGISTER) in effects and len(to_master(effects)) == 1
    effects = agent.handle(Received(am.AgentRegistered("S1", MASTER, 15.0), epoch=1), 2.0)
    assert CancelTimer(REGISTER) in effects and ScheduleTimer(77.0, MASTER_CHECK) in effects
    assert agent.agent_id == "S1" and agent.registered
    assert agent.handle(TimerFired(REGISTER), 3.0) == []  # late timer after registration: nothing


def test_run_task_launches_a_process_and_reports_starting_then_running() -> None:
    agent = core()
    registered(agent)
    effects = run(agent, task())
    launch = next(e for e in effects if isinstance(e, LaunchProcess))
    assert launch.sandbox == "/w/sandboxes/F1/t1"
    assert launch.environment["A"] == "1" and launch.environment["TEPUI_TASK_ID"] == "t1"
    assert statuses(effects) == [("t1", TaskState.STARTING, b"uuid-1")]
    effects = agent.handle(TaskSpawned("F1", "t1", 4242), 1.1)
    # RUNNING waits behind the unacknowledged STARTING: one update in flight per task.
    assert statuses(effects) == []
    effects = ack(agent, "t1", b"uuid-1", 1.2)
    assert statuses(effects) == [("t1", TaskState.RUNNING, b"uuid-2")]


def test_exit_codes_map_to_finished_failed_and_killed() -> None:
    agent = core()
    registered(agent)
    for tid in ("ok", "bad", "sig"):
        run(agent, task(tid))
        agent.handle(TaskSpawned("F1", tid, 1), 1.0)
    agent.handle(TaskExited("F1", "ok", 0), 2.0)
    agent.handle(TaskExited("F1", "bad", 3), 2.0)
    agent.handle(TaskExited("F1", "sig", None, signal=9), 2.0)
    queued = {key[1]: [s.state for s in p.queue] for key, p in agent.pending.items()}
    assert queued == {
        "ok": [TaskState.STARTING, TaskState.RUNNING, TaskState.FINISHED],
        "bad": [TaskState.STARTING, TaskState.RUNNING, TaskState.FAILED],
        "sig": [TaskState.STARTING, TaskState.RUNNING, TaskState.FAILED],
    }
    bad = agent.pending[("F1", "bad")].queue[-1]
    assert bad.exit_code == 3 and bad.message == "Command exited with status 3"
    assert bad.reason == TaskReason.COMMAND_EXECUTOR_FAILED
    sig = agent.pending[("F1", "sig")].queue[-1]
    assert sig.exit_code == 137 and "signal 9" in (sig.message or "")


def test_kill_sends_term_then_kill_after_the_grace_period() -> None:
    agent = core(kill_grace_period=5.0)
    registered(agent)
    run(agent, task())
    agent.handle(TaskSpawned("F1", "t1", 4242), 1.0)
    effects = agent.handle(Received(am.KillTask("F1", "t1", KillPolicy(2.0)), epoch=1), 10.0)
    assert effects == [SignalProcess("F1", "t1", "TERM"), ScheduleTimer(12.0, KillEscalation("F1", "t1"))]
    assert agent.handle(TimerFired(KillEscalation("F1", "t1")), 12.0) == [SignalProcess("F1", "t1", "KILL")]
    effects = agent.handle(TaskExited("F1", "t1", None, signal=9), 12.1)
    assert agent.pending[("F1", "t1")].queue[-1].state == TaskState.KILLED


def test_kill_before_the_process_started_signals_it_once_spawned() -> None:
    agent = core()
    registered(agent)
    run(agent, task())
    assert agent.handle(Received(am.KillTask("F1", "t1"), epoch=1), 1.0) == []
    effects = agent.handle(TaskSpawned("F1", "t1", 7), 1.1)
    assert SignalProcess("F1", "t1", "TERM") in effects


def test_kill_of_unknown_task_reports_lost() -> None:
    agent = core()
    registered(agent)
    effects = agent.handle(Received(am.KillTask("F1", "ghost"), epoch=1), 1.0)
    assert statuses(effects) == [("ghost", TaskState.LOST, b"uuid-1")]


def test_unacknowledged_update_is_retried_with_doubling_backoff_until_acked() -> None:
    agent = core(update_retry_initial=10.0, update_retry_max=600.0)
    registered(agent)
    effects = run(agent, task(), now=0.0)
    assert ScheduleTimer(10.0, RetryUpdate("F1", "t1")) in effects
    delays, now = [], 10.0
    for _ in range(8):
        effects = agent.handle(TimerFired(RetryUpdate("F1", "t1")), now)
        assert statuses(effects) == [("t1", TaskState.STARTING, b"uuid-1")]  # same uuid every time
        timer = next(e for e in effects if isinstance(e, ScheduleTimer))
        delays.append(timer.at - now)
        now = timer.at
    assert delays == [20.0, 40.0, 80.0, 160.0, 320.0, 600.0, 600.0, 600.0]
    effects = ack(agent, "t1", b"uuid-1", now)
    assert CancelTimer(RetryUpdate("F1", "t1")) in effects and agent.pending == {}


def test_stale_and_random_acks_change_nothing() -> None:
    agent = core()
    registered(agent)
    run(agent, task())
    before = list(agent.pending[("F1", "t1")].queue)
    effects = ack(agent, "t1", b"random", 2.0)
    assert [e for e in effects if not isinstance(e, Log)] == []
    assert list(agent.pending[("F1", "t1")].queue) == before
    assert [e for e in ack(agent, "nope", b"uuid-1", 2.0) if not isinstance(e, Log)] == []


def test_duplicate_task_id_is_refused() -> None:
    agent = core()
    registered(agent)
    run(agent, task())
    effects = run(agent, task(), now=2.0)
    assert not any(isinstance(e, LaunchProcess) for e in effects)


def test_unsupported_executor_is_an_honest_task_error() -> None:
    agent = core()
    registered(agent)
    info = TaskInfo(name="e", task_id="e", agent_id="S1", resources=[], executor=ExecutorInfo(executor_id="x"))
    effects = run(agent, info)
    assert statuses(effects) == [("e", TaskState.ERROR, b"uuid-1")]
    assert not any(isinstance(e, LaunchProcess) for e in effects)


def test_launch_failure_is_task_failed_with_the_reason() -> None:
    agent = core()
    registered(agent)
    run(agent, task())
    agent.handle(TaskLaunchFailed("F1", "t1", "could not start: no such file"), 1.0)
    last = agent.pending[("F1", "t1")].queue[-1]
    assert (last.state, last.reason, last.message) == (
        TaskState.FAILED, TaskReason.CONTAINER_LAUNCH_FAILED, "could not start: no such file")


def test_stale_epoch_messages_are_dropped() -> None:
    agent = core()
    registered(agent)
    effects = agent.handle(Received(am.KillTask("F1", "t1"), epoch=0), 1.0)
    assert [type(e) for e in effects] == [Log]


def test_a_superseded_masters_kill_is_dropped_counted_and_changes_nothing() -> None:
    """RELIABILITY scenario 27: a newer epoch, seen on any message, fences the older master off."""
    agent = core()
    registered(agent)  # epoch 1
    run(agent, task())
    agent.handle(TaskSpawned("F1", "t1", 7), 1.0)
    assert [(type(b), b.seq) for b in to_master(agent.handle(Received(am.Ping(1), epoch=2), 2.0))] == [(am.Pong, 1)]
    assert agent.master_epoch == 2, "adopted from a ping, before any re-registration"
    effects = agent.handle(Received(am.KillTask("F1", "t1"), epoch=1), 3.0)
    assert effects == [Log("warning", "stale_master_message", {"epoch": 1, "current": 2, "type": "KillTask",
                                                               "dropped": 1})]
    assert to_master(agent.handle(Received(am.Ping(2), epoch=1), 4.0)) == [], "no answer to its pings either"
    assert agent.stale_epoch_dropped == 2
    record = agent.tasks[("F1", "t1")]
    assert (record.state, record.kill_requested) == (TaskState.RUNNING, False)
    assert agent.last_master_contact == 2.0, "a superseded master's messages are no sign of the master's life"


def test_silent_master_triggers_reregistration_with_running_tasks() -> None:
    agent = core(master_silence_limit=75.0)
    registered(agent)
    run(agent, task())
    agent.handle(TaskSpawned("F1", "t1", 7), 1.0)
    assert to_master(agent.handle(TimerFired(MASTER_CHECK), 70.0)) == []
    effects = agent.handle(TimerFired(MASTER_CHECK), 80.0)
    [rereg] = to_master(effects)
    assert isinstance(rereg, am.ReregisterAgent) and rereg.agent_info.id == "S1"
    assert [(r.task.task_id, r.state) for r in rereg.tasks] == [("t1", TaskState.RUNNING)]
    # Once re-registered, the unacknowledged head is sent again.
    effects = agent.handle(Received(am.AgentReregistered("S1", MASTER, 15.0), epoch=1), 81.0)
    assert statuses(effects) == [("t1", TaskState.STARTING, b"uuid-1")]


def test_the_master_silence_limit_follows_the_ping_interval_each_ping_announces() -> None:
    """A master whose cluster grew pings less often (every 5 s instead of 2): the agent must
    not take the longer gaps for silence, or every agent would re-register for nothing."""
    agent = core()
    agent.handle(Start(), 0.0)
    agent.handle(Received(am.AgentRegistered("S1", MASTER, 2.0), epoch=1), 0.0)
    assert to_master(agent.handle(Received(am.Ping(1, 5.0), epoch=1), 1.0)) == [am.Pong(1, 0, 0)]
    assert to_master(agent.handle(TimerFired(MASTER_CHECK), 20.0)) == []  # 19 s: under 5 x 5 s
    [rereg] = to_master(agent.handle(TimerFired(MASTER_CHECK), 26.5))  # 25.5 s: gone
    assert isinstance(rereg, am.ReregisterAgent)


def test_shutdown_framework_kills_its_tasks_and_drops_their_updates() -> None:
    agent = core()
    registered(agent)
    run(agent, task())
    agent.handle(TaskSpawned("F1", "t1", 7), 1.0)
    effects = agent.handle(Received(am.ShutdownFramework("F1"), epoch=1), 2.0)
    assert SignalProcess("F1", "t1", "TERM") in effects and agent.pending == {}
    effects = agent.handle(TaskExited("F1", "t1", None, signal=15), 2.1)
    assert statuses(effects) == [] and agent.tasks == {}


def test_agent_shutdown_reports_the_real_end_before_unregistering() -> None:
    agent = core(kill_grace_period=5.0)
    registered(agent)
    run(agent, task())
    ack(agent, "t1", b"uuid-1", 1.0)
    agent.handle(TaskSpawned("F1", "t1", 7), 1.0)
    ack(agent, "t1", b"uuid-2", 1.1)
    effects = agent.handle(Shutdown(), 2.0)
    assert SignalProcess("F1", "t1", "TERM") in effects
    assert ScheduleTimer(10.0, StopDeadline()) in effects
    assert to_master(effects) == [] and Exit() not in effects
    effects = agent.handle(TaskExited("F1", "t1", None, signal=15), 2.1)
    assert statuses(effects) == [("t1", TaskState.KILLED, b"uuid-3")]
    assert Exit() not in effects  # the KILLED update is not acknowledged yet
    effects = ack(agent, "t1", b"uuid-3", 2.2)
    assert to_master(effects) == [am.UnregisterAgent("S1")] and Exit() in effects


def test_agent_shutdown_gives_up_waiting_at_its_deadline() -> None:
    agent = core(kill_grace_period=1.0)
    registered(agent)
    run(agent, task())
    agent.handle(TaskSpawned("F1", "t1", 7), 1.0)
    agent.handle(Shutdown(), 2.0)
    effects = agent.handle(TimerFired(StopDeadline()), 6.0)
    assert SignalProcess("F1", "t1", "KILL") in effects
    assert am.UnregisterAgent("S1") in to_master(effects) and Exit() in effects


def test_agent_shutdown_without_tasks_exits_at_once() -> None:
    agent = core()
    registered(agent)
    effects = agent.handle(Shutdown(), 2.0)
    assert am.UnregisterAgent("S1") in to_master(effects) and Exit() in effects


def test_gpus_are_assigned_by_index_and_freed_when_the_task_ends() -> None:
    counter = itertools.count(1)
    agent = AgentCore(AgentConfig(hostname="a1", resources=Resources.parse("cpus:2;mem:1024;gpus:2"), work_dir="/w",
                                  gpu_ids=(0, 1)), lambda: f"uuid-{next(counter)}".encode())
    registered(agent)
    two = TaskInfo(name="g", task_id="g", agent_id="S1", resources=Resources.parse("cpus:1;gpus:2").to_wire(),
                   command=CommandInfo(value="nvidia-smi"))
    [launch] = [e for e in run(agent, two) if isinstance(e, LaunchProcess)]
    assert launch.environment["CUDA_VISIBLE_DEVICES"] == "0,1"
    one = TaskInfo(name="h", task_id="h", agent_id="S1", resources=Resources.parse("cpus:1;gpus:1").to_wire(),
                   command=CommandInfo(value="true"))
    effects = run(agent, one, now=2.0)
    assert not any(isinstance(e, LaunchProcess) for e in effects)
    assert agent.pending[("F1", "h")].queue[-1].state == TaskState.ERROR
    agent.handle(TaskSpawned("F1", "g", 5), 3.0)
    agent.handle(TaskExited("F1", "g", 0), 4.0)
    again = TaskInfo(name="i", task_id="i", agent_id="S1", resources=Resources.parse("cpus:1;gpus:1").to_wire(),
                     command=CommandInfo(value="true"))
    [launch] = [e for e in run(agent, again, now=5.0) if isinstance(e, LaunchProcess)]
    assert launch.environment["CUDA_VISIBLE_DEVICES"] == "0"


def group_task(task_id: str, command: str = "sleep 30") -> TaskInfo:
    return TaskInfo(name=task_id, task_id=task_id, agent_id="S1", resources=Resources.of(cpus=0.1).to_wire(),
                    command=CommandInfo(value=command))


def test_task_group_starts_together_with_a_shared_volume_and_one_failure_kills_the_rest() -> None:
    from tepui.sdk.protocol.values import ExecutorInfo, TaskGroupInfo

    agent = core()
    registered(agent)
    group = am.RunTaskGroup(FRAMEWORK, ExecutorInfo(executor_id="pod", type="DEFAULT"),
                            TaskGroupInfo([group_task("a"), group_task("b"), group_task("c", "exit 2")]))
    effects = agent.handle(Received(group, epoch=1), 1.0)
    launches = [e for e in effects if isinstance(e, LaunchProcess)]
    assert [launch.task_id for launch in launches] == ["a", "b", "c"]
    assert {launch.shared for launch in launches} == {"/w/groups/F1/pod"}
    assert launches[0].environment["TEPUI_SHARED"] == "/w/groups/F1/pod"
    for i, tid in enumerate("abc"):
        agent.handle(TaskSpawned("F1", tid, 10 + i), 1.1)
    effects = agent.handle(TaskExited("F1", "c", 2), 2.0)
    assert SignalProcess("F1", "a", "TERM") in effects and SignalProcess("F1", "b", "TERM") in effects
    agent.handle(TaskExited("F1", "a", None, signal=15), 2.1)
    killed = agent.pending[("F1", "a")].queue[-1]
    assert killed.state == TaskState.KILLED and "task 'c' of its group failed" in (killed.message or "")


def test_an_invalid_member_means_no_task_of_the_group_starts() -> None:
    from tepui.sdk.protocol.values import ExecutorInfo, TaskGroupInfo

    agent = core()
    registered(agent)
    bad = TaskInfo(name="x", task_id="x", agent_id="S1", resources=[], command=CommandInfo(value="true", user="root"))
    group = am.RunTaskGroup(FRAMEWORK, ExecutorInfo(executor_id="pod", type="DEFAULT"),
                            TaskGroupInfo([group_task("a"), bad]))
    effects = agent.handle(Received(group, epoch=1), 1.0)
    assert not any(isinstance(e, LaunchProcess) for e in effects)
    states = {key[1]: p.queue[-1] for key, p in agent.pending.items()}
    assert {tid: s.state for tid, s in states.items()} == {"a": TaskState.ERROR, "x": TaskState.ERROR}
    assert "task 'x'" in (states["a"].message or "") and states["a"].reason == TaskReason.TASK_GROUP_INVALID


EXECUTOR_INFO = ExecutorInfo(executor_id="e1", type="CUSTOM", command=CommandInfo(value="run-executor"))


def executor_agent() -> AgentCore:
    """A registered agent that runs custom executors; its secrets are secret-1, secret-2, ..."""
    uuids, secrets = itertools.count(1), itertools.count(1)
    agent = AgentCore(AgentConfig(hostname="a1", resources=Resources.parse("cpus:2;mem:1024"), work_dir="/w",
                                  executor_endpoint="ipc:///w/executors.sock"), lambda: f"uuid-{next(uuids)}".encode(),
                      lambda: f"secret-{next(secrets)}")
    registered(agent)
    return agent


def with_executor(task_id: str, info: ExecutorInfo = EXECUTOR_INFO) -> TaskInfo:
    return TaskInfo(name=task_id, task_id=task_id, agent_id="S1", resources=Resources.of(cpus=0.1).to_wire(),
                    executor=info, data=b"echo hi")


def test_custom_executor_is_started_once_gets_queued_tasks_and_its_updates_are_acked() -> None:
    from tepui.agent.events import ExecutorReceived, SendToExecutor
    from tepui.sdk.protocol import executor as ex
    from tepui.sdk.protocol.values import ExecutorInfo, TaskStatus

    agent = executor_agent()
    effects = run(agent, with_executor("t1"))
    [launch] = [e for e in effects if isinstance(e, LaunchProcess)]
    assert launch.task_id == "executor/e1" and launch.environment["TEPUI_AGENT_ENDPOINT"] == "ipc:///w/executors.sock"
    assert not any(isinstance(e, LaunchProcess) for e in run(agent, with_executor("t2"), now=1.5))
    effects = agent.handle(ExecutorReceived(b"exec-peer", ex.ExecutorSubscribe("F1", "e1", secret="secret-1")), 2.0)
    sent = [e.body for e in effects if isinstance(e, SendToExecutor)]
    assert isinstance(sent[0], ex.ExecutorSubscribed)
    assert [b.task.task_id for b in sent[1:]] == ["t1", "t2"]
    running = TaskStatus(task_id="t1", state=TaskState.RUNNING, uuid=b"x1")
    effects = agent.handle(ExecutorReceived(b"exec-peer", ex.ExecutorUpdate(running)), 2.5)
    assert SendToExecutor(b"exec-peer", ex.Acknowledged("t1", b"x1")) in effects
    forwarded = agent.pending[("F1", "t1")].queue[-1]
    assert forwarded.uuid == b"x1" and forwarded.executor_id == "e1" and forwarded.agent_id == "S1"
    # The same update again (after a reconnect) is acknowledged but not queued twice.
    agent.handle(ExecutorReceived(b"exec-peer", ex.ExecutorUpdate(running)), 2.6)
    assert [s.uuid for s in agent.pending[("F1", "t1")].queue] == [b"x1"]
    effects = agent.handle(TaskExited("F1", "executor/e1", 1), 3.0)
    assert am.ExecutorTerminated("F1", "e1", 1) in to_master(effects)
    states = {tid: agent.pending[("F1", tid)].queue[-1] for tid in ("t1", "t2")}
    assert {tid: s.state for tid, s in states.items()} == {"t1": TaskState.FAILED, "t2": TaskState.FAILED}
    assert states["t2"].reason == TaskReason.EXECUTOR_TERMINATED and "exited with status 1" in (states["t2"].message or "")


def test_an_executor_that_exits_127_before_subscribing_fails_its_tasks_pointing_at_its_stderr() -> None:
    agent = executor_agent()
    run(agent, with_executor("t1"))
    effects = agent.handle(TaskExited("F1", "executor/e1", 127), 2.0)
    assert am.ExecutorTerminated("F1", "e1", 127) in to_master(effects)
    failed = agent.pending[("F1", "t1")].queue[-1]
    assert (failed.state, failed.reason, failed.message) == (
        TaskState.FAILED, TaskReason.EXECUTOR_TERMINATED,
        "its executor 'e1' exited with status 127 before subscribing; see its stderr, /w/executors/F1/e1/stderr "
        "(status 127: its command, or the interpreter it names, is missing or not runnable by the agent's user)")


def test_an_executor_that_subscribed_and_then_failed_gets_no_stderr_hint() -> None:
    from tepui.agent.events import ExecutorReceived
    from tepui.sdk.protocol import executor as ex

    agent = executor_agent()
    run(agent, with_executor("t1"))
    agent.handle(ExecutorReceived(b"exec", ex.ExecutorSubscribe("F1", "e1", secret="secret-1")), 2.0)
    agent.handle(TaskExited("F1", "executor/e1", 127), 3.0)
    assert agent.pending[("F1", "t1")].queue[-1].message == "its executor 'e1' exited with status 127"


def test_a_restored_connection_to_the_master_makes_a_registered_agent_reregister_at_once() -> None:
    from tepui.agent.events import MasterReconnected

    agent = core()
    assert agent.handle(MasterReconnected(), 0.5) == [], "not registered yet: the registration retry covers it"
    registered(agent)
    run(agent, task())
    effects = agent.handle(MasterReconnected(), 3.0)
    [reregister] = to_master(effects)
    assert isinstance(reregister, am.ReregisterAgent) and [r.task.task_id for r in reregister.tasks] == ["t1"]
    assert not agent.registered


# --- executor secrets (Mesos's executor tokens) ---------------------------------------------------


def test_an_executor_is_started_with_a_fresh_secret_that_the_framework_cannot_replace() -> None:
    from tepui.agent.events import ExecutorReceived
    from tepui.sdk.protocol import executor as ex

    agent = executor_agent()
    info = ExecutorInfo(executor_id="e1", type="CUSTOM",
                        command=CommandInfo(value="run-executor", environment={"TEPUI_EXECUTOR_SECRET": "mine"}))
    [launch] = [e for e in run(agent, with_executor("t1", info)) if isinstance(e, LaunchProcess)]
    assert launch.environment["TEPUI_EXECUTOR_SECRET"] == "secret-1"
    # It exits; the next launch of the same executor id gets a new secret, and the old one is void.
    agent.handle(TaskExited("F1", "executor/e1", 0), 2.0)
    [relaunch] = [e for e in run(agent, with_executor("t2", info), now=3.0) if isinstance(e, LaunchProcess)]
    assert relaunch.environment["TEPUI_EXECUTOR_SECRET"] == "secret-2"
    effects = agent.handle(ExecutorReceived(b"old", ex.ExecutorSubscribe("F1", "e1", secret="secret-1")), 4.0)
    assert isinstance(effects[-1].body, ex.ExecutorError)


def test_a_subscribe_with_the_right_secret_is_accepted() -> None:
    from tepui.agent.events import ExecutorReceived, SendToExecutor
    from tepui.sdk.protocol import executor as ex

    agent = executor_agent()
    run(agent, with_executor("t1"))
    effects = agent.handle(ExecutorReceived(b"exec", ex.ExecutorSubscribe("F1", "e1", secret="secret-1")), 2.0)
    assert [type(e.body) for e in effects if isinstance(e, SendToExecutor)] == [ex.ExecutorSubscribed, ex.LaunchTask]
    assert agent.executor_peers == {b"exec": ("F1", "e1")} and agent.executor_subscribe_refused == 0


def test_a_subscribe_with_a_missing_or_wrong_secret_gets_an_error_is_counted_and_changes_nothing() -> None:
    from tepui.agent.events import ExecutorReceived, SendToExecutor
    from tepui.sdk.protocol import executor as ex

    agent = executor_agent()
    run(agent, with_executor("t1"))
    missing = agent.handle(ExecutorReceived(b"intruder", ex.ExecutorSubscribe("F1", "e1")), 2.0)
    assert missing == [
        Log("warning", "executor_subscribe_refused",
            {"framework_id": "F1", "executor_id": "e1", "reason": "missing_secret", "refused_total": 1}),
        SendToExecutor(b"intruder", ex.ExecutorError(
            "SUBSCRIBE refused: executor 'e1' of framework 'F1' sent no secret. Only the process this agent started "
            "as that executor can subscribe as it: it finds the secret in its environment (TEPUI_EXECUTOR_SECRET), "
            "which tepui.sdk.ExecutorDriver sends")),
    ]
    wrong = agent.handle(ExecutorReceived(b"intruder", ex.ExecutorSubscribe("F1", "e1", secret="secret-x")), 2.1)
    assert wrong[0] == Log("warning", "executor_subscribe_refused",
                           {"framework_id": "F1", "executor_id": "e1", "reason": "wrong_secret", "refused_total": 2})
    assert isinstance(wrong[1].body, ex.ExecutorError) and "not the one this agent gave it" in wrong[1].body.message
    assert "secret-1" not in repr(missing + wrong)
    assert agent.executor_peers == {} and agent.executor_subscribe_refused == 2
    # Still refused after subscribing: the intruder cannot take the real executor's connection over.
    agent.handle(ExecutorReceived(b"exec", ex.ExecutorSubscribe("F1", "e1", secret="secret-1")), 3.0)
    agent.handle(ExecutorReceived(b"intruder", ex.ExecutorSubscribe("F1", "e1", secret="")), 3.1)
    assert agent.executor_peers == {b"exec": ("F1", "e1")}
    effects = agent.handle(ExecutorReceived(b"intruder", ex.ExecutorHeartbeat()), 3.2)
    assert effects == [SendToExecutor(b"intruder", ex.ExecutorError("not subscribed: send SUBSCRIBE first"))]


# --- fetching -----------------------------------------------------------------------------------


def test_uris_are_fetched_as_the_task_user_and_a_refused_one_fails_the_task_naming_it() -> None:
    from tepui.agent.events import FetchFailed, FetchURIs
    from tepui.sdk.protocol.values import CommandURI

    agent = core(task_user="nobody")
    registered(agent)
    uri = CommandURI(value="file:///etc/shadow")
    info = TaskInfo(name="t1", task_id="t1", agent_id="S1", resources=Resources.of(cpus=1).to_wire(),
                    command=CommandInfo(value="cat shadow", uris=[uri]))
    effects = run(agent, info)
    assert FetchURIs("F1", "t1", "/w/sandboxes/F1/t1", [uri], "nobody") in effects
    assert not any(isinstance(e, LaunchProcess) for e in effects), "nothing runs before its URIs are in"
    message = "cannot fetch 'file:///etc/shadow': this agent fetches no local files (...)"
    ack(agent, "t1", statuses(effects)[0][2] or b"", 1.5)  # TASK_STARTING
    effects = agent.handle(FetchFailed("F1", "t1", message), 2.0)
    [update] = [b for b in to_master(effects) if isinstance(b, am.StatusUpdate)]
    assert (update.status.state, update.status.reason, update.status.message) == (
        TaskState.FAILED, TaskReason.FETCH_FAILED, message)
    assert not any(isinstance(e, LaunchProcess) for e in effects)


def test_the_dispatch_tables_cover_every_master_message_timer_key_and_event() -> None:
    """A message, timer or event type missing from core.py's tables would be dropped in silence
    (an unknown timer key is ignored, as before the tables): each one of the vocabulary in
    agent/events.py and of MasterToAgent must have its handler."""
    import typing

    from tepui.agent.events import AgentEvent, AgentTimer

    agent = core()
    assert set(agent._on_message) == set(typing.get_args(am.MasterToAgent))
    assert set(agent._on_timer) == set(typing.get_args(AgentTimer))
    assert set(agent._on_event) == set(typing.get_args(AgentEvent))


def test_a_new_leading_master_makes_the_agent_reregister_at_once_with_its_tasks_and_resend_its_updates() -> None:
    """``--master zk://``: ZooKeeper names another leader; the agent re-registers now (not after
    the silence limit), retries from the first backoff, and its unacknowledged updates go out
    again once the new master answers (they may have been lost with the old connection)."""
    from tepui.agent.events import MasterChanged

    agent = core()
    registered(agent)
    effects = run(agent, task(), now=1.0)
    [(_, _, starting_uuid)] = statuses(effects)
    effects = agent.handle(MasterChanged("m2", 7), 3.0)
    assert effects == [
        Log("info", "master_changed", {"leader": "m2", "epoch": 7, "action": "re-registering"}),
        SendToMaster(effects[1].body),
        ScheduleTimer(4.0, REGISTER),
    ]
    reregister = effects[1].body
    assert isinstance(reregister, am.ReregisterAgent) and [r.task.task_id for r in reregister.tasks] == ["t1"]
    assert not agent.registered
    answer = agent.handle(Received(am.AgentReregistered("S1", MasterInfo(id="m2", address="127.0.0.1:6050",
                                                                          hostname="h", version="0.1.0", epoch=7),
                                                        15.0), epoch=7), 3.1)
    assert agent.registered and agent.master_epoch == 7
    assert [(tid, state) for tid, state, _ in statuses(answer)] == [("t1", TaskState.STARTING)]


def test_a_new_leading_master_before_any_answer_restarts_the_registration_from_the_first_backoff() -> None:
    from tepui.agent.events import MasterChanged

    agent = core()
    agent.handle(Start(), 0.0)
    agent.handle(TimerFired(REGISTER), 1.0)  # backoff now 4 s
    effects = agent.handle(MasterChanged("m2", 2), 1.5)
    assert isinstance(to_master(effects)[0], am.RegisterAgent)
    assert effects[-1] == ScheduleTimer(2.5, REGISTER)


def test_a_draining_agent_does_not_register_with_a_new_leader() -> None:
    from tepui.agent.events import MasterChanged

    agent = core()
    registered(agent)
    agent.handle(Shutdown(), 1.0)
    assert to_master(agent.handle(MasterChanged("m2", 2), 2.0)) == []


def test_an_error_from_a_standby_master_is_logged_with_its_message_and_changes_nothing() -> None:
    """A standby master (HA) answers whatever reaches it with an ERROR naming the leader, as
    the master answers an undecodable message: the agent used to count it as malformed."""
    agent = core()
    agent.handle(Start(), 0.0)
    error = am.Error("master m2 is a standby: the leading master is m1 at 10.0.0.1:5050. Give the master as "
                     "zk://HOSTS/PATH to follow the leader automatically")
    assert agent.handle(Received(error, epoch=0), 1.0) == [Log("warning", "master_error", {
        "message": error.message, "call_type": None, "field": None})]
    assert not agent.registration.registered


def test_a_connection_back_while_re_registering_re_registers_now_not_after_the_backoff() -> None:
    from tepui.agent.events import MasterReconnected

    agent = core()
    registered(agent)
    [first] = to_master(agent.handle(MasterReconnected(), 3.0))  # the master restarted: re-register
    assert isinstance(first, am.ReregisterAgent) and not agent.registered
    # Its answer was lost with a second restart; the link is back again: try now.
    [again] = to_master(agent.handle(MasterReconnected(), 3.5))
    assert isinstance(again, am.ReregisterAgent)
