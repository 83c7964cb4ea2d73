"""Which of a schedule's due fires run and which are missed, when the core looks at the
schedule at ``now`` and every fire up to ``after`` is already decided.

The rules, in this order:

1. A fire late by ``starting_deadline`` or more is MISSED (Kubernetes' startingDeadlineSeconds):
   it is never submitted late.
2. A fire due within the last ``on_time`` seconds is on time (the core ticks every second; a
   few seconds of delay is not downtime) and runs.
3. The others were due while the framework was not running or not ticking (downtime, a clock
   stepped forward): ``catch_up`` decides — ``none``: all missed; ``latest``: only the newest
   runs, and only if no on-time fire supersedes it (Kubernetes' v2 controller, systemd's
   ``Persistent=``); ``all``: each runs, at most ``catch_up_limit`` in all (the newest), the
   older ones missed.

Missed fires are counted, never listed: consecutive fires missed for one reason are one
:class:`Missed` range with a count, found with ``count_between``, and the newest N are found by
a doubling then bisecting search on time (:func:`newest`) — so 10,000 or a million missed fires
cost about 60 bounded calls, not a loop over each (the Kubernetes "too many missed start times"
lesson).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

from tepui.frameworks.cron.definition import FireLike, Policy, Timeline

__all__ = ["Missed", "Plan", "iso", "newest", "plan"]

ON_TIME_LIMIT = 1000  # fires of one on-time window (a per-second schedule has on_time of them)


@dataclass(frozen=True)
class Missed:
    """``count`` fires from ``first`` (its key names the range) through ``through``."""

    first: FireLike
    through: float
    count: int
    reason: str


@dataclass(frozen=True)
class Plan:
    run: list[FireLike] = field(default_factory=list)  # oldest first
    missed: list[Missed] = field(default_factory=list)  # oldest first


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat().replace("+00:00", "Z")


def newest(timeline: Timeline, after: float, until: float, n: int) -> tuple[float, list[FireLike]]:
    """``(cut, fires)``: the newest ``n`` fires in ``(after, until]`` — all of them when there
    are no more — which are exactly the fires in ``(cut, until]``, ``cut >= after``. Fires are
    whole seconds apart at least, so the bisection stops at half a second."""
    fires = list(timeline.fires_between(after, until, n + 1))
    if len(fires) <= n:
        return after, fires
    if n == 0:
        return until, []

    def few(cut: float) -> bool:
        return len(timeline.fires_between(cut, until, n + 1)) <= n

    good, bad, width = until, after, 1.0  # (good, until] has <= n fires, (bad, until] more
    while until - width > bad:
        if not few(until - width):
            bad = until - width
            break
        good, width = until - width, width * 2
    while good - bad > 0.5:
        mid = (good + bad) / 2
        if few(mid):
            good = mid
        else:
            bad = mid
    return good, list(timeline.fires_between(good, until, n))


def _missed(timeline: Timeline, after: float, through: float, reason: str) -> list[Missed]:
    if through <= after:
        return []
    count = timeline.count_between(after, through)
    first = timeline.next_after(after)
    if count == 0 or first is None:
        return []
    return [Missed(first, through, count, reason)]


def plan(timeline: Timeline, policy: Policy, after: float, now: float, on_time: float) -> Plan:
    """The decisions for the fires in ``(after, now]`` (``after``: the schedule's high-water
    mark, which is also the last time the framework looked at it)."""
    if now <= after:
        return Plan()
    missed: list[Missed] = []
    away = f"the framework was not running or not ticking from {iso(after)} to {iso(now)}"
    lo = after
    if policy.starting_deadline is not None and now - policy.starting_deadline > after:
        lo = now - policy.starting_deadline
        missed += _missed(timeline, after, lo, f"late by starting_deadline ({policy.starting_deadline:g}s) "
                                               f"or more: {away}")
    edge = max(lo, now - on_time)
    current = list(timeline.fires_between(edge, now, ON_TIME_LIMIT))
    run: list[FireLike] = []
    if policy.catch_up == "none":
        missed += _missed(timeline, lo, edge, f"catch_up none: {away}")
    elif policy.catch_up == "latest":
        if current:
            missed += _missed(timeline, lo, edge, f"catch_up latest: superseded by {current[-1].key}; {away}")
        else:
            cut, latest = newest(timeline, lo, edge, 1)
            missed += _missed(timeline, lo, cut, f"catch_up latest: superseded by "
                                                 f"{latest[0].key if latest else '?'}; {away}")
            run += latest
    else:
        room = max(policy.catch_up_limit - len(current), 0)
        cut, late = newest(timeline, lo, edge, room)
        missed += _missed(timeline, lo, cut, f"catch_up all: more than catch_up_limit ({policy.catch_up_limit}) "
                                             f"fires were due, the oldest were not run; {away}")
        run += late
    return Plan(run + current, missed)
