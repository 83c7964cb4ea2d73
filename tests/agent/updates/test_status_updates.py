"""The StatusUpdateQueue on its own (the agent's and the simulator's), with exact effects:
one update in flight per task, doubling retries, stale acks change nothing, the next update
after the ack, and effects named by the owner's factories."""

from __future__ import annotations

import functools
import itertools
from typing import Any

from tepui.agent.events import RetryUpdate, SendToMaster
from tepui.agent.updates.status_updates import Ack, StatusUpdateQueue
from tepui.sdk.effects import CancelTimer, ScheduleTimer
from tepui.sdk.protocol import agent as am
from tepui.sdk.protocol.values import TaskState, TaskStatus
from tepui.sim import events as sim


def queue() -> StatusUpdateQueue[SendToMaster]:
    counter = itertools.count(1)
    return StatusUpdateQueue(10.0, 60.0, lambda: f"u{next(counter)}".encode(), SendToMaster, RetryUpdate)


def status(state: TaskState, task_id: str = "t1") -> TaskStatus:
    return TaskStatus(task_id=task_id, state=state)


def test_one_update_in_flight_the_next_after_its_ack() -> None:
    q = queue()
    out: list[Any] = []
    q.enqueue("F", status(TaskState.RUNNING), 0.0, True, out)
    q.enqueue("F", status(TaskState.FINISHED), 1.0, True, out)
    running = q[("F", "t1")].queue[0]
    assert running.uuid == b"u1" and out == [SendToMaster(am.StatusUpdate("F", running)),
                                             ScheduleTimer(10.0, RetryUpdate("F", "t1"))]
    out = []
    assert q.acknowledge("F", "t1", b"u1", 5.0, True, out) is Ack.NEXT
    finished = q[("F", "t1")].queue[0]
    assert finished.uuid == b"u2" and out == [SendToMaster(am.StatusUpdate("F", finished)),
                                              ScheduleTimer(15.0, RetryUpdate("F", "t1"))]
    out = []
    assert q.acknowledge("F", "t1", b"u2", 6.0, True, out) is Ack.DRAINED
    assert out == [CancelTimer(RetryUpdate("F", "t1"))] and q == {} and len(q) == 0


def test_retries_double_up_to_the_limit_and_stale_acks_change_nothing() -> None:
    q = queue()
    out: list[Any] = []
    q.enqueue("F", status(TaskState.RUNNING), 0.0, True, out)
    timers = []
    for now in (10.0, 30.0, 70.0, 130.0):
        out = []
        assert q.retry(("F", "t1"), now, True, out)
        timers.append(out[-1])
    assert timers == [ScheduleTimer(30.0, RetryUpdate("F", "t1")), ScheduleTimer(70.0, RetryUpdate("F", "t1")),
                      ScheduleTimer(130.0, RetryUpdate("F", "t1")), ScheduleTimer(190.0, RetryUpdate("F", "t1"))]
    out = []
    assert q.acknowledge("F", "t1", b"nope", 131.0, True, out) is Ack.STALE
    assert q.acknowledge("F", "other", b"u1", 131.0, True, out) is Ack.STALE
    assert out == [] and q.head(("F", "t1")) is not None and q.holds(("F", "t1"), b"u1")


def test_while_disconnected_updates_wait_and_registration_resends_every_head() -> None:
    q = queue()
    out: list[Any] = []
    q.enqueue("F", status(TaskState.RUNNING, "a"), 0.0, False, out)
    q.enqueue("G", status(TaskState.RUNNING, "b"), 0.0, False, out)
    assert out == [ScheduleTimer(10.0, RetryUpdate("F", "a")), ScheduleTimer(10.0, RetryUpdate("G", "b"))]
    out = []
    q.resend_all(3.0, True, out)
    assert [type(e) for e in out] == [SendToMaster, ScheduleTimer, SendToMaster, ScheduleTimer]
    assert out[1] == ScheduleTimer(13.0, RetryUpdate("F", "a"))
    out = []
    assert q.drop_framework("F", out) == [("F", "a")] and out == [CancelTimer(RetryUpdate("F", "a"))]
    out = []
    q.drop_all(out)
    assert out == [CancelTimer(RetryUpdate("G", "b"))] and not q


def test_the_simulator_names_the_effects_with_its_agent_index() -> None:
    counter = itertools.count(1)
    q: StatusUpdateQueue[sim.SendToMaster] = StatusUpdateQueue(
        10.0, 600.0, lambda: f"u{next(counter)}".encode(), functools.partial(sim.SendToMaster, 7),
        functools.partial(sim.RetryUpdate, 7))
    out: list[Any] = []
    q.enqueue("F", status(TaskState.RUNNING), 1.0, True, out)
    assert out == [sim.SendToMaster(7, am.StatusUpdate("F", q[("F", "t1")].queue[0])),
                   ScheduleTimer(11.0, sim.RetryUpdate(7, "F", "t1"))]


def test_restored_updates_wait_for_registration() -> None:
    q = queue()
    q.restore(("F", "t1"), [status(TaskState.RUNNING), status(TaskState.FINISHED)])
    out: list[Any] = []
    q.resend_all(0.0, True, out)
    assert out == [SendToMaster(am.StatusUpdate("F", status(TaskState.RUNNING))),
                   ScheduleTimer(10.0, RetryUpdate("F", "t1"))]
