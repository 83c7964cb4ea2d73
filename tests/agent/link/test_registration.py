"""The agent's Registration component on its own, exact effects on a fake clock: backoff,
epoch fencing, the first answer, the master's silence, a lost link, the goodbye."""

from __future__ import annotations

from typing import Any

from tepui.agent.events import MasterCheck, Register, SendToMaster
from tepui.agent.link.registration import Identity, Registration
from tepui.sdk.effects import CancelTimer, Log, ScheduleTimer
from tepui.sdk.protocol import agent as am
from tepui.sdk.protocol.values import MasterInfo
from tepui.sdk.resources import Resources

MASTER = MasterInfo(id="m", address="127.0.0.1:5050", hostname="h", version="0.1.0", epoch=3)


def registration(silence_limit: float | None = None) -> Registration:
    identity = Identity(hostname="a1", resources=Resources.parse("cpus:2"), attributes={}, version="0.1.0",
                        boot_id="b", previous_agent_id=None, http_port=None, address=None, http_tls=False,
                        task_user=None)
    return Registration(identity, backoff=1.0, max_backoff=4.0, silence_limit=silence_limit)


def test_registering_backs_off_doubling_to_the_cap() -> None:
    link = registration()
    message = link.register_message([], [])
    assert isinstance(message, am.RegisterAgent) and message.agent_info.hostname == "a1"
    timers = []
    for now in (0.0, 1.0, 3.0, 7.0):
        out: list[Any] = []
        link.register(message, now, out)
        assert out[0] == SendToMaster(message)
        timers.append(out[1])
    assert timers == [ScheduleTimer(1.0, Register()), ScheduleTimer(3.0, Register()), ScheduleTimer(7.0, Register()),
                      ScheduleTimer(11.0, Register())]


def test_the_first_answer_stops_the_retries_and_watches_the_master() -> None:
    link = registration()
    out: list[Any] = []
    result = link.accepted("S1", MASTER, 10.0, 2.0, out)
    assert result.new_id and result.newly and link.registered and link.master_epoch == 3
    assert out == [CancelTimer(Register()), ScheduleTimer(52.0, MasterCheck()),
                   Log("info", "agent_registered", {"agent_id": "S1", "master": MASTER.address})]
    out = []
    again = link.accepted("S1", MASTER, 10.0, 3.0, out)
    assert not again.new_id and not again.newly and out == []
    assert isinstance(link.register_message([], []), am.ReregisterAgent)


def test_a_superseded_masters_message_is_dropped_and_counted() -> None:
    link = registration()
    out: list[Any] = []
    assert link.admit(2, "Ping", 1.0, out) and link.master_epoch == 2 and link.last_master_contact == 1.0
    assert not link.admit(1, "KillTask", 5.0, out)
    assert out == [Log("warning", "stale_master_message", {"epoch": 1, "current": 2, "type": "KillTask",
                                                           "dropped": 1})]
    assert link.last_master_contact == 1.0 and link.stale_epoch_dropped == 1


def test_a_silent_master_unregisters_the_agent_and_a_lost_link_too() -> None:
    link = registration(silence_limit=30.0)
    link.accepted("S1", MASTER, 10.0, 0.0, [])
    out: list[Any] = []
    assert not link.master_silent(30.0, out) and out == []
    assert link.master_silent(30.5, out) and not link.registered
    assert out == [Log("warning", "master_silent", {"seconds": 30.5})]
    out = []
    link.arm_master_check(30.5, out)
    assert out == [ScheduleTimer(36.5, MasterCheck())]
    out = []
    assert link.link_lost(out), "trying to re-register: try again now, not after the backoff"
    assert out == [Log("info", "master_reconnected", {"action": "registering now"})]
    link.accepted("S1", MASTER, 10.0, 40.0, [])
    out = []
    assert link.link_lost(out) and out == [Log("info", "master_reconnected", {"action": "re-registering"})]


def test_the_goodbye_is_said_once() -> None:
    link = registration()
    link.accepted("S1", MASTER, 10.0, 0.0, [])
    out: list[Any] = []
    link.unregister(out)
    link.unregister(out)
    assert out == [SendToMaster(am.UnregisterAgent("S1"))] and not link.registered
