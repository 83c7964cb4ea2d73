"""ISO 8601 repeating intervals (Chronos' ``schedule``): ``R[n]/<start>/<duration>``.

Why a parser of our own around isodate: isodate has no interval parser (``R5/…`` raises,
gweis/isodate#77) and its ``parse_duration`` returns ``timedelta(days=1)`` for both ``P1D`` and
``PT24H`` (#74), losing the difference that matters across DST (BATCH_CRON_NOTES §B). So isodate
parses the start (``parse_datetime``) and checks the duration's syntax, and the designators are
read here:

- the date part (``Y``, ``M``, ``W``, ``D``) is **calendar** time in the schedule's zone: fire
  *k* is the start's wall clock plus *k* months and *k*·days, computed from the start every time
  (never by adding to the previous fire, which drifts at month ends: Jan 31 + P1M = Feb 29, + P1M
  = Mar 29). A day clamped to the month's end (Jan 31 → Feb 29) is the month's last day; a wall
  clock skipped or repeated by DST follows :mod:`.wallclock` (first instant at or after it);
- the time part (``H``, ``M``, ``S``) is **elapsed** time added after that: ``PT24H`` is always
  24 hours, ``P1D`` is 23 or 25 across a DST change.

Refused, with the reason: ``R/P1D`` (no start), ``R/<duration>/<end>`` (counts backwards from an
end; write the start), ``R/<start>/<end>``, a start without an offset (naive: which zone?), a
start whose offset is not the zone's at that instant (``…T02:30Z`` in Europe/Berlin: write
``+01:00``, so the instant and the wall clock the user meant cannot disagree), ``R0``,
fractions of a second, and an empty or zero duration. Pure.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import isodate

from tepui.frameworks.cron.wallclock import first_instant, local_of

__all__ = ["IntervalError", "MAX_REPETITIONS", "RepeatingInterval", "parse_interval"]

#: ``R<n>`` at most this; beyond it write ``R`` (unbounded).
MAX_REPETITIONS = 1_000_000_000

_SHAPE = re.compile(r"^R(?P<n>\d*)/(?P<a>[^/]+)(?:/(?P<b>[^/]+))?$")
_DURATION = re.compile(
    r"^P(?:(?P<Y>\d+)Y)?(?:(?P<Mo>\d+)M)?(?:(?P<W>\d+)W)?(?:(?P<D>\d+)D)?"
    r"(?:T(?:(?P<H>\d+)H)?(?:(?P<Mi>\d+)M)?(?:(?P<S>\d+)S)?)?$"
)


class IntervalError(ValueError):
    """Not an accepted repeating interval; the message says what to write."""


@dataclass(frozen=True)
class RepeatingInterval:
    """``R[n]/start/duration``: fire *k* (from 0) at :meth:`fire_at`; ``repetitions`` None is
    unbounded. ``start`` is a Unix instant; ``months``/``days`` are calendar steps in the zone,
    ``seconds`` elapsed."""

    repetitions: int | None
    start: float
    months: int
    days: int
    seconds: int

    @property
    def calendar(self) -> bool:
        return bool(self.months or self.days)

    def fire_at(self, k: int, zone: ZoneInfo) -> float | None:
        """The instant of fire ``k``, None past the last repetition or year 9999."""
        if k < 0 or (self.repetitions is not None and k >= self.repetitions):
            return None
        if k == 0:
            return self.start
        base = self.start
        if self.calendar:
            local = local_of(self.start, zone)
            years, month0 = divmod(local.month - 1 + k * self.months, 12)
            year = local.year + years
            if year > 9998:
                return None
            day = min(local.day, calendar.monthrange(year, month0 + 1)[1])
            try:
                wall = local.replace(year=year, month=month0 + 1, day=day) + dt.timedelta(days=k * self.days)
            except OverflowError:
                return None
            if wall.year > 9998:
                return None
            base = first_instant(wall, zone)
        at = base + k * self.seconds
        return at if at < 253_000_000_000 else None  # ~ year 9987: past it, no more fires

    def first_index_after(self, t: float, zone: ZoneInfo) -> int | None:
        """The smallest ``k`` whose fire is strictly after ``t`` (None when none is).
        O(log k): fires are increasing in ``k``, so an exponential then binary search."""
        if self.start > t:
            return 0
        if not self.calendar:
            k = int((t - self.start) // self.seconds) + 1
            return k if self.fire_at(k, zone) is not None else None
        high = 1
        while True:  # doubling: ends at the first fire past t, the last repetition or year 9999
            at = self.fire_at(high, zone)
            if at is None or at > t:
                break
            high *= 2
        low = high // 2
        # invariant: fire(low) <= t; the answer is in (low, high] (None counts as past t)
        while low + 1 < high:
            mid = (low + high) // 2
            at = self.fire_at(mid, zone)
            if at is not None and at <= t:
                low = mid
            else:
                high = mid
        return high if self.fire_at(high, zone) is not None else None


def _duration(text: str) -> tuple[int, int, int]:
    """``(months, days, seconds)`` of an ISO duration, whole units only."""
    try:
        isodate.parse_duration(text)
    except (isodate.ISO8601Error, ValueError) as exc:
        raise IntervalError(f"{text!r} is not an ISO 8601 duration ({exc}): write e.g. PT1H, P1D or P1M") from None
    match = _DURATION.match(text)
    if match is None or text in ("P", "PT") or text.endswith("T"):
        raise IntervalError(f"{text!r}: write whole units without fractions or signs (PT90S, not PT1.5M)")
    n = {name: int(value or 0) for name, value in match.groupdict().items()}
    months, days = n["Y"] * 12 + n["Mo"], n["W"] * 7 + n["D"]
    seconds = n["H"] * 3600 + n["Mi"] * 60 + n["S"]
    if months == days == seconds == 0:
        raise IntervalError(f"{text!r} is zero: a repeating interval needs a positive duration")
    return months, days, seconds


def parse_interval(text: str, zone: ZoneInfo) -> RepeatingInterval:
    """Parses ``R[n]/start/duration`` for a schedule in ``zone``. Raises :class:`IntervalError`."""
    match = _SHAPE.match(text.strip())
    if match is None:
        raise IntervalError(f"{text!r}: write R[n]/<start>/<duration>, e.g. R/2026-01-01T00:00:00Z/PT1H")
    first, second = match.group("a"), match.group("b")
    if second is None:
        raise IntervalError(f"{text!r} has no start: write R[n]/<start>/<duration>, e.g. R/2026-01-01T09:00:00+01:00/P1D")
    if first.startswith("P"):
        raise IntervalError(f"{text!r}: R/<duration>/<end> counts back from an end; write R[n]/<start>/<duration>")
    if not second.startswith("P"):
        raise IntervalError(f"{text!r}: R/<start>/<end> is not accepted; write R[n]/<start>/<duration>")
    repetitions = int(match.group("n")) if match.group("n") else None
    if repetitions is not None and not 1 <= repetitions <= MAX_REPETITIONS:
        raise IntervalError(f"R{repetitions}: write 1 to {MAX_REPETITIONS} repetitions, or R for unbounded")
    try:
        start = isodate.parse_datetime(first)
    except (isodate.ISO8601Error, ValueError) as exc:
        raise IntervalError(f"start {first!r} is not an ISO 8601 date and time ({exc})") from None
    if start.tzinfo is None or start.utcoffset() is None:
        raise IntervalError(
            f"start {first!r} has no offset: add the zone's offset (e.g. +01:00) or Z; the wall clock is then read in time_zone"
        )
    if start.microsecond:
        raise IntervalError(f"start {first!r}: whole seconds only")
    at = start.timestamp()
    expected = dt.datetime.fromtimestamp(at, zone)
    if expected.utcoffset() != start.utcoffset():
        raise IntervalError(
            f"start {first!r} has offset {_offset(start)}, but {zone.key} is at {_offset(expected)} then: "
            f"write {expected.isoformat()} (the same instant) or the wall-clock time you meant with {_offset(expected)}"
        )
    months, days, seconds = _duration(second)
    return RepeatingInterval(repetitions, at, months, days, seconds)


def _offset(moment: dt.datetime) -> str:
    text = moment.strftime("%z")
    return f"{text[:3]}:{text[3:]}" if text else "?"
