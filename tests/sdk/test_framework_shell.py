"""``tepui.sdk.framework_shell``: what the services and batch shells share — the driver effects
as the exact driver calls they make, the failover subscription, the store path and the
process's start and stop."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import Any, cast

import pytest
from twisted.internet.task import Clock

from tepui.sdk import Filters, Resources, SchedulerDriver, StoreError
from tepui.sdk.framework_effects import Decline, Demand, Kill, Launch, Reconcile
from tepui.sdk.framework_shell import (
    TICK_SECONDS, FrameworkOptions, FrameworkShell, advertised_ip, default_store_path, framework_driver, open_store, perform,
    run_until_shutdown, subscribed_driver, subscription,
)
from tepui.sdk.scheduler import LONG_RUNNING_FAILOVER_TIMEOUT, Scheduler


class RecordingDriver:
    """Records every call the shell makes of the SDK driver."""

    def __init__(self, framework_id: str | None = "fw") -> None:
        self.framework_id = framework_id
        self.calls: list[tuple[Any, ...]] = []

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: self.calls.append((name, *args, *sorted(kwargs.items())))


def performed(effect: Any, launch_refuse_seconds: float = 5.0) -> list[tuple[Any, ...]]:
    driver = RecordingDriver()
    perform(cast(SchedulerDriver, driver), effect, launch_refuse_seconds)
    return driver.calls


def test_each_driver_effect_is_the_one_driver_call_it_names() -> None:
    assert performed(Launch("o1", ()), 7.0) == [("launch", "o1", [], Filters(refuse_seconds=7.0))]
    assert performed(Decline(("o1", "o2"), 30.0)) == [("decline", ["o1", "o2"], Filters(refuse_seconds=30.0))]
    assert performed(Kill("t1", "a1", 3.0)) == [("kill", "t1", "a1", 3.0)]
    assert performed(Reconcile((("t1", "a1"),))) == [("reconcile", [("t1", "a1")])]


def test_demand_declares_its_shapes_then_revives_or_with_nothing_waiting_suppresses() -> None:
    shape = (Resources.parse("cpus:1"), 2)
    assert performed(Demand((shape,), revive=True)) == [("declare_demand", [shape]), ("revive",)]
    assert performed(Demand((shape,), revive=False)) == [("declare_demand", [shape])]
    assert performed(Demand((), revive=False)) == [("declare_demand", []), ("suppress",)]


def test_driver_effects_wait_for_the_framework_id() -> None:
    unsubscribed, subscribed = RecordingDriver(None), RecordingDriver("fw")
    assert subscribed_driver(None) is None
    assert subscribed_driver(cast(SchedulerDriver, unsubscribed)) is None
    assert subscribed_driver(cast(SchedulerDriver, subscribed)) is subscribed


def test_the_store_defaults_to_the_xdg_state_folder_and_its_folder_is_made(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert default_store_path("x.sqlite") == str(tmp_path / "state" / "tepui" / "x.sqlite")
    path, store = open_store(FrameworkOptions(), "x.sqlite")
    store.close()
    assert path == str(tmp_path / "state" / "tepui" / "x.sqlite") and os.path.exists(path)
    path, store = open_store(FrameworkOptions(store=str(tmp_path / "own" / "y.sqlite")), "x.sqlite")
    store.close()
    assert path == str(tmp_path / "own" / "y.sqlite") and os.path.exists(path)


def test_the_advertised_address_is_the_flag_else_the_listening_one_else_the_loopback() -> None:
    assert advertised_ip(FrameworkOptions(http_ip="10.0.0.5", advertise_ip="fw.example")) == "fw.example"
    assert advertised_ip(FrameworkOptions(http_ip="10.0.0.5")) == "10.0.0.5"
    assert advertised_ip(FrameworkOptions(http_ip="0.0.0.0")) == "127.0.0.1"
    assert advertised_ip(FrameworkOptions(http_ip="")) == "127.0.0.1"


def test_the_framework_subscribes_for_failover_with_its_old_id() -> None:
    options = FrameworkOptions(name="svc", role="web", principal="p", user="u", http_ip="0.0.0.0", http_port=5090,
                               insecure=True)
    driver = framework_driver(Scheduler(), options, "fw-1", Clock(), implicit_acknowledgements=False)
    info = driver.framework
    assert (info.user, info.name, info.id, info.failover_timeout, info.checkpoint, info.roles, info.hostname,
            info.principal, info.webui_url, info.capabilities) == (
        "u", "svc", "fw-1", LONG_RUNNING_FAILOVER_TIMEOUT, True, ["web"], socket.gethostname(), "p",
        "http://127.0.0.1:5090", ["PARTITION_AWARE"])
    assert driver.implicit_acknowledgements is False
    assert subscription(driver)() == {"subscribed": False, "framework_id": "fw-1"}


class FakeReactor(Clock):
    """A clock that records the lifecycle calls a process makes, and runs them when asked."""

    def __init__(self) -> None:
        super().__init__()
        self.when_running: list[Any] = []
        self.triggers: list[tuple[str, str, Any]] = []

    def callWhenRunning(self, f: Any) -> None:
        self.when_running.append(f)

    def addSystemEventTrigger(self, phase: str, event: str, f: Any) -> None:
        self.triggers.append((phase, event, f))

    def run(self) -> None:
        for f in self.when_running:
            f()


def test_the_process_starts_the_driver_and_ticks_then_leaves_with_failover_and_closes() -> None:
    reactor, order = FakeReactor(), []
    driver = RecordingDriver()
    hub, store = RecordingDriver(), RecordingDriver()
    run_until_shutdown(reactor, cast(SchedulerDriver, driver), cast(Any, hub), cast(Any, store),
                       lambda: order.append("tick"), before_close=lambda: order.append("before_close"))
    assert hub.calls == [("start",)] and driver.calls == [("start",)]
    reactor.advance(TICK_SECONDS)
    reactor.advance(TICK_SECONDS)
    assert order == ["tick", "tick"]
    assert [(phase, event) for phase, event, _ in reactor.triggers] == [("before", "shutdown"), ("after", "shutdown")]
    for _, _, f in reactor.triggers:
        f()
    assert driver.calls == [("start",), ("stop", ("failover", True))]
    assert order[-1] == "before_close" and hub.calls[-1] == ("stop",) and store.calls == [("close",)]


def test_the_shell_logs_the_masters_errors_and_on_a_store_failure_stops_the_process(
        caplog: pytest.LogCaptureFixture) -> None:
    reactor = RecordingDriver()
    setattr(reactor, "running", True)  # a running reactor: stop() is called
    shell = FrameworkShell(reactor, cast(Any, None), cast(Any, None), logging.getLogger("tepui.test.fw"), "fw")
    driver = cast(SchedulerDriver, RecordingDriver())
    with caplog.at_level(logging.INFO, logger="tepui.test.fw"):
        shell.error(driver, "no such role")
        shell.disconnected(driver)
        assert not shell.failed
        shell.store_failed(StoreError("disk full"))
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("ERROR", "event=fw_master_error message=no such role"),
        ("WARNING", "event=fw_disconnected (the driver reconnects and re-subscribes)"),
        ("CRITICAL", "event=fw_store_failed error=disk full (exiting; restart to resume)"),
    ]
    assert shell.failed and reactor.calls == [("stop",)]
