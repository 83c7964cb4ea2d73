"""A small Python client for the batch framework's REST API, for notebooks and scripts::

    from tepui.frameworks.batch.client import BatchClient

    batch = BatchClient()                      # the cluster `tepui up` wrote the client config for
    job = batch.submit("wordcount.yaml")       # a path, a YAML/JSON text, or a dict
    job = batch.wait(job.id, on_update=lambda j: print(j.state, j.tasks.succeeded, "/", j.tasks.total))
    print(job.state, job.exit_code)            # SUCCEEDED 0
    for attempt in batch.history(user="alice", since="1d", state="FAILED"):
        print(attempt.task_id, attempt.exit_code, attempt.failure)

It talks to ``MASTER/frameworks/batch/v1/...``: the master proxies that prefix to the framework,
so only the master's HTTP address is needed, found as the ``tepui`` CLI finds it (``master=``,
else ``$TEPUI_MASTER_HTTP``, else ``master_http`` in the client configuration ``tepui up``
writes, else 127.0.0.1:5080), with the same bearer token (``$TEPUI_HTTP_TOKEN``, else
``http_token`` there) and private CA for ``https://`` (``$TEPUI_HTTP_CA``, else ``http_ca``).
Every failure is a :class:`BatchError` whose message says what to do.

Why self-contained on urllib rather than reusing ``tepui.cli.http_client``: frameworks import
only ``tepui.sdk`` (tests/frameworks/test_sdk_only.py), and a notebook should not need click and
rich. ``tepui jobs`` is the client's other user: the CLI calls this, not the other way round.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

from tepui.frameworks.batch.client_values import (ENDED, Attempt, BatchError, Job, JobList, TimeError,
                                                  parse_time)
from tepui.sdk.api_refusals import framework_missing, token_refused
from tepui.sdk.framework_client import FrameworkClient, is_json, json_object, quote, spec_text

__all__ = ["BatchClient", "BatchError", "Job", "Attempt", "JobList"]

FRAMEWORK = "batch"
#: Seconds between two polls of a job when the event stream is not there (the contract's 0.5 s).
POLL_INTERVAL = 0.5
#: The event stream sends a comment every 15 s (services' EventHub.KEEPALIVE): nothing for longer
#: than this means the stream is dead, and ``wait`` polls instead.
STREAM_IDLE = 20.0
#: How long ``wait`` rides out an API that stopped answering (a framework restarting mid-job
#: re-subscribes within seconds) before it gives up.
UNREACHABLE_GRACE = 60.0

Time = float | int | datetime | str
Attempts = list[Attempt]



class BatchClient(FrameworkClient):
    """The batch framework's ``/v1`` through the master. ``master``: HOST:PORT or a URL (default
    as the module says); ``token``/``ca``: override the configuration's; ``user``: who submits
    (sent as ``X-Tepui-User``; default ``$TEPUI_USER``, else the login name); ``timeout``:
    seconds one call may take (longer than the master proxy's 30 s, so its 504 comes first)."""

    def __init__(self, master: str | None = None, *, token: str | None = None, ca: str | None = None,
                 user: str | None = None, timeout: float = 35.0) -> None:
        super().__init__(FRAMEWORK, master, token=token, ca=ca, user=user, timeout=timeout)
        self.poll_interval = POLL_INTERVAL
        self.unreachable_grace = UNREACHABLE_GRACE

    # --- jobs -------------------------------------------------------------------------------

    def submit(self, spec: str | os.PathLike[str] | Mapping[str, Any], job_id: str | None = None) -> Job:
        """Submits a job: ``spec`` is a dict, a path to a YAML/JSON file, or the document's text.
        With ``job_id`` the submission is idempotent: the same id and spec again gives the
        existing job, another spec under that id is refused (``JOB_EXISTS``)."""
        data, content_type = _document(spec)
        answer = self._call("POST", "/jobs", query={"id": job_id} if job_id else None, data=data,
                            content_type=content_type)
        return Job.from_dict(answer.get("job") or {})

    def get(self, job_id: str) -> Job:
        return Job.from_dict(self._call("GET", f"/jobs/{quote(job_id)}").get("job") or {})

    def list(self, *, user: str | None = None, queue: str | None = None, state: str | Iterable[str] | None = None,
             since: Time | None = None, until: Time | None = None, limit: int = 100, offset: int = 0) -> JobList:
        """Jobs matching every filter given, newest submission first (``limit`` of them from
        ``offset``; ``.total`` counts them all). ``state``: one state or several; ``since``/
        ``until`` bound the submission time (Unix seconds, a datetime, ``"2026-12-07T14:00"``, or
        a duration back from now: ``"1h"``, ``"2d"``)."""
        query = self._filters(user=user, queue=queue, state=state, since=since, until=until)
        query.update(limit=str(limit), offset=str(offset))
        answer = self._call("GET", "/jobs", query=query)
        jobs = [Job.from_dict(job) for job in answer.get("jobs") or []]
        return JobList(jobs, int(answer.get("total", len(jobs))))

    def attempts(self, job_id: str, stage: str | None = None, index: int | None = None,
                 state: str | Iterable[str] | None = None) -> Attempts:
        """Every try of the job's tasks, by stage order, index and attempt number."""
        query = self._filters(stage=stage, index=None if index is None else str(index), state=state)
        answer = self._call("GET", f"/jobs/{quote(job_id)}/attempts", query=query or None)
        return [Attempt.from_dict(a) for a in answer.get("attempts") or []]

    def cancel(self, job_id: str) -> Job:
        """Kills the job's running tasks; nothing else of it runs. Ends it CANCELLED."""
        return self._action(job_id, "cancel")

    def suspend(self, job_id: str) -> Job:
        """Kills running tasks (no attempt spent) and launches nothing until :meth:`resume`."""
        return self._action(job_id, "suspend")

    def resume(self, job_id: str) -> Job:
        return self._action(job_id, "resume")

    def retry(self, job_id: str) -> Job:
        """Re-runs a FAILED or DEADLINE_EXCEEDED job's failed and skipped indices only."""
        return self._action(job_id, "retry")

    def delete(self, job_id: str) -> str:
        """Forgets an ended job's record now (before its ``ttl_after_finished``)."""
        return str(self._call("DELETE", f"/jobs/{quote(job_id)}").get("deleted", job_id))

    def why(self, job_id: str) -> dict[str, Any]:
        """Why a job is pending: its queue position, each stage's reason, the offers refused and
        why, the shape that fits nowhere, and ``summary``, one sentence saying what to do."""
        return dict(self._call("GET", f"/jobs/{quote(job_id)}/why"))

    def history(self, *, user: str | None = None, queue: str | None = None, state: str | Iterable[str] | None = None,
                stage: str | None = None, since: Time | None = None, until: Time | None = None,
                limit: int = 1000) -> Attempts:
        """Every attempt of every job kept (Slurm's ``sacct``), filtered by the job's user and
        queue, the attempt's state (FINISHED, FAILED, KILLED, LOST, RUNNING...) and stage, and its
        launch time in [since, until]."""
        query = self._filters(user=user, queue=queue, state=state, stage=stage, since=since, until=until)
        query["limit"] = str(limit)
        return [Attempt.from_dict(a) for a in self._call("GET", "/history", query=query).get("attempts") or []]

    def queues(self) -> dict[str, Any]:
        """The queues (priority, limit, running, pending) and each user's weight and share."""
        return dict(self._call("GET", "/queues"))

    def health(self) -> dict[str, Any]:
        """``{"ok", "subscribed", "framework_id"}``."""
        return dict(self._call("GET", "/health"))

    # --- waiting ----------------------------------------------------------------------------

    def wait(self, job_id: str, timeout: float | None = None, on_update: Callable[[Job], None] | None = None) -> Job:
        """Returns the job once it ended (SUCCEEDED, FAILED, CANCELLED or DEADLINE_EXCEEDED).

        Follows the event stream (``GET /v1/events``) and falls back to polling the job every
        0.5 s when the stream cannot be opened or breaks; a while without any answer (a framework
        restarting) is ridden out for ``unreachable_grace`` seconds. ``on_update`` is called with
        the job first and at each change. Raises :class:`BatchError` ``WAIT_TIMEOUT`` (with the
        last known ``job``) after ``timeout`` seconds; the job keeps running."""
        deadline = None if timeout is None else time.monotonic() + timeout
        last: list[Job] = []

        def seen(job: Job) -> Job:
            if not last or job.data != last[-1].data:
                last[:] = [job]
                if on_update is not None:
                    on_update(job)
            return job

        stream = None
        try:
            stream = self._events(deadline)  # first, so no change between the GET and it is missed
        except (BatchError, OSError):
            pass
        try:
            job = self._poll(job_id, None, deadline, timeout, seen)
            if job.ended:
                return job
            if stream is not None:
                try:
                    for kind, data in stream:
                        event_job = data.get("job") if isinstance(data, dict) else None
                        if kind.startswith("job_") and isinstance(event_job, dict) and event_job.get("id") == job_id:
                            job = seen(Job.from_dict(event_job))
                            if job.ended:
                                return job
                        self._check(deadline, job_id, job, timeout)
                except (OSError, ValueError, urllib.error.URLError):
                    pass  # the stream broke (or went silent): poll from here on
                self._check(deadline, job_id, job, timeout)
            return self._poll(job_id, job, deadline, timeout, seen)
        finally:
            if stream is not None:
                stream.close()

    def _poll(self, job_id: str, job: Job | None, deadline: float | None, timeout: float | None,
              seen: Callable[[Job], Job]) -> Job:
        """Polls until the job ended; with ``job`` None, returns the first answer (no sleep first)."""
        lost_since: float | None = None
        first = job is None
        while True:
            if job is not None:
                self._check(deadline, job_id, job, timeout)
            if not first or lost_since is not None:
                time.sleep(self.poll_interval if deadline is None else
                           max(0.0, min(self.poll_interval, deadline - time.monotonic())))
            try:
                job = seen(self.get(job_id))
                lost_since = None
            except BatchError as exc:
                if not exc.unreachable:
                    raise
                lost_since = lost_since if lost_since is not None else time.monotonic()
                if time.monotonic() - lost_since >= self.unreachable_grace or (
                        deadline is not None and time.monotonic() >= deadline):
                    raise
                continue
            if job.ended or first:
                return job

    @staticmethod
    def _check(deadline: float | None, job_id: str, job: Job, timeout: float | None) -> None:
        if deadline is not None and time.monotonic() >= deadline:
            raise BatchError(f"job {job_id} is still {job.state} after {timeout:g} s; it keeps running.",
                             reason="WAIT_TIMEOUT", job=job,
                             hint=f"Wait again, look at it with `tepui jobs show {job_id}`, or stop it with "
                             f"`tepui jobs cancel {job_id}`.")

    def _events(self, deadline: float | None) -> _EventStream:
        request = urllib.request.Request(self.base + "/events", headers=self._headers("text/event-stream"))
        try:
            response = urllib.request.urlopen(request, timeout=_window(deadline), context=self._tls())
        except urllib.error.HTTPError as exc:
            raise self._refused(exc.code, json_object(exc.read()), "GET", "/events") from None
        return _EventStream(response, deadline)

    # --- HTTP -------------------------------------------------------------------------------

    def _filters(self, **values: Any) -> dict[str, str]:
        query: dict[str, str] = {}
        for name, value in values.items():
            if value is None:
                continue
            if name in ("since", "until"):
                try:
                    value = f"{parse_time(value, time.time()):.3f}"
                except TimeError as exc:
                    raise BatchError(f"{name}: {exc}", reason="INVALID_FILTER", field=name) from None
            elif name == "state" and not isinstance(value, str):
                value = ",".join(str(v) for v in value)
            query[name] = value.upper() if name == "state" else str(value)
        return query

    def _action(self, job_id: str, action: str) -> Job:
        return Job.from_dict(self._call("POST", f"/jobs/{quote(job_id)}/{action}", data=b"{}",
                                        content_type="application/json").get("job") or {})

    def _call(self, method: str, path: str, *, query: Mapping[str, str] | None = None, data: bytes | None = None,
              content_type: str | None = None) -> dict[str, Any]:
        try:
            status, document = self._exchange(method, path, query, data, content_type)
        except OSError as exc:  # urllib's URLError is one
            reason = getattr(exc, "reason", exc)
            raise BatchError(f"cannot reach the master's HTTP API at {self.master}: {reason}.", reason="UNREACHABLE",
                             hint="Is a cluster running? Start one with `tepui up` (it starts the batch framework "
                             "too), or give the master's address (--http HOST:PORT, BatchClient(master=...), "
                             "$TEPUI_MASTER_HTTP).") from None
        if 200 <= status < 300:
            return document
        raise self._refused(status, document, method, path)

    def _refused(self, status: int, document: dict[str, Any], method: str, path: str) -> BatchError:
        reason, message, field = document.get("reason"), document.get("error"), document.get("field")
        reason = None if reason is None else str(reason)
        if status == 401 or reason == "UNKNOWN_FRAMEWORK":
            sentence, next_step = (token_refused(self.token, message) if status == 401 else
                                   framework_missing(self.master, FRAMEWORK, "tepui batch"))
            return BatchError(sentence, status=status, reason=reason, hint=next_step)
        if message:
            hint = None
            if reason is not None and reason.startswith(("FRAMEWORK_", "RELAY_")):
                hint = "Is `tepui batch` running and healthy? Its log says why; try again when it is."
            elif reason == "JOB_EXISTS":
                hint = "Submit without an id for a new job, or look at the existing one with `tepui jobs show ID`."
            elif reason == "INVALID_SPEC":
                hint = "Fix that field of the spec (docs/batch.md, 'Job spec') and submit again."
            return BatchError(str(message), status=status, reason=reason, field=None if field is None else str(field),
                              hint=hint)
        if status == 404:
            return BatchError(f"the master at {self.master} answered 404 to {method} /frameworks/{FRAMEWORK}/v1{path} "
                              "without saying why.", status=status,
                              hint="It may predate the frameworks proxy (upgrade it), or the batch framework is not "
                              "running (start it with `tepui batch`).")
        return BatchError(f"the batch framework answered HTTP {status} to {method} {path} without an explanation.",
                          status=status, reason=reason, hint="Look at its log (the output of `tepui batch`).")


class _EventStream:
    """Server-sent events as ``(kind, data)`` pairs, and ``("", None)`` for each comment (the
    keepalives), so the reader checks its deadline at least that often. Each read waits at most
    :func:`_window` of the deadline given; a read that times out, or the end of the stream,
    raises OSError."""

    def __init__(self, response: Any, deadline: float | None) -> None:
        self.response, self.deadline = response, deadline
        # The socket, to bound each read by what is left of the deadline (urllib sets one timeout
        # for the whole response). Private to http.client, so only where it is found; elsewhere a
        # read may outlast the deadline by the window the stream was opened with.
        self.socket = getattr(getattr(getattr(response, "fp", None), "raw", None), "_sock", None)

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        kind, data = "message", list[str]()
        while True:
            if self.socket is not None:
                self.socket.settimeout(_window(self.deadline))
            line = self.response.readline()
            if not line:
                raise OSError("the event stream ended")
            text = line.decode("utf-8").rstrip("\r\n")
            if not text:
                if data:
                    yield kind, json.loads("\n".join(data))
                kind, data = "message", list[str]()
            elif text.startswith(":"):
                yield "", None
            else:
                name, _, value = text.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "event":
                    kind = value
                elif name == "data":
                    data.append(value)

    def close(self) -> None:
        try:
            self.response.close()
        except OSError:
            pass


def _window(deadline: float | None) -> float:
    """The stream's read timeout: silence longer than STREAM_IDLE is a dead stream, and a read
    never outlasts ``wait``'s deadline."""
    if deadline is None:
        return STREAM_IDLE
    return max(0.05, min(STREAM_IDLE, deadline - time.monotonic()))





def _document(spec: str | os.PathLike[str] | Mapping[str, Any]) -> tuple[bytes, str]:
    """The request body and its type for a spec given as data, a path or a document's text."""
    if isinstance(spec, Mapping):
        return json.dumps(spec).encode(), "application/json"
    try:
        text, path = spec_text(spec)
    except (OSError, UnicodeDecodeError) as exc:
        raise BatchError(f"cannot read {spec}: {getattr(exc, 'strerror', None) or exc}.", reason="UNREADABLE_SPEC",
                         hint="Check the path, or pass the spec as a dict or as the document's text.") from None
    if not text.strip():
        raise BatchError(f"{path or 'the spec'} is empty.", reason="INVALID_SPEC",
                         hint="Write a job spec (docs/batch.md, 'Job spec').")
    return text.encode(), "application/json" if is_json(text, path) else "application/yaml"
