"""Scenario 32, fuzzed, on the agent (issue 6): bytes and adversarial messages from the master
(its ZeroMQ link) and from executors (its ipc:// socket) through the agent's decoders and its
pure core. Nothing but ProtocolError leaves a decoder, nothing leaves ``handle``; afterwards
every task record is consistent and the agent still answers the master's ping.

Examples here: 2,000 raw byte strings + 3,000 sessions of 1-8 messages (10,000 in CI with the
master's file). The regression tests at the end pin what fuzzing found.
"""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tepui.agent import events as ae
from tepui.sdk.protocol import agent as am
from tepui.sdk.protocol.values import (
    CommandInfo,
    DiskInfo,
    ExecutorInfo,
    FrameworkInfo,
    Persistence,
    Reservation,
    Resource,
    TaskGroupInfo,
    TaskInfo,
    TaskState,
)
from tepui.sdk.resources import InvalidResources, Resources
from tests.fuzz_harness import AgentTarget, Tally, run_session

RAW_EXAMPLES = 2000
SESSION_EXAMPLES = 3000
FAST = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
FW = FrameworkInfo(user="u", name="fw", id="F1")


@settings(max_examples=RAW_EXAMPLES, **FAST)
@given(data=st.binary(max_size=400), channel=st.integers(0, 1))
def test_raw_bytes_never_escape_as_anything_but_protocol_error(data: bytes, channel: int) -> None:
    crash = AgentTarget.shared().feed(data, channel)
    assert crash is None, crash.error


@settings(max_examples=SESSION_EXAMPLES, **FAST)
@given(seed=st.integers(0, 2**64 - 1), messages=st.integers(1, 8))
def test_adversarial_sessions_leave_the_agent_consistent_and_serving(seed: int, messages: int) -> None:
    tally = Tally()
    run_session(AgentTarget, random.Random(seed), messages, tally)
    if tally.crashes:
        crash = tally.crashes[0]
        raise AssertionError(f"{crash.where} crashed on {crash.message}\n{crash.error}")


# --- regressions found by fuzzing ---------------------------------------------------------------


def _statuses(effects: list[object]) -> list[tuple[str, TaskState, str]]:
    return [(e.body.status.task_id, e.body.status.state, e.body.status.message or "") for e in effects
            if isinstance(e, ae.SendToMaster) and isinstance(e.body, am.StatusUpdate)]


def _task(task_id: str, resources: list[Resource]) -> TaskInfo:
    return TaskInfo(name=task_id, task_id=task_id, agent_id="S1", resources=resources,
                    command=CommandInfo(value="true"))


def test_run_task_with_resources_that_do_not_parse_is_task_error() -> None:
    """Found by the fuzzer: ``InvalidResources`` escaped ``handle`` from ``_start``."""
    target = AgentTarget()
    for task_id, resources in (("bad-type", [Resource(name="mem", type="MESOS")]),
                               ("huge", [Resource(name="gpus", scalar=1e308)])):
        effects = target.handle(ae.Received(am.RunTask(FW, _task(task_id, resources)), 1))
        [(tid, state, message)] = _statuses(effects)
        assert (tid, state) == (task_id, TaskState.ERROR) and "resources are invalid" in message


def test_run_task_whose_ids_would_leave_the_work_dir_is_task_error() -> None:
    target = AgentTarget()
    ok = [Resource(name="cpus", scalar=0.1)]
    for framework, task_id in ((FW, ".."), (FW, "a/b"), (FrameworkInfo(user="u", name="fw", id=".."), "t9")):
        effects = target.handle(ae.Received(am.RunTask(framework, _task(task_id, ok)), 1))
        assert [s for _, s, _ in _statuses(effects)] == [TaskState.ERROR]
        assert not any(isinstance(e, (ae.LaunchProcess, ae.FetchURIs)) for e in effects)


def test_run_task_group_with_a_bad_executor_is_refused_as_a_group() -> None:
    target = AgentTarget()
    group = am.RunTaskGroup(FW, ExecutorInfo(executor_id="../x", type="DEFAULT",
                                             resources=[Resource(name="cpus", scalar=-1.0)]),
                            TaskGroupInfo(tasks=[_task("g1", [Resource(name="cpus", scalar=0.1)])]))
    effects = target.handle(ae.Received(group, 1))
    [(_, state, message)] = _statuses(effects)
    assert state == TaskState.ERROR and "cannot name a directory" in message and "resources are invalid" in message


def test_destroy_volumes_that_do_not_parse_or_would_escape_removes_nothing() -> None:
    """Found by the fuzzer: ``InvalidResources`` escaped ``handle`` from ``_on_DestroyVolumes``;
    and a volume id or role of ``..`` named a directory outside ``<work_dir>/volumes``."""
    target = AgentTarget()
    effects = target.handle(ae.Received(am.DestroyVolumes([Resource(name="disk", type="NOPE")]), 1))
    assert not any(isinstance(e, ae.RemoveVolumes) for e in effects)

    def volume(role: str, volume_id: str) -> Resource:
        return Resource(name="disk", scalar=1.0, role=role, reservation=Reservation(type="DYNAMIC", principal="p"),
                        disk=DiskInfo(persistence=Persistence(id=volume_id, principal="p")))

    for role, volume_id in (("eng", ".."), ("..", "sandboxes"), ("eng", "a/b")):
        effects = target.handle(ae.Received(am.DestroyVolumes([volume(role, volume_id)]), 1))
        assert not any(isinstance(e, ae.RemoveVolumes) for e in effects), (role, volume_id)
    effects = target.handle(ae.Received(am.DestroyVolumes([volume("eng", "pg-data")]), 1))
    [removal] = [e for e in effects if isinstance(e, ae.RemoveVolumes)]
    assert removal.paths == ("/w/volumes/eng/pg-data",)


def test_a_scalar_too_large_to_scale_is_invalid_not_an_overflow() -> None:
    """Found by the fuzzer: 1e308 is finite but 1e308 * 1000 is not; ``to_fixed`` raised
    OverflowError instead of InvalidResources."""
    try:
        Resources.from_wire([Resource(name="cpus", scalar=1e308)])
    except InvalidResources as exc:
        assert "finite" in str(exc)
    else:
        raise AssertionError("1e308 cpus was accepted")
