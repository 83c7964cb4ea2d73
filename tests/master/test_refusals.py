"""Every refused call gets an ERROR naming the call (issue 15 bugs 6-8): exact effects on a fake
clock, plus the shell's answer to a call it could not decode."""

from __future__ import annotations

import types
from typing import Any

import msgpack

from tepui.master.core import MasterCore
from tepui.master.events import Received, Send
from tepui.master.refusals import correlate
from tepui.master.shell import MasterShell
from tepui.sdk.codec import Codec
from tepui.sdk.protocol import scheduler as sm
from tepui.sdk.protocol.envelope import MasterInbound
from tests.master.test_core import FW, make_core, register_agent, sends, subscribe


def errors(effects: list[Any], peer: bytes = FW) -> list[sm.Error]:
    return [body for body in sends(effects, peer) if isinstance(body, sm.Error)]


# --- correlation (bug 7) ----------------------------------------------------------------------


def test_an_error_echoes_the_call_id_and_type_of_the_call_it_refuses() -> None:
    core = make_core()
    effects = core.handle(Received(FW, sm.Revive("nobody"), call_id="r-1"), 0.0)
    assert effects == [Send(FW, sm.Error("framework 'nobody' is not subscribed; send SUBSCRIBE first",
                                         call_id="r-1", call_type="REVIVE"))]


def test_an_error_without_a_call_id_still_names_the_call_type() -> None:
    core = make_core()
    assert errors(core.handle(Received(FW, sm.Explain("nobody")), 0.0))[0].call_type == "EXPLAIN"


def test_the_stamp_keeps_a_refusals_field_and_leaves_errors_to_other_peers_alone() -> None:
    out = [Send(FW, sm.Error("bad", field="$.body.demand")), Send(b"other", sm.Error("other"))]
    correlate(Received(FW, sm.DeclareDemand("f", []), call_id="d"), out)
    assert out == [Send(FW, sm.Error("bad", call_id="d", call_type="DECLARE_DEMAND", field="$.body.demand")),
                   Send(b"other", sm.Error("other"))]


# --- the shell's answer to an undecodable call (bug 7) ----------------------------------------


class _ShellParts(types.SimpleNamespace):
    """The parts of :class:`MasterShell` that ``_on_message`` uses, without sockets or a reactor."""

    def _credential(self, identity: str | None) -> None:
        return None

    def _send(self, peer: bytes, body: Any) -> None:
        self.sent.append((peer, body))

    def _perform(self, effects: list[Any]) -> None:
        self.performed.extend(effects)


def shell_parts(core: MasterCore) -> Any:
    return _ShellParts(core=core, codec=Codec(MasterInbound), malformed=0, sent=[], performed=[],
                       reactor=types.SimpleNamespace(seconds=lambda: 0.0))


def test_an_undecodable_call_is_answered_with_its_call_id_type_and_field() -> None:
    parts = shell_parts(make_core())
    call = {"v": 1, "id": 3, "call_id": "decline-7",
            "body": {"type": "DECLINE", "framework_id": "f", "offer_ids": ["o"], "filters": {"refuse_seconds": "x"}}}
    MasterShell._on_message(parts, FW, msgpack.packb(call))
    [(peer, error)] = parts.sent
    assert peer == FW and parts.malformed == 1
    assert (error.call_id, error.call_type, error.field) == ("decline-7", "DECLINE", "$.body.filters.refuse_seconds")
    assert error.message.startswith("invalid message: Expected `float`")


def test_a_decoded_call_reaches_the_core_with_its_call_id() -> None:
    parts = shell_parts(make_core())
    call = {"v": 1, "id": 3, "call_id": "k-1", "body": {"type": "KILL", "framework_id": "nobody", "task_id": "t"}}
    MasterShell._on_message(parts, FW, msgpack.packb(call))
    assert parts.sent == []
    assert parts.performed == [Send(FW, sm.Error("framework 'nobody' is not subscribed; send SUBSCRIBE first",
                                                 call_id="k-1", call_type="KILL"))]
