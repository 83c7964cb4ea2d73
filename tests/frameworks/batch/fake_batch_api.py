"""A fake of the batch framework's REST API behind the master's ``/frameworks/batch`` prefix (the
contract of docs/batch.md), plus the two master routes ``tepui jobs logs`` reads (``/state`` and
a task's ``/files/read``), on loopback in a thread. It records every request, and plays a job's
future as a list of snapshots: pushed on ``GET /v1/events`` (optionally breaking the stream
after some), or one per ``GET /v1/jobs/{id}`` once polling (``advance_on_get``).

Shared by tests/frameworks/batch/test_client.py and tests/cli/test_jobs.py; the end-to-end tests
against the real framework live elsewhere.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import yaml

PREFIX = "/frameworks/batch/v1"
ENDED = ("SUCCEEDED", "FAILED", "CANCELLED", "DEADLINE_EXCEEDED")
T0 = 1_780_000_000.0  # submission time of the fake's jobs (2026-05-28T20:26:40Z), in the past


def stage(name: str, array: int = 1, state: str = "WAITING", depends_on: list[Any] | None = None,
          **counts: int) -> dict[str, Any]:
    values = {"pending": 0, "queued": 0, "running": 0, "succeeded": 0, "failed": 0, "skipped": 0, **counts}
    if not any(values.values()):
        values["pending"] = array
    deps = [d if isinstance(d, dict) else {"stage": d, "condition": "all_succeeded"} for d in depends_on or []]
    return {"job": "", "stage": name, "state": state, "array": array, "depends_on": deps, "reason": "", **values}


def job(job_id: str, state: str = "PENDING", stages: list[dict[str, Any]] | None = None, **fields: Any) -> dict[str, Any]:
    stages = stages or [stage("main")]
    for s in stages:
        s["job"] = job_id
    tasks = {"total": sum(s["array"] for s in stages), "succeeded": sum(s["succeeded"] for s in stages),
             "failed": sum(s["failed"] for s in stages), "running": sum(s["running"] for s in stages),
             "pending": sum(s["pending"] + s["queued"] for s in stages)}
    base = {"id": job_id, "name": job_id.rsplit("-", 1)[0], "user": "alice", "queue": "default", "priority": 0,
            "state": state, "submitted_at": T0, "clock_at": T0, "started_at": None, "finished_at": None,
            "suspended": False, "reason": "", "stages": stages, "tasks": tasks}
    if state != "PENDING":
        base["started_at"] = T0 + 2
    if state in ENDED:
        base["finished_at"] = T0 + 65
    base.update(fields)
    return base


def attempt(job_id: str, stage_name: str, index: int, number: int, state: str = "FINISHED", **fields: Any) -> dict[str, Any]:
    base = {"job": job_id, "stage": stage_name, "index": index, "attempt": number,
            "task_id": f"{job_id}.{stage_name}.{index}.{number}", "agent_id": "a-1", "hostname": "node-1",
            "state": state, "queued_at": T0 + 1, "launched_at": T0 + 2, "running_at": T0 + 3,
            "finished_at": None if state in ("LAUNCHED", "RUNNING") else T0 + 13, "exit_code": 0 if state == "FINISHED" else None,
            "task_state": None, "task_reason": None, "failure": None, "killed_by": None,
            "outcome": "succeeded" if state == "FINISHED" else "", "spent": True, "retry_at": None}
    base.update(fields)
    return base


class FakeBatch:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.jobs: dict[str, dict[str, Any]] = {}
        self.bodies: dict[str, bytes] = {}
        self.updates: dict[str, list[dict[str, Any]]] = {}
        self.attempts: dict[str, list[dict[str, Any]]] = {}
        self.history: list[dict[str, Any]] = []
        self.why: dict[str, Any] = {}
        self.total: int | None = None
        self.framework_running = True
        self.unavailable_gets = 0  # the next N GETs of a job answer 404 UNKNOWN_FRAMEWORK (a restart)
        self.events = True  # False: /v1/events answers 404
        self.break_after: int | None = None  # the stream closes after this many events
        self.silent = False  # the stream sends nothing after its first comment, not even keepalives
        self.advance_on_get = False
        self.files: dict[str, dict[str, str]] = {}
        self.task_states: dict[str, str] = {}
        self.job_fetched = threading.Event()

    # --- the job's future ----------------------------------------------------------------------

    def advance(self, job_id: str) -> dict[str, Any] | None:
        queue = self.updates.get(job_id) or []
        if not queue:
            return None
        self.jobs[job_id] = queue.pop(0)
        return self.jobs[job_id]

    def handle(self, method: str, path: str, query: dict[str, str], body: bytes,
               headers: dict[str, str]) -> tuple[int, Any]:
        if path == "/state":
            return 200, {"frameworks": [{"id": "F-batch", "tasks": [
                {"id": t, "state": s} for t, s in self.task_states.items()]}], "completed_frameworks": []}
        if path.startswith("/tasks/"):
            task_id = urllib.parse.unquote(path.split("/")[2])
            if task_id not in self.files:
                return 404, {"error": f"no task {task_id}", "reason": "UNKNOWN_TASK"}
            data = self.files[task_id].get(query["path"], "")[int(query["offset"]):]
            return 200, {"data": data, "offset": int(query["offset"]),
                         "next_offset": int(query["offset"]) + len(data.encode()), "eof": True}
        if not self.framework_running:
            return 404, {"error": "no framework named 'batch' is subscribed", "reason": "UNKNOWN_FRAMEWORK"}
        if not path.startswith(PREFIX + "/"):
            return 404, None
        rest = path[len(PREFIX):]
        parts = [urllib.parse.unquote(p) for p in rest.strip("/").split("/")]
        if rest == "/health":
            return 200, {"ok": True, "subscribed": True, "framework_id": "F-batch"}
        if rest == "/jobs" and method == "POST":
            return self.submit(query, body, headers)
        if rest == "/jobs" and method == "GET":
            jobs = sorted(self.jobs.values(), key=lambda j: j["submitted_at"], reverse=True)
            listed = [{k: v for k, v in j.items() if k != "spec"} for j in jobs]
            return 200, {"jobs": listed[:int(query.get("limit", 100))], "total": self.total or len(listed)}
        if rest == "/history" and method == "GET":
            return 200, {"attempts": self.history}
        if parts[0] == "jobs" and len(parts) >= 2:
            job_id = parts[1]
            if method == "GET" and len(parts) == 2:
                if self.unavailable_gets > 0:
                    self.unavailable_gets -= 1
                    return 404, {"error": "no framework named 'batch' is subscribed", "reason": "UNKNOWN_FRAMEWORK"}
                if self.advance_on_get:
                    self.advance(job_id)
            if job_id not in self.jobs:
                return 404, {"error": f"no job {job_id}: `tepui jobs list` shows the jobs kept", "reason": "UNKNOWN_JOB"}
            if len(parts) == 2 and method == "GET":
                self.job_fetched.set()
                return 200, {"job": self.jobs[job_id]}
            if len(parts) == 3 and method == "GET" and parts[2] == "attempts":
                found = [a for a in self.attempts.get(job_id, [])
                         if ("stage" not in query or a["stage"] == query["stage"])
                         and ("index" not in query or a["index"] == int(query["index"]))]
                return 200, {"attempts": found}
            if len(parts) == 3 and method == "GET" and parts[2] == "why":
                return 200, {**self.why, "job": self.jobs[job_id]}
            if len(parts) == 3 and method == "POST":
                return self.action(job_id, parts[2])
            if len(parts) == 2 and method == "DELETE":
                if self.jobs[job_id]["state"] not in ("SUCCEEDED", "FAILED", "CANCELLED", "DEADLINE_EXCEEDED"):
                    return 409, {"error": f"job {job_id} is {self.jobs[job_id]['state']}; `tepui jobs cancel` it first",
                                 "reason": "JOB_NOT_ENDED"}
                del self.jobs[job_id]
                return 200, {"deleted": job_id}
        return 404, {"error": f"no route {method} {rest}", "reason": "NOT_FOUND"}

    def submit(self, query: dict[str, str], body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
        text = body.decode()
        if "yaml" in (headers.get("content-type") or ""):
            spec = yaml.safe_load(text)
        else:
            spec = json.loads(text)
        if any(s.get("array", 1) < 1 for s in spec.get("stages", [])):
            return 400, {"error": "stages[0].array: must be between 1 and 100000, got 0", "reason": "INVALID_SPEC",
                         "field": "stages[0].array"}
        job_id = query.get("id") or f"{spec['name']}-0123456789"
        if job_id in self.jobs:
            if self.bodies.get(job_id) == body:
                return 200, {"job": self.jobs[job_id]}
            return 409, {"error": f"job {job_id} exists with another spec", "reason": "JOB_EXISTS"}
        stages = [stage(s["name"], s.get("array", 1), depends_on=s.get("depends_on")) for s in spec["stages"]]
        created = job(job_id, stages=stages, user=headers.get("x-tepui-user") or "anonymous", spec=spec,
                      queue=spec.get("queue", "default"))
        self.jobs[job_id], self.bodies[job_id] = created, body
        return 201, {"job": created}

    def action(self, job_id: str, action: str) -> tuple[int, Any]:
        current = self.jobs[job_id]
        if current["state"] in ENDED and action != "retry":
            return 409, {"error": f"job {job_id} already ended {current['state']}: nothing to {action}",
                         "reason": "JOB_ENDED"}
        if action == "retry" and current["state"] not in ("FAILED", "DEADLINE_EXCEEDED"):
            return 409, {"error": f"job {job_id} has nothing to retry: it is {current['state']}; only a FAILED or "
                         "DEADLINE_EXCEEDED job has failed indices", "reason": "NOTHING_TO_RETRY"}
        state = {"cancel": "CANCELLED", "suspend": "SUSPENDED", "resume": "PENDING", "retry": "PENDING"}[action]
        current.update(state=state, suspended=action == "suspend")
        return 200, {"job": current}

    # --- the event stream ----------------------------------------------------------------------

    def stream(self, handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("content-type", "text/event-stream")
        handler.end_headers()
        handler.wfile.write(b": connected\n\n")
        handler.wfile.flush()
        self.job_fetched.wait(5)  # the client GETs the job after subscribing: push after that
        if self.silent:
            time.sleep(1)
            return
        sent = 0
        deadline = time.monotonic() + 10
        try:
            while time.monotonic() < deadline:
                pushed = False
                for job_id in list(self.updates):
                    if self.break_after is not None and sent >= self.break_after:
                        self.advance_on_get = True
                        return  # the connection closes: the stream broke
                    update = self.advance(job_id)
                    if update is None:
                        continue
                    kind = "job_ended" if update["state"] in ENDED else "job_updated"
                    handler.wfile.write(f"event: attempt_updated\ndata: {json.dumps({'attempt': {}})}\n\n".encode())
                    handler.wfile.write(f"event: {kind}\ndata: {json.dumps({'job': update})}\n\n".encode())
                    handler.wfile.flush()
                    sent += 1
                    pushed = True
                if not pushed:
                    handler.wfile.write(b": keepalive\n\n")
                    handler.wfile.flush()
                time.sleep(0.01)
        except OSError:
            return  # the client left


@contextmanager
def serve(fake: FakeBatch) -> Iterator[str]:
    """Serves ``fake`` on 127.0.0.1; yields its base URL."""
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            query = dict(urllib.parse.parse_qsl(url.query))
            headers = {k.lower(): v for k, v in self.headers.items()}
            with lock:
                fake.requests.append({"method": self.command, "path": url.path, "query": query, "body": body,
                                      "content_type": headers.get("content-type"), "headers": headers})
                if url.path == PREFIX + "/events" and self.command == "GET" and fake.events \
                        and fake.framework_running:
                    stream = True
                else:
                    stream = False
                    status, document = fake.handle(self.command, url.path, query, body, headers)
            if stream:
                fake.stream(self)
                return
            raw = b"" if document is None else json.dumps(document).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(raw)))
            if url.path.startswith("/tasks/"):
                self.send_header("x-tepui-framework-id", "F-batch")
            self.end_headers()
            self.wfile.write(raw)

        do_GET = do_POST = do_PUT = do_DELETE = _serve  # PUT: the cron fake's apply

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def isolate(monkeypatch: Any, config_dir: Any) -> None:
    """No token, CA or master address from the environment or a real client config; the user
    is alice."""
    for name in ("TEPUI_HTTP_TOKEN", "TEPUI_HTTP_CA", "TEPUI_MASTER_HTTP"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TEPUI_CONFIG", str(config_dir / "none.yaml"))
    monkeypatch.setenv("TEPUI_USER", "alice")


def closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
