"""The schedule spec: defaults, and errors that name the field."""

from __future__ import annotations

import pytest

from tepui.frameworks.cron.expressions import CronRule
from tepui.frameworks.cron.intervals import RepeatingInterval
from tepui.frameworks.cron.spec import History, ScheduleSpec, SpecError, load_schedule, parse_schedule, schedule_of

JOB = "job: {name: report, stages: [{name: run, command: ./report}]}\n"


def test_defaults() -> None:
    spec = parse_schedule("id: nightly\ncron: '30 2 * * *'\n" + JOB)
    assert spec == ScheduleSpec(id="nightly", cron="30 2 * * *", job={"name": "report", "stages": [{"name": "run", "command": "./report"}]})
    assert (spec.time_zone, spec.concurrency_policy, spec.starting_deadline, spec.catch_up, spec.catch_up_limit) == (
        "UTC", "Allow", None, "latest", 100
    )
    assert (spec.suspend, spec.jitter_seconds, spec.history, spec.starting_deadline_seconds) == (False, 0.0, History(3, 1), None)
    assert load_schedule(spec.to_data()) == spec


def test_a_full_spec_in_json() -> None:
    spec = parse_schedule(
        '{"id": "probe", "interval": "R/2026-01-01T00:00:00+01:00/PT1M", "time_zone": "Europe/Berlin",'
        ' "concurrency_policy": "Forbid", "starting_deadline": "PT30S", "catch_up": "all", "catch_up_limit": 10,'
        ' "suspend": true, "jitter": "PT5S", "history": {"successful": 5, "failed": 2},'
        ' "job": {"name": "p", "stages": [{"name": "s"}]}}'
    )
    assert (spec.starting_deadline_seconds, spec.jitter_seconds, spec.zone.key) == (30.0, 5.0, "Europe/Berlin")
    schedule = schedule_of(spec)
    assert isinstance(schedule.rule, RepeatingInterval) and schedule.jitter == 5.0
    assert isinstance(schedule_of(parse_schedule("id: a\ncron: '@hourly'\n" + JOB)).rule, CronRule)


@pytest.mark.parametrize(("doc", "field", "message"), [
    ("id: Nightly\ncron: '@daily'\n", "id", "DNS label"),
    ("id: a\n", "cron", "exactly one of cron"),
    ("id: a\ncron: '@daily'\ninterval: R/2026-01-01T00:00:00Z/P1D\n", "cron", "exactly one"),
    ("id: a\ncron: '0 0 31 2 *'\n", "cron", "can never match"),
    ("id: a\ninterval: R/P1D\n", "interval", "no start"),
    ("id: a\ncron: '@daily'\ntime_zone: Europe/Berlinn\n", "time_zone", "not a known IANA zone"),
    ("id: a\ncron: '@daily'\ntime_zone: ../../etc/passwd\n", "time_zone", "IANA zone name"),
    ("id: a\ncron: '@daily'\ntime_zon: UTC\n", "time_zon", "unknown field (did you mean 'time_zone'?)"),
    ("id: a\ncron: '@daily'\nconcurrency_policy: forbid\n", "concurrency_policy", "invalid enum value"),
    ("id: a\ncron: '@daily'\ncatch_up: some\n", "catch_up", "invalid enum value"),
    ("id: a\ncron: '@daily'\ncatch_up_limit: 5000\n", "catch_up_limit", "1 to 1000"),
    ("id: a\ncron: '@daily'\nstarting_deadline: P1M\n", "starting_deadline", "no fixed length"),
    ("id: a\ncron: '@daily'\nstarting_deadline: PT0S\n", "starting_deadline", "at least PT1S"),
    ("id: a\ncron: '@daily'\njitter: -PT5S\n", "jitter", "negative"),
    ("id: a\ncron: '@daily'\njitter: P2D\n", "jitter", "more than a day"),
    ("id: a\ncron: '@daily'\njitter: PT1M\nstarting_deadline: PT30S\n", "jitter", "shorter than starting_deadline"),
    ("id: a\ncron: '@daily'\nhistory: {successful: -1}\n", "history.successful", "0 to 100"),
    ("id: a\ncron: '@daily'\nsuspend: maybe\n", "suspend", "expected bool"),
])
def test_errors_name_the_field(doc: str, field: str, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_schedule(doc + JOB)
    assert caught.value.field == field
    assert message in caught.value.message


@pytest.mark.parametrize("job", ["job: []\n", "job: {name: x}\n", "job: {stages: []}\n"])
def test_the_job_template_is_a_mapping_with_stages(job: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_schedule("id: a\ncron: '@daily'\n" + job)
    assert caught.value.field in ("job", "job.stages")


def test_documents_that_are_not_a_mapping() -> None:
    with pytest.raises(SpecError, match="mapping of fields, got an empty document"):
        parse_schedule("")
    with pytest.raises(SpecError, match="not UTF-8"):
        parse_schedule(b"\xff")
