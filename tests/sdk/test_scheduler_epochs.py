"""The scheduler driver's epoch fencing (RELIABILITY scenario 27), on a fake clock: what a
superseded master sends is dropped before the scheduler sees it, and counted."""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock

from tepui.sdk import FrameworkInfo, Scheduler, SchedulerDriver
from tepui.sdk.codec import envelope
from tepui.sdk.protocol import scheduler as sm
from tepui.sdk.protocol.values import MasterInfo


class Recorder(Scheduler):
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def subscribed(self, driver: SchedulerDriver, framework_id: str, master_info: MasterInfo) -> None:
        self.calls.append(("subscribed", master_info.epoch))

    def rescinded(self, driver: SchedulerDriver, offer_id: str) -> None:
        self.calls.append(("rescinded", offer_id))

    def error(self, driver: SchedulerDriver, message: str) -> None:
        self.calls.append(("error", message))


def deliver(driver: SchedulerDriver, body: Any, epoch: int) -> None:
    """As the transport hands the driver a frame: encoded bytes, decoded by its codec."""
    driver._on_message(driver.codec.encode(envelope(body, 1, epoch)))


def test_messages_from_an_older_epoch_are_dropped_and_counted_and_a_newer_one_is_adopted() -> None:
    scheduler = Recorder()
    driver = SchedulerDriver(scheduler, FrameworkInfo(user="u", name="f"), "127.0.0.1:5050", reactor=Clock(),
                             insecure=True)
    master = MasterInfo(id="m5", address="127.0.0.1:5050", hostname="h", version="0.1.0", epoch=5)
    deliver(driver, sm.Subscribed("F1", 15.0, master), epoch=5)
    deliver(driver, sm.Rescind("from-the-old-master"), epoch=4)
    deliver(driver, sm.Error("from-the-old-master"), epoch=4)
    assert (driver.master_epoch, driver.stale_epoch_dropped) == (5, 2)
    deliver(driver, sm.Rescind("from-a-newer-master"), epoch=6)  # adopted from any message
    deliver(driver, sm.Rescind("from-the-subscribed-master"), epoch=5)
    assert (driver.master_epoch, driver.stale_epoch_dropped) == (6, 3)
    assert scheduler.calls == [("subscribed", 5), ("rescinded", "from-a-newer-master")]
