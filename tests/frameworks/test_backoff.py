"""Launch backoff on a fake clock: Marathon's 1 s x 1.15, capped at 300 s, reset on success."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tepui.frameworks.services.backoff import BackoffPolicy, LaunchBackoff


def test_no_failure_launches_immediately() -> None:
    backoff = LaunchBackoff()
    assert backoff.next_launch_at(100.0) == 100.0
    assert backoff.may_launch(100.0)
    assert backoff.remaining(100.0) == 0.0


def test_delay_grows_by_factor_from_last_failure() -> None:
    b = LaunchBackoff().failed(now=10.0)
    assert b.delay == 1.0
    assert b.next_launch_at(10.0) == 11.0
    assert not b.may_launch(10.5)
    assert b.remaining(10.5) == pytest.approx(0.5)
    assert b.may_launch(11.0)

    b = b.failed(now=20.0)
    assert b.delay == pytest.approx(1.15)
    assert b.next_launch_at(20.0) == pytest.approx(21.15)

    b = b.failed(now=30.0)
    assert b.delay == pytest.approx(1.3225)
    assert b.next_launch_at(30.0) == pytest.approx(31.3225)

    b = b.failed(now=40.0)
    assert b.delay == pytest.approx(1.520875)
    assert b.failures == 4


def test_next_launch_never_in_the_past() -> None:
    b = LaunchBackoff().failed(now=0.0)
    assert b.next_launch_at(50.0) == 50.0


def test_delay_is_capped_at_max_launch_delay() -> None:
    b = LaunchBackoff()
    for n in range(200):
        b = b.failed(now=float(n))
    # 1.15 ** 41 ~ 307 > 300, so the cap is reached after 42 failures.
    assert b.delay == 300.0
    assert b.next_launch_at(199.0) == 499.0
    assert BackoffPolicy().delay_after(41) == pytest.approx(1.15 ** 40)
    assert BackoffPolicy().delay_after(42) == 300.0


def test_success_resets() -> None:
    b = LaunchBackoff().failed(0.0).failed(1.0).failed(2.0)
    b = b.succeeded()
    assert b.failures == 0
    assert b.next_launch_at(2.0) == 2.0
    assert b.failed(5.0).delay == 1.0


def test_custom_policy_and_small_cap() -> None:
    policy = BackoffPolicy(backoff_seconds=10, backoff_factor=2, max_launch_delay_seconds=25)
    b = LaunchBackoff(policy=policy)
    delays = []
    for t in range(4):
        b = b.failed(float(t))
        delays.append(b.delay)
    assert delays == [10, 20, 25, 25]
    # A base above the cap is clamped too.
    assert LaunchBackoff(BackoffPolicy(backoff_seconds=500)).failed(0).delay == 300


def test_values_are_immutable() -> None:
    b = LaunchBackoff()
    b2 = b.failed(0.0)
    assert b.failures == 0 and b2.failures == 1


@pytest.mark.parametrize("kwargs", [
    {"backoff_seconds": -1}, {"backoff_factor": 0.5}, {"max_launch_delay_seconds": math.inf},
    {"backoff_seconds": math.nan},
])
def test_invalid_policies_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        BackoffPolicy(**kwargs)


@given(st.integers(min_value=0, max_value=2000))
def test_delay_after_matches_state_machine_and_is_bounded(failures: int) -> None:
    policy = BackoffPolicy()
    b = LaunchBackoff(policy=policy)
    for t in range(failures):
        b = b.failed(float(t))
    assert b.delay == pytest.approx(policy.delay_after(failures))
    assert 0.0 <= b.delay <= 300.0
    if failures:
        expected = min(1.15 ** min(failures - 1, 60), 300.0)
        assert b.delay == pytest.approx(expected)
