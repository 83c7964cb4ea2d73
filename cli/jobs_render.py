"""How ``tepui jobs`` shows the batch framework's answers: aligned tables, the DAG as a tree,
``why``'s explanation, and the per-stage progress of ``submit --wait``.

Kept apart from :mod:`tepui.cli.jobs` (the commands) so each reads on its own; everything here
takes the client's values (:mod:`tepui.frameworks.batch.client_values`) or the ``why`` dict and
prints, lenient about what an older framework leaves out. Tables and the console are
``tepui apps``'s (:mod:`tepui.cli.apps_render`), so both read alike.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.tree import Tree

from tepui.cli.apps_render import age, console, table
from tepui.frameworks.batch.client_values import Attempt, Job, Stage

__all__ = ["age", "console", "clock", "elapsed", "render_attempts", "render_jobs", "render_job", "render_why",
           "StageProgress"]


def clock(at: float | None) -> str:
    """A time as sacct prints it (local, to the second): ``2026-12-07T14:03:09``; ``-`` unknown."""
    if at is None or at <= 0:
        return "-"
    return datetime.fromtimestamp(at).strftime("%Y-%m-%dT%H:%M:%S")


def elapsed(start: float | None, end: float | None, now: float | None = None) -> str:
    """sacct's Elapsed: ``[D-]HH:MM:SS`` from ``start`` to ``end`` (to now while running)."""
    if start is None or start <= 0:
        return "-"
    seconds = max(0, int((end if end is not None else (time.time() if now is None else now)) - start))
    days, rest = divmod(seconds, 86400)
    text = f"{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days}-{text}" if days else text


def _text(value: Any) -> str:
    return "-" if value is None or value == "" else escape(str(value))


def render_jobs(jobs: list[Job], out: Console) -> None:
    rows = table(None, [("JOB", "left"), ("USER", "left"), ("QUEUE", "left"), ("PRI", "right"), ("STATE", "left"),
                        ("DONE", "right"), ("RUNNING", "right"), ("FAILED", "right"), ("SUBMITTED", "right"),
                        ("ELAPSED", "right"), ("REASON", "left")])
    for job in jobs:
        tasks = job.tasks
        rows.add_row(escape(job.id), _text(job.user), escape(job.queue), str(job.priority),
                     escape(job.state + (" (suspended)" if job.suspended and job.state != "SUSPENDED" else "")),
                     f"{tasks.succeeded}/{tasks.total}", str(tasks.running), str(tasks.failed), age(job.submitted_at),
                     elapsed(job.started_at, job.finished_at), _text(job.reason))
    out.print(rows)


def stage_counts(stage: Stage) -> str:
    """``8/8 succeeded`` then the other non-zero counts: ``running 3, failed 1``."""
    others = [f"{name} {count}" for name, count in (("running", stage.running), ("queued", stage.queued),
                                                      ("pending", stage.pending), ("failed", stage.failed),
                                                      ("skipped", stage.skipped)) if count]
    return ", ".join([f"{stage.succeeded}/{stage.array} succeeded", *others])


def _stage_label(stage: Stage, condition: str | None) -> str:
    edge = f" [dim]({escape(condition)})[/dim]" if condition and condition != "all_succeeded" else ""
    reason = f" — {escape(stage.reason)}" if stage.reason else ""
    return f"[bold]{escape(stage.name)}[/bold]{edge}  {escape(stage.state)}  {stage_counts(stage)}{reason}"


def dag_tree(job: Job) -> Tree:
    """The stages as a tree: each under the first stage it depends on (roots under the job);
    a stage with more upstreams is listed under the others as a reference, so every edge shows
    and every stage's counts appear once."""
    root = Tree(f"[bold]{escape(job.id)}[/bold]  {escape(job.state)}  {job.tasks.succeeded}/{job.tasks.total} tasks "
                "succeeded")
    nodes: dict[str, Tree] = {}
    known = {stage.name for stage in job.stages}
    pending = list(job.stages)
    while pending:  # stages come upstream-first; the loop only guards against an unknown order
        progressed = False
        for stage in list(pending):
            upstream = [dep for dep in stage.depends_on if dep.stage in known]
            if any(dep.stage not in nodes for dep in upstream):
                continue
            first = upstream[0] if upstream else None
            parent = nodes[first.stage] if first else root
            nodes[stage.name] = parent.add(_stage_label(stage, first.condition if first else None))
            for dep in upstream[1:]:
                cond = f" ({escape(dep.condition)})" if dep.condition != "all_succeeded" else ""
                nodes[dep.stage].add(f"[dim]→ {escape(stage.name)}{cond}, shown under "
                                     f"{escape(first.stage if first else '')}[/dim]")
            pending.remove(stage)
            progressed = True
        if not progressed:  # a cycle the API should never send: list the rest flat
            for stage in pending:
                nodes[stage.name] = root.add(_stage_label(stage, None))
            break
    return root


def render_job(job: Job, out: Console) -> None:
    spec = job.spec or {}
    facts: list[tuple[str, Any]] = [
        ("job", job.id),
        ("state", job.state + (f" ({job.reason})" if job.reason else "")),
        ("user", job.user),
        ("queue", f"{job.queue}, priority {job.priority}"),
        ("submitted", f"{clock(job.submitted_at)} ({age(job.submitted_at)} ago)" if job.submitted_at else None),
        ("started", clock(job.started_at) if job.started_at else None),
        ("finished", clock(job.finished_at) if job.finished_at else None),
        ("elapsed", elapsed(job.started_at, job.finished_at) if job.started_at else None),
        ("tasks", f"{job.tasks.total} in all: {job.tasks.succeeded} succeeded, {job.tasks.running} running, "
                  f"{job.tasks.failed} failed, {job.tasks.pending} pending"),
        ("deadline", spec.get("deadline")),
        ("suspended", "yes (`tepui jobs resume` it)" if job.suspended else None),
    ]
    width = max(len(name) for name, _ in facts)
    for name, value in facts:
        if value is not None:
            out.print(f"[bold]{name:<{width}}[/bold]  {escape(str(value))}", soft_wrap=True)
    out.print(dag_tree(job))


def render_attempts(attempts: list[Attempt], out: Console, title: str | None = None) -> None:
    """sacct's table: one row per try, with where, when, how long and why it ended."""
    rows = table(title, [("JOB", "left"), ("STAGE", "left"), ("INDEX", "right"), ("ATTEMPT", "right"),
                         ("STATE", "left"), ("EXIT", "right"), ("HOST", "left"), ("START", "left"), ("END", "left"),
                         ("ELAPSED", "right"), ("REASON", "left")])
    for a in attempts:
        reason = a.failure or (f"killed: {a.killed_by}" if a.killed_by else "") or (a.task_reason or "")
        if a.outcome and a.outcome != "succeeded":
            reason = f"{reason} ({a.outcome})" if reason else a.outcome
        live = a.finished_at is None and a.state in ("LAUNCHED", "RUNNING", "UNREACHABLE")
        rows.add_row(escape(a.job), escape(a.stage), str(a.index), str(a.attempt), escape(a.state),
                     "-" if a.exit_code is None else str(a.exit_code), _text(a.hostname or a.agent_id),
                     clock(a.started), clock(a.finished_at),
                     elapsed(a.started, a.finished_at) if (live or a.finished_at) else "-", _text(reason))
    out.print(rows)


def render_why(why: dict[str, Any], out: Console) -> None:
    job = why.get("job")
    job_id = job.get("id") if isinstance(job, dict) else job
    place = ""
    if why.get("position"):
        place = (f"; number {why['position']} in queue {escape(str(why.get('queue')))} "
                 f"({why.get('waiting_jobs', 0)} job(s) waiting there, {why.get('ahead_in_higher_queues', 0)} "
                 "ahead in higher queues)")
    out.print(f"[bold]{escape(str(job_id))}[/bold]: {why.get('pending', 0)} task(s) pending{place}; "
              f"{why.get('offers_seen', 0)} offer(s) in the last round", soft_wrap=True)
    stages = why.get("stages") or []
    if stages:
        rows = table("Waiting stages", [("STAGE", "left"), ("WAITING", "right"), ("REASON", "left"),
                                        ("DETAIL", "left")])
        for stage in stages:
            rows.add_row(_text(stage.get("stage")), str(stage.get("waiting", 0)), _text(stage.get("reason")),
                         _text(stage.get("detail")))
        out.print(rows)
    refusals = why.get("refusals") or {}
    if refusals:
        rows = table("Offers refused, by reason", [("REASON", "left"), ("COUNT", "right")])
        for reason, count in refusals.items():  # the server's order: most frequent first
            rows.add_row(escape(str(reason)), str(count))
        out.print(rows)
    recent = why.get("recent") or []
    if recent:
        rows = table("Offers of the last round", [("STAGE", "left"), ("HOST", "left"), ("OFFER", "left"),
                                                  ("REASON", "left")])
        for offer in recent:
            rows.add_row(_text(offer.get("stage")), _text(offer.get("hostname") or offer.get("agent_id")),
                         _text(offer.get("offer_id")), _text(offer.get("reason")))
        out.print(rows)
    for shape in why.get("fits_nowhere") or []:
        rules = f" with {', '.join(map(str, shape['rules']))}" if shape.get("rules") else ""
        out.print(f"stage {escape(str(shape.get('stage')))} asks for {escape(str(shape.get('resources')))}{rules}: "
                  f"it fits no offer; the largest ({escape(str(shape.get('largest_offer')))}) lacks "
                  f"{escape(str(shape.get('missing_from_largest')))}", soft_wrap=True)
    summary = why.get("summary") or why.get("message")
    if summary:
        out.print(f"[bold]{escape(str(summary))}[/bold]", soft_wrap=True)


class StageProgress:
    """``submit --wait``'s display: one bar per stage (indices that will not run again out of the
    array) with its state and live counts, redrawn at each update of the job."""

    def __init__(self, out: Console) -> None:
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[status]}"), TimeElapsedColumn(), console=out)
        self.bars: dict[str, TaskID] = {}

    def __enter__(self) -> StageProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)

    def update(self, job: Job) -> None:
        width = max((len(stage.name) for stage in job.stages), default=0)
        for stage in job.stages:
            others = [f"{c} {n}" for n, c in (("running", stage.running), ("queued", stage.queued),
                                              ("failed", stage.failed), ("skipped", stage.skipped)) if c]
            status = escape(stage.state.lower().replace("_", " ") + (f": {', '.join(others)}" if others else ""))
            if stage.name not in self.bars:
                self.bars[stage.name] = self.progress.add_task(escape(stage.name.ljust(width)), total=stage.array,
                                                               status=status)
            self.progress.update(self.bars[stage.name], completed=stage.done, total=stage.array, status=status)
