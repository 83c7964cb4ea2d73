"""``tepui run`` and a master's ERROR: only a refused SUBSCRIBE ends the run (issue 15: a DECLINE
that crossed a RESCIND is refused as a matter of course and must not fail the command)."""

from __future__ import annotations

from typing import Any

from tepui.cli.run import EXIT_TEPUI_ERROR, OneTask
from tepui.sdk import CallError
from tepui.sdk.protocol import scheduler as sm


class _Driver:
    stopped = False

    def stop_and_exit(self) -> None:
        self.stopped = True


def one_task() -> tuple[OneTask, list[str]]:
    said: list[str] = []
    run = OneTask(["true"], 0.1, 32, "t", {}, 10.0, reactor=None, echo=lambda text, **_: said.append(text))
    return run, said


def test_a_refused_decline_is_told_and_the_run_goes_on() -> None:
    run, said = one_task()
    driver: Any = _Driver()
    run.scheduler.error(driver, CallError(sm.Error("DECLINE: offer 'o1' is not valid", call_type="DECLINE")))
    assert said == ["the master refused a DECLINE: DECLINE: offer 'o1' is not valid"]
    assert run.exit_code is None and not driver.stopped


def test_a_refused_subscribe_ends_the_run_as_a_tepui_error() -> None:
    run, said = one_task()
    driver: Any = _Driver()
    run.scheduler.error(driver, CallError(sm.Error("SUBSCRIBE refused: role", call_type="SUBSCRIBE")))
    assert run.exit_code == EXIT_TEPUI_ERROR and driver.stopped
    assert said == ["Error: the master refused the subscription: SUBSCRIBE refused: role"]
