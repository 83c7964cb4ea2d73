"""An ACCEPT with an invalid part is carried out per operation (issue 15 bug 8), as Mesos does.

Why here and not in the core: a task that fails the schema (a number where its name goes, an
unknown field) makes the whole envelope undecodable, so the core never saw the call — its
offers stayed held until the offer timeout (60 s) and no task was answered. When the strict
decode of an ACCEPT fails, :func:`salvage` (the master codec's salvage hook) decodes it again
part by part:

* every operation and task that decodes is kept; a LAUNCH's task that does not is left out and
  answered TASK_ERROR (``REASON_TASK_INVALID``, the message naming the field), the other tasks
  of the LAUNCH still run; an invalid LAUNCH_GROUP is answered TASK_ERROR for each of its tasks
  (a group is all or nothing); an operation whose tasks cannot be named (a RESERVE, a task
  without a readable ``task_id``) is left out with an ERROR naming the field;
* anything else wrong (the filters, a field of the call itself) refuses the call as a whole:
  an ERROR, and its offers are released at once (declined with no filter);
* when not even ``framework_id`` and ``offer_ids`` can be read there is nothing to release: the
  codec's plain ERROR answers it and its offers time out.

The core receives a :class:`PartialAccept` — an ACCEPT of what could be read, with what was
left out — so admission, identity and rate limits treat it as the ACCEPT it is.
"""

from __future__ import annotations

from typing import Any

import msgspec

from tepui.sdk.codec import ProtocolError, error_field, rooted
from tepui.sdk.protocol import scheduler as sm
from tepui.sdk.protocol.envelope import MAX_CALL_ID, PROTOCOL_VERSION, CallId, Envelope
from tepui.sdk.protocol.values import Filters, TaskInfo

MAX_SHOWN_ID = 255  # a task id quoted in a TASK_ERROR; a longer one is no id (validation refuses it)


class LeftOut(msgspec.Struct, frozen=True):
    """A part of an ACCEPT that was not carried out: a task (answered TASK_ERROR) when
    ``task_id`` is known, else the operation or call (answered ERROR naming ``field``)."""

    problem: str
    field: str | None = None
    task_id: str | None = None
    group: bool = False  # a task of an invalid LAUNCH_GROUP (REASON_TASK_GROUP_INVALID)


class PartialAccept(sm.Accept, tag="ACCEPT", frozen=True):
    """What could be read of an ACCEPT that failed to decode whole; never on the wire."""

    left_out: list[LeftOut] = []


class _Frame(msgspec.Struct, forbid_unknown_fields=True):
    """The envelope with its body still encoded: its own fields must be valid to salvage."""

    v: int
    id: int
    body: msgspec.Raw
    epoch: int = 0
    incarnation: str | None = None
    call_id: CallId | None = None


class _Readable(msgspec.Struct):
    """What must be read to answer the call at all: whose it is and which offers it holds."""

    framework_id: str
    offer_ids: list[str]


class _Shell(msgspec.Struct, tag="ACCEPT", tag_field="type", forbid_unknown_fields=True):
    """The ACCEPT judged without its operations and filters, which are judged one by one."""

    framework_id: str
    offer_ids: list[str]
    operations: list[msgspec.Raw] = []
    filters: msgspec.Raw = msgspec.Raw(b"\xc0")  # nil when absent


class _LaunchShell(msgspec.Struct, tag="LAUNCH", tag_field="type", forbid_unknown_fields=True):
    task_infos: list[msgspec.Raw]


class _Named(msgspec.Struct):
    task_id: Any = None


class _Group(msgspec.Struct):
    tasks: list[_Named] = []


class _Tasks(msgspec.Struct):
    """The task ids of an operation that is invalid as a whole, where they can be read."""

    type: Any = None
    task_infos: list[_Named] = []
    task_group: _Group | None = None


_FRAME = msgspec.msgpack.Decoder(_Frame)
_READABLE = msgspec.msgpack.Decoder(_Readable)
_SHELL = msgspec.msgpack.Decoder(_Shell)
_OPERATION: msgspec.msgpack.Decoder[Any] = msgspec.msgpack.Decoder(sm.Operation)
_LAUNCH = msgspec.msgpack.Decoder(_LaunchShell)
_TASK = msgspec.msgpack.Decoder(TaskInfo)
_FILTERS = msgspec.msgpack.Decoder(Filters | None)
_TASKS = msgspec.msgpack.Decoder(_Tasks)
_NAMED = msgspec.msgpack.Decoder(_Named)
_FAILED = (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError, RecursionError, MemoryError)


def salvage(data: bytes | memoryview, error: ProtocolError) -> Envelope[Any] | None:
    """The envelope of a :class:`PartialAccept` for an ACCEPT that failed validation, or None
    when it is no ACCEPT, its envelope is itself invalid, or its offers cannot be read."""
    if error.call_type != "ACCEPT":
        return None
    try:
        frame = _FRAME.decode(data)
        readable = _READABLE.decode(frame.body)
    except _FAILED:
        return None
    if frame.v != PROTOCOL_VERSION:
        return None
    operations: list[Any] = []
    left_out: list[LeftOut] = []
    filters: Filters | None = None
    try:
        shell = _SHELL.decode(frame.body)
        refusal = None
    except _FAILED as exc:
        shell, refusal = None, rooted(str(exc), "$.body")
    if shell is not None:
        try:
            filters = _FILTERS.decode(shell.filters)
        except _FAILED as exc:
            refusal = rooted(str(exc), "$.body.filters")
    if shell is not None and refusal is None:
        for index, raw in enumerate(shell.operations):
            kept = _operation(raw, index, left_out)
            if kept is not None:
                operations.append(kept)
        if not left_out:  # every part decodes on its own: what failed is the call as a whole
            refusal = str(error).removeprefix("invalid message: ")
    if refusal is not None:
        left_out = [LeftOut(f"ACCEPT refused: {refusal}. Nothing in it was done, and its offers were released",
                            error_field(refusal))]
        operations, filters = [], Filters(refuse_seconds=0.0)
    body = PartialAccept(framework_id=readable.framework_id, offer_ids=readable.offer_ids, operations=operations,
                         filters=filters, left_out=left_out)
    return Envelope(v=frame.v, id=frame.id, body=body, epoch=frame.epoch, incarnation=frame.incarnation,
                    call_id=frame.call_id)


def _operation(raw: msgspec.Raw, index: int, left_out: list[LeftOut]) -> Any:
    """The operation, or what of a LAUNCH is valid; the rest goes to ``left_out``."""
    root = f"$.body.operations[{index}]"
    try:
        return _OPERATION.decode(raw)
    except _FAILED as exc:
        problem = rooted(str(exc), root)
    try:
        launch = _LAUNCH.decode(raw)
    except _FAILED:
        launch = None
    if launch is not None:  # a sound LAUNCH with an invalid task: its other tasks run
        tasks = []
        for number, task in enumerate(launch.task_infos):
            try:
                tasks.append(_TASK.decode(task))
            except _FAILED as exc:
                left_out.append(_invalid_task(task, rooted(str(exc), f"{root}.task_infos[{number}]")))
        return sm.Launch(tasks) if tasks else None
    try:
        named = _TASKS.decode(raw)
    except _FAILED:
        named = _Tasks()
    group = named.type == "LAUNCH_GROUP"
    ids = [_id(task.task_id) for task in (named.task_group.tasks if named.task_group else named.task_infos)]
    what = "the task group" if group else f"operation {index}"
    for task_id in ids:
        if task_id is not None:
            left_out.append(LeftOut(f"{what} is invalid: {problem}; nothing of it was done", error_field(problem),
                                    task_id, group))
    if not ids or None in ids:
        left_out.append(LeftOut(f"{what} is invalid: {problem}; it was skipped, the call's other operations "
                                "were carried out", error_field(problem)))
    return None


def _invalid_task(raw: msgspec.Raw, problem: str) -> LeftOut:
    try:
        task_id = _id(_NAMED.decode(raw).task_id)
    except _FAILED:
        task_id = None
    if task_id is None:
        return LeftOut(f"a task was not launched, and no TASK_ERROR can name it (its task_id cannot be read): "
                       f"{problem}; the call's other tasks were launched", error_field(problem))
    return LeftOut(f"task {task_id!r} is invalid: {problem}; it was not launched", error_field(problem), task_id)


def _id(value: Any) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= MAX_SHOWN_ID else None
