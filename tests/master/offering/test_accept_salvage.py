"""What the master still does with an ACCEPT that fails to decode whole (master/offering/accept_salvage.py)."""

from __future__ import annotations

from typing import Any

import msgpack
import msgspec
import pytest

from tepui.master.offering.accept_salvage import LeftOut, PartialAccept, salvage
from tepui.master.events import Received
from tepui.sdk.codec import Codec, ProtocolError
from tepui.sdk.protocol import scheduler as sm
from tepui.sdk.protocol.envelope import MasterInbound
from tepui.sdk.protocol.values import Filters, TaskReason, TaskState
from tests.master.test_core import FW, make_core, offer_cycle, register_agent, sends, subscribe, task

CODEC = Codec(MasterInbound, salvage=salvage)
GOOD = msgspec.to_builtins(task("t1"))
BAD = {**msgspec.to_builtins(task("t2")), "resources": "lots"}


def decoded(*operations: Any, **body: Any) -> Any:
    call = {"type": "ACCEPT", "framework_id": "f", "offer_ids": ["o"], "operations": list(operations), **body}
    [envelope] = CODEC.envelopes(msgpack.packb({"v": 1, "id": 1, "call_id": "c", "body": call}))
    return envelope


def test_a_group_with_one_invalid_task_is_left_out_whole_each_task_named() -> None:
    group = {"type": "LAUNCH_GROUP", "executor": {"executor_id": "pod", "type": "DEFAULT"},
             "task_group": {"tasks": [GOOD, BAD]}}
    body = decoded(group, {"type": "LAUNCH", "task_infos": [GOOD]}).body
    assert [op.task_infos[0].task_id for op in body.operations] == ["t1"]
    assert [(left.task_id, left.group, left.field) for left in body.left_out] == [
        ("t1", True, "$.body.operations[0].task_group.tasks[1].resources"),
        ("t2", True, "$.body.operations[0].task_group.tasks[1].resources")]


def test_an_invalid_operation_naming_no_task_is_skipped_with_an_error_and_the_launch_still_runs() -> None:
    body = decoded({"type": "RESERVE", "resources": 5}, {"type": "LAUNCH", "task_infos": [GOOD]}).body
    assert len(body.operations) == 1 and isinstance(body.operations[0], sm.Launch)
    [left] = body.left_out
    assert (left.task_id, left.field) == (None, "$.body.operations[0].resources")
    assert left.problem.startswith("operation 0 is invalid: Expected `array`, got `int`")


def test_an_unknown_field_of_the_call_refuses_it_whole_and_releases_its_offers() -> None:
    envelope = decoded({"type": "LAUNCH", "task_infos": [GOOD]}, filter={"refuse_seconds": 60})
    assert envelope.call_id == "c"
    assert envelope.body == PartialAccept("f", ["o"], [], Filters(refuse_seconds=0.0), left_out=[LeftOut(
        "ACCEPT refused: Object contains unknown field `filter` - at `$.body`. Nothing in it was done, and its "
        "offers were released", "$.body.filter")])


@pytest.mark.parametrize("message", [
    {"v": 1, "id": 1, "body": {"type": "DECLINE", "framework_id": 5, "offer_ids": []}},  # not an ACCEPT
    {"v": 1, "id": 1, "body": {"type": "ACCEPT", "framework_id": "f"}},  # its offers cannot be read
    {"v": 1, "id": 1, "extra": 1, "body": {"type": "ACCEPT", "framework_id": "f", "offer_ids": ["o"],
                                           "operations": [{"type": "LAUNCH", "task_infos": [BAD]}]}},
])
def test_what_cannot_be_salvaged_stays_a_protocol_error(message: dict[str, Any]) -> None:
    [envelope] = CODEC.envelopes(msgpack.packb(message))
    assert isinstance(envelope, ProtocolError)


def test_the_core_answers_a_left_out_group_task_group_invalid_and_a_nameless_part_with_an_error() -> None:
    core = make_core()
    register_agent(core)
    subscribe(core, capabilities=["PARTITION_AWARE"])
    offer = offer_cycle(core, 1.0)[0].offers[0]
    call = PartialAccept("m-F0001", [offer.id], [], left_out=[
        LeftOut("the task group is invalid: ...", "$.body.operations[0]", "g1", group=True),
        LeftOut("operation 1 is invalid: ...", "$.body.operations[1]")])
    update, error = sends(core.handle(Received(FW, call, call_id="x"), 1.0), FW)
    assert error == sm.Error("operation 1 is invalid: ...", call_id="x", call_type="ACCEPT",
                             field="$.body.operations[1]")
    assert (update.status.task_id, update.status.state, update.status.reason, update.status.agent_id) == (
        "g1", TaskState.ERROR, TaskReason.TASK_GROUP_INVALID, "m-S0001")
    assert core.offers == {}
