"""The batch API's pure reads (frameworks/batch/views.py): the jobs list's filters and pages, the
attempts' order and filters, the history's selection — on records, without a store."""

from __future__ import annotations

from typing import Any

import pytest

from tepui.frameworks.batch.core import JobEntry
from tepui.frameworks.batch.records import AttemptRecord, JobRecord
from tepui.frameworks.batch.spec import parse_job
from tepui.frameworks.batch.views import (
    ATTEMPT_STATES, JOB_STATES, AttemptFilter, JobFilter, attempt_view, history_jobs, history_rows, job_attempts,
    parse_count, parse_states, parse_time, select_jobs,
)
from tepui.sdk.framework_effects import CommandError

SPEC = parse_job("name: j\nstages:\n  - {name: map, command: 'true', array: 3}\n"
                 "  - {name: reduce, command: 'true', depends_on: [map]}\n")


def entry(job_id: str, submitted: float, seq: int, user: str = "ana", queue: str = "default", state: str = "RUNNING",
          finished: float | None = None) -> JobEntry:
    record = JobRecord(id=job_id, name=f"name-{job_id}", user=user, queue=queue, state=state, submitted_at=submitted,
                       finished_at=finished)
    return JobEntry(SPEC, record, None, seq)


def attempt(job: str, stage: str, index: int, number: int, launched: float, state: str = "FINISHED",
            agent: str | None = "a1") -> AttemptRecord:
    return AttemptRecord(job=job, stage=stage, index=index, attempt=number, task_id=f"{job}.{stage}.{index}.{number}",
                         agent_id=agent, state=state, launched_at=launched, launched_seq=7)


# --- query values -------------------------------------------------------------------------------


def test_parse_states() -> None:
    assert parse_states(None, JOB_STATES) == frozenset()
    assert parse_states("", JOB_STATES) == frozenset()
    assert parse_states("failed, Running,", JOB_STATES) == {"FAILED", "RUNNING"}
    with pytest.raises(CommandError) as refused:
        parse_states("FINISHED,BOGUS", JOB_STATES)
    assert refused.value.status == 400 and refused.value.field == "state"
    assert refused.value.message.startswith("state BOGUS, FINISHED is not one of PENDING, RUNNING")
    assert parse_states("lost", ATTEMPT_STATES) == {"LOST"}


def test_parse_time_and_count() -> None:
    assert parse_time(None, "since") is None and parse_time(" ", "since") is None
    assert parse_time("1800000000.250", "since") == 1800000000.25
    for bad in ("nan", "inf", "1h"):
        with pytest.raises(CommandError) as refused:
            parse_time(bad, "until")
        assert refused.value.field == "until"
    assert parse_count(None, "limit", 100, 1, 10) == 100
    assert parse_count("10", "limit", 100, 1, 10) == 10
    for bad in ("11", "0", "-1", "2.5"):
        with pytest.raises(CommandError):
            parse_count(bad, "limit", 100, 1, 10)


# --- jobs ---------------------------------------------------------------------------------------


def test_select_jobs_filters_newest_first_and_pages() -> None:
    jobs = [entry("a", 10.0, 1), entry("b", 20.0, 2, user="bo", state="FAILED"), entry("c", 20.0, 3, queue="prod"),
            entry("d", 30.0, 4, state="SUCCEEDED")]

    def ids(wanted: JobFilter, limit: int = 100, offset: int = 0) -> tuple[list[str], int]:
        page, total = select_jobs(jobs, wanted, limit, offset)
        return [e.record.id for e in page], total

    assert ids(JobFilter()) == (["d", "c", "b", "a"], 4)  # c after b at the same time: submitted later
    assert ids(JobFilter(), limit=2, offset=1) == (["c", "b"], 4)
    assert ids(JobFilter(), offset=9) == ([], 4)
    assert ids(JobFilter(user="ana")) == (["d", "c", "a"], 3)
    assert ids(JobFilter(queue="prod")) == (["c"], 1)
    assert ids(JobFilter(states=frozenset({"FAILED", "SUCCEEDED"}))) == (["d", "b"], 2)
    assert ids(JobFilter(since=20.0, until=20.0)) == (["c", "b"], 2)
    assert ids(JobFilter(user="ana", since=15.0)) == (["d", "c"], 2)


# --- attempts -----------------------------------------------------------------------------------


def test_job_attempts_by_stage_order_index_attempt() -> None:
    records = [attempt("j", "reduce", 0, 1, 9.0), attempt("j", "map", 2, 1, 1.0), attempt("j", "map", 0, 2, 5.0),
               attempt("j", "map", 0, 1, 1.0, "FAILED"), attempt("j", "odd", 0, 1, 1.0)]
    order = ("map", "reduce")
    assert [a.task_id for a in job_attempts(order, records, AttemptFilter())] == [
        "j.map.0.1", "j.map.0.2", "j.map.2.1", "j.reduce.0.1", "j.odd.0.1"]
    assert [a.task_id for a in job_attempts(order, records, AttemptFilter(stage="map", index=0))] == [
        "j.map.0.1", "j.map.0.2"]
    assert [a.task_id for a in job_attempts(order, records, AttemptFilter(states=frozenset({"FAILED"})))] == [
        "j.map.0.1"]
    assert [a.task_id for a in job_attempts(order, records, AttemptFilter(since=5.0, until=9.0))] == [
        "j.map.0.2", "j.reduce.0.1"]


def test_attempt_view_drops_the_replays_sequence_and_adds_the_host() -> None:
    view = attempt_view(attempt("j", "map", 0, 1, 1.0), {"a1": "node-1"})
    assert view == {"job": "j", "stage": "map", "index": 0, "attempt": 1, "task_id": "j.map.0.1", "agent_id": "a1",
                    "hostname": "node-1", "state": "FINISHED", "queued_at": None, "launched_at": 1.0,
                    "running_at": None, "finished_at": None, "exit_code": None, "task_state": None,
                    "task_reason": None, "failure": None, "killed_by": None, "outcome": "", "spent": False,
                    "retry_at": None}
    assert "hostname" not in attempt_view(attempt("j", "map", 0, 1, 1.0), {})
    assert "hostname" not in attempt_view(attempt("j", "map", 0, 1, 1.0, agent=None), {"a1": "node-1"})


# --- history ------------------------------------------------------------------------------------


def test_history_jobs_skips_jobs_that_cannot_match() -> None:
    jobs = {e.record.id: e for e in [
        entry("old", 10.0, 1, state="SUCCEEDED", finished=20.0), entry("live", 10.0, 2),
        entry("late", 50.0, 3), entry("bo", 10.0, 4, user="bo"), entry("prod", 10.0, 5, queue="prod")]}

    def ids(*args: Any) -> list[str]:
        return [e.record.id for e in history_jobs(jobs, *args)]

    assert ids(None, None, None, None) == ["old", "live", "late", "bo", "prod"]
    assert ids("ana", "default", 30.0, 40.0) == ["live"]  # old ended before 30, late was submitted after 40
    assert ids("bo", None, None, None) == ["bo"]
    assert ids(None, "prod", None, None) == ["prod"]


def test_history_rows_last_launched_first_bounded_with_the_jobs_fields() -> None:
    jobs = [entry("j1", 0.0, 1), entry("j2", 0.0, 2, user="bo", queue="prod")]
    stored = {"j1": [attempt("j1", "map", 0, 1, 3.0), attempt("j1", "map", 1, 1, 5.0, "FAILED")],
              "j2": [attempt("j2", "map", 0, 1, 4.0), attempt("j2", "map", 1, 1, 5.0, "LOST")]}
    rows = history_rows(jobs, lambda job_id: stored[job_id], AttemptFilter(), 10, {"a1": "n1"})
    assert [(r["task_id"], r["user"], r["queue"], r["job_name"], r["hostname"]) for r in rows] == [
        ("j1.map.1.1", "ana", "default", "name-j1", "n1"), ("j2.map.1.1", "bo", "prod", "name-j2", "n1"),
        ("j2.map.0.1", "bo", "prod", "name-j2", "n1"), ("j1.map.0.1", "ana", "default", "name-j1", "n1")]
    assert [r["task_id"] for r in history_rows(jobs, lambda j: stored[j], AttemptFilter(), 2, {})] == [
        "j1.map.1.1", "j2.map.1.1"]
    wanted = AttemptFilter(states=frozenset({"FAILED", "LOST"}), since=5.0)
    assert [r["state"] for r in history_rows(jobs, lambda j: stored[j], wanted, 10, {})] == ["FAILED", "LOST"]
