"""The batch API's commands on the core: submit, cancel, suspend, resume, retry, delete.

Each returns ``(answer, effects)``: the shell executes the effects (their Persist first) before
it writes the answer, so a 201 means the job is stored. Refusals are :class:`CommandError`\\ s
whose message says what to do instead (the services framework's shape).

Submit is idempotent on the job id (``POST /v1/jobs?id=...``): the same id with the same spec
answers the job that exists, so a client that lost the answer (or the cron framework, which
derives the id from the schedule and the fire time, issue 18) can submit again without a second
job; the same id with another spec is a conflict.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

import msgspec

from tepui.frameworks.batch.core import BatchCore, JobEntry
from tepui.frameworks.batch.effects import Effect, Publish
from tepui.frameworks.batch.job_run import ENDED, JobRun
from tepui.frameworks.batch.ledger import NS_JOBS, NS_SPECS
from tepui.frameworks.batch.records import JobRecord
from tepui.frameworks.batch.spec import JobSpec
from tepui.sdk.framework_effects import CommandError

Answer = tuple[dict[str, Any], list[Effect]]

JOB_ID = re.compile(r"^[a-z0-9]([a-z0-9_-]{0,126}[a-z0-9])?$")
UNSUPPORTED_OPERATORS = ("UNIQUE", "MAX_PER", "GROUP_BY")


def _new_id(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:10]}"


def entry_of(core: BatchCore, job_id: str) -> JobEntry:
    entry = core.jobs.get(job_id)
    if entry is None:
        raise CommandError(404, "UNKNOWN_JOB", f"no job {job_id!r}; `tepui jobs list` shows the jobs kept "
                           "(ended jobs are forgotten ttl_after_finished after they end)")
    return entry


def check_placement(spec: JobSpec) -> None:
    """Constraints the queue cannot honour are refused rather than ignored."""
    for i, stage in enumerate(spec.stages):
        for j, c in enumerate(stage.constraints):
            if c.operator in UNSUPPORTED_OPERATORS or (c.operator == "CLUSTER" and c.value is None):
                raise CommandError(
                    400, "UNSUPPORTED_CONSTRAINT",
                    f"batch placement supports IS, LIKE, UNLIKE and CLUSTER with a value, not {c.operator}"
                    f"{'' if c.value else ' without a value'} (it depends on where the other tasks went); "
                    "to spread tasks, use UNLIKE/LIKE on an attribute per stage", f"stages[{i}].constraints[{j}]")


def submit(core: BatchCore, spec: JobSpec, user: str | None, now: float, job_id: str | None = None,
           new_id: Callable[[str], str] = _new_id) -> Answer:
    """Stores and queues a job; 201 with the job, or 200 with the existing one for a repeated id."""
    if job_id is not None:
        if not JOB_ID.match(job_id):
            raise CommandError(400, "INVALID_JOB_ID", f"job id {job_id!r} must be 1-128 lowercase letters, digits, "
                               "'-' or '_', starting and ending with a letter or digit (no dots)", "id")
        known = core.jobs.get(job_id)
        if known is not None:
            if known.spec.to_data() != _with_user(spec, known.record.user).to_data():
                raise CommandError(409, "JOB_EXISTS", f"job {job_id} exists with another spec; submit under another "
                                   "id, or `tepui jobs delete` it first once it has ended")
            return {"job": core.job_summary(known), "created": False}, []
    queues = [q.name for q in core.queues.config.queues]
    if spec.queue not in queues:
        raise CommandError(400, "UNKNOWN_QUEUE", f"no queue {spec.queue!r}; the queues are: {', '.join(queues)} "
                           "(tepui batch --queues FILE defines them)", "queue")
    check_placement(spec)
    spec = _with_user(spec, spec.user or user or "anonymous")
    job_id = job_id or new_id(spec.name)
    record = JobRecord(id=job_id, name=spec.name, user=spec.user, queue=spec.queue, priority=spec.priority,
                       submitted_at=now, clock_at=now)
    run = JobRun(spec, record)
    out: list[Effect] = []
    core.ledger.put(NS_SPECS, job_id, spec.to_data())
    core.ledger.put(NS_JOBS, job_id, record)
    entry = core.add_job(spec, record, run)
    core.wake(entry, now)  # the first tick asks the run for its timers (the deadline)
    summary = core.job_summary(entry)
    out.append(Publish("job_submitted", {"job": summary}))
    core.demand_now(now, out)
    return {"job": summary, "created": True}, core.finish(out)


def _with_user(spec: JobSpec, user: str | None) -> JobSpec:
    return msgspec.structs.replace(spec, user=user)


def _run_of(entry: JobEntry) -> JobRun:
    if entry.run is None:
        raise CommandError(409, "JOB_ENDED", f"job {entry.record.id} ended {entry.record.state}; it was loaded from "
                           "history only and cannot change: submit it again")
    return entry.run


def _command(core: BatchCore, job_id: str, now: float, act: Callable[[JobRun], Any]) -> Answer:
    entry = entry_of(core, job_id)
    run = _run_of(entry)
    out: list[Effect] = []
    core.apply(entry, act(run), now, out)
    core.wake(entry, now)
    core.demand_now(now, out)
    summary = core.job_summary(entry)
    out.append(Publish("job_updated", {"job": summary}))
    return {"job": summary}, core.finish(out)


def cancel(core: BatchCore, job_id: str, now: float) -> Answer:
    entry = entry_of(core, job_id)
    if entry.record.state in ENDED:
        raise CommandError(409, "JOB_ENDED", f"job {job_id} already ended {entry.record.state}; nothing to cancel")
    return _command(core, job_id, now, lambda run: run.cancel(now, "cancelled by the user"))


def suspend(core: BatchCore, job_id: str, now: float) -> Answer:
    entry = entry_of(core, job_id)
    if entry.record.state in ENDED:
        raise CommandError(409, "JOB_ENDED", f"job {job_id} already ended {entry.record.state}; nothing to suspend")
    return _command(core, job_id, now, lambda run: run.suspend(now))


def resume(core: BatchCore, job_id: str, now: float) -> Answer:
    entry = entry_of(core, job_id)
    if not entry.record.suspended:
        raise CommandError(409, "NOT_SUSPENDED", f"job {job_id} is {entry.record.state}, not suspended; "
                           "`tepui jobs suspend` it first")
    return _command(core, job_id, now, lambda run: run.resume(now))


def retry(core: BatchCore, job_id: str, now: float) -> Answer:
    """Re-runs the failed and skipped indices of a FAILED or DEADLINE_EXCEEDED job."""
    try:
        return _command(core, job_id, now, lambda run: run.retry_failed(now))
    except ValueError as exc:
        raise CommandError(409, "NOTHING_TO_RETRY", f"{exc}; `tepui jobs show {job_id}` shows its state") from None


def delete(core: BatchCore, job_id: str, now: float) -> Answer:
    """Forgets an ended job now (its ttl_after_finished, early)."""
    entry = entry_of(core, job_id)
    if entry.record.state not in ENDED or (entry.run is not None and entry.run.live_tasks()):
        raise CommandError(409, "JOB_NOT_ENDED", f"job {job_id} is {entry.record.state}; `tepui jobs cancel` it "
                           "first, and delete it once its tasks have ended")
    core.forget(entry)
    return {"deleted": job_id}, core.finish([Publish("job_deleted", {"id": job_id})])
