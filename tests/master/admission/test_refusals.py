"""Every refused call gets an ERROR naming the call (issue 15 bugs 6-8): exact effects on a fake
clock, plus the shell's answer to a call it could not decode."""

from __future__ import annotations

import types
from typing import Any

import msgpack
import msgspec

from tepui.master.events import OfferTimeout
from tepui.master.offering.accept_salvage import salvage
from tepui.master.core import ALLOCATE_NOW, MasterCore
from tepui.master.events import Received, Send
from tepui.master.admission.refusals import correlate
from tepui.master.shell import MasterShell
from tepui.sdk.codec import Codec
from tepui.sdk.protocol import scheduler as sm
from tepui.sdk.protocol.envelope import MasterInbound
from tepui.sdk.effects import CancelTimer, ScheduleTimer, TimerFired
from tepui.sdk.protocol import agent as am
from tepui.sdk.protocol.values import CommandInfo, ExecutorInfo, Filters, TaskReason, TaskSource, TaskState, TaskStatus
from tests.master.test_core import (
    AGENT, AGENT_RES, FW, TASK_RES, launched, make_core, offer_cycle, register_agent, sends, subscribe, task,
)
from tests.master.failures.test_task_audit import unreachable_with_t1


def errors(effects: list[Any], peer: bytes = FW) -> list[sm.Error]:
    return [body for body in sends(effects, peer) if isinstance(body, sm.Error)]


# --- correlation (bug 7) ----------------------------------------------------------------------


def test_an_error_echoes_the_call_id_and_type_of_the_call_it_refuses() -> None:
    core = make_core()
    effects = core.handle(Received(FW, sm.Revive("nobody"), call_id="r-1"), 0.0)
    assert effects == [Send(FW, sm.Error("framework 'nobody' is not subscribed; send SUBSCRIBE first",
                                         call_id="r-1", call_type="REVIVE", field="$.body.framework_id"))]


def test_an_error_without_a_call_id_still_names_the_call_type() -> None:
    core = make_core()
    assert errors(core.handle(Received(FW, sm.Explain("nobody")), 0.0))[0].call_type == "EXPLAIN"


def test_the_stamp_keeps_a_refusals_field_and_leaves_errors_to_other_peers_alone() -> None:
    out = [Send(FW, sm.Error("bad", field="$.body.demand")), Send(b"other", sm.Error("other"))]
    correlate(Received(FW, sm.DeclareDemand("f", []), call_id="d"), out)
    assert out == [Send(FW, sm.Error("bad", call_id="d", call_type="DECLARE_DEMAND", field="$.body.demand")),
                   Send(b"other", sm.Error("other"))]


# --- calls that reference nothing (bug 6) ------------------------------------------------------


def offered(**config: Any) -> tuple[MasterCore, list[str]]:
    core = make_core(**config)
    register_agent(core)
    register_agent(core, peer=b"agent-2", hostname="a2")
    subscribe(core)
    return core, [offer.id for offer in offer_cycle(core, 1.0)[0].offers]


def test_a_decline_of_an_unknown_offer_is_answered_and_the_known_ones_are_declined() -> None:
    core, [first, second] = offered()
    effects = core.handle(Received(FW, sm.Decline("m-F0001", [first, "m-O0099"], Filters(60)), call_id="d"), 1.0)
    assert errors(effects) == [sm.Error(
        "DECLINE: offer 'm-O0099' is not valid: rescinded or timed out (a normal race with RESCIND: nothing to do), "
        "used or declined already, or never made to this framework; the others were declined",
        call_id="d", call_type="DECLINE", field="$.body.offer_ids[1]")]
    assert list(core.offers) == [second]


def test_a_decline_that_crossed_a_rescind_says_it_is_the_usual_race() -> None:
    core, offers = offered(offer_timeout=10.0)
    for offer_id in offers:
        core.handle(TimerFired(OfferTimeout(offer_id)), 11.0)  # rescinded: the framework hears RESCIND
    [error] = errors(core.handle(Received(FW, sm.Decline("m-F0001", offers)), 11.0))
    assert error.message.startswith(f"DECLINE: offers {offers[0]!r}, {offers[1]!r} are not valid: rescinded or "
                                    "timed out (a normal race with RESCIND: nothing to do)")
    assert error.field is None  # two are at fault, not one


def test_a_decline_naming_no_offer_is_answered() -> None:
    core, _ = offered()
    assert errors(core.handle(Received(FW, sm.Decline("m-F0001", [])), 1.0)) == [
        sm.Error("DECLINE names no offer; nothing was declined", call_type="DECLINE", field="$.body.offer_ids")]


def test_a_revive_or_suppress_of_a_role_the_framework_lacks_is_answered_and_its_own_roles_still_act() -> None:
    core, _ = offered()
    effects = core.handle(Received(FW, sm.Suppress("m-F0001", ["*", "ads"])), 1.0)
    assert errors(effects) == [sm.Error("SUPPRESS: not a role of framework m-F0001 (it has *): 'ads'; ignored. Add "
                                        "a role with UPDATE_FRAMEWORK first", call_type="SUPPRESS",
                                        field="$.body.roles[1]")]
    assert core.allocator.frameworks["m-F0001"].suppressed == {"*"}
    assert errors(core.handle(Received(FW, sm.Revive("m-F0001", ["*"])), 1.0)) == []


def acknowledge(agent_id: str, uuid: bytes = b"u", task_id: str = "t1", core: MasterCore | None = None) -> list[Any]:
    """An ACKNOWLEDGE from the framework of a launched t1 (on m-S0001), unless ``core`` is given."""
    if core is None:
        core = make_core()
        launched(core)
    return core.handle(Received(FW, sm.Acknowledge("m-F0001", agent_id, task_id, uuid)), 12.0)


def test_an_acknowledgement_for_an_agent_that_never_existed_or_is_gone_is_answered() -> None:
    assert acknowledge("m-S0042") == [Send(FW, sm.Error(
        "ACKNOWLEDGE: agent 'm-S0042' is unknown to the master; it holds no update to acknowledge",
        call_type="ACKNOWLEDGE", field="$.body.agent_id"))]
    core = make_core()
    core.gone["m-S0042"] = 1.0
    subscribe(core)
    [error] = errors(acknowledge("m-S0042", core=core))
    assert "agent 'm-S0042' is gone" in error.message


def test_an_acknowledgement_with_an_empty_uuid_is_answered_and_not_passed_on() -> None:
    assert acknowledge("m-S0001", uuid=b"") == [Send(FW, sm.Error(
        "ACKNOWLEDGE names no status update: its uuid is empty; copy the update's uuid", call_type="ACKNOWLEDGE",
        field="$.body.uuid"))]


def running_update(core: MasterCore, uuid: bytes, at: float = 11.0) -> TaskStatus:
    """t1's agent reports it RUNNING with ``uuid``; the master forwards it to the framework."""
    status = TaskStatus(task_id="t1", state=TaskState.RUNNING, source=TaskSource.AGENT, agent_id="m-S0001",
                        uuid=uuid, timestamp=at)
    assert core.handle(Received(AGENT, am.StatusUpdate("m-F0001", status)), at) == [Send(FW, sm.Update(status))]
    return status


def refused_ack(task_id: str, uuid: bytes) -> Send:
    return Send(FW, sm.Error(
        f"ACKNOWLEDGE of no pending update: task {task_id!r} on agent m-S0001 has no update with uuid {uuid.hex()} "
        "waiting for an acknowledgement (never sent, or an earlier update of the task); nothing to do — after a "
        "master failover the agent sends its update again: acknowledge that copy", call_type="ACKNOWLEDGE",
        field="$.body.uuid"))


def test_an_acknowledgement_of_the_forwarded_update_is_passed_on_and_a_repeat_is_idempotent() -> None:
    """A framework acknowledges each copy of an update the agent resent: not an error."""
    core = make_core()
    launched(core)
    running_update(core, b"u1")
    passed_on = [Send(AGENT, am.StatusUpdateAck("m-F0001", "t1", b"u1"))]
    assert acknowledge("m-S0001", b"u1", core=core) == passed_on
    assert acknowledge("m-S0001", b"u1", core=core) == passed_on
    running_update(core, b"u2", at=12.0)  # the next update: u1 is no longer one to acknowledge
    assert acknowledge("m-S0001", b"u1", core=core) == [refused_ack("t1", b"u1")]
    assert core.counters["acknowledgements_refused"] == 1


def test_an_acknowledgement_of_an_update_that_does_not_exist_is_refused_and_not_passed_on() -> None:
    """Fuzz-found (issue 15 bug 6): a made-up uuid, or a task that does not exist, used to be
    passed on to the agent and dropped there in silence."""
    core = make_core()
    launched(core)
    running_update(core, b"u1")
    assert acknowledge("m-S0001", b"made-up", core=core) == [refused_ack("t1", b"made-up")]
    assert acknowledge("m-S0001", b"u1", "not-a-task", core=core) == [refused_ack("not-a-task", b"u1")]
    # The real update still waits for its acknowledgement.
    assert acknowledge("m-S0001", b"u1", core=core) == [Send(AGENT, am.StatusUpdateAck("m-F0001", "t1", b"u1"))]


def test_a_refused_acknowledgement_after_a_failover_heals_when_the_agent_sends_its_update_again() -> None:
    """A new master has not seen the update its predecessor forwarded, so the framework's late
    ack is refused; the agent sends the unacknowledged update again (same uuid), and the ack
    of that copy is passed on: a refusal costs one retry, never an update sent forever."""
    core = make_core()
    launched(core)
    assert acknowledge("m-S0001", b"old", core=core) == [refused_ack("t1", b"old")]
    running_update(core, b"old", at=20.0)
    assert acknowledge("m-S0001", b"old", core=core) == [Send(AGENT, am.StatusUpdateAck("m-F0001", "t1", b"old"))]


def test_pending_acknowledgements_are_bounded_and_forgotten_with_their_agent_or_framework() -> None:
    from tepui.master.tasks.pending_acks import PendingAcks
    pending = PendingAcks(limit=2)
    for n in range(3):
        pending.forwarded("a1", ("f1", f"t{n}"), b"u")
    assert len(pending) == 2 and not pending.acknowledged("a1", ("f1", "t0"), b"u")  # the oldest went
    pending.forwarded("a2", ("f2", "t9"), b"u")
    pending.forget_agent("a1")
    assert len(pending) == 1
    pending.forget_framework("f2")
    assert len(pending) == 0


def test_an_acknowledgement_for_an_unreachable_agent_waits_for_its_return_without_an_error() -> None:
    core = unreachable_with_t1()
    assert acknowledge("m-S0001", b"u1", core=core) == []
    assert core.counters["acknowledgements_deferred"] == 1


def with_executor_task(core: MasterCore) -> None:
    """t1 on m-S0001 under the custom executor "ex"."""
    register_agent(core)
    subscribe(core)
    offer = offer_cycle(core, 1.0)[0].offers[0]
    t1 = msgspec.structs.replace(task("t1"), command=None,
                                 executor=ExecutorInfo(executor_id="ex", command=CommandInfo(value="./ex")))
    core.handle(Received(FW, sm.Accept("m-F0001", [offer.id], [sm.Launch([t1])])), 1.0)


def test_a_message_or_shutdown_for_an_executor_the_master_never_saw_is_answered() -> None:
    core = make_core()
    with_executor_task(core)
    effects = core.handle(Received(FW, sm.Message("m-F0001", "m-S0001", "ex", b"hi")), 2.0)
    assert effects == [Send(AGENT, am.FrameworkToExecutor("m-F0001", "ex", b"hi"))]
    effects = core.handle(Received(FW, sm.Message("m-F0001", "m-S0001", "nope", b"hi"), call_id="m"), 2.0)
    assert effects == [Send(FW, sm.Error(
        "MESSAGE not delivered: no task of framework m-F0001 on agent m-S0001 runs or ran under executor 'nope' "
        "(only custom executors, named in TaskInfo.executor, can be reached)", call_id="m", call_type="MESSAGE",
        field="$.body.executor_id"))]
    [error] = errors(core.handle(Received(FW, sm.Shutdown("m-F0001", "ex", "m-S0007")), 2.0))
    assert (error.message, error.call_type, error.field) == (
        "SHUTDOWN not delivered: agent 'm-S0007' is unknown to the master", "SHUTDOWN", "$.body.agent_id")


def test_an_executor_whose_tasks_ended_still_takes_messages() -> None:
    core = make_core()
    with_executor_task(core)
    finished = TaskStatus(task_id="t1", state=TaskState.FINISHED, agent_id="m-S0001", uuid=b"u1")
    core.handle(Received(AGENT, am.StatusUpdate("m-F0001", finished)), 2.0)
    assert core.frameworks["m-F0001"].tasks == {}
    effects = core.handle(Received(FW, sm.Shutdown("m-F0001", "ex", "m-S0001")), 3.0)
    assert effects == [Send(AGENT, am.ShutdownExecutor("m-F0001", "ex"))]


# --- the shell's answer to an undecodable call (bug 7) ----------------------------------------


class _ShellParts(types.SimpleNamespace):
    """The parts of :class:`MasterShell` that ``on_message`` uses, without sockets or a reactor."""

    def _credential(self, identity: str | None) -> None:
        return None

    def _send(self, peer: bytes, body: Any) -> None:
        self.sent.append((peer, body))

    def _perform(self, effects: list[Any]) -> None:
        self.performed.extend(effects)


def shell_parts(core: MasterCore, now: float = 0.0) -> Any:
    """As MasterShell builds them: its codec salvages what it can of an ACCEPT."""
    return _ShellParts(core=core, codec=Codec(MasterInbound, salvage=salvage), malformed=0, sent=[], performed=[],
                       reactor=types.SimpleNamespace(seconds=lambda: now))


def test_an_undecodable_call_is_answered_with_its_call_id_type_and_field() -> None:
    parts = shell_parts(make_core())
    call = {"v": 1, "id": 3, "call_id": "decline-7",
            "body": {"type": "DECLINE", "framework_id": "f", "offer_ids": ["o"], "filters": {"refuse_seconds": "x"}}}
    MasterShell.on_message(parts, FW, msgpack.packb(call))
    [(peer, error)] = parts.sent
    assert peer == FW and parts.malformed == 1
    assert (error.call_id, error.call_type, error.field) == ("decline-7", "DECLINE", "$.body.filters.refuse_seconds")
    assert error.message.startswith("invalid message: Expected `float`")


def test_a_decoded_call_reaches_the_core_with_its_call_id() -> None:
    parts = shell_parts(make_core())
    call = {"v": 1, "id": 3, "call_id": "k-1", "body": {"type": "KILL", "framework_id": "nobody", "task_id": "t"}}
    MasterShell.on_message(parts, FW, msgpack.packb(call))
    assert parts.sent == []
    assert parts.performed == [Send(FW, sm.Error("framework 'nobody' is not subscribed; send SUBSCRIBE first",
                                                 call_id="k-1", call_type="KILL", field="$.body.framework_id"))]


# --- an ACCEPT with one invalid task (bug 8) ------------------------------------------------------


def accept_bytes(offer_id: str, task_infos: list[Any], **body: Any) -> bytes:
    call = {"type": "ACCEPT", "framework_id": "m-F0001", "offer_ids": [offer_id],
            "operations": [{"type": "LAUNCH", "task_infos": task_infos}], **body}
    return msgpack.packb({"v": 1, "id": 9, "call_id": "launch-1", "body": call})


def wire(task_info: Any) -> dict[str, Any]:
    return msgspec.to_builtins(task_info)  # type: ignore[no-any-return]


def one_offer() -> tuple[MasterCore, str]:
    core = make_core()
    register_agent(core)
    subscribe(core)
    return core, offer_cycle(core, 1.0)[0].offers[0].id


def test_an_accept_with_one_task_the_schema_refuses_launches_the_others_and_answers_task_error() -> None:
    core, offer_id = one_offer()
    bad = {**wire(task("t2")), "name": 5}  # a number where the name goes: the whole envelope failed to decode
    parts = shell_parts(core, 2.0)
    MasterShell.on_message(parts, FW, accept_bytes(offer_id, [wire(task("t1")), bad]))
    assert parts.sent == [] and parts.malformed == 0
    [error_update] = [b for b in sends(parts.performed, FW) if isinstance(b, sm.Update)]
    assert error_update == sm.Update(TaskStatus(
        task_id="t2", state=TaskState.ERROR, source=TaskSource.MASTER, reason=TaskReason.TASK_INVALID,
        agent_id="m-S0001", timestamp=2.0,
        message="task 't2' is invalid: Expected `str`, got `int` - at `$.body.operations[0].task_infos[1].name`; "
                "it was not launched"))
    [run] = sends(parts.performed, AGENT)
    assert isinstance(run, am.RunTask) and run.task.task_id == "t1"
    assert core.offers == {}, "the offer is used at once, not held until the offer timeout"
    assert core.allocator.available("m-S0001") == AGENT_RES - TASK_RES


def test_an_accept_whose_filters_are_invalid_is_refused_whole_and_its_offer_released_at_once() -> None:
    core, offer_id = one_offer()
    parts = shell_parts(core, 2.0)
    MasterShell.on_message(parts, FW, accept_bytes(offer_id, [wire(task("t1"))], filters={"refuse_seconds": "x"}))
    assert parts.performed == [
        Send(FW, sm.Error("ACCEPT refused: Expected `float`, got `str` - at `$.body.filters.refuse_seconds`. Nothing "
                          "in it was done, and its offers were released", call_id="launch-1", call_type="ACCEPT",
                          field="$.body.filters.refuse_seconds")),
        CancelTimer(OfferTimeout(offer_id)),
        ScheduleTimer(2.0, ALLOCATE_NOW),
    ]
    assert core.offers == {} and core.allocator.available("m-S0001") == AGENT_RES
    assert offer_cycle(core, 2.0), "released with no filter: offered again in the next cycle"


def test_an_accept_whose_offer_ids_cannot_be_read_has_nothing_to_release() -> None:
    core, offer_id = one_offer()
    parts = shell_parts(core, 2.0)
    data = msgpack.packb({"v": 1, "id": 9, "call_id": "a", "body": {
        "type": "ACCEPT", "framework_id": "m-F0001", "offer_ids": [offer_id, 7]}})
    MasterShell.on_message(parts, FW, data)
    [(_, error)] = parts.sent
    assert (error.call_id, error.call_type, error.field) == ("a", "ACCEPT", "$.body.offer_ids[1]")
    assert list(core.offers) == [offer_id] and parts.malformed == 1
