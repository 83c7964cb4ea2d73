"""ISO 8601 durations for the batch job spec (``deadline: PT2H``, ``timeout: PT30M``).

Why a small strict parser and not isodate: isodate is not a dependency here, and what it gives
is the wrong shape for a deadline. ``parse_duration('P1D')`` and ``'PT24H'`` both come back as
``timedelta(days=1)`` while ``P1M``/``P1Y`` come back as nominal ``Duration`` objects whose
length depends on the calendar day they are added to (isodate #74; see BATCH_CRON_NOTES §B).
A deadline, a task timeout, a retry backoff and a record's TTL are all *elapsed* time, so this
parser accepts only the designators that have one fixed length: weeks, days (24 h elapsed,
never a calendar day: a job submitted before a DST change still gets 24 h), hours, minutes and
seconds. Years and months are refused with a hint (``P1M`` → write ``P30D``), negative and
empty durations are refused, and only the seconds may carry a fraction.
"""

from __future__ import annotations

import re

__all__ = ["DurationError", "MAX_DURATION_SECONDS", "format_duration", "parse_duration"]

#: 100 years: long enough for any TTL, small enough that ``now + d`` never overflows a float
#: clock nor a ``datetime``.
MAX_DURATION_SECONDS = 100 * 365 * 86400

_ISO = re.compile(
    r"^P(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:[.,]\d+)?)S)?)?$"
)
_NOMINAL = re.compile(r"^P(?:\d+Y)?(?:\d+M)?")
_UNITS = (("weeks", 7 * 86400), ("days", 86400), ("hours", 3600), ("minutes", 60))


class DurationError(ValueError):
    """Not an accepted ISO 8601 duration; the message says what to write."""


def parse_duration(text: str) -> float:
    """Seconds of elapsed time in ``text`` (``PT1H30M`` → 5400.0). Raises :class:`DurationError`."""
    if not isinstance(text, str):  # a YAML number slips through untyped callers
        raise DurationError(f"write an ISO 8601 duration such as PT{text}S, got the number {text!r}")
    value = text.strip().upper()
    match = _ISO.match(value)
    if match is None or value in ("P", "PT") or value.endswith("T"):
        nominal = _NOMINAL.match(value)
        if value.startswith("-"):
            raise DurationError(f"must not be negative, got {text!r}")
        if nominal is not None and nominal.group(0) != "P":
            raise DurationError(
                f"years and months have no fixed length, got {text!r}: write days instead (P30D, P365D)"
            )
        if re.fullmatch(r"\d+(?:\.\d+)?", value):
            raise DurationError(f"write an ISO 8601 duration such as PT{value}S (seconds), got {text!r}")
        raise DurationError(
            f"not an ISO 8601 duration, got {text!r}: write e.g. PT30S, PT15M, PT2H, P1D or P1DT12H"
        )
    whole = sum(int(match.group(name) or 0) * size for name, size in _UNITS)
    seconds = whole + float((match.group("seconds") or "0").replace(",", "."))
    if seconds > MAX_DURATION_SECONDS:
        raise DurationError(f"must be at most 100 years (P36500D), got {text!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """The canonical text of a duration (``5400`` → ``PT1H30M``), for messages and views."""
    if seconds <= 0:
        return "PT0S"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    out = f"P{int(days)}D" if days else "P"
    clock = "".join(
        f"{int(v)}{u}" for v, u in ((hours, "H"), (minutes, "M")) if v
    ) + (f"{secs:g}S" if secs else "")
    return out + ("T" + clock if clock else "")
