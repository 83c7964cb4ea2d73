"""``tepui jobs``: submit, follow, inspect, control and account for batch jobs (the batch
framework's REST API, docs/batch.md "CLI and Python client").

A thin shell over :class:`tepui.frameworks.batch.client.BatchClient`, which finds the master,
its token and its CA as every ``tepui`` command does and turns every failure into a sentence
saying what to do. ``submit --wait`` draws a bar per stage and exits with the job's code (0
SUCCEEDED, 1 FAILED, 2 CANCELLED, 3 DEADLINE_EXCEEDED); every command exits 4 when the API
cannot be reached (no master, or no batch framework behind it) and 1 when it refused the call,
so a script tells a failed job from a dead cluster. ``logs`` finds the latest attempt's task and
reads it with ``tepui logs``'s functions (:mod:`tepui.cli.logs`).
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from tepui.cli import jobs_render as render
from tepui.cli.api_commands import api_errors, http_option, json_option, print_json
from tepui.cli.logs import TaskFiles, print_output
from tepui.frameworks.batch.client import BatchClient
from tepui.frameworks.batch.client_values import Attempt, BatchError, Job, TimeError, parse_time

TIME_HELP = ("an ISO 8601 date or datetime (2026-12-07, 2026-12-07T14:00, ...Z) or a duration back from now "
             "(30m, 1h, 2d, 1w)")


_api_errors = api_errors(BatchError)
_http_option, _json_option, _print_json = http_option, json_option, print_json


def _time(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_time(value, time.time())
    except TimeError as exc:
        raise click.BadParameter(str(exc)) from None


def _filter_options(function: Callable[..., Any], *, stage: bool = False, limit: int = 100) -> Callable[..., Any]:
    options = [
        click.option("--user", default=None, help="Only this user's jobs."),
        click.option("--queue", default=None, help="Only jobs of this queue."),
        click.option("--state", "states", multiple=True, metavar="STATE[,STATE]",
                     help="Only these states (repeatable or comma-separated)."),
        click.option("--since", callback=_time, default=None, metavar="TIME",
                     help=f"Only from this time on: {TIME_HELP}."),
        click.option("--until", callback=_time, default=None, metavar="TIME", help=f"Only up to this time: {TIME_HELP}."),
        click.option("--limit", type=click.IntRange(1), default=limit, show_default=True, help="At most this many rows."),
    ]
    if stage:
        options.insert(3, click.option("--stage", default=None, help="Only attempts of stages with this name."))
    for option in reversed(options):
        function = option(function)
    return function


def _states(states: tuple[str, ...]) -> list[str] | None:
    found = [part.strip().upper() for item in states for part in item.split(",") if part.strip()]
    return found or None


@click.group("jobs")
def jobs_command() -> None:
    """Batch jobs of the batch framework (`tepui batch`): arrays, DAGs of stages, retries, history.

    \b
    tepui jobs submit wordcount.yaml --wait
    tepui jobs wait wordcount-1a2b3c4d5e
    tepui jobs list --user alice --since 1d
    tepui jobs show wordcount-1a2b3c4d5e
    tepui jobs logs wordcount-1a2b3c4d5e --stage map --index 3 -f
    tepui jobs why wordcount-1a2b3c4d5e
    tepui jobs history --state FAILED --since 2h
    """


# --- submit -------------------------------------------------------------------------------------

@jobs_command.command("submit")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--id", "job_id", default=None,
              help="The job's id (default: NAME-<10 hex>). Submitting the same spec under the same id again is "
              "harmless: it answers with the existing job.")
@click.option("--wait", "wait", is_flag=True,
              help="Follow the job with a bar per stage until it ends; exit 0 SUCCEEDED, 1 FAILED, 2 CANCELLED, "
              "3 DEADLINE_EXCEEDED (4: the API cannot be reached).")
@_http_option
@_api_errors
def submit_command(file: str, job_id: str | None, wait: bool, http: str) -> None:
    """Submit a job from a YAML or JSON spec (FILE, or - for stdin; docs/batch.md 'Job spec')."""
    client = BatchClient(http)
    if file == "-":
        text = sys.stdin.read()
        if not text.strip():
            raise BatchError("stdin is empty.", reason="INVALID_SPEC", hint="Pipe a job spec in, or pass a FILE.")
        job = client.submit(text, job_id)
    else:
        job = client.submit(Path(file), job_id)
    stages = len(job.stages)
    click.echo(f"job {job.id} submitted: {job.tasks.total} task(s) in {stages} stage(s), queue {job.queue}, "
               f"user {job.user or '-'}")
    if not wait:
        click.echo(f"look at it with `tepui jobs show {job.id}`, or wait for its end with `tepui jobs wait {job.id}`.")
        return
    _follow(client, job)


@jobs_command.command("wait")
@click.argument("job_id", metavar="JOB")
@_http_option
@_api_errors
def wait_command(job_id: str, http: str) -> None:
    """Follow a job with a bar per stage until it ends; exit 0 SUCCEEDED, 1 FAILED, 2 CANCELLED,
    3 DEADLINE_EXCEEDED (4: the API cannot be reached)."""
    client = BatchClient(http)
    _follow(client, client.get(job_id))


def _follow(client: BatchClient, job: Job) -> None:
    try:
        with render.StageProgress(render.console(stderr=True)) as progress:
            progress.update(job)
            job = client.wait(job.id, on_update=progress.update)
    except KeyboardInterrupt:
        click.echo(f"stopped watching; job {job.id} keeps running (`tepui jobs show {job.id}`, "
                   f"`tepui jobs cancel {job.id}` to stop it)", err=True)
        sys.exit(130)
    took = render.elapsed(job.submitted_at, job.finished_at)
    if job.state == "SUCCEEDED":
        click.echo(f"✓ job {job.id} SUCCEEDED: {job.tasks.succeeded}/{job.tasks.total} tasks in {took}")
    else:
        click.echo(f"✗ job {job.id} {job.state}{': ' + job.reason if job.reason else ''} "
                   f"({job.tasks.succeeded}/{job.tasks.total} tasks succeeded, {job.tasks.failed} failed, in {took})",
                   err=True)
        _failure_hints(client, job)
    sys.exit(job.exit_code if job.exit_code is not None else 1)


def _failure_hints(client: BatchClient, job: Job) -> None:
    failed: Attempt | None = None
    if job.state == "FAILED":
        try:
            tries = client.attempts(job.id)
        except BatchError:
            tries = []
        ended = [a for a in tries if a.outcome in ("index_failed", "stage_failed")] or \
            [a for a in tries if a.state == "FAILED"]
        failed = ended[0] if ended else None
    if failed is not None:
        code = "" if failed.exit_code is None else f" exit code {failed.exit_code}"
        why = f" ({failed.failure})" if failed.failure else ""
        click.echo(f"first failure: {failed.stage}[{failed.index}] attempt {failed.attempt}{code}{why}; its stderr: "
                   f"`tepui jobs logs {job.id} --stage {failed.stage} --index {failed.index} --stderr`", err=True)
    click.echo(f"`tepui jobs show {job.id}` shows each stage; "
               + (f"`tepui jobs retry {job.id}` re-runs the failed indices only." if job.state in
                  ("FAILED", "DEADLINE_EXCEEDED") else f"`tepui jobs history --since 1d` lists every attempt."),
               err=True)


# --- reading ------------------------------------------------------------------------------------

@jobs_command.command("list")
@_json_option
@_http_option
@functools.partial(_filter_options, limit=100)
@_api_errors
def list_command(user: str | None, queue: str | None, states: tuple[str, ...], since: float | None,
                 until: float | None, limit: int, as_json: bool, http: str) -> None:
    """List jobs, newest submission first (--since/--until filter the submission time)."""
    jobs = BatchClient(http).list(user=user, queue=queue, state=_states(states), since=since, until=until,
                                  limit=limit)
    if as_json:
        _print_json({"jobs": [dict(job.data) for job in jobs], "total": jobs.total})
        return
    if not jobs:
        click.echo("no jobs match those filters" if (user or queue or states or since or until) else
                   "no jobs yet; submit one with `tepui jobs submit FILE`")
        return
    render.render_jobs(list(jobs), render.console())
    if jobs.total > len(jobs):
        click.echo(f"{len(jobs)} of {jobs.total} jobs shown; narrow with --since/--state/--user, or raise --limit.")


@jobs_command.command("show")
@click.argument("job_id", metavar="JOB")
@_json_option
@_http_option
@_api_errors
def show_command(job_id: str, as_json: bool, http: str) -> None:
    """Show a job: its fields, and its stages as a tree with each one's counts."""
    job = BatchClient(http).get(job_id)
    if as_json:
        _print_json({"job": dict(job.data)})
    else:
        render.render_job(job, render.console())


@jobs_command.command("why")
@click.argument("job_id", metavar="JOB")
@_json_option
@_http_option
@_api_errors
def why_command(job_id: str, as_json: bool, http: str) -> None:
    """Why a job is pending: its queue position, each stage's reason, the offers refused and why."""
    why = BatchClient(http).why(job_id)
    if as_json:
        _print_json(why)
    else:
        render.render_why(why, render.console())


@jobs_command.command("history")
@_json_option
@_http_option
@functools.partial(_filter_options, stage=True, limit=1000)
@_api_errors
def history_command(user: str | None, queue: str | None, states: tuple[str, ...], stage: str | None,
                    since: float | None, until: float | None, limit: int, as_json: bool, http: str) -> None:
    """Every attempt of every job kept, like Slurm's sacct (--state is the attempt's: FINISHED, FAILED,
    KILLED, LOST, RUNNING; --since/--until filter its launch time)."""
    attempts = BatchClient(http).history(user=user, queue=queue, state=_states(states), stage=stage, since=since,
                                         until=until, limit=limit)
    if as_json:
        _print_json({"attempts": [dict(a.data) for a in attempts]})
    elif not attempts:
        click.echo("no attempts match those filters; `tepui jobs list` shows the jobs kept")
    else:
        render.render_attempts(attempts, render.console())
        if len(attempts) >= limit:
            click.echo(f"the first {limit} attempts shown; narrow with --since/--state/--user, or raise --limit.")


@jobs_command.command("logs")
@click.argument("job_id", metavar="JOB")
@click.option("--stage", default=None, help="The stage (needed when the job has several).")
@click.option("--index", type=click.IntRange(0), default=None, help="The task index (needed when the stage has several).")
@click.option("--stderr", "stderr", is_flag=True, help="Print the task's stderr instead of its stdout.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new output until the task ends.")
@click.option("--interval", default=0.5, show_default=True, type=click.FloatRange(0.05), hidden=True,
              help="Seconds between reads with --follow.")
@_http_option
@_api_errors
def logs_command(job_id: str, stage: str | None, index: int | None, stderr: bool, follow: bool, interval: float,
                 http: str) -> None:
    """Print the stdout (or stderr) of a task's latest attempt, running or finished."""
    client = BatchClient(http)
    attempt = _latest_attempt(client, job_id, stage, index, follow, interval)
    try:
        framework_id = client.health().get("framework_id")
    except BatchError:
        framework_id = None  # the task id alone is enough unless another framework reused it
    files = TaskFiles(http, attempt.task_id, str(framework_id) if framework_id else None)
    print_output(files, http, "stderr" if stderr else "stdout", follow, interval, "tepui jobs logs")


def _latest_attempt(client: BatchClient, job_id: str, stage: str | None, index: int | None, follow: bool,
                    interval: float) -> Attempt:
    while True:
        attempts = client.attempts(job_id, stage=stage, index=index)
        tasks = sorted({(a.stage, a.index) for a in attempts})
        if len(tasks) > 1:
            shown = ", ".join(f"--stage {s} --index {i}" for s, i in tasks[:4]) + (", ..." if len(tasks) > 4 else "")
            raise BatchError(f"job {job_id} has {len(tasks)} tasks{' in stage ' + stage if stage else ''} with "
                             "attempts; say which.", reason="AMBIGUOUS_TASK", hint=f"Pass {shown}.")
        if attempts:
            return max(attempts, key=lambda a: a.attempt)
        what = " ".join(part for part in (f"stage {stage}" if stage else "", f"index {index}" if index is not None
                                          else "") if part)
        if not follow:
            raise BatchError(f"job {job_id} has no attempt{' for ' + what if what else ''} yet.", reason="NO_ATTEMPT",
                             hint=f"`tepui jobs show {job_id}` shows its stages, `tepui jobs why {job_id}` why it "
                             "waits; -f waits for the task to start.")
        job = client.get(job_id)
        if job.ended:
            raise BatchError(f"job {job_id} ended {job.state} without running {what or 'any task'}.",
                             reason="NO_ATTEMPT", hint=f"`tepui jobs show {job_id}` shows its stages.")
        time.sleep(interval)


# --- control ------------------------------------------------------------------------------------

def _control(action: str, done: str) -> Callable[..., Any]:
    @click.argument("job_id", metavar="JOB")
    @_http_option
    @_api_errors
    def command(job_id: str, http: str) -> None:
        job = getattr(BatchClient(http), action)(job_id)
        click.echo(f"✓ job {job.id} {done} (now {job.state})")

    return command


_CONTROLS = {
    "cancel": ("cancelled: its running tasks are killed, nothing else of it runs",
               "Cancel a job: kill its running tasks; nothing else of it runs (ends CANCELLED)."),
    "suspend": ("suspended: its running tasks are killed (no attempt spent), nothing launches until "
                "`tepui jobs resume`", "Suspend a job: kill its running tasks (no attempt spent), launch nothing "
                "until resumed."),
    "resume": ("resumed: its remaining tasks launch again", "Resume a suspended job."),
    "retry": ("retried: its failed and skipped indices run again, succeeded ones are kept",
              "Re-run a FAILED or DEADLINE_EXCEEDED job's failed indices only (with a fresh attempt budget)."),
}
for _name, (_done, _help) in _CONTROLS.items():
    jobs_command.command(_name, help=_help)(_control(_name, _done))


@jobs_command.command("rm")
@click.argument("job_id", metavar="JOB")
@_http_option
@_api_errors
def rm_command(job_id: str, http: str) -> None:
    """Forget an ended job now: its record, stages and attempts leave the history (what
    ttl_after_finished does later by itself)."""
    BatchClient(http).delete(job_id)
    click.echo(f"✓ job {job_id} forgotten")
