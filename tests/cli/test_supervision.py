"""The supervision policy of `tepui up` (cli/supervision.py): exact decisions on a fake clock."""

from __future__ import annotations

import signal

import pytest

from tepui.cli.supervision import GiveUp, History, NotAFailure, Restart, RestartPolicy, describe_exit, is_failure

POLICY = RestartPolicy()  # 1 s doubling to 30 s; give up after 5 restarts within 120 s


@pytest.mark.parametrize("code", [0, -signal.SIGTERM, -signal.SIGINT, -signal.SIGHUP, -signal.SIGPIPE])
def test_a_clean_exit_or_a_requested_stop_is_not_a_failure(code: int) -> None:
    assert not is_failure(code)
    assert POLICY.decide(History(0.0), code, 5.0) == NotAFailure()


@pytest.mark.parametrize("code", [1, 2, 137, -signal.SIGKILL, -signal.SIGSEGV, -signal.SIGABRT, -signal.SIGUSR1,
                                  -(signal.SIGRTMIN + 1)])
def test_an_error_code_or_an_unrequested_signal_is_a_failure(code: int) -> None:
    assert is_failure(code)
    assert isinstance(POLICY.decide(History(0.0), code, 5.0), Restart)


def test_a_killed_child_is_restarted_after_one_second() -> None:
    decision = POLICY.decide(History(started_at=0.0), -signal.SIGKILL, 40.0)
    assert decision == Restart(at=41.0, delay=1.0, count=1, history=History(41.0, (41.0,), 1))
    line = POLICY.restart_line("agent-1", -signal.SIGKILL, decision, "on its work dir")
    assert line == "agent-1 exited with code -9 (killed); restarting it on its work dir in 1 s (restart 1 of 5 in 120 s)"


def test_a_child_that_dies_at_once_backs_off_1_2_4_8_16_s_then_is_given_up_on() -> None:
    history, now, seen = History(0.0), 0.5, []
    for _ in range(5):
        decision = POLICY.decide(history, 1, now)
        assert isinstance(decision, Restart)
        seen.append((decision.at, decision.delay, decision.count))
        history, now = decision.history, decision.at + 0.5  # dies half a second after each start
    assert seen == [(1.5, 1.0, 1), (4.0, 2.0, 2), (8.5, 4.0, 3), (17.0, 8.0, 4), (33.5, 16.0, 5)]
    decision = POLICY.decide(history, 1, now)
    assert decision == GiveUp(restarts=5, interval=120.0)
    assert POLICY.give_up_line("services", 1, decision) == (
        "services exited with code 1 again: 5 restarts within 120 s did not help (a crash loop); giving up on it")


def test_a_child_that_crashes_every_20_s_is_capped_at_30_s_and_never_given_up_on() -> None:
    history, now, delays = History(0.0), 20.0, []
    for _ in range(12):
        decision = POLICY.decide(history, -signal.SIGSEGV, now)
        assert isinstance(decision, Restart), f"gave up at {now}: {decision}"
        delays.append(decision.delay)
        history, now = decision.history, decision.at + 20.0
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0] + [30.0] * 7


def test_a_child_that_crashes_every_10_s_is_a_crash_loop() -> None:
    history, now = History(0.0), 10.0
    for _ in range(5):
        decision = POLICY.decide(history, 1, now)
        assert isinstance(decision, Restart)
        history, now = decision.history, decision.at + 10.0
    assert now == 91.0 and POLICY.decide(history, 1, now) == GiveUp(5, 120.0)


def test_a_child_that_ran_a_whole_interval_starts_the_backoff_over() -> None:
    history = History(started_at=100.0, restarts=(60.0, 70.0, 85.0, 100.0), failures_in_a_row=4)
    decision = POLICY.decide(history, -signal.SIGKILL, 220.0)
    assert isinstance(decision, Restart)
    assert (decision.delay, decision.count) == (1.0, 1)  # the old restarts fell out of the window
    assert decision.history == History(221.0, (221.0,), 1)
    # A minute less, and it is the fifth failure in a row, with four restarts within 120 s.
    decision = POLICY.decide(history, -signal.SIGKILL, 160.0)
    assert isinstance(decision, Restart) and (decision.delay, decision.count) == (16.0, 5)


def test_the_window_counts_only_the_restarts_of_the_last_interval() -> None:
    # Five restarts, the first 121 s before this exit: four are recent, so a fifth is allowed.
    history = History(started_at=119.0, restarts=(0.0, 40.0, 80.0, 100.0, 119.0), failures_in_a_row=5)
    decision = POLICY.decide(history, 1, 121.0)
    assert isinstance(decision, Restart) and decision.count == 5
    assert decision.history.restarts == (40.0, 80.0, 100.0, 119.0, decision.at)
    assert decision.delay == 30.0  # 2**5 s, capped
    # Had the first restart been 119 s before the exit, all five would be recent: a crash loop.
    history = History(started_at=119.0, restarts=(2.0, 40.0, 80.0, 100.0, 119.0), failures_in_a_row=5)
    assert POLICY.decide(history, 1, 121.0) == GiveUp(5, 120.0)


def test_a_custom_policy_uses_its_own_numbers() -> None:
    policy = RestartPolicy(initial_delay=0.5, max_delay=2.0, burst=2, interval=10.0)
    first = policy.decide(History(0.0), 1, 1.0)
    assert first == Restart(1.5, 0.5, 1, History(1.5, (1.5,), 1))
    second = policy.decide(first.history, 1, 2.0)
    assert isinstance(second, Restart) and (second.at, second.delay, second.count) == (3.0, 1.0, 2)
    assert policy.decide(second.history, 1, 3.5) == GiveUp(2, 10.0)
    assert policy.restart_line("x", 1, second, "") == "x exited with code 1; restarting it in 1 s (restart 2 of 2 in 10 s)"


def test_exits_are_described_with_the_signal_in_words() -> None:
    assert describe_exit(0) == "code 0"
    assert describe_exit(3) == "code 3"
    assert describe_exit(-signal.SIGKILL) == "code -9 (killed)"
    assert describe_exit(-signal.SIGTERM) == "code -15 (terminated)"
    assert describe_exit(-signal.SIGSEGV) == "code -11 (segmentation fault)"
