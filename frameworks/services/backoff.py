"""Launch backoff for one app: how long to wait before launching it again.

A service whose command crashes on start would otherwise be relaunched as fast
as offers arrive, flooding agents and the master with doomed tasks. Marathon's
answer, which Tepui keeps (issue 7), is a per-app delay that grows
geometrically with each failed launch and is reset as soon as an instance
comes up: ``backoff_seconds`` (1 s) times ``backoff_factor`` (1.15) per
further failure, capped at ``max_launch_delay_seconds`` (300 s).

The state is a frozen value and every transition returns a new one, so the
framework can persist it next to the app, replay it after a restart, and test
it on a fake clock: nothing here reads a clock, ``now`` is always passed in.

Which task endings count as a failure is the caller's decision. Marathon grows
the delay on FAILED, FINISHED and ERROR, but not on KILLED (a kill that the
framework or an operator asked for says nothing about the app) -- callers
should do the same.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class BackoffPolicy:
    """The app's backoff settings (Marathon's names and defaults)."""

    backoff_seconds: float = 1.0
    backoff_factor: float = 1.15
    max_launch_delay_seconds: float = 300.0

    def __post_init__(self) -> None:
        # Reject what would make the delay shrink, go negative or become NaN:
        # a shrinking backoff would defeat its purpose silently.
        for name in ("backoff_seconds", "backoff_factor", "max_launch_delay_seconds"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.backoff_factor < 1.0:
            raise ValueError(f"backoff_factor must be >= 1.0, got {self.backoff_factor!r}")

    def delay_after(self, failures: int) -> float:
        """The delay after ``failures`` consecutive failed launches.

        Zero failures: no delay. Then ``backoff_seconds * factor ** (n - 1)``,
        capped. Computed by repeated multiplication with an early stop at the
        cap so that a very long failure streak cannot overflow a float.
        """
        if failures <= 0:
            return 0.0
        delay = min(self.backoff_seconds, self.max_launch_delay_seconds)
        for _ in range(failures - 1):
            if delay >= self.max_launch_delay_seconds:
                break
            delay = min(delay * self.backoff_factor, self.max_launch_delay_seconds)
        return delay


@dataclass(frozen=True)
class LaunchBackoff:
    """The backoff state of one app.

    ``failures`` counts consecutive failed launches since the last success,
    ``delay`` is the delay those failures imply, and ``last_failure_at`` is
    when the most recent one was recorded (the delay runs from there).
    """

    policy: BackoffPolicy = field(default_factory=BackoffPolicy)
    failures: int = 0
    delay: float = 0.0
    last_failure_at: float | None = None

    def failed(self, now: float) -> LaunchBackoff:
        """Record a failed launch at ``now``; the next launch waits longer.

        The delay grows from the previous one (Marathon's ``Delay.increased``)
        rather than being recomputed from the count, so the stored value is
        exactly what the operator sees in the queue.
        """
        if self.failures == 0:
            delay = min(self.policy.backoff_seconds, self.policy.max_launch_delay_seconds)
        else:
            delay = min(self.delay * self.policy.backoff_factor,
                        self.policy.max_launch_delay_seconds)
        return replace(self, failures=self.failures + 1, delay=delay, last_failure_at=now)

    def succeeded(self) -> LaunchBackoff:
        """An instance became running/healthy: the app launches freely again.

        A success proves the app can start, so earlier failures (a bad agent,
        a dependency that was down) should no longer slow its replacements.
        """
        return LaunchBackoff(policy=self.policy)

    def next_launch_at(self, now: float) -> float:
        """The earliest moment a launch is allowed: ``now`` if no delay applies."""
        if self.last_failure_at is None or self.failures == 0:
            return now
        return max(now, self.last_failure_at + self.delay)

    def may_launch(self, now: float) -> bool:
        """Whether a launch is allowed at ``now`` (the offer handler's question)."""
        return self.next_launch_at(now) <= now

    def remaining(self, now: float) -> float:
        """Seconds left before a launch is allowed; for ``apps why`` and the queue API."""
        return self.next_launch_at(now) - now
