"""The scheduler driver's contract on a fake clock with a fake endpoint (no ZeroMQ): subscribing
with backoff, re-subscribing after the master's silence or a restored connection, dropping
envelopes of an older master epoch, explicit and implicit acknowledgements, and what each call
puts on the wire. The fake endpoint stands in for ``DealerEndpoint``: it decodes what the driver
sends as the master would, and delivers envelopes as the master's socket would."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.task import Clock

from tepui.sdk import scheduler as scheduler_module
from tepui.sdk.batch import pack
from tepui.sdk.codec import Codec, envelope
from tepui.sdk.protocol import scheduler as sm
from tepui.sdk.protocol.envelope import FrameworkInbound, MasterInbound
from tepui.sdk.protocol.values import (
    CommandInfo,
    DemandShape,
    Filters,
    FrameworkInfo,
    KillPolicy,
    MasterInfo,
    Offer,
    ReconcileTask,
    TaskInfo,
    TaskState,
    TaskStatus,
)
from tepui.sdk.resources import Resources
from tepui.sdk.scheduler import MAX_BACKOFF, MISSED_HEARTBEATS, Scheduler, SchedulerDriver

MASTER_CODEC: Codec[Any] = Codec(MasterInbound)  # what the master decodes
EVENT_CODEC: Codec[Any] = Codec(FrameworkInbound)  # what the master encodes, for the driver
HEARTBEAT = 15.0
MASTER = MasterInfo(id="m1", address="127.0.0.1:5050", hostname="m", version="test", epoch=1)


class FakeEndpoint:
    def __init__(self, reactor: Any, address: str, on_message: Any, on_reconnect: Any = None,
                 curve: Any = None) -> None:
        self.address, self.on_message, self.on_reconnect = address, on_message, on_reconnect
        self.sent: list[tuple[int, Any]] = []  # (envelope epoch, body)
        self.call_ids: list[str | None] = []  # each envelope's call_id, in order (not forgotten by take)
        self.closed = False

    def send(self, payload: bytes) -> None:
        env = MASTER_CODEC.decode(payload)
        self.sent.append((env.epoch, env.body))
        self.call_ids.append(env.call_id)

    def close(self) -> None:
        self.closed = True

    def deliver(self, body: Any, epoch: int = 1) -> None:
        self.on_message(EVENT_CODEC.encode(envelope(body, 1, epoch)))

    def take(self, kind: type | None = None) -> list[Any]:
        """The bodies sent (of ``kind``) since the last take, in order; forgets all sent."""
        got = [body for _, body in self.sent if kind is None or isinstance(body, kind)]
        self.sent = []
        return got


class Recorder(Scheduler):
    """Records every callback; ``on_update`` runs inside ``status_update`` (to look at what
    the driver has sent at that moment, or to acknowledge explicitly)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.on_update: Any = None

    def subscribed(self, driver: SchedulerDriver, framework_id: str, master_info: MasterInfo) -> None:
        self.calls.append(("subscribed", framework_id))

    def offers(self, driver: SchedulerDriver, offers: list[Offer]) -> None:
        self.calls.append(("offers", [offer.id for offer in offers]))

    def rescinded(self, driver: SchedulerDriver, offer_id: str) -> None:
        self.calls.append(("rescinded", offer_id))

    def status_update(self, driver: SchedulerDriver, status: TaskStatus) -> None:
        self.calls.append(("status_update", status.task_id))
        if self.on_update is not None:
            self.on_update(driver, status)

    def error(self, driver: SchedulerDriver, message: str) -> None:
        self.calls.append(("error", message))

    def disconnected(self, driver: SchedulerDriver) -> None:
        self.calls.append(("disconnected", None))

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


def make(monkeypatch: pytest.MonkeyPatch, **kwargs: Any) -> tuple[SchedulerDriver, FakeEndpoint, Clock, Recorder]:
    endpoints: list[FakeEndpoint] = []
    monkeypatch.setattr(scheduler_module, "DealerEndpoint",
                        lambda *args, **kw: endpoints.append(FakeEndpoint(*args, **kw)) or endpoints[-1])
    clock, recorder = Clock(), Recorder()
    driver = SchedulerDriver(recorder, FrameworkInfo(user="u", name="fw"), "127.0.0.1:5050", reactor=clock,
                             insecure=True, **kwargs)
    driver.start()
    return driver, endpoints[0], clock, recorder


def subscribed(monkeypatch: pytest.MonkeyPatch, **kwargs: Any) -> tuple[SchedulerDriver, FakeEndpoint, Clock, Recorder]:
    driver, ep, clock, recorder = make(monkeypatch, **kwargs)
    ep.deliver(sm.Subscribed("F1", HEARTBEAT, MASTER))
    ep.take()
    recorder.calls.clear()
    return driver, ep, clock, recorder


def offer(offer_id: str) -> Offer:
    return Offer(id=offer_id, framework_id="F1", agent_id="A1", hostname="h", resources=[])


def update(task_id: str = "t1", uuid: bytes | None = b"u-1") -> sm.Update:
    return sm.Update(TaskStatus(task_id=task_id, state=TaskState.RUNNING, agent_id="A1", uuid=uuid))


# --- subscribing --------------------------------------------------------------------------------


def test_subscribes_at_start_and_retries_with_backoff_until_subscribed(monkeypatch: pytest.MonkeyPatch) -> None:
    driver, ep, clock, recorder = make(monkeypatch)
    assert ep.address == "tcp://127.0.0.1:5050"
    first = ep.take()
    assert len(first) == 1 and isinstance(first[0], sm.Subscribe) and first[0].framework_info.id is None
    retries = 0
    for _ in range(10):
        clock.advance(MAX_BACKOFF)
        retries += len(ep.take(sm.Subscribe))
    assert retries >= 10  # still trying, at most MAX_BACKOFF apart
    ep.deliver(sm.Subscribed("F1", HEARTBEAT, MASTER))
    assert recorder.calls == [("subscribed", "F1")]
    assert driver.framework_id == "F1" and driver.connected and driver.master_info == MASTER
    clock.pump([MAX_BACKOFF] * 2)  # shorter than the silence that would re-subscribe
    assert ep.take(sm.Subscribe) == []  # the retries stopped
    assert ep.take(sm.Reconcile) == []  # a first subscription has nothing to reconcile


def test_nothing_but_subscribed_reaches_the_scheduler_before_the_subscription(monkeypatch: pytest.MonkeyPatch) -> None:
    driver, ep, clock, recorder = make(monkeypatch)
    ep.deliver(sm.Offers([offer("o1")]))
    ep.deliver(update())
    assert recorder.calls == [] and ep.take(sm.Acknowledge) == []


def test_calls_before_the_subscription_are_refused_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    driver, ep, clock, recorder = make(monkeypatch)
    with pytest.raises(RuntimeError, match="not subscribed yet"):
        driver.decline("o1")


# --- the master's silence -----------------------------------------------------------------------


def test_heartbeats_keep_the_subscription(monkeypatch: pytest.MonkeyPatch) -> None:
    driver, ep, clock, recorder = subscribed(monkeypatch)
    for _ in range(4 * MISSED_HEARTBEATS):
        clock.advance(HEARTBEAT)
        ep.deliver(sm.Heartbeat())
    assert recorder.calls == [] and ep.take() == [] and driver.connected


def test_silence_for_missed_heartbeats_resubscribes_then_reconciles(monkeypatch: pytest.MonkeyPatch) -> None:
    driver, ep, clock, recorder = subscribed(monkeypatch)
    clock.advance(HEARTBEAT * (MISSED_HEARTBEATS - 1))
    assert recorder.calls == [] and ep.take() == []  # not yet: a few missed heartbeats are tolerated
    clock.pump([HEARTBEAT] * 2)
    assert recorder.names() == ["disconnected"] and not driver.connected
    resubscribe = ep.take()
    assert len(resubscribe) == 1 and isinstance(resubscribe[0], sm.Subscribe)
    assert resubscribe[0].framework_info.id == "F1"  # as the same framework: its tasks are kept
    clock.advance(MAX_BACKOFF)
    assert ep.take(sm.Subscribe) != []  # and again until answered
    ep.deliver(sm.Subscribed("F1", HEARTBEAT, MASTER))
    assert recorder.names() == ["disconnected", "subscribed"]
    assert ep.take() == [sm.Reconcile("F1")]  # implicit reconciliation: what happened meanwhile


def test_errors_are_no_proof_of_life(monkeypatch: pytest.MonkeyPatch) -> None:
    """A restarted master answers a framework it does not know with ERRORs; those must not keep
    the driver believing it is subscribed."""
    driver, ep, clock, recorder = subscribed(monkeypatch)
    for _ in range(MISSED_HEARTBEATS + 1):
        clock.advance(HEARTBEAT)
        ep.deliver(sm.Error("framework F1 is not subscribed"))
    assert "disconnected" in recorder.names() and recorder.names().count("error") == MISSED_HEARTBEATS + 1
    assert ep.take(sm.Subscribe) != []


def test_a_restored_connection_resubscribes_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    driver, ep, clock, recorder = make(monkeypatch)
    ep.on_reconnect()  # before any subscription: the backoff retries already cover it
    assert ep.take() == [sm.Subscribe(driver.framework)] and recorder.calls == []
    ep.deliver(sm.Subscribed("F1", HEARTBEAT, MASTER))
    ep.take()
    recorder.calls.clear()
    ep.on_reconnect()
    assert recorder.names() == ["disconnected"]
    sent = ep.take()
    assert len(sent) == 1 and isinstance(sent[0], sm.Subscribe) and sent[0].framework_info.id == "F1"


# --- master epochs ------------------------------------------------------------------------------


def test_envelopes_of_an_older_epoch_are_dropped_and_a_newer_epoch_is_followed(monkeypatch: pytest.MonkeyPatch) -> None:
    driver, ep, clock, recorder = subscribed(monkeypatch)  # epoch 1
    ep.deliver(sm.Offers([offer("o-new")]), epoch=2)  # the master failed over
    assert recorder.calls == [("offers", ["o-new"])]
    driver.decline("o-new")
    assert ep.sent == [(2, sm.Decline("F1", ["o-new"]))]  # calls now carry the new epoch
    ep.take()
    recorder.calls.clear()
    # Queued in a socket before the failover, delivered after: every kind is dropped.
    for body in (sm.Offers([offer("o-old")]), update(), sm.Rescind("o-new"), sm.Error("old"),
                 sm.Subscribed("F-old", HEARTBEAT, MASTER)):
        ep.deliver(body, epoch=1)
    assert recorder.calls == []
    assert ep.take() == []  # in particular, the stale update is not acknowledged
    assert driver.framework_id == "F1" and driver.master_epoch == 2 and driver.stale_epoch_dropped == 5
    ep.deliver(sm.Rescind("o-new"), epoch=2)  # the current epoch still gets through
    assert recorder.calls == [("rescinded", "o-new")]


def test_a_batch_drops_only_its_stale_envelopes(monkeypatch: pytest.MonkeyPatch) -> None:
    driver, ep, clock, recorder = subscribed(monkeypatch)
    frames = [EVENT_CODEC.encode(envelope(body, i, epoch))
              for i, (body, epoch) in enumerate([(sm.Offers([offer("o1")]), 2), (sm.Offers([offer("o2")]), 1),
                                                 (sm.Offers([offer("o3")]), 2)])]
    ep.on_message(pack(frames))
    assert recorder.calls == [("offers", ["o1"]), ("offers", ["o3"])] and driver.stale_epoch_dropped == 1


# --- acknowledgements ---------------------------------------------------------------------------


def test_implicit_mode_acknowledges_each_update_once_after_the_callback(monkeypatch: pytest.MonkeyPatch) -> None:
    driver, ep, clock, recorder = subscribed(monkeypatch)
    seen_during_callback: list[Any] = []
    recorder.on_update = lambda d, status: seen_during_callback.extend(ep.take())
    ep.deliver(update("t1", b"u-1"))
    assert seen_during_callback == []  # not acknowledged before the framework has seen it
    assert ep.take() == [sm.Acknowledge("F1", "A1", "t1", b"u-1")]
    ep.deliver(update("t1", b"u-1"))  # the master retries an update whose ack it lost
    assert ep.take() == [sm.Acknowledge("F1", "A1", "t1", b"u-1")]  # once per delivery
    ep.deliver(update("t2", None))  # a reconciliation answer: nothing to acknowledge
    assert ep.take() == [] and recorder.names() == ["status_update"] * 3


def test_explicit_mode_acknowledges_only_when_the_scheduler_does(monkeypatch: pytest.MonkeyPatch) -> None:
    driver, ep, clock, recorder = subscribed(monkeypatch, implicit_acknowledgements=False)
    held: list[TaskStatus] = []
    recorder.on_update = lambda d, status: held.append(status)
    ep.deliver(update("t1", b"u-1"))
    ep.deliver(update("t2", b"u-2"))
    clock.advance(HEARTBEAT)
    assert recorder.names() == ["status_update", "status_update"] and ep.take() == []
    driver.acknowledge(held[1])  # in any order, whenever the framework is ready
    assert ep.take() == [sm.Acknowledge("F1", "A1", "t2", b"u-2")]
    driver.acknowledge(held[0])
    assert ep.take() == [sm.Acknowledge("F1", "A1", "t1", b"u-1")]
    driver.acknowledge(TaskStatus(task_id="t3", state=TaskState.RUNNING, agent_id="A1"))  # no uuid
    assert ep.take() == []


# --- calls on the wire --------------------------------------------------------------------------


def test_launch_decline_kill_and_reconcile_on_the_wire(monkeypatch: pytest.MonkeyPatch) -> None:
    driver, ep, clock, recorder = subscribed(monkeypatch)
    task = TaskInfo(name="t", task_id="t1", agent_id="A1", resources=[], command=CommandInfo(value="true"))
    driver.launch("o1", [task], Filters(refuse_seconds=30))
    driver.launch(["o2", "o3"], [task])
    driver.decline("o4")
    driver.decline(["o5", "o6"], Filters(refuse_seconds=60))
    driver.kill("t1")
    driver.kill("t1", "A1", grace_period=3.0)
    driver.reconcile()
    driver.reconcile([("t1", "A1"), ("t2", None)])
    assert ep.take() == [
        sm.Accept("F1", ["o1"], [sm.Launch([task])], Filters(refuse_seconds=30)),
        sm.Accept("F1", ["o2", "o3"], [sm.Launch([task])]),
        sm.Decline("F1", ["o4"]),
        sm.Decline("F1", ["o5", "o6"], Filters(refuse_seconds=60)),
        sm.Kill("F1", "t1"),
        sm.Kill("F1", "t1", "A1", KillPolicy(3.0)),
        sm.Reconcile("F1"),
        sm.Reconcile("F1", [ReconcileTask("t1", "A1"), ReconcileTask("t2", None)]),
    ]


def test_stop_tears_down_and_closes_failover_keeps_the_framework(monkeypatch: pytest.MonkeyPatch) -> None:
    driver, ep, clock, recorder = subscribed(monkeypatch)
    done = driver.stop()
    assert driver.stop() is done  # idempotent
    clock.pump([0, 1.0])  # the teardown on the next turn, the close a moment later
    assert done.called and ep.closed and ep.take() == [sm.Teardown("F1")]
    ep.deliver(sm.Offers([offer("o1")]))
    assert recorder.calls == []  # nothing is delivered once stopping

    driver, ep, clock, recorder = subscribed(monkeypatch)
    driver.stop(failover=True)
    clock.pump([0, 1.0])
    assert ep.closed and ep.take() == []
    clock.advance(10 * MAX_BACKOFF * MISSED_HEARTBEATS)
    assert ep.take() == []  # no retry or silence check outlives the driver


def test_a_resubscription_declares_the_latest_demand(monkeypatch: pytest.MonkeyPatch) -> None:
    driver, ep, clock, recorder = make(monkeypatch, demand=[(Resources.parse("cpus:1"), 2)])
    first = ep.take()[0]
    assert first.demand == [DemandShape(resources=Resources.parse("cpus:1").to_wire(), count=2)]
    ep.deliver(sm.Subscribed("F1", HEARTBEAT, MASTER))
    driver.declare_demand([Resources.parse("mem:64")], role="web")
    declared = [DemandShape(resources=Resources.parse("mem:64").to_wire(), count=1, role="web")]
    assert ep.take() == [sm.DeclareDemand("F1", declared)]
    ep.on_reconnect()
    assert [call.demand for call in ep.take(sm.Subscribe)] == [declared]


# --- kills are repeated until the task ends (issue 14) ------------------------------------------


def test_a_kill_is_sent_again_with_backoff_until_a_terminal_update_for_the_task(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from tepui.sdk.scheduler import KILL_RETRY, MAX_KILL_RETRY
    driver, ep, clock, recorder = subscribed(monkeypatch)
    driver.kill("t1", "A1")
    assert ep.take(sm.Kill) == [sm.Kill("F1", "t1", "A1")]
    clock.advance(KILL_RETRY)
    assert ep.take(sm.Kill) == [sm.Kill("F1", "t1", "A1")], "the first KILL may have been lost"
    clock.advance(KILL_RETRY)
    assert ep.take(sm.Kill) == [], "then after 10 s (doubling)"
    clock.advance(KILL_RETRY)
    assert ep.take(sm.Kill) == [sm.Kill("F1", "t1", "A1")]
    ep.deliver(sm.Update(TaskStatus(task_id="t1", state=TaskState.RUNNING, agent_id="A1", uuid=b"r")))
    clock.advance(4 * KILL_RETRY)
    assert ep.take(sm.Kill) == [sm.Kill("F1", "t1", "A1")], "a non-terminal update changes nothing"
    ep.deliver(sm.Update(TaskStatus(task_id="t1", state=TaskState.KILLED, agent_id="A1", uuid=b"k")))
    clock.advance(2 * MAX_KILL_RETRY)
    assert ep.take(sm.Kill) == [], "the task ended: no more kills"


def test_kills_stop_with_the_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    from tepui.sdk.scheduler import KILL_RETRY
    driver, ep, clock, recorder = subscribed(monkeypatch)
    driver.kill("t1")
    driver.stop()
    clock.advance(10 * KILL_RETRY)
    assert [b for b in ep.take() if isinstance(b, sm.Kill)] == [sm.Kill("F1", "t1")]


# --- ERROR correlation (issue 15) ---------------------------------------------------------------


def test_every_call_carries_a_call_id_which_the_call_returns(monkeypatch: pytest.MonkeyPatch) -> None:
    driver, ep, clock, recorder = subscribed(monkeypatch)
    ep.call_ids.clear()
    assert driver.decline("o1", call_id="decline-o1") == "decline-o1"
    own = driver.revive()
    assert ep.call_ids == ["decline-o1", own] and own != "decline-o1"
    assert driver.acknowledge(TaskStatus(task_id="t", state=TaskState.LOST)) is None, "nothing to acknowledge"


def test_an_error_reaches_the_scheduler_with_the_call_it_answers_and_the_driver_goes_on(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from tepui.sdk.scheduler import CallError
    driver, ep, clock, recorder = subscribed(monkeypatch)
    call_id = driver.decline("o1")
    ep.deliver(sm.Error("DECLINE: offer 'o1' is not valid", call_id=call_id, call_type="DECLINE",
                        field="$.body.offer_ids[0]"))
    [(name, message)] = recorder.calls
    assert name == "error" and isinstance(message, CallError) and message == "DECLINE: offer 'o1' is not valid"
    assert (message.call_id, message.call_type, message.field) == (call_id, "DECLINE", "$.body.offer_ids[0]")
    ep.deliver(sm.Offers([offer("o2")]))
    assert recorder.calls[-1] == ("offers", ["o2"]) and driver.connected


def test_the_default_error_callback_logs_the_call(monkeypatch: pytest.MonkeyPatch,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(Recorder, "error", Scheduler.error)
    driver, ep, clock, recorder = subscribed(monkeypatch)
    with caplog.at_level("WARNING", logger="tepui.sdk.scheduler"):
        ep.deliver(sm.Error("KILL refused", call_id="k-1", call_type="KILL"))
    assert "event=call_refused call_type=KILL call_id=k-1 field=None message='KILL refused'" in caplog.text


def test_a_repeated_kill_keeps_the_call_id_it_was_given(monkeypatch: pytest.MonkeyPatch) -> None:
    from tepui.sdk.scheduler import KILL_RETRY
    driver, ep, clock, recorder = subscribed(monkeypatch)
    ep.call_ids.clear()
    driver.kill("t1", call_id="kill-t1")
    clock.advance(KILL_RETRY)
    assert ep.take(sm.Kill) == [sm.Kill("F1", "t1")] * 2 and ep.call_ids == ["kill-t1", "kill-t1"]
