"""The simulator's shell helpers without sockets: the timer heap on a fake reactor clock, the
ZMTP parser on byte strings, the helpers that read tasks and attribute templates."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from tepui.sdk.protocol.values import CommandInfo, TaskInfo
from tepui.sim.events import check_template, expand_template, task_duration
from tepui.sim.links import choose_transport
from tepui.sim.shell import TIMER_BATCH, TimerHeap
from tepui.sim.zmtp import GREETING, ZmtpError, ZmtpParser, command, frame, properties, ready

# --- TimerHeap --------------------------------------------------------------------------------


def heap() -> tuple[Clock, TimerHeap, list[object]]:
    clock, fired = Clock(), list[object]()
    return clock, TimerHeap(clock, fired.append), fired


def test_timers_fire_in_time_order_under_one_reactor_call() -> None:
    clock, timers, fired = heap()
    timers.schedule(3.0, "c")
    timers.schedule(1.0, "a")
    timers.schedule(2.0, "b")
    assert len(clock.getDelayedCalls()) == 1
    clock.advance(1.5)
    assert fired == ["a"]
    clock.advance(2.0)
    assert fired == ["a", "b", "c"] and len(timers) == 0


def test_scheduling_a_key_again_replaces_it_and_cancel_forgets_it() -> None:
    clock, timers, fired = heap()
    timers.schedule(1.0, "a")
    timers.schedule(5.0, "a")
    timers.schedule(2.0, "b")
    timers.cancel("b")
    clock.advance(3.0)
    assert fired == []
    clock.advance(3.0)
    assert fired == ["a"]


class TurnClock(Clock):
    """A Clock whose ``turn()`` runs only the calls due when the turn starts, like one
    reactor iteration (Clock.advance also runs what those calls schedule for now)."""

    def turn(self) -> None:
        due = [call for call in self.calls if call.time <= self.seconds()]
        for call in due:
            if not call.cancelled and not call.called:
                self.calls.remove(call)
                call.called = 1
                call.func(*call.args, **call.kw)


def test_a_timer_scheduled_while_firing_fires_too() -> None:
    clock = TurnClock()
    fired: list[object] = []

    def fire(key: object) -> None:
        fired.append(key)
        if key == "first":
            timers.schedule(clock.seconds() + 1.0, "second")

    timers = TimerHeap(clock, fire)
    timers.schedule(0.0, "first")
    clock.turn()
    assert fired == ["first"]
    clock.advance(1.0)
    assert fired == ["first", "second"]


def test_many_due_timers_fire_in_batches_so_others_get_a_turn() -> None:
    clock = TurnClock()
    fired: list[object] = []
    timers = TimerHeap(clock, fired.append)
    for i in range(TIMER_BATCH + 10):
        timers.schedule(0.0, i)
    clock.turn()
    assert len(fired) == TIMER_BATCH
    clock.turn()
    assert len(fired) == TIMER_BATCH + 10


def test_cancelled_entries_do_not_pile_up() -> None:
    clock, timers, fired = heap()
    for i in range(30_000):
        timers.schedule(100.0 + i, ("retry", i))
        timers.cancel(("retry", i))
    timers.schedule(1.0, "due")
    clock.advance(1.0)
    assert fired == ["due"]
    assert len(timers._heap) < 30_000  # rebuilt once the dead outnumbered the live


# --- ZMTP ---------------------------------------------------------------------------------------


def test_greeting_ready_and_messages_short_and_long() -> None:
    parser = ZmtpParser(max_bytes=1 << 20)
    stream = GREETING + ready(b"peer") + frame(b"hello") + frame(b"x" * 300)
    events = parser.feed(stream)
    assert events[0] == ("greeting", "NULL", None)
    assert events[1][0:2] == ("command", b"READY")
    assert properties(bytes(events[1][2])) == {"Socket-Type": b"DEALER", "Identity": b"peer"}
    assert events[2] == ("message", b"hello", None)
    assert events[3] == ("message", b"x" * 300, None)
    assert frame(b"x" * 300)[:9] == b"\x02" + (300).to_bytes(8, "big")


def test_frames_split_across_reads_are_reassembled() -> None:
    parser = ZmtpParser(max_bytes=1 << 20)
    stream = GREETING + frame(b"a" * 1000) + command(b"PING", b"\x00\x96ctx")
    got = []
    for i in range(0, len(stream), 7):
        got.extend(parser.feed(stream[i:i + 7]))
    assert [(kind, bytes(first)) for kind, first, _ in got[1:]] == [("message", b"a" * 1000), ("command", b"PING")]
    assert bytes(got[2][2]) == b"\x00\x96ctx"


def test_multi_frame_messages_are_dropped_and_counted() -> None:
    parser = ZmtpParser(max_bytes=1 << 20)
    events = parser.feed(GREETING + frame(b"one", 0x01) + frame(b"two") + frame(b"ok"))
    assert events[1:] == [("bad_frames", 2, None), ("message", b"ok", None)]


def test_protocol_violations_raise() -> None:
    with pytest.raises(ZmtpError, match="does not speak ZMTP"):
        ZmtpParser(1024).feed(b"HTTP/1.1 200 OK\r\n")
    with pytest.raises(ZmtpError, match="ZMTP 2.x"):
        ZmtpParser(1024).feed(GREETING[:10] + b"\x02" + GREETING[11:])
    with pytest.raises(ZmtpError, match="exceeds"):
        ZmtpParser(10).feed(GREETING + frame(b"y" * 11))


def test_the_mechanism_is_reported_for_the_caller_to_refuse() -> None:
    curve = GREETING[:12] + b"CURVE".ljust(20, b"\x00") + GREETING[32:]
    assert ZmtpParser(1024).feed(curve) == [("greeting", "CURVE", None)]


# --- helpers ------------------------------------------------------------------------------------


def test_task_duration_reads_the_label_then_the_command() -> None:
    def info(labels: dict[str, str], command: CommandInfo | None) -> TaskInfo:
        return TaskInfo(name="t", task_id="t", agent_id="a", resources=[], labels=labels, command=command)

    assert task_duration(info({"tepui.sim/duration": "2.5"}, None)) == 2.5
    assert task_duration(info({"tepui.sim/duration": "-1"}, None)) == 0.0
    assert task_duration(info({"tepui.sim/duration": "x"}, None)) is None
    assert task_duration(info({}, CommandInfo(value="sleep 7"))) == 7.0
    assert task_duration(info({}, CommandInfo(value="sleep", arguments=["sleep", "9"], shell=False))) == 9.0
    assert task_duration(info({}, None)) == 0.0


def test_attribute_templates() -> None:
    assert expand_template("rack:r{i%10};zone:z{i%3};row:{i//100};id:{i:04d}", 1234) == \
        "rack:r4;zone:z1;row:12;id:1234"
    check_template("rack:r{i%10}")
    with pytest.raises(ValueError, match="only"):
        check_template("rack:{j}")
    with pytest.raises(ValueError, match="NAME:VALUE"):
        check_template("rack")


def test_transport_choice_follows_the_descriptor_limit() -> None:
    assert choose_transport("auto", 100, 1024) == "zmq"
    assert choose_transport("auto", 10_000, 20_000) == "zmtp"
    assert choose_transport("zmtp", 10_000, 20_000) == "zmtp"
    with pytest.raises(ValueError, match="file descriptors"):
        choose_transport("zmq", 10_000, 20_000)
