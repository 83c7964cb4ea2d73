"""Wall-clock times of a schedule's zone onto UTC instants, with the DST rules written down.

Why our own mapping and not croniter's: croniter 7 (BATCH_CRON_NOTES §B) fires a fixed-time job
twice in the fall-back hour (01:30 EDT and 01:30 EST), as Kubernetes and Nomad do; users file
bugs about that double run (kubernetes#121594), and cronie/Debian run it once. So the schedules
here enumerate *naive local* wall-clock times (croniter without a zone, or calendar arithmetic
for ISO durations: no DST logic involved) and this module turns each one into instants:

- a local time that exists once → that instant;
- a local time **skipped** by a spring-forward (02:30 New York on 2024-03-10) → the first instant
  after the gap (the transition itself, 03:00 EDT), i.e. the first moment the wall clock reads
  at least that time (:func:`first_instant`); a wildcard-hour schedule skips it instead;
- a local time that happens **twice** at fall-back (01:30 New York on 2024-11-03) → its first
  occurrence (:func:`first_instant`), and its second (:func:`second_instant`) only for a
  wildcard-hour schedule, which keeps elapsed-time spacing.

Why :func:`first_instant` is "the first moment the wall clock reads at least ``local``": it is
monotone in ``local`` even across a fall-back, which lets a search over local times stop as soon
as it passes the best instant found (``fires.CronRule.next_after``).

Instants are float Unix seconds (whole seconds here), as every core's ``now`` in Tepui. Pure.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

__all__ = [
    "MAX_SHIFT", "first_instant", "is_skipped", "local_of", "local_text", "occurrences", "second_instant", "utc_text",
]

#: The largest DST shift looked back over (Lord Howe 30 min, the usual 1 h, historical double
#: summer time 2 h), rounded up.
MAX_SHIFT = dt.timedelta(hours=3)

_UTC = dt.timezone.utc


def local_of(at: float, zone: ZoneInfo) -> dt.datetime:
    """The naive wall-clock time at instant ``at`` in ``zone`` (fold dropped)."""
    return dt.datetime.fromtimestamp(at, zone).replace(tzinfo=None, fold=0)


def local_text(at: float, zone: ZoneInfo) -> str:
    """``2024-11-03T01:30:00-05:00``: the wall clock with its offset, so the two 01:30s differ."""
    return dt.datetime.fromtimestamp(at, zone).isoformat()


def _round_trip(local: dt.datetime, zone: ZoneInfo, fold: int) -> tuple[float, bool]:
    aware = local.replace(tzinfo=zone, fold=fold)
    at = aware.timestamp()
    return at, local_of(at, zone) == local


def occurrences(local: dt.datetime, zone: ZoneInfo) -> tuple[float, float | None, bool]:
    """``(first, second, skipped)`` for wall-clock ``local``: :func:`first_instant`, the second
    occurrence when ``local`` happens twice (else None), and whether it falls in a gap."""
    at0, ok0 = _round_trip(local, zone, 0)
    at1, ok1 = _round_trip(local, zone, 1)
    if ok0 and ok1:
        return min(at0, at1), (max(at0, at1) if at0 != at1 else None), False
    if ok0 or ok1:
        return (at0 if ok0 else at1), None, False
    # In a gap: PEP 495 maps fold=1 with the offset after (an instant before the transition)
    # and fold=0 with the offset before (one after it). The transition lies between; find the
    # first whole second whose wall clock is past ``local``.
    low, high = int(min(at0, at1)), int(max(at0, at1)) + 1
    while low < high:
        mid = (low + high) // 2
        if local_of(mid, zone) >= local:
            high = mid
        else:
            low = mid + 1
    return float(low), None, True


def first_instant(local: dt.datetime, zone: ZoneInfo) -> float:
    """The first instant the wall clock reads at least ``local``: its first occurrence, or the
    end of the gap it falls in (the transition instant)."""
    return occurrences(local, zone)[0]


def second_instant(local: dt.datetime, zone: ZoneInfo) -> float | None:
    """The second occurrence of an ambiguous ``local`` (fall-back), or None when it has one."""
    return occurrences(local, zone)[1]


def is_skipped(local: dt.datetime, zone: ZoneInfo) -> bool:
    """Whether the wall clock never reads ``local`` (inside a spring-forward gap)."""
    return occurrences(local, zone)[2]


def utc_text(at: float) -> str:
    """``2024-11-03T05:30:00Z``."""
    return dt.datetime.fromtimestamp(at, _UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
