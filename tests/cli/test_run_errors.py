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


class _UnconnectedDriver(_Driver):
    connected = False

    def __init__(self, problem: str | None) -> None:
        self.handshake_problem = problem


def test_an_aborted_handshake_points_at_a_stale_master_key_not_at_a_missing_cluster(monkeypatch: Any) -> None:
    monkeypatch.setenv("TEPUI_CONFIG", "/tmp/tepui-test/config.yaml")
    run, said = one_task()
    driver: Any = _UnconnectedDriver("handshake_aborted")
    run.check_subscribed(driver, "127.0.0.1:5050")
    assert run.exit_code == EXIT_TEPUI_ERROR and driver.stopped
    assert said == ["Error: the master at 127.0.0.1:5050 ended the handshake: the master's key in the client "
                    "configuration (/tmp/tepui-test/config.yaml, from $TEPUI_CONFIG or ~/.config/tepui/config.yaml) "
                    "is probably stale, after `tepui certs rotate-master --finish` or a new key store. Run `tepui up` "
                    "again for a local cluster (it rewrites the configuration), or re-copy the client configuration "
                    "from the cluster."]


def test_no_answer_at_all_still_asks_whether_a_cluster_runs() -> None:
    run, said = one_task()
    driver: Any = _UnconnectedDriver(None)
    run.check_subscribed(driver, "127.0.0.1:5050")
    assert run.exit_code == EXIT_TEPUI_ERROR and len(said) == 1 and "Is a cluster running?" in said[0]
