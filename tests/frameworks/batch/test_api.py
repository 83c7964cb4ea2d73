"""The batch REST API (docs/batch.md "REST API") driven through twisted.web's DummyRequest, on a
real BatchCore and a real SQLiteStore: each route's status code and exact JSON, the refusals
(bad spec with its field, unknown job, wrong method, retry of a running job), idempotent submit,
and the attempts and history read back from the store."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from twisted.internet import task
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from tepui.frameworks.batch import commands
from tepui.frameworks.batch.api import BatchApi
from tepui.frameworks.batch.core import BatchCore
from tepui.frameworks.batch.effects import Effect, Launch, Persist, Publish
from tepui.frameworks.batch.history import History
from tepui.frameworks.batch.queue_values import QueueConfig, QueuesConfig
from tepui.sdk import Offer, Resources, SQLiteStore, TaskState, TaskStatus
from tepui.sdk.event_stream import EventHub

T0 = 1_800_000_000.0

SPEC_YAML = b"""
name: sums
stages:
  - name: map
    command: 'true'
    array: 2
  - name: reduce
    command: 'true'
    depends_on: [map]
"""
SPEC_DATA = {"name": "sums", "stages": [{"name": "map", "command": "true", "array": 2},
                                         {"name": "reduce", "command": "true", "depends_on": [{"stage": "map"}]}]}


def stage(name: str, state: str, array: int, job: str = "sums-1", depends_on: list[Any] | None = None,
          **counts: int) -> dict[str, Any]:
    values = {"pending": 0, "queued": 0, "running": 0, "succeeded": 0, "failed": 0, "skipped": 0, **counts}
    return {"job": job, "stage": name, "state": state, "array": array, "depends_on": depends_on or [], "reason": "",
            **values}


def job(state: str = "PENDING", job_id: str = "sums-1", user: str = "ana", stages: list[Any] | None = None,
        tasks: dict[str, int] | None = None, **fields: Any) -> dict[str, Any]:
    value = {"id": job_id, "name": "sums", "user": user, "queue": "default", "priority": 0, "state": state,
             "submitted_at": T0, "clock_at": T0, "started_at": None, "finished_at": None, "suspended": False,
             "reason": "", "retried_at": [], "retried_seq": [],
             "stages": stages if stages is not None else [
                 stage("map", "ACTIVE", 2, job_id, queued=2),
                 stage("reduce", "WAITING", 1, job_id, [{"stage": "map", "condition": "all_succeeded"}], pending=1)],
             "tasks": tasks or {"total": 3, "succeeded": 0, "failed": 0, "running": 0, "pending": 3}}
    value.update(fields)
    return value


class Harness:
    """The API on a real core and store, with a ``run`` that executes each command's effects:
    its Persist in the store (one transaction), its events on the hub."""

    def __init__(self, path: Path) -> None:
        self.now = T0
        self.store = SQLiteStore(path / "batch.sqlite")
        self.core = BatchCore(QueuesConfig(queues=(QueueConfig("default"), QueueConfig("prod", 10, 5)),
                                           weights=(("ana", 2.0),)))
        self.hub = EventHub(task.Clock())
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.launched: list[str] = []
        self.api = BatchApi(self.core, self.run, self.hub, lambda: self.now,
                            lambda: {"subscribed": True, "framework_id": "F1"}, History(self.store))

    def run(self, command: Callable[..., Any], *args: Any) -> dict[str, Any]:
        answer, effects = command(self.core, *args)
        self.execute(effects)
        return dict(answer)

    def execute(self, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Persist):
                with self.store.transaction():
                    for ns, key, value in effect.puts:
                        self.store.put(ns, key, msgspec.json.encode(value))
                    for ns, key in effect.deletes:
                        self.store.delete(ns, key)
                    for ns, prefix in effect.delete_prefixes:
                        for key in self.store.list(ns, prefix):
                            self.store.delete(ns, key)
            elif isinstance(effect, Publish):
                self.events.append((effect.kind, effect.data))
                self.hub.publish(effect.kind, effect.data)
            elif isinstance(effect, Launch):
                self.launched.extend(t.task_id for t in effect.tasks)

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None, /,
                **args: str) -> Any:
        request: Any = DummyRequest([p.encode() for p in path.strip("/").split("/")])
        request.method = method.encode()
        request.path = path.encode()
        request.content = None if body is None else _Body(body)
        for name, value in (headers or {}).items():
            request.requestHeaders.setRawHeaders(name.encode(), [value.encode()])
        for name, value in args.items():
            request.addArg(name.encode(), value.encode())
        return request

    def call(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None, /,
             **args: str) -> tuple[int, Any]:
        request = self.request(method, path, body, headers, **args)
        rendered = self.api.render(request)
        assert isinstance(rendered, bytes)
        assert request.responseHeaders.getRawHeaders(b"content-type") == [b"application/json"]
        return int(request.responseCode), json.loads(rendered)

    def submit(self, job_id: str = "sums-1", user: str = "ana", body: bytes = SPEC_YAML) -> dict[str, Any]:
        code, answer = self.call("POST", "/v1/jobs", body, {"content-type": "application/yaml", "x-tepui-user": user},
                                 id=job_id)
        assert code == 201, answer
        return dict(answer["job"])

    def offer(self, offer_id: str = "o1", agent: str = "a1", host: str = "node-1") -> None:
        self.execute(self.core.offers([Offer(id=offer_id, framework_id="F1", agent_id=agent, hostname=host,
                                             resources=Resources.parse("cpus:8;mem:8192").to_wire())], self.now))

    def update(self, task_id: str, state: TaskState, exit_code: int | None = None) -> None:
        self.execute(self.core.status_update(TaskStatus(task_id=task_id, state=state, agent_id="a1",
                                                        exit_code=exit_code), self.now))


class _Body:
    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    def read(self) -> bytes:
        return self.raw


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path)
    yield harness
    harness.store.close()


def run_map(h: Harness) -> None:
    """Both map tasks launched at T0+1 on node-1, running at T0+2: the job is RUNNING."""
    h.submit()
    h.now = T0 + 1
    h.offer()
    h.now = T0 + 2
    h.update("sums-1.map.0.1", TaskState.RUNNING)
    h.update("sums-1.map.1.1", TaskState.RUNNING)


def run_map_to_failure(h: Harness) -> None:
    """map.0 succeeds, map.1 fails (no retries): the job ends FAILED, reduce never runs."""
    run_map(h)
    h.now = T0 + 5
    h.update("sums-1.map.0.1", TaskState.FINISHED, 0)
    h.update("sums-1.map.1.1", TaskState.FAILED, 3)


# --- health, routing, methods -------------------------------------------------------------------


def test_health(h: Harness) -> None:
    assert h.call("GET", "/v1/health") == (200, {"ok": True, "subscribed": True, "framework_id": "F1"})


def test_unknown_routes_and_methods_say_what_to_do(h: Harness) -> None:
    assert h.call("GET", "/v2/jobs") == (404, {
        "reason": "NOT_FOUND",
        "error": "no route '/v2/jobs': the API is under /v1 (see docs/batch.md, 'REST API')"})
    code, body = h.call("GET", "/v1/nope")
    assert code == 404 and body["reason"] == "NOT_FOUND" and "/v1/history, /v1/queues, /v1/events" in body["error"]
    assert h.call("PUT", "/v1/jobs") == (405, {
        "reason": "METHOD_NOT_ALLOWED", "error": "PUT is not allowed here; use GET or POST (see docs/batch.md, 'REST API')"})
    h.submit()
    assert h.call("GET", "/v1/jobs/sums-1/cancel")[0] == 405
    assert h.call("POST", "/v1/jobs/sums-1/attempts")[0] == 405
    assert h.call("POST", "/v1/health")[0] == 405
    assert h.call("POST", "/v1/jobs/sums-1/explode") == (404, {
        "reason": "NOT_FOUND",
        "error": "a job has no 'explode': use one of attempts, why, cancel, suspend, resume, retry "
                 "(/v1/jobs/sums-1/ACTION, see docs/batch.md, 'REST API')"})
    assert h.call("GET", "/v1/jobs/sums-1/attempts/extra")[0] == 404


# --- submit -------------------------------------------------------------------------------------


def test_submit_yaml_answers_the_stored_job_with_its_spec(h: Harness) -> None:
    code, body = h.call("POST", "/v1/jobs", SPEC_YAML, {"content-type": "application/yaml", "x-tepui-user": "ana"},
                        id="sums-1")
    assert code == 201
    assert body == {"job": job(spec={**SPEC_DATA, "user": "ana"}), "created": True}
    assert h.store.get("jobs", "sums-1") is not None and h.store.get("specs", "sums-1") is not None
    assert [kind for kind, _ in h.events] == ["job_submitted"]


def test_submit_json_without_id_names_the_job_and_takes_the_specs_user(h: Harness) -> None:
    code, body = h.call("POST", "/v1/jobs", json.dumps({**SPEC_DATA, "user": "bo"}).encode(),
                        {"content-type": "application/json"})
    assert code == 201
    job_id = body["job"]["id"]
    assert job_id.startswith("sums-") and len(job_id) == len("sums-") + 10
    assert body["job"]["user"] == "bo"


def test_the_callers_header_wins_over_the_spec_user_and_anonymous_is_last(h: Harness) -> None:
    spec = json.dumps({**SPEC_DATA, "user": "bo"}).encode()
    code, body = h.call("POST", "/v1/jobs", spec, {"content-type": "application/json", "x-tepui-user": "cy"}, id="a")
    assert code == 201 and body["job"]["user"] == "cy" and body["job"]["spec"]["user"] == "cy"
    code, body = h.call("POST", "/v1/jobs", json.dumps(SPEC_DATA).encode(), id="b")
    assert code == 201 and body["job"]["user"] == "anonymous"


def test_submit_is_idempotent_on_the_id(h: Harness) -> None:
    first = h.submit()
    h.now = T0 + 30
    code, body = h.call("POST", "/v1/jobs", SPEC_YAML, {"content-type": "application/yaml", "x-tepui-user": "ana"},
                        id="sums-1")
    assert (code, body) == (200, {"job": first, "created": False})
    other = SPEC_YAML.replace(b"array: 2", b"array: 3")
    assert h.call("POST", "/v1/jobs", other, {"content-type": "text/yaml", "x-tepui-user": "ana"}, id="sums-1") == (
        409, {"reason": "JOB_EXISTS", "error": "job sums-1 exists with another spec; submit under another id, or "
                                               "`tepui jobs delete` it first once it has ended"})
    assert [kind for kind, _ in h.events] == ["job_submitted"]


def test_a_bad_spec_is_400_naming_the_field(h: Harness) -> None:
    bad = SPEC_YAML.replace(b"array: 2", b"array: 0")
    code, body = h.call("POST", "/v1/jobs", bad, {"content-type": "application/yaml"})
    assert code == 400
    assert body["reason"] == "INVALID_SPEC" and body["field"] == "stages[0].array"
    assert body["error"].startswith("stages[0].array: ")
    code, body = h.call("POST", "/v1/jobs", b"name: [unclosed\n", {"content-type": "application/yaml"})
    assert code == 400 and body["reason"] == "INVALID_SPEC" and body["field"] == "(document)"
    code, body = h.call("POST", "/v1/jobs", b"", {"content-type": "application/json"})
    assert code == 400 and body["reason"] == "INVALID_SPEC"
    assert h.core.jobs == {} and h.store.list("jobs") == {}


def test_unknown_queue_and_bad_id_are_refused(h: Harness) -> None:
    body = json.dumps({**SPEC_DATA, "queue": "gpu"}).encode()
    assert h.call("POST", "/v1/jobs", body, {"content-type": "application/json"}) == (400, {
        "reason": "UNKNOWN_QUEUE", "field": "queue",
        "error": "no queue 'gpu'; the queues are: default, prod (tepui batch --queues FILE defines them)"})
    code, answer = h.call("POST", "/v1/jobs", json.dumps(SPEC_DATA).encode(), id="Bad.Id")
    assert code == 400 and answer["reason"] == "INVALID_JOB_ID" and answer["field"] == "id"


# --- reading jobs -------------------------------------------------------------------------------


def test_get_one_job_and_unknown_job(h: Harness) -> None:
    submitted = h.submit()
    assert h.call("GET", "/v1/jobs/sums-1") == (200, {"job": submitted})
    assert h.call("GET", "/v1/jobs/nope") == (404, {
        "reason": "UNKNOWN_JOB", "error": "no job 'nope'; `tepui jobs list` shows the jobs kept (ended jobs are "
                                          "forgotten ttl_after_finished after they end)"})
    assert h.call("POST", "/v1/jobs/nope/cancel")[0] == 404
    assert h.call("GET", "/v1/jobs/nope/attempts")[0] == 404


def test_list_filters_pages_and_counts(h: Harness) -> None:
    h.submit("j1", "ana")
    h.now = T0 + 10
    h.submit("j2", "bo")
    h.now = T0 + 20
    h.submit("j3", "ana")
    h.run(commands.cancel, "j2", h.now)

    def ids(**args: str) -> tuple[list[str], int]:
        code, body = h.call("GET", "/v1/jobs", **args)
        assert code == 200 and all("spec" not in j for j in body["jobs"])
        return [j["id"] for j in body["jobs"]], body["total"]

    assert ids() == (["j3", "j2", "j1"], 3)
    assert ids(user="ana") == (["j3", "j1"], 2)
    assert ids(state="cancelled") == (["j2"], 1)
    assert ids(state="PENDING,CANCELLED", limit="2") == (["j3", "j2"], 3)
    assert ids(limit="1", offset="1") == (["j2"], 3)
    assert ids(since=str(T0 + 5), until=str(T0 + 15)) == (["j2"], 1)
    assert ids(queue="prod") == ([], 0)
    code, body = h.call("GET", "/v1/jobs", limit="2", user="ana")
    assert body["jobs"][0] == job(job_id="j3", submitted_at=T0 + 20, clock_at=T0 + 20)


@pytest.mark.parametrize("args, field, message", [
    ({"state": "RUNING"}, "state", "state RUNING is not one of PENDING, RUNNING, SUSPENDED, SUCCEEDED, FAILED, "
                                   "CANCELLED, DEADLINE_EXCEEDED (a comma list selects several)"),
    ({"limit": "0"}, "limit", "limit must be a whole number from 1 to 10000, got '0'"),
    ({"limit": "ten"}, "limit", "limit must be a whole number from 1 to 10000, got 'ten'"),
    ({"since": "yesterday"}, "since", "since must be Unix seconds (e.g. 1800000000.5), got 'yesterday'; the CLI and "
                                      "the client accept dates and durations such as 1h"),
])
def test_bad_list_filters_are_400_naming_the_parameter(h: Harness, args: dict[str, str], field: str,
                                                       message: str) -> None:
    assert h.call("GET", "/v1/jobs", **args) == (400, {"reason": "INVALID_FILTER", "field": field, "error": message})


# --- commands -----------------------------------------------------------------------------------


def test_suspend_resume_cancel(h: Harness) -> None:
    h.submit()
    code, body = h.call("POST", "/v1/jobs/sums-1/suspend")
    assert code == 200 and body["job"]["state"] == "SUSPENDED" and body["job"]["suspended"] is True
    assert body["job"]["spec"] == {**SPEC_DATA, "user": "ana"}
    code, body = h.call("POST", "/v1/jobs/sums-1/resume")
    assert code == 200 and body["job"]["state"] == "PENDING" and body["job"]["suspended"] is False
    assert h.call("POST", "/v1/jobs/sums-1/resume") == (409, {
        "reason": "NOT_SUSPENDED", "error": "job sums-1 is PENDING, not suspended; `tepui jobs suspend` it first"})
    code, body = h.call("POST", "/v1/jobs/sums-1/cancel")
    assert code == 200 and body["job"]["state"] == "CANCELLED"
    assert h.call("POST", "/v1/jobs/sums-1/cancel") == (409, {
        "reason": "JOB_ENDED", "error": "job sums-1 already ended CANCELLED; nothing to cancel"})
    stored = h.store.get("jobs", "sums-1")
    assert stored is not None and json.loads(stored.value)["state"] == "CANCELLED"


def test_retry_of_a_running_job_is_409_and_of_a_failed_one_reruns(h: Harness) -> None:
    run_map(h)
    assert h.call("GET", "/v1/jobs/sums-1")[1]["job"]["state"] == "RUNNING"
    code, body = h.call("POST", "/v1/jobs/sums-1/retry")
    assert code == 409 and body["reason"] == "NOTHING_TO_RETRY"
    assert body["error"].endswith("; `tepui jobs show sums-1` shows its state")
    h.now = T0 + 5
    h.update("sums-1.map.0.1", TaskState.FINISHED, 0)
    h.update("sums-1.map.1.1", TaskState.FAILED, 3)
    assert h.call("GET", "/v1/jobs/sums-1")[1]["job"]["state"] == "FAILED"
    h.now = T0 + 9
    code, body = h.call("POST", "/v1/jobs/sums-1/retry")
    assert code == 200 and body["job"]["state"] == "RUNNING" and body["job"]["retried_at"] == [T0 + 9]
    assert body["job"]["stages"][0]["queued"] == 1  # the failed index only


def test_delete_only_an_ended_job(h: Harness) -> None:
    h.submit()
    code, body = h.call("DELETE", "/v1/jobs/sums-1")
    assert code == 409 and body["reason"] == "JOB_NOT_ENDED"
    h.call("POST", "/v1/jobs/sums-1/cancel")
    assert h.call("DELETE", "/v1/jobs/sums-1") == (200, {"deleted": "sums-1"})
    assert h.call("GET", "/v1/jobs/sums-1")[0] == 404
    assert h.store.list("jobs") == {} and h.store.list("specs") == {}


# --- attempts, history, why, queues -------------------------------------------------------------


def attempt(index: int, state: str, exit_code: int | None, outcome: str, **fields: Any) -> dict[str, Any]:
    value = {"job": "sums-1", "stage": "map", "index": index, "attempt": 1, "task_id": f"sums-1.map.{index}.1",
             "agent_id": "a1", "hostname": "node-1", "state": state, "queued_at": T0, "launched_at": T0 + 1,
             "running_at": T0 + 2, "finished_at": T0 + 5, "exit_code": exit_code,
             "task_state": f"TASK_{state}", "task_reason": None, "failure": None, "killed_by": None,
             "outcome": outcome, "spent": state != "FINISHED", "retry_at": None}
    value.update(fields)
    return value


def test_attempts_are_read_back_from_the_store_in_order(h: Harness) -> None:
    run_map_to_failure(h)
    code, body = h.call("GET", "/v1/jobs/sums-1/attempts")
    assert code == 200
    got = body["attempts"]
    assert [(a["stage"], a["index"], a["attempt"]) for a in got] == [("map", 0, 1), ("map", 1, 1)]
    assert got[0] == attempt(0, "FINISHED", 0, "succeeded", spent=got[0]["spent"])
    assert got[1]["state"] == "FAILED" and got[1]["exit_code"] == 3 and got[1]["hostname"] == "node-1"
    assert h.call("GET", "/v1/jobs/sums-1/attempts", state="failed")[1]["attempts"] == [got[1]]
    assert h.call("GET", "/v1/jobs/sums-1/attempts", index="0")[1]["attempts"] == [got[0]]
    assert h.call("GET", "/v1/jobs/sums-1/attempts", stage="reduce")[1] == {"attempts": []}
    assert h.call("GET", "/v1/jobs/sums-1/attempts", stage="shuffle") == (400, {
        "reason": "UNKNOWN_STAGE", "field": "stage", "error": "job sums-1 has no stage 'shuffle'; its stages are: "
                                                              "map, reduce"})


def test_history_adds_the_jobs_user_queue_and_name_last_launched_first(h: Harness) -> None:
    run_map_to_failure(h)
    h.now = T0 + 20
    h.submit("other-1", "bo")
    h.offer("o2", "a2", "node-2")
    code, body = h.call("GET", "/v1/history")
    assert code == 200
    rows = body["attempts"]
    assert [(r["task_id"], r["user"], r["queue"], r["job_name"]) for r in rows] == [
        ("other-1.map.0.1", "bo", "default", "sums"), ("other-1.map.1.1", "bo", "default", "sums"),
        ("sums-1.map.0.1", "ana", "default", "sums"), ("sums-1.map.1.1", "ana", "default", "sums")]
    assert rows[0]["hostname"] == "node-2" and rows[0]["state"] == "LAUNCHED"
    assert [r["task_id"] for r in h.call("GET", "/v1/history", user="ana", state="FAILED")[1]["attempts"]] == [
        "sums-1.map.1.1"]
    assert [r["task_id"] for r in h.call("GET", "/v1/history", since=str(T0 + 10))[1]["attempts"]] == [
        "other-1.map.0.1", "other-1.map.1.1"]
    assert [r["task_id"] for r in h.call("GET", "/v1/history", until=str(T0 + 10), limit="1")[1]["attempts"]] == [
        "sums-1.map.0.1"]
    assert h.call("GET", "/v1/history", stage="reduce")[1] == {"attempts": []}
    assert h.call("GET", "/v1/history", limit="10001")[0] == 400


def test_why_is_the_explanation_plus_the_job(h: Harness) -> None:
    submitted = h.submit()
    code, body = h.call("GET", "/v1/jobs/sums-1/why")
    assert code == 200
    del submitted["spec"]
    assert body["job"] == submitted
    assert body["pending"] == 2 and body["queue"] == "default" and body["position"] == 1
    assert body["summary"].startswith("2 task(s) of job sums-1 wait")


def test_queues(h: Harness) -> None:
    h.submit("j1", "ana")
    h.submit("j2", "bo")
    h.now = T0 + 1
    h.offer()
    assert h.call("GET", "/v1/queues") == (200, {
        "queues": [{"name": "prod", "priority": 10, "max_running": 5, "running": 0, "pending": 0},
                   {"name": "default", "priority": 0, "max_running": None, "running": 4, "pending": 0}],
        "users": [{"user": "ana", "weight": 2.0, "share": h.core.queues.share("ana"), "running": 2},
                  {"user": "bo", "weight": 1.0, "share": h.core.queues.share("bo"), "running": 2}]})


def test_events_stream_what_the_commands_publish(h: Harness) -> None:
    request = h.request("GET", "/v1/events")
    request.channel = None  # no transport: nothing buffered
    assert h.api.render(request) == NOT_DONE_YET
    h.submit()
    stream = b"".join(request.written).decode()
    assert stream.startswith(": connected\n\nevent: job_submitted\ndata: {")
    assert json.loads(stream.split("data: ", 1)[1])["job"]["id"] == "sums-1"
