"""A schedule's fires: when each is, its key, its wall clock, its jitter. Pure.

Every instant here is a **float of Unix seconds** (whole seconds), the ``now`` every Tepui core is
given: never a naive datetime, and no datetime at all across the API, so nothing downstream can
compare a local time with a UTC one. The wall clock is there for people (:attr:`Fire.local`, with
its offset, so the two 01:30s of a fall-back read differently).

Why the key is ``<schedule id>-<unix seconds>``: it is the batch job's id, so it must be the same
after any restart (the batch framework's submit is idempotent on it) and differ for every fire.
Keyed on the UTC instant it does both: a key built from the local time would merge the two
01:30s of a fall-back (BATCH_CRON_NOTES "Pitfalls"); Kubernetes names its Jobs after the
scheduled minute since the epoch, Nomad ``periodic-<unix>``. Seconds, not minutes, because a
6-field expression fires every second.

Why jitter is a hash of the key (systemd's ``RandomizedDelaySec``, made deterministic): a restart
recomputes the same delay, so a fire written ahead before a crash is submitted at the same
moment after it; and it moves only :attr:`Fire.due` (when it is submitted), never the key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from zoneinfo import ZoneInfo

from tepui.frameworks.cron.expressions import CronRule
from tepui.frameworks.cron.intervals import RepeatingInterval
from tepui.frameworks.cron.wallclock import local_text

__all__ = ["COUNT_CAP", "Fire", "Schedule", "fire_key", "jitter_of"]

#: :meth:`Schedule.count_between` stops counting here: a per-second schedule down for a year has
#: 31 million fires, and a count is only ever shown ("at least 1000000 missed").
COUNT_CAP = 1_000_000


def fire_key(schedule_id: str, at: float) -> str:
    """``nightly-1711935000``: the fire's batch job id (at most 63 + 1 + 12 characters)."""
    return f"{schedule_id}-{int(at)}"


def jitter_of(key: str, jitter: float) -> float:
    """A delay in ``[0, jitter)`` seconds, the same for the same key on every run."""
    if jitter <= 0:
        return 0.0
    digest = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")
    return jitter * digest / 2**64


@dataclass(frozen=True)
class Fire:
    """One fire: ``at`` the scheduled instant, ``due`` when to submit it (``at`` + jitter),
    ``local`` the wall clock with its offset in the schedule's zone, ``key`` its job id."""

    schedule_id: str
    at: float
    local: str
    key: str
    due: float


class Schedule:
    """The fires of one schedule, by a cron rule or a repeating interval, in ``zone``."""

    def __init__(self, schedule_id: str, rule: CronRule | RepeatingInterval, zone: ZoneInfo,
                 jitter: float = 0.0) -> None:
        self.schedule_id = schedule_id
        self.rule = rule
        self.zone = zone
        self.jitter = jitter

    def fire(self, at: float) -> Fire:
        """The fire at instant ``at`` (also for a manual trigger at ``now``)."""
        at = float(int(at))
        key = fire_key(self.schedule_id, at)
        return Fire(self.schedule_id, at, local_text(at, self.zone), key, at + jitter_of(key, self.jitter))

    def instants_after(self, t: float) -> Iterator[float]:
        """Fire instants strictly after ``t``, increasing, lazily."""
        if isinstance(self.rule, CronRule):
            yield from self.rule.instants_after(t, self.zone)
            return
        k = self.rule.first_index_after(t, self.zone)
        while k is not None:
            at = self.rule.fire_at(k, self.zone)
            if at is None:
                return
            yield at
            k += 1

    def next_after(self, t: float) -> Fire | None:
        """The first fire strictly after ``t``; None when there is none (an ``R5`` done)."""
        return next((self.fire(at) for at in self.instants_after(t)), None)

    def next_fires(self, t: float, n: int) -> list[Fire]:
        """The next ``n`` fires after ``t`` (``tepui cron next -n``)."""
        return [self.fire(at) for at in islice(self.instants_after(t), max(n, 0))]

    def fires_between(self, after: float, until: float, limit: int) -> list[Fire]:
        """Fires with ``after < at <= until``, oldest first, at most ``limit`` of them: the
        work is proportional to what is returned, however many were missed."""
        out: list[Fire] = []
        for at in self.instants_after(after):
            if at > until or len(out) >= limit:
                break
            out.append(self.fire(at))
        return out

    def count_between(self, after: float, until: float, cap: int = COUNT_CAP) -> int:
        """How many fires have ``after < at <= until``, at most ``cap``. An interval counts in
        O(log n); a cron rule walks its fires without keeping them (constant memory)."""
        if until <= after:
            return 0
        if isinstance(self.rule, RepeatingInterval):
            first = self.rule.first_index_after(after, self.zone)
            if first is None:
                return 0
            end = self.rule.first_index_after(until, self.zone)
            if end is None:  # no fire after until: the repetitions ran out (or year 9999 came)
                n = self.rule.repetitions
                last = self.rule.fire_at(n - 1, self.zone) if n is not None else None
                end = n if n is not None and last is not None and last <= until else (
                    first + sum(1 for _ in islice(self._walk(first, until), cap))
                )
            return min(max(end - first, 0), cap)
        count = 0
        for at in self.rule.instants_after(after, self.zone):
            if at > until or count >= cap:
                break
            count += 1
        return count

    def _walk(self, k: int, until: float) -> Iterator[float]:
        assert isinstance(self.rule, RepeatingInterval)
        while (at := self.rule.fire_at(k, self.zone)) is not None and at <= until:
            yield at
            k += 1

    def last_between(self, after: float, until: float) -> Fire | None:
        """The latest fire with ``after < at <= until`` (catch-up "latest"), without walking
        every fire since ``after``: windows ending at ``until``, doubling from one minute."""
        window = 60.0
        while True:
            start = max(after, until - window)
            found = None
            for at in self.instants_after(start):
                if at > until:
                    break
                found = at
            if found is not None:
                return self.fire(found)
            if start <= after:
                return None
            window *= 2
