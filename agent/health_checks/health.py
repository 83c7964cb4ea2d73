"""Health checks, the pure part: when to probe, and what a probe's result means.

Mesos semantics (defaults: delay 15 s, interval 10 s, timeout 20 s, 3 consecutive failures,
grace period 10 s): the first probe runs ``delay_seconds`` after the task is RUNNING, then
every ``interval_seconds``. Failures inside the grace period (counted from the task's start)
are ignored until the first success — a slow starter is not killed for starting slowly. Every
change of health is a status update with ``healthy`` set; ``consecutive_failures`` failures in
a row kill the task, which then ends FAILED (Tepui's choice: a framework should treat it as a
failure to replace, as Marathon does).

The probes themselves (command, HTTP, TCP) run in the shell (``health_probes.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from tepui.sdk.protocol.values import HealthCheck


@dataclass
class HealthState:
    started_at: float
    healthy: bool | None = None  # unknown until the first counted result
    consecutive_failures: int = 0
    succeeded_once: bool = False
    last_message: str = ""


@dataclass(frozen=True)
class Verdict:
    report: bool | None  # the new health to report in a status update, None: nothing changed
    kill: bool  # the task failed too many checks in a row
    message: str


def first_probe_at(check: HealthCheck, started_at: float) -> float:
    return started_at + max(0.0, check.delay_seconds)


def judge(state: HealthState, check: HealthCheck, ok: bool, detail: str, now: float) -> Verdict:
    """Applies one probe result to ``state`` and says what to do."""
    if ok:
        state.succeeded_once = True
        state.consecutive_failures = 0
        state.last_message = detail
        if state.healthy is not True:
            state.healthy = True
            return Verdict(True, False, f"health check passed: {detail}")
        return Verdict(None, False, detail)
    in_grace = now < state.started_at + check.grace_period_seconds
    if in_grace and not state.succeeded_once:
        return Verdict(None, False, f"health check failed during the grace period (ignored): {detail}")
    state.consecutive_failures += 1
    state.last_message = detail
    limit = max(1, check.consecutive_failures)
    if state.consecutive_failures >= limit:
        state.healthy = False
        return Verdict(False, True, f"unhealthy: {state.consecutive_failures} consecutive health check failures "
                                    f"(last: {detail}); killing the task")
    if state.healthy is not False:
        state.healthy = False
        return Verdict(False, False, f"health check failed ({state.consecutive_failures}/{limit}): {detail}")
    return Verdict(None, False, detail)
