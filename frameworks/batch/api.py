"""The batch framework's REST API (docs/batch.md "REST API"), served on its own port and proxied
by the master under ``/frameworks/batch/``.

A thin shell, as the services API: it parses the request, calls a command (:mod:`.commands`,
through ``run`` so its effects — the store's Persist first — are executed before the answer is
written: a 201 means the job is stored) or a read (:mod:`.views`, :mod:`.history`), and writes
JSON. Refusals are ``{"error", "reason", "field"}`` with a message saying what to do instead.
Job ids hold no ``/`` (nor ``.``), so routes are read from the left.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from tepui.frameworks.batch import commands, queue_why, views
from tepui.frameworks.batch.core import BatchCore, JobEntry
from tepui.frameworks.batch.history import History
from tepui.frameworks.batch.spec import SpecError, parse_job
from tepui.sdk.event_stream import EventHub
from tepui.sdk.framework_api import VersionedApi, body_format, json_answer, query_arg
from tepui.sdk.framework_effects import CommandError

Run = Callable[..., dict[str, Any]]  # run(command, *args): executes its effects, returns the answer

USER_HEADER = b"x-tepui-user"
ACTIONS = ("cancel", "suspend", "resume", "retry")
READS = ("attempts", "why")
DOCS = "see docs/batch.md, 'REST API'"


def _text(request: Any, name: str) -> str | None:
    value = query_arg(request, name)
    return (value.strip() or None) if value is not None else None


class BatchApi(VersionedApi):
    """``/v1/...``: every route, one leaf."""

    docs = DOCS

    def __init__(self, core: BatchCore, run: Run, hub: EventHub, now: Callable[[], float],
                 subscribed: Callable[[], dict[str, Any]], history: History) -> None:
        super().__init__()
        self.core, self.run, self.hub, self.now, self.subscribed = core, run, hub, now, subscribed
        self.history = history

    def _route(self, request: Any, method: str, parts: list[str]) -> Any:
        head, rest = (parts[0], parts[1:]) if parts else ("", [])
        if head == "health" and not rest:
            self._allow(method, "GET")
            return json_answer(request, 200, {"ok": True, "subscribed": False,
                                              "framework_id": self.core.framework_id, **self.subscribed()})
        if head == "events" and not rest:
            self._allow(method, "GET")
            return self.hub.attach(request)
        if head == "queues" and not rest:
            self._allow(method, "GET")
            return json_answer(request, 200, views.queues_view(self.core))
        if head == "history" and not rest:
            self._allow(method, "GET")
            return json_answer(request, 200, self._history(request))
        if head == "jobs":
            return self._jobs(request, method, rest)
        raise CommandError(404, "NOT_FOUND", f"no route {request.path.decode()!r}: the routes are /v1/health, /v1/jobs, "
                           f"/v1/jobs/ID[/attempts|why|cancel|suspend|resume|retry], /v1/history, /v1/queues, "
                           f"/v1/events ({DOCS})")

    # --- jobs ---------------------------------------------------------------------------------

    def _jobs(self, request: Any, method: str, parts: list[str]) -> Any:
        if not parts:
            self._allow(method, "GET", "POST")
            return self._list(request) if method == "GET" else self._submit(request)
        if len(parts) > 2:
            raise CommandError(404, "NOT_FOUND", f"no route {request.path.decode()!r}: a job's routes are "
                               f"/v1/jobs/ID and /v1/jobs/ID/{{{'|'.join(READS + ACTIONS)}}} ({DOCS})")
        job_id = parts[0]
        entry = commands.entry_of(self.core, job_id)
        if len(parts) == 1:
            self._allow(method, "GET", "DELETE")
            if method == "GET":
                return json_answer(request, 200, {"job": views.job_view(self.core, entry, with_spec=True)})
            return json_answer(request, 200, self.run(commands.delete, job_id, self.now()))
        action = parts[1]
        if action in READS:
            self._allow(method, "GET")
            if action == "why":
                return json_answer(request, 200, {**queue_why.explain(self.core.queues, job_id),
                                                  "job": views.job_view(self.core, entry)})
            return json_answer(request, 200, {"attempts": self._attempts(request, entry)})
        if action in ACTIONS:
            self._allow(method, "POST")
            command = {"cancel": commands.cancel, "suspend": commands.suspend, "resume": commands.resume,
                       "retry": commands.retry}[action]
            self.run(command, job_id, self.now())
            return json_answer(request, 200, {"job": self._job(job_id)})
        raise CommandError(404, "NOT_FOUND", f"a job has no {action!r}: use one of {', '.join(READS + ACTIONS)} "
                           f"(/v1/jobs/{job_id}/ACTION, {DOCS})")

    def _job(self, job_id: str) -> dict[str, Any]:
        """The job as it is after a command, spec included."""
        return views.job_view(self.core, commands.entry_of(self.core, job_id), with_spec=True)

    def _submit(self, request: Any) -> Any:
        raw = request.content.read() if request.content is not None else b""
        content_type = (request.getHeader(b"content-type") or b"").decode("latin-1")
        try:
            spec = parse_job(raw, body_format(content_type))
        except SpecError as exc:
            raise CommandError(400, "INVALID_SPEC", str(exc), exc.field) from None
        caller = (request.getHeader(USER_HEADER) or b"").decode("utf-8", "replace").strip() or None
        if caller is not None:  # the caller's identity wins over the spec's user
            spec = msgspec.structs.replace(spec, user=caller)
        answer = self.run(commands.submit, spec, caller, self.now(), _text(request, "id"))
        created = bool(answer.get("created"))
        return json_answer(request, 201 if created else 200,
                           {"job": self._job(answer["job"]["id"]), "created": created})

    def _list(self, request: Any) -> Any:
        wanted = views.JobFilter(
            user=_text(request, "user"), queue=_text(request, "queue"),
            states=views.parse_states(query_arg(request, "state"), views.JOB_STATES),
            since=views.parse_time(query_arg(request, "since"), "since"),
            until=views.parse_time(query_arg(request, "until"), "until"))
        limit = views.parse_count(query_arg(request, "limit"), "limit", 100, 1, views.MAX_LIMIT)
        offset = views.parse_count(query_arg(request, "offset"), "offset", 0, 0, 10**9)
        page, total = views.select_jobs(self.core.jobs.values(), wanted, limit, offset)
        return json_answer(request, 200, {"jobs": [views.job_view(self.core, e) for e in page], "total": total})

    def _attempts(self, request: Any, entry: JobEntry) -> list[dict[str, Any]]:
        stage = _text(request, "stage")
        order = entry.spec.stage_order()
        if stage is not None and stage not in order:
            raise CommandError(400, "UNKNOWN_STAGE", f"job {entry.record.id} has no stage {stage!r}; its stages are: "
                               f"{', '.join(order)}", "stage")
        index = query_arg(request, "index")
        return self.history.attempts(
            entry.record.id, stage,
            None if index is None else views.parse_count(index, "index", 0, 0, 10**9),
            views.parse_states(query_arg(request, "state"), views.ATTEMPT_STATES), order=order,
            hosts=self.core.agent_hosts)

    def _history(self, request: Any) -> dict[str, Any]:
        states = views.parse_states(query_arg(request, "state"), views.ATTEMPT_STATES)
        return {"attempts": self.history.search(
            self.core.jobs, user=_text(request, "user"), queue=_text(request, "queue"), state=states,
            stage=_text(request, "stage"), since=views.parse_time(query_arg(request, "since"), "since"),
            until=views.parse_time(query_arg(request, "until"), "until"),
            limit=views.parse_count(query_arg(request, "limit"), "limit", 1000, 1, views.MAX_LIMIT),
            hosts=self.core.agent_hosts)}
