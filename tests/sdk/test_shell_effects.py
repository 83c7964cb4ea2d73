"""The timer and log effects every shell performs alike (``sdk/shell.TimersAndLogs``): one
pending timer per key on the reactor, a rescheduled key replaces its timer, a cancelled one never
fires, a Log becomes one line; any other effect is left to the shell."""

from __future__ import annotations

import logging

import pytest
from twisted.internet.task import Clock

from tepui.sdk.effects import CancelTimer, Log, ScheduleTimer
from tepui.sdk.shell import TimerBook, TimersAndLogs


def loop() -> tuple[Clock, TimersAndLogs, list[object]]:
    clock = Clock()
    fired: list[object] = []
    return clock, TimersAndLogs(TimerBook(clock, fired.append), logging.getLogger("tepui.test.shell")), fired


def test_timers_fire_at_their_time_and_a_key_scheduled_again_is_replaced() -> None:
    clock, common, fired = loop()
    assert common.perform(ScheduleTimer(5.0, "a"))
    assert common.perform(ScheduleTimer(2.0, "b"))
    assert common.perform(ScheduleTimer(3.0, "a"))  # replaces a@5
    clock.advance(2.0)
    assert fired == ["b"]
    clock.advance(1.0)
    assert fired == ["b", "a"]
    clock.advance(10.0)
    assert fired == ["b", "a"]


def test_a_cancelled_timer_never_fires() -> None:
    clock, common, fired = loop()
    common.perform(ScheduleTimer(1.0, ("offer", "o1")))
    assert common.perform(CancelTimer(("offer", "o1")))
    assert common.perform(CancelTimer("never scheduled"))
    clock.advance(5.0)
    assert fired == []


def test_a_log_effect_is_written_once(caplog: pytest.LogCaptureFixture) -> None:
    _, common, _ = loop()
    with caplog.at_level(logging.INFO, logger="tepui.test.shell"):
        assert common.perform(Log("warning", "agent_lost", {"agent_id": "a 1"}))
    assert [r.getMessage() for r in caplog.records] == ['event=agent_lost agent_id="a 1"']
    assert caplog.records[0].levelno == logging.WARNING


def test_other_effects_are_left_to_the_shell() -> None:
    clock, common, fired = loop()
    assert not common.perform(object())
    assert not common.perform("Send")
    clock.advance(1.0)
    assert fired == []
