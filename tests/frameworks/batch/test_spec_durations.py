"""ISO 8601 durations of the job spec: elapsed seconds only, nominal and malformed text refused
with what to write instead."""

from __future__ import annotations

import pytest

from tepui.frameworks.batch.durations import DurationError, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds", "canonical"),
    [
        ("PT30S", 30.0, "PT30S"),
        ("PT2H", 7200.0, "PT2H"),
        ("PT1H30M", 5400.0, "PT1H30M"),
        ("P1D", 86400.0, "P1D"),  # 24 h elapsed, never a calendar day
        ("PT24H", 86400.0, "P1D"),
        ("P1W", 604800.0, "P7D"),
        ("P1DT12H", 129600.0, "P1DT12H"),
        ("PT1.5S", 1.5, "PT1.5S"),
        ("PT0,25S", 0.25, "PT0.25S"),
        ("pt5m", 300.0, "PT5M"),
        ("PT0S", 0.0, "PT0S"),
        ("P36500D", 36500 * 86400.0, "P36500D"),
    ],
)
def test_accepted_durations(text: str, seconds: float, canonical: str) -> None:
    assert parse_duration(text) == seconds
    assert format_duration(seconds) == canonical


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("P1M", "years and months have no fixed length, got 'P1M': write days instead (P30D, P365D)"),
        ("P1Y", "years and months have no fixed length"),
        ("P1Y2D", "years and months have no fixed length"),
        ("-PT1S", "must not be negative, got '-PT1S'"),
        ("30", "write an ISO 8601 duration such as PT30S (seconds), got '30'"),
        ("P", "not an ISO 8601 duration, got 'P': write e.g. PT30S, PT15M, PT2H, P1D or P1DT12H"),
        ("PT", "not an ISO 8601 duration"),
        ("P1DT", "not an ISO 8601 duration"),
        ("PT1H2D", "not an ISO 8601 duration"),
        ("PT1.5H", "not an ISO 8601 duration"),  # only the seconds take a fraction
        ("2 hours", "not an ISO 8601 duration"),
        ("R5/PT1H", "not an ISO 8601 duration"),
        ("P36501D", "must be at most 100 years (P36500D), got 'P36501D'"),
    ],
)
def test_refused_durations(text: str, message: str) -> None:
    with pytest.raises(DurationError) as info:
        parse_duration(text)
    assert str(info.value).startswith(message), str(info.value)


def test_a_number_is_refused_with_the_text_to_write() -> None:
    with pytest.raises(DurationError, match=r"such as PT30S, got the number 30"):
        parse_duration(30)  # type: ignore[arg-type]  # what an untyped caller passes from YAML
