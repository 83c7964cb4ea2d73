"""What a standby master answers (master/leadership/standby.py; RELIABILITY scenario 23, standby
form), and how a leading master's shell holds what it decides while ZooKeeper is suspended
(master/shell.py ``pause``/``resume``) — exact answers, no sockets."""

from __future__ import annotations

import json
import types
from typing import Any

import msgspec
from twisted.web.test.requesthelper import DummyRequest

from tepui.master.leadership.standby import StandbyResponder, StandbyRoot
from tepui.master.events import Log, Send
from tepui.master.shell import MasterShell
from tepui.sdk.codec import Codec, envelope
from tepui.sdk.leadership import LeaderInfo
from tepui.sdk.protocol import scheduler as sm
from tepui.sdk.protocol.envelope import MasterInbound

LEADER = LeaderInfo(id="m1", address="10.0.0.1:5050", http="http://10.0.0.1:5080", epoch=42)


def get(root: StandbyRoot, uri: bytes, method: bytes = b"GET") -> tuple[int, dict[str, str], Any]:
    request = DummyRequest([])
    request.method = method
    request.uri = uri
    request.path = uri.split(b"?")[0]
    body = root.render(request)
    headers = {name.decode().lower(): values[0].decode() for name, values in request.responseHeaders.getAllRawHeaders()}
    return request.responseCode, headers, json.loads(body)


def test_a_standby_redirects_every_call_to_the_same_path_and_query_on_the_leader() -> None:
    root = StandbyRoot("m2", lambda: LEADER)
    code, headers, body = get(root, b"/state?tasks=1")
    assert code == 307  # keeps the method and body, unlike 302
    assert headers["location"] == "http://10.0.0.1:5080/state?tasks=1"
    assert body == {"leader": {"id": "m1", "http": "http://10.0.0.1:5080"},
                    "error": "master m2 is a standby; the leader is at http://10.0.0.1:5080"}
    code, headers, _ = get(root, b"/quota", method=b"POST")
    assert (code, headers["location"]) == (307, "http://10.0.0.1:5080/quota")


def test_redirect_goes_to_the_leaders_root_and_health_says_standby_and_who_leads() -> None:
    root = StandbyRoot("m2", lambda: LEADER)
    code, headers, _ = get(root, b"/redirect")
    assert (code, headers["location"]) == (307, "http://10.0.0.1:5080/")
    assert get(root, b"/health") == (200, {"content-type": "application/json"}, {
        "healthy": True, "leading": False, "id": "m2",
        "leader": {"id": "m1", "http": "http://10.0.0.1:5080", "epoch": 42}})


def test_without_a_leader_a_standby_answers_503_with_retry_after_but_stays_healthy() -> None:
    root = StandbyRoot("m2", lambda: None)
    code, headers, body = get(root, b"/state")
    assert (code, headers["retry-after"]) == (503, "1")
    assert body == {"error": "master m2 is a standby and no master leads yet (an election is under way); "
                             "try again in a second"}
    assert get(root, b"/health")[0] == 200


def test_a_standby_answers_zeromq_calls_with_an_error_naming_the_leader_and_the_call() -> None:
    sent: list[tuple[bytes, bytes]] = []
    leader: list[LeaderInfo | None] = [LEADER]
    codec: Codec[Any] = Codec(MasterInbound)
    responder = StandbyResponder("m2", lambda: leader[0], lambda peer, data: sent.append((peer, data)), codec)
    call = msgspec.msgpack.encode(envelope(sm.Decline(framework_id="F1", offer_ids=["o1"]), 1, call_id="c-9"))
    responder.on_message(b"peer", call)
    leader[0] = None
    responder.on_message(b"peer", call)
    replies = [msgspec.msgpack.decode(data) for _peer, data in sent]
    assert [peer for peer, _ in sent] == [b"peer", b"peer"]
    assert [reply.get("epoch", 0) for reply in replies] == [0, 0]  # epoch 0 (omitted): followers of a leader drop it
    assert replies[0]["body"] == {
        "type": "ERROR", "call_id": "c-9",
        "message": "master m2 is a standby: the leading master is m1 at 10.0.0.1:5050. Give the master as "
                   "zk://HOSTS/PATH to follow the leader automatically"}
    assert "no master leads yet (an election is under way)" in replies[1]["body"]["message"]
    assert responder.answered == 2


class _Parts(types.SimpleNamespace):
    """The parts of :class:`MasterShell` that ``_perform``, ``pause`` and ``resume`` use."""

    def _send(self, peer: bytes, body: Any) -> None:
        self.sent.append((peer, body))

    def _persist(self, writes: list[Any]) -> bool:
        self.persisted.extend(writes)
        return True

    def _perform(self, effects: list[Any]) -> None:
        MasterShell._perform(self, effects)  # type: ignore[arg-type]  # a shell-shaped stand-in


def test_a_paused_master_holds_what_it_decides_in_order_and_performs_it_on_resume() -> None:
    logged: list[Any] = []
    parts = _Parts(failed=False, _held=None, sent=[], persisted=[],
                   timers_and_logs=types.SimpleNamespace(perform=lambda effect: logged.append(effect) or True))
    first = [Send(b"a1", sm.Heartbeat()), Log("info", "one", {})]
    second = [Send(b"f1", sm.Heartbeat())]
    MasterShell.pause(parts)  # type: ignore[arg-type]
    parts._perform(first)
    parts._perform(second)
    assert parts.sent == [] and logged == []
    MasterShell.resume(parts)  # type: ignore[arg-type]
    assert parts.sent == [(b"a1", sm.Heartbeat()), (b"f1", sm.Heartbeat())]
    assert logged == [Log("info", "one", {})]
    parts._perform(second)
    assert len(parts.sent) == 3  # not paused any more
