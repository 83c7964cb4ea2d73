"""Cron expressions: which wall-clock times match (croniter, with no zone), and the instants
those times are in the schedule's zone (:mod:`.wallclock`).

The syntax accepted: 5 fields (minute hour day-of-month month day-of-week), or 6 with the
**seconds last** (croniter's default: the five familiar fields keep their places; Quartz and
Spring put seconds first, so ``0 30 * * * *`` is refused here as hour 30 rather than silently
read their way), and the macros ``@yearly``/``@annually``, ``@monthly``, ``@weekly``, ``@daily``,
``@midnight``, ``@hourly``. Refused: ``@reboot`` (not a schedule), a 7th (year) field, croniter's
``R`` (random: a restart would move the fire and its key) and ``H`` (hashed) tokens, and
expressions that can never match (``0 0 31 2 *``: croniter's ``is_valid(strict=True)``).

Day-of-month and day-of-week combine with **OR** when both are restricted (POSIX and croniter's
default ``day_or=True``): ``0 0 1-7 * 1`` is "days 1 to 7, and every Monday". Vixie cron's bug
that reads a field starting with ``*`` (``*/2``) as unrestricted, turning OR into AND, is not
reproduced (croniter's ``implement_cron_bug`` stays off).

DST: a schedule whose hour field is a wildcard or a step (``*``, ``*/2``, ``1-23/2``) is
**elapsed-time**: it fires at every instant whose wall clock matches, so in both 01:30s of a
fall-back and not at all for a wall clock a spring-forward skips. Any other schedule is
**fixed-time**: each matching wall-clock time fires once, at the first instant the clock reads
it or, when it is skipped, at the first instant after the gap (cronie's rule; croniter and
Kubernetes fire a fixed-time job twice at fall-back). Pure.
"""

from __future__ import annotations

import datetime as dt
import heapq
import importlib
import platform
import re
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from tepui.frameworks.cron.wallclock import MAX_SHIFT, local_of, occurrences


def _import_croniter() -> None:
    """Imports croniter without the process it would start. Why: croniter 7 calls
    ``platform.architecture()`` at import to detect a 32-bit Python, and on Linux that runs the
    ``file`` command on the interpreter through :mod:`subprocess`, a fork from a pure core
    (tests/test_purity.py caught it). The pointer size, which croniter checks first anyway,
    gives the same answer, so ``platform.architecture`` answers from it during the import."""
    if "croniter" in sys.modules:
        return
    real = platform.architecture
    setattr(platform, "architecture", lambda *_a, **_k: (f"{struct.calcsize('P') * 8}bit", ""))
    try:
        importlib.import_module("croniter")
    finally:
        setattr(platform, "architecture", real)


_import_croniter()

from croniter import CroniterBadDateError, CroniterError, croniter  # noqa: E402  # after the guard above

__all__ = ["MACROS", "CronRule", "ExpressionError", "parse_cron"]

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_RANDOM_OR_HASHED = re.compile(r"(^|[,/\-])\s*[HRhr](?![a-zA-Z])")
_UTC = dt.timezone.utc


class ExpressionError(ValueError):
    """Not an accepted cron expression; the message says what to write."""


@dataclass(frozen=True)
class CronRule:
    """A parsed cron expression: ``expression`` (macros expanded) and whether its hour field is a
    wildcard or step (elapsed-time DST semantics, see the module docstring)."""

    expression: str
    elapsed: bool

    def instants_after(self, t: float, zone: ZoneInfo) -> Iterator[float]:
        """The fire instants strictly after ``t``, increasing, each once. Lazy: constant memory,
        work proportional to the fires taken (plus the wall-clock times DST makes it skip).

        Why the heap: a wall-clock time's instants are its first occurrence (monotone in the wall
        clock, :func:`.wallclock.occurrences`) and, for elapsed-time rules, its second one in a
        fall-back; a second occurrence is due after later wall-clock times' first ones. Once a
        wall-clock time's first instant is reached, nothing later can come before it, so every
        pending instant up to it is final."""
        utc = dt.datetime.fromtimestamp(t, _UTC).replace(tzinfo=None)
        # the lowest wall clock any instant after t can show: a fall-back within MAX_SHIFT of t
        # sets the clock back (t's own wall clock otherwise)
        offset_now = local_of(t, zone) - utc
        offset_later = local_of(t + MAX_SHIFT.total_seconds(), zone) - (utc + MAX_SHIFT)
        begin = utc + min(offset_now, offset_later)
        walk = croniter(self.expression, begin.replace(microsecond=0) - dt.timedelta(seconds=1), ret_type=dt.datetime)
        pending: list[float] = []
        last = t
        while True:
            try:
                local = walk.get_next()
            except (CroniterBadDateError, OverflowError, ValueError):
                break  # no match within croniter's 50-year bound, or past year 9999
            first, second, skipped = occurrences(local, zone)
            if not (skipped and self.elapsed):
                heapq.heappush(pending, first)
            if second is not None and self.elapsed:
                heapq.heappush(pending, second)
            while pending and pending[0] <= first:
                at = heapq.heappop(pending)
                if at > last:
                    last = at
                    yield at
        while pending:
            at = heapq.heappop(pending)
            if at > last:
                last = at
                yield at


def parse_cron(text: str) -> CronRule:
    """Parses and checks a cron expression. Raises :class:`ExpressionError`."""
    expression = " ".join(text.split())
    if expression.startswith("@"):
        macro = MACROS.get(expression.lower())
        if macro is None:
            raise ExpressionError(f"{text!r}: unknown macro; use one of {', '.join(sorted(MACROS))}")
        expression = macro
    fields = expression.split(" ")
    if len(fields) not in (5, 6):
        raise ExpressionError(
            f"{text!r} has {len(fields)} fields: write 5 (minute hour day-of-month month day-of-week) "
            "or 6 with the seconds last"
        )
    if any(_RANDOM_OR_HASHED.search(f) for f in fields):
        raise ExpressionError(f"{text!r}: the R (random) and H (hashed) tokens are not accepted: write the values")
    try:
        valid = croniter.is_valid(expression, strict=True)
    except (CroniterError, ValueError):
        valid = False
    if not valid:
        loose = False
        try:
            loose = croniter.is_valid(expression)
        except (CroniterError, ValueError):
            pass
        why = "can never match (a day the month never has?)" if loose else "is not a valid cron expression"
        raise ExpressionError(f"{text!r} {why}")
    hour = fields[1]
    return CronRule(expression, elapsed=hour.startswith("*") or "/" in hour)
