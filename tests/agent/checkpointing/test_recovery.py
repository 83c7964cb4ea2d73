"""Agent checkpointing and recovery: the core on a fake clock, the checkpoint files for real.

Scenario 10 (an update checkpointed before the ack is resent after a restart) end to end
through ``CheckpointStore``: the effects one core emits are written to disk, read back, and
handed to a new core, as the agent process does.
"""

from __future__ import annotations

import itertools
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from tepui.agent.checkpointing.checkpoint import Checkpoint
from tepui.agent.checkpointing.checkpoint_store import CheckpointError, CheckpointStore
from tepui.agent.core import AgentConfig, AgentCore
from tepui.agent.events import (
    ExecutorRegisterTimeout,
    FetchURIs,
    HealthProbe,
    KillEscalation,
    LaunchProcess,
    Received,
    SendToMaster,
    SignalProcess,
    Start,
    TaskExited,
    TaskSpawned,
)
from tepui.agent.checkpointing.recovery import AdoptContainer, AdoptProcess, reconfiguration_problem
from tepui.sdk.effects import ScheduleTimer, TimerFired
from tepui.sdk.protocol import agent as am
from tepui.sdk.protocol.values import (
    CommandInfo,
    CommandURI,
    ContainerInfo,
    DockerInfo,
    FrameworkInfo,
    MasterInfo,
    TaskInfo,
    TaskReason,
    TaskState,
)
from tepui.sdk.resources import Resources

MASTER = MasterInfo(id="m", address="127.0.0.1:5050", hostname="h", version="0.1.0", epoch=1)
FRAMEWORK = FrameworkInfo(user="u", name="fw", id="F1", capabilities=["TASK_KILLING_STATE"])
RESOURCES = Resources.parse("cpus:2;mem:1024")


def core(work_dir: str, boot_id: str = "boot-1", **overrides: Any) -> AgentCore:
    counter = itertools.count(1)
    config = AgentConfig(hostname="a1", resources=RESOURCES, work_dir=work_dir, boot_id=boot_id, checkpoint=True,
                         **overrides)
    return AgentCore(config, lambda: f"uuid-{next(counter)}".encode())


class Disk:
    """Performs the Checkpoint effects of a core on a real CheckpointStore, in order."""

    def __init__(self, work_dir: Path) -> None:
        self.store = CheckpointStore(str(work_dir))

    def apply(self, effects: list[Any]) -> list[Any]:
        for effect in effects:
            if isinstance(effect, Checkpoint):
                self.store.write(effect)
        return effects


def task(task_id: str = "t1", command: str = "sleep 100", **kw: Any) -> TaskInfo:
    return TaskInfo(name=task_id, task_id=task_id, agent_id="S1", resources=Resources.of(cpus=1).to_wire(),
                    command=CommandInfo(value=command), **kw)


def updates(effects: list[Any]) -> list[am.StatusUpdate]:
    return [e.body for e in effects if isinstance(e, SendToMaster) and isinstance(e.body, am.StatusUpdate)]


def started(tmp_path: Path, *tasks: TaskInfo, **overrides: Any) -> tuple[AgentCore, Disk]:
    agent, disk = core(str(tmp_path), **overrides), Disk(tmp_path)
    disk.apply(agent.handle(Start(), 0.0))
    disk.apply(agent.handle(Received(am.AgentRegistered("S1", MASTER, 2.0), epoch=1), 0.0))
    for info in tasks:
        disk.apply(agent.handle(Received(am.RunTask(FRAMEWORK, info), epoch=1), 1.0))
    return agent, disk


def restarted(tmp_path: Path, now: float = 50.0, **overrides: Any) -> tuple[AgentCore, list[Any]]:
    recovered = CheckpointStore(str(tmp_path)).load()
    agent = core(str(tmp_path), **overrides)
    return agent, agent.recover(recovered, now)


def test_a_task_is_checkpointed_before_it_is_launched_and_an_update_before_it_is_sent(tmp_path: Path) -> None:
    agent, disk = started(tmp_path)
    effects = disk.apply(agent.handle(Received(am.RunTask(FRAMEWORK, task()), epoch=1), 1.0))
    kinds = [type(e).__name__ for e in effects]
    # Recorded first; TASK_STARTING is sent before the launch, so its acknowledgement travels
    # while the process starts (RUNNING waits for it: one update in flight per task).
    assert kinds.index("Checkpoint") < kinds.index("SendToMaster") < kinds.index("LaunchProcess")
    [checkpoint] = [e for e in effects if isinstance(e, Checkpoint)]
    saved = checkpoint.tasks[("F1", "t1")]
    assert saved is not None and saved.launched and saved.kind == "process"
    assert [u.state for u in saved.updates] == [TaskState.STARTING]
    assert checkpoint.agent is not None and checkpoint.agent.frameworks["F1"] == FRAMEWORK


def test_10_an_update_checkpointed_before_its_ack_is_resent_with_the_same_uuid_after_a_restart(
        tmp_path: Path) -> None:
    agent, disk = started(tmp_path, task())
    [starting] = agent.pending[("F1", "t1")].queue
    disk.apply(agent.handle(TaskSpawned("F1", "t1", 4242), 1.1))
    # The agent dies here: STARTING was forwarded but never acknowledged; RUNNING waits behind it.
    new, effects = restarted(tmp_path)
    assert AdoptProcess("F1", "t1", None) in effects
    assert [s.state for s in new.pending[("F1", "t1")].queue] == [TaskState.STARTING, TaskState.RUNNING]
    register = new.handle(Start(), 50.0)
    [reregister] = [e.body for e in register if isinstance(e, SendToMaster)]
    assert isinstance(reregister, am.ReregisterAgent) and reregister.agent_info.id == "S1"
    assert [(r.task.task_id, r.state) for r in reregister.tasks] == [("t1", TaskState.RUNNING)]
    resent = new.handle(Received(am.AgentReregistered("S1", MASTER, 2.0), epoch=1), 50.1)
    assert [(u.status.state, u.status.uuid) for u in updates(resent)] == [(TaskState.STARTING, starting.uuid)]
    # Acknowledged now: the next one follows, and the checkpoint forgets the first.
    effects = disk.apply(new.handle(Received(am.StatusUpdateAck("F1", "t1", starting.uuid), epoch=1), 50.2))
    assert [u.status.state for u in updates(effects)] == [TaskState.RUNNING]
    again = CheckpointStore(str(tmp_path)).load()
    assert [u.state for u in again.tasks[0].updates] == [TaskState.RUNNING]


def test_a_task_that_ended_while_the_agent_was_down_gets_its_real_state(tmp_path: Path) -> None:
    agent, disk = started(tmp_path, task())
    disk.apply(agent.handle(TaskSpawned("F1", "t1", 4242), 1.1))
    new, effects = restarted(tmp_path)
    assert AdoptProcess("F1", "t1", None) in effects
    # The shell finds the supervisor gone and its recorded status: exit 7.
    out = new.handle(TaskExited("F1", "t1", 7), 50.0)
    [checkpoint] = [e for e in out if isinstance(e, Checkpoint)]
    saved = checkpoint.tasks[("F1", "t1")]
    assert saved is not None and saved.terminal and saved.exit_code == 7
    assert [s.state for s in new.pending[("F1", "t1")].queue][-1] == TaskState.FAILED
    assert ("F1", "t1") not in new.tasks


def test_a_finished_and_acknowledged_task_leaves_no_checkpoint(tmp_path: Path) -> None:
    agent, disk = started(tmp_path, task())
    disk.apply(agent.handle(TaskSpawned("F1", "t1", 1), 1.1))
    disk.apply(agent.handle(TaskExited("F1", "t1", 0), 2.0))
    while agent.pending:
        uuid = agent.pending[("F1", "t1")].queue[0].uuid
        assert uuid is not None
        disk.apply(agent.handle(Received(am.StatusUpdateAck("F1", "t1", uuid), epoch=1), 3.0))
    assert CheckpointStore(str(tmp_path)).load().tasks == []
    assert not list((tmp_path / "meta" / "tasks").iterdir())


def test_a_kill_under_way_is_finished_after_a_restart(tmp_path: Path) -> None:
    agent, disk = started(tmp_path, task(kill_policy=None))
    disk.apply(agent.handle(TaskSpawned("F1", "t1", 1), 1.1))
    disk.apply(agent.handle(Received(am.KillTask("F1", "t1"), epoch=1), 2.0))
    _new, effects = restarted(tmp_path, now=10.0)
    assert effects.index(AdoptProcess("F1", "t1", None)) < effects.index(SignalProcess("F1", "t1", "TERM"))
    assert ScheduleTimer(15.0, KillEscalation("F1", "t1")) in effects


def test_a_task_still_fetching_when_the_agent_died_fails_with_the_reason(tmp_path: Path) -> None:
    info = TaskInfo(name="f", task_id="f", agent_id="S1", resources=Resources.of(cpus=1).to_wire(),
                    command=CommandInfo(value="true", uris=[CommandURI(value="http://127.0.0.1:1/x")]))
    agent, disk = started(tmp_path)
    effects = disk.apply(agent.handle(Received(am.RunTask(FRAMEWORK, info), epoch=1), 1.0))
    assert any(isinstance(e, FetchURIs) for e in effects) and not any(isinstance(e, LaunchProcess) for e in effects)
    new, effects = restarted(tmp_path)
    assert not any(isinstance(e, (AdoptProcess, AdoptContainer)) for e in effects)
    last = new.pending[("F1", "f")].queue[-1]
    assert last.state == TaskState.FAILED and last.reason == TaskReason.AGENT_RESTARTED


def test_containers_are_adopted_and_health_checks_resume(tmp_path: Path) -> None:
    from tepui.sdk.protocol.values import HealthCheck

    docker = TaskInfo(name="d", task_id="d", agent_id="S1", resources=Resources.of(cpus=1).to_wire(),
                      command=CommandInfo(value="sleep 9"),
                      container=ContainerInfo(type="DOCKER", docker=DockerInfo(image="busybox")))
    checked = task("h", health_check=HealthCheck(type="COMMAND", command=CommandInfo(value="true"),
                                                 delay_seconds=5.0))
    agent, disk = started(tmp_path, docker, checked, docker_enabled=True)
    disk.apply(agent.handle(TaskSpawned("F1", "d", 0, container_id="c1"), 1.1))
    disk.apply(agent.handle(TaskSpawned("F1", "h", 7), 1.1))
    _new, effects = restarted(tmp_path, now=20.0, docker_enabled=True)
    assert AdoptContainer("F1", "d", str(tmp_path) + "/sandboxes/F1/d") in effects
    assert ScheduleTimer(25.0, HealthProbe("F1", "h")) in effects


def test_a_custom_executor_is_shut_down_if_it_does_not_reconnect_in_time(tmp_path: Path) -> None:
    from tepui.sdk.protocol.values import ExecutorInfo

    executor = ExecutorInfo(executor_id="e1", type="CUSTOM", command=CommandInfo(value="run-executor"))
    agent, disk = started(tmp_path, task("x1", executor=executor), executor_endpoint="ipc:///tmp/x.sock")
    new, effects = restarted(tmp_path, now=30.0, executor_endpoint="ipc:///tmp/x.sock")
    assert AdoptProcess("F1", "executor/e1") in effects
    assert ScheduleTimer(40.0, ExecutorRegisterTimeout("F1", "e1")) in effects
    assert ("F1", "x1") in new.tasks, "its tasks wait for it"
    out = new.handle(TimerFired(ExecutorRegisterTimeout("F1", "e1")), 40.0)
    assert SignalProcess("F1", "executor/e1", "TERM") in out


def test_a_recovered_agent_accepts_its_executor_with_the_checkpointed_secret_and_no_other(tmp_path: Path) -> None:
    from tepui.agent.events import ExecutorReceived, SendToExecutor
    from tepui.sdk.protocol import executor as ex
    from tepui.sdk.protocol.values import ExecutorInfo

    executor = ExecutorInfo(executor_id="e1", type="CUSTOM", command=CommandInfo(value="run-executor"))
    agent, disk = core(str(tmp_path), executor_endpoint="ipc:///tmp/x.sock"), Disk(tmp_path)
    disk.apply(agent.handle(Start(), 0.0))
    disk.apply(agent.handle(Received(am.AgentRegistered("S1", MASTER, 2.0), epoch=1), 0.0))
    effects = disk.apply(agent.handle(Received(am.RunTask(FRAMEWORK, task("x1", executor=executor)), epoch=1), 1.0))
    [launch] = [e for e in effects if isinstance(e, LaunchProcess)]
    secret = launch.environment["TEPUI_EXECUTOR_SECRET"]
    assert len(secret) >= 32, "the agent's default: secrets.token_urlsafe(32)"
    path = tmp_path / "meta" / "executors.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert secret in path.read_text()
    new, _ = restarted(tmp_path, now=30.0, executor_endpoint="ipc:///tmp/x.sock")
    refused = new.handle(ExecutorReceived(b"p1", ex.ExecutorSubscribe("F1", "e1", secret="guess")), 31.0)
    assert [type(e.body) for e in refused if isinstance(e, SendToExecutor)] == [ex.ExecutorError]
    accepted = new.handle(ExecutorReceived(b"p2", ex.ExecutorSubscribe("F1", "e1", secret=secret)), 31.5)
    assert [type(e.body) for e in accepted if isinstance(e, SendToExecutor)] == [ex.ExecutorSubscribed]
    assert new.handle(TimerFired(ExecutorRegisterTimeout("F1", "e1")), 40.0) == [], "it re-subscribed in time"


def test_an_executor_launched_before_secrets_existed_is_still_taken_back(tmp_path: Path) -> None:
    """An agent upgraded under a running executor: its checkpoint has no secret, and the executor
    none to send. Refusing it would kill its tasks at the upgrade; it is accepted, with a warning."""
    from tepui.agent.events import ExecutorReceived, SendToExecutor
    from tepui.sdk.effects import Log
    from tepui.sdk.protocol import executor as ex
    from tepui.sdk.protocol.values import ExecutorInfo

    executor = ExecutorInfo(executor_id="e1", type="CUSTOM", command=CommandInfo(value="run-executor"))
    started(tmp_path, task("x1", executor=executor), executor_endpoint="ipc:///tmp/x.sock")
    path = tmp_path / "meta" / "executors.json"
    saved = json.loads(path.read_text())
    del saved["executors"][0]["secret"]
    path.write_text(json.dumps(saved))
    new, _ = restarted(tmp_path, now=30.0, executor_endpoint="ipc:///tmp/x.sock")
    effects = new.handle(ExecutorReceived(b"p", ex.ExecutorSubscribe("F1", "e1")), 31.0)
    assert [type(e.body) for e in effects if isinstance(e, SendToExecutor)] == [ex.ExecutorSubscribed]
    assert any(isinstance(e, Log) and e.event == "executor_subscribed_without_secret" for e in effects)


# --- the files ------------------------------------------------------------------------------------


def test_14_a_truncated_record_is_refused_in_strict_mode_and_discarded_otherwise(tmp_path: Path) -> None:
    agent, disk = started(tmp_path, task("a"), task("b"))
    store = CheckpointStore(str(tmp_path))
    path = Path(store.run_dir("F1", "b")) / "task.json"
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(CheckpointError) as refused:
        store.load(strict=True)
    assert str(path) in str(refused.value) and "--no-strict" in str(refused.value)
    assert "tepui up --agent-arg=--no-strict" in str(refused.value)  # what its agents are started with
    lenient = store.load(strict=False)
    assert [t.info.task_id for t in lenient.tasks] == ["a"]
    assert len(lenient.discarded) == 1 and str(path) in lenient.discarded[0]


def test_14_a_complete_write_whose_rename_was_interrupted_is_put_in_place(tmp_path: Path) -> None:
    """The old record is unlinked before the temp file is renamed (no rename over a file: ext4
    flushes on that); a crash between the two leaves only the complete temp file."""
    agent, disk = started(tmp_path, task("a"), task("b"))
    store = CheckpointStore(str(tmp_path))
    complete = Path(store.run_dir("F1", "a")) / "task.json"
    complete.rename(complete.parent / "task.json.tmp")
    partial = Path(store.run_dir("F1", "b")) / "task.json"  # a first write, cut short: never acted on
    (partial.parent / "task.json.tmp").write_bytes(partial.read_bytes()[:40])
    partial.unlink()
    recovered = store.load(strict=True)
    assert [t.info.task_id for t in recovered.tasks] == ["a"]
    assert complete.exists() and not (complete.parent / "task.json.tmp").exists()
    assert not (partial.parent / "task.json.tmp").exists()


def test_14_a_stray_temp_file_is_removed_and_the_previous_record_stands(tmp_path: Path) -> None:
    agent, disk = started(tmp_path, task("a"))
    store = CheckpointStore(str(tmp_path))
    record = Path(store.run_dir("F1", "a")) / "task.json"
    (record.parent / "task.json.tmp").write_bytes(b'{"framework_id": "F1", "inf')
    recovered = store.load(strict=True)
    assert [t.info.task_id for t in recovered.tasks] == ["a"]
    assert not (record.parent / "task.json.tmp").exists()


def test_a_record_in_the_wrong_directory_or_of_another_format_is_damage(tmp_path: Path) -> None:
    agent, disk = started(tmp_path, task("a"))
    store = CheckpointStore(str(tmp_path))
    source = Path(store.run_dir("F1", "a"))
    saved = json.loads((source / "task.json").read_text())
    saved["format"] = 99
    (source / "task.json").write_text(json.dumps(saved))
    with pytest.raises(CheckpointError, match="format 99"):
        store.load()
    os.rename(source, source.parent / "elsewhere")
    saved["format"] = 1
    (source.parent / "elsewhere" / "task.json").write_text(json.dumps(saved))
    with pytest.raises(CheckpointError, match="does not belong"):
        store.load()


def test_no_checkpoint_means_a_new_agent(tmp_path: Path) -> None:
    recovered = CheckpointStore(str(tmp_path)).load()
    assert recovered.agent is None and recovered.tasks == []


def test_archive_moves_the_checkpoint_aside(tmp_path: Path) -> None:
    started(tmp_path, task("a"))
    store = CheckpointStore(str(tmp_path))
    moved = store.archive("before-reboot")
    assert moved == str(tmp_path / "meta.before-reboot.1") and os.path.isdir(moved)
    assert store.load().agent is None


# --- scenario 16: the reconfiguration policy ----------------------------------------------------


def saved_agent(tmp_path: Path) -> Any:
    started(tmp_path)
    agent = CheckpointStore(str(tmp_path)).load().agent
    assert agent is not None
    return agent


def test_16_equal_policy_refuses_fewer_resources_or_changed_attributes(tmp_path: Path) -> None:
    saved = saved_agent(tmp_path)
    assert reconfiguration_problem(saved, "a1", RESOURCES, {}, "equal", "/w/meta") is None
    fewer = reconfiguration_problem(saved, "a1", Resources.parse("cpus:1;mem:1024"), {}, "equal", "/w/meta")
    assert fewer is not None and "resources changed from" in fewer and "--reconfiguration-policy additive" in fewer
    assert "move /w/meta away" in fewer
    attrs = reconfiguration_problem(saved, "a1", RESOURCES, {"rack": "r2"}, "equal", "/w/meta")
    assert attrs is not None and "attributes changed from (none) to rack:r2" in attrs
    renamed = reconfiguration_problem(saved, "a2", RESOURCES, {}, "equal", "/w/meta")
    assert renamed is not None and "hostname changed" in renamed


def test_16_additive_policy_lets_resources_and_attributes_grow_but_not_shrink(tmp_path: Path) -> None:
    saved = saved_agent(tmp_path)
    more = Resources.parse("cpus:4;mem:2048")
    assert reconfiguration_problem(saved, "a1", more, {"rack": "r1"}, "additive", "/w/meta") is None
    less = reconfiguration_problem(saved, "a1", Resources.parse("cpus:1;mem:2048"), {}, "additive", "/w/meta")
    assert less is not None and "shrank" in less and "missing cpus:1" in less


def test_the_boot_that_wrote_the_checkpoint_is_recorded_once_and_read_before_anything_else(tmp_path: Path) -> None:
    started(tmp_path, task("a"))
    store = CheckpointStore(str(tmp_path))
    assert store.written_in_boot() == "boot-1"
    assert store.previous_agent_id() == "S1"
    (tmp_path / "meta" / "agent.json").write_bytes(b"{")  # what a crash may leave
    assert store.written_in_boot() == "boot-1" and store.previous_agent_id() is None
