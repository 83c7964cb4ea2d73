"""From what the batch framework's write-ahead store holds to the arguments of
:meth:`~tepui.frameworks.batch.core.BatchCore.load`.

Pure (bytes in, values out), so the tests restart the core from exactly what it wrote, and the
shell only lists namespaces. Why attempts are wanted only for some jobs
(:func:`wants_attempts`): a job that is still running is rebuilt from its attempts
(:meth:`~tepui.frameworks.batch.job_run.JobRun.from_records`), and so is a FAILED or
DEADLINE_EXCEEDED one, which ``tepui jobs retry`` may re-run, and a CANCELLED one, whose tasks
may still be being killed (a cancel's kills are confirmed after it ends: rebuilt, they are
reconciled and asked again, and their ends recorded, instead of staying RUNNING in the history
forever). A SUCCEEDED job has no task left and never changes again, so its thousands of attempt
records stay in the store for the history and cost the framework no memory (its stage records
say what ``jobs show`` needs).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import msgspec

from tepui.frameworks.batch.job_run import ENDED
from tepui.frameworks.batch.ledger import NS_ATTEMPTS, NS_FRAMEWORK, NS_JOBS, NS_SPECS, NS_STAGES
from tepui.frameworks.batch.records import AttemptRecord, JobRecord, StageRecord
from tepui.frameworks.batch.spec import JobSpec, load_job

__all__ = ["LoadedJob", "load_jobs", "wants_attempts"]

#: Ended states whose run is rebuilt all the same: ``tepui jobs retry`` re-runs their failures,
#: and the kills of their last tasks may not be confirmed yet.
REBUILT = frozenset({"FAILED", "DEADLINE_EXCEEDED", "CANCELLED"})

LoadedJob = tuple[JobSpec, JobRecord, list[AttemptRecord] | None, list[StageRecord]]


def wants_attempts(record: JobRecord) -> bool:
    """Whether the job's run is rebuilt, so the shell lists its attempts (prefix ``job.``)."""
    return record.state not in ENDED or record.state in REBUILT


def load_jobs(entries: Mapping[str, Mapping[str, bytes]],
              unreadable: Callable[[str, str], None] | None = None) -> tuple[str | None, list[LoadedJob]]:
    """``entries``: namespace -> key -> the stored JSON (:mod:`.ledger` names them); the
    ``attempts`` namespace needs to hold only the attempts of the jobs :func:`wants_attempts`
    names (others are ignored). Returns the framework id and, per job, its spec, record,
    attempts (None when its run is not rebuilt) and stage records. ``unreadable(job_id, why)``:
    told of a job whose stored spec no longer loads (a newer version's stricter rules), which is
    then left out — and left in the store, untouched; without it, the error is raised."""
    raw_id = entries.get(NS_FRAMEWORK, {}).get("id")
    framework_id = msgspec.json.decode(raw_id, type=str) if raw_id is not None else None
    attempts: dict[str, list[AttemptRecord]] = {}
    for key, raw in sorted(entries.get(NS_ATTEMPTS, {}).items()):
        attempt = msgspec.json.decode(raw, type=AttemptRecord)
        attempts.setdefault(attempt.job, []).append(attempt)
    stages: dict[str, list[StageRecord]] = {}
    for key, raw in sorted(entries.get(NS_STAGES, {}).items()):
        stage = msgspec.json.decode(raw, type=StageRecord)
        stages.setdefault(stage.job, []).append(stage)
    specs = entries.get(NS_SPECS, {})
    jobs: list[LoadedJob] = []
    for job_id, raw in sorted(entries.get(NS_JOBS, {}).items()):
        record = msgspec.json.decode(raw, type=JobRecord)
        try:
            if job_id not in specs:
                raise ValueError("its spec is missing from the store")
            spec = load_job(msgspec.json.decode(specs[job_id]))
        except ValueError as exc:  # SpecError and msgspec's DecodeError are ValueErrors
            if unreadable is None:
                raise
            unreadable(job_id, str(exc))
            continue
        jobs.append((spec, record, attempts.get(job_id, []) if wants_attempts(record) else None,
                     stages.get(job_id, [])))
    return framework_id, jobs
