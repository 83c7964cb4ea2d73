"""The batch framework's Python client against a fake of the API (tests/frameworks/batch/
fake_batch_api.py): where it finds the master, its token and CA, the exact requests each call
makes, the values it gives back, how ``wait`` follows the event stream and falls back to
polling, and what its errors say."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tepui.frameworks.batch import client as client_module
from tepui.frameworks.batch.client import BatchClient, BatchError
from tepui.frameworks.batch.client_values import Job, TimeError, parse_time
from tests.frameworks.batch.fake_batch_api import PREFIX, T0, FakeBatch, attempt, closed_port, isolate, job, serve, stage

SPEC = {"name": "wordcount", "queue": "analytics",
        "stages": [{"name": "map", "command": "wc -w", "array": 8}, {"name": "reduce", "command": "cat",
                                                                      "depends_on": ["map"]}]}


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[FakeBatch, BatchClient]]:
    isolate(monkeypatch, tmp_path)
    fake = FakeBatch()
    with serve(fake) as url:
        client = BatchClient(url)
        client.poll_interval = 0.01
        yield fake, client


def calls(fake: FakeBatch) -> list[tuple[str, str]]:
    return [(r["method"], r["path"].removeprefix(PREFIX)) for r in fake.requests]


def progress(job_id: str, states: list[tuple[str, int, int]]) -> list[dict[str, object]]:
    """Snapshots of a one-stage array of 4: (job state, succeeded, failed)."""
    snapshots = []
    for state, succeeded, failed in states:
        running = 4 - succeeded - failed if state == "RUNNING" else 0
        snapshots.append(job(job_id, state, [stage("map", 4, "ACTIVE" if state == "RUNNING" else "SUCCEEDED",
                                                   succeeded=succeeded, failed=failed, running=running)]))
    return snapshots


# --- configuration ------------------------------------------------------------------------------

def test_the_master_token_and_ca_come_from_the_client_config_then_the_environment(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("master_http: https://batch.example:6080\nhttp_token: tok-from-config\n"
                      "http_ca: /etc/tepui/ca.pem\n")
    monkeypatch.setenv("TEPUI_CONFIG", str(config))
    for name in ("TEPUI_HTTP_TOKEN", "TEPUI_HTTP_CA", "TEPUI_MASTER_HTTP", "TEPUI_USER"):
        monkeypatch.delenv(name, raising=False)
    client = BatchClient()
    assert (client.master, client.base) == ("https://batch.example:6080",
                                            "https://batch.example:6080/frameworks/batch/v1")
    assert (client.token, client.ca) == ("tok-from-config", "/etc/tepui/ca.pem")
    monkeypatch.setenv("TEPUI_MASTER_HTTP", "10.0.0.5:5080")
    monkeypatch.setenv("TEPUI_HTTP_TOKEN", "tok-from-env")
    monkeypatch.setenv("TEPUI_HTTP_CA", "/tmp/ca.pem")
    monkeypatch.setenv("TEPUI_USER", "bob")
    client = BatchClient()
    assert (client.master, client.token, client.ca, client.user) == ("http://10.0.0.5:5080", "tok-from-env",
                                                                     "/tmp/ca.pem", "bob")
    client = BatchClient("127.0.0.1:7000/", token="explicit", user="carol")
    assert (client.base, client.token, client.user) == ("http://127.0.0.1:7000/frameworks/batch/v1", "explicit",
                                                        "carol")


def test_a_broken_config_is_ignored_as_the_cli_does(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("[not a mapping")
    monkeypatch.setenv("TEPUI_CONFIG", str(config))
    monkeypatch.delenv("TEPUI_MASTER_HTTP", raising=False)
    monkeypatch.delenv("TEPUI_HTTP_TOKEN", raising=False)
    assert (BatchClient().master, BatchClient().token) == ("http://127.0.0.1:5080", None)


def test_every_call_sends_the_token_and_the_user(api: tuple[FakeBatch, BatchClient]) -> None:
    fake, client = api
    client.token = "tok-0123456789"
    fake.jobs["j-1"] = job("j-1")
    client.get("j-1")
    headers = fake.requests[0]["headers"]
    assert (headers["authorization"], headers["x-tepui-user"], headers["accept"]) == \
        ("Bearer tok-0123456789", "alice", "application/json")


# --- submit -------------------------------------------------------------------------------------

def test_submit_a_dict_as_json_and_read_the_job_back(api: tuple[FakeBatch, BatchClient]) -> None:
    fake, client = api
    submitted = client.submit(SPEC)
    request = fake.requests[0]
    assert (request["method"], request["path"], request["query"], request["content_type"]) == \
        ("POST", f"{PREFIX}/jobs", {}, "application/json")
    assert json.loads(request["body"]) == SPEC
    assert submitted == Job(id="wordcount-0123456789", name="wordcount", state="PENDING", user="alice",
                            queue="analytics", submitted_at=T0, stages=submitted.stages, tasks=submitted.tasks)
    assert [(s.name, s.array, s.pending, [d.stage for d in s.depends_on]) for s in submitted.stages] == \
        [("map", 8, 8, []), ("reduce", 1, 1, ["map"])]
    assert (submitted.tasks.total, submitted.tasks.pending, submitted.ended, submitted.exit_code) == (9, 9, False, None)
    assert submitted.spec == SPEC and submitted.stage("reduce").depends_on[0].condition == "all_succeeded"
    with pytest.raises(KeyError, match="its stages: map, reduce"):
        submitted.stage("report")


def test_submit_a_yaml_file_a_path_or_text_with_an_id(api: tuple[FakeBatch, BatchClient], tmp_path: Path) -> None:
    fake, client = api
    spec = tmp_path / "wordcount.yaml"
    spec.write_text("name: wordcount\nstages:\n  - {name: map, command: 'wc -w', array: 8}\n")
    assert client.submit(spec, job_id="wc-1").id == "wc-1"
    assert client.submit(str(spec), job_id="wc-1").id == "wc-1"  # same spec, same id: the same job
    assert client.submit(spec.read_text(), job_id="wc-2").id == "wc-2"
    assert [(r["query"], r["content_type"], r["body"]) for r in fake.requests] == \
        [({"id": "wc-1"}, "application/yaml", spec.read_bytes())] * 2 + \
        [({"id": "wc-2"}, "application/yaml", spec.read_bytes())]
    json_spec = tmp_path / "wc.json"
    json_spec.write_text(json.dumps(SPEC))
    client.submit(json_spec)
    assert fake.requests[-1]["content_type"] == "application/json"
    with pytest.raises(BatchError) as exists:
        client.submit("name: wordcount\nstages: [{name: other}]\n", job_id="wc-1")
    assert (exists.value.status, exists.value.reason) == (409, "JOB_EXISTS")
    assert str(exists.value) == ("job wc-1 exists with another spec Submit without an id for a new job, or look at "
                                 "the existing one with `tepui jobs show ID`.")


def test_an_unreadable_spec_file_makes_no_request(api: tuple[FakeBatch, BatchClient], tmp_path: Path) -> None:
    fake, client = api
    with pytest.raises(BatchError) as error:
        client.submit(str(tmp_path / "missing.yaml"))
    assert error.value.reason == "UNREADABLE_SPEC" and "missing.yaml" in str(error.value)
    assert "Check the path" in str(error.value) and fake.requests == []


def test_an_invalid_spec_names_the_field(api: tuple[FakeBatch, BatchClient]) -> None:
    _fake, client = api
    with pytest.raises(BatchError) as error:
        client.submit({"name": "bad", "stages": [{"name": "map", "array": 0}]})
    assert (error.value.status, error.value.reason, error.value.field) == (400, "INVALID_SPEC", "stages[0].array")
    assert str(error.value) == ("stages[0].array: must be between 1 and 100000, got 0 (field: stages[0].array) Fix "
                                "that field of the spec (docs/batch.md, 'Job spec') and submit again.")
    assert not error.value.unreachable


# --- reading --------------------------------------------------------------------------------------

def test_list_sends_the_filters(api: tuple[FakeBatch, BatchClient], monkeypatch: pytest.MonkeyPatch) -> None:
    fake, client = api
    fake.jobs = {"a-1": job("a-1", "RUNNING"), "b-2": job("b-2", "FAILED", submitted_at=T0 + 10)}
    fake.total = 40
    monkeypatch.setattr(client_module.time, "time", lambda: T0 + 7200)
    jobs = client.list(user="alice", queue="etl", state=["running", "failed"], since="1h", until=T0 + 3600,
                       limit=2, offset=4)
    assert fake.requests[0]["query"] == {"user": "alice", "queue": "etl", "state": "RUNNING,FAILED",
                                         "since": f"{T0 + 3600:.3f}", "until": f"{T0 + 3600:.3f}", "limit": "2",
                                         "offset": "4"}
    assert [j.id for j in jobs] == ["b-2", "a-1"] and jobs.total == 40
    client.list()
    assert fake.requests[1]["query"] == {"limit": "100", "offset": "0"}
    with pytest.raises(BatchError, match="since: '3600' is a bare number"):
        client.list(since="3600")


def test_attempts_and_history(api: tuple[FakeBatch, BatchClient]) -> None:
    fake, client = api
    fake.jobs["j-1"] = job("j-1", "FAILED")
    fake.attempts["j-1"] = [attempt("j-1", "map", 0, 1),
                            attempt("j-1", "map", 1, 1, "FAILED", exit_code=2, failure=None, outcome="retry"),
                            attempt("j-1", "map", 1, 2, "KILLED", failure="timeout", killed_by="timeout",
                                    outcome="index_failed")]
    tries = client.attempts("j-1", stage="map", index=1)
    assert fake.requests[0]["path"] == f"{PREFIX}/jobs/j-1/attempts"
    assert fake.requests[0]["query"] == {"stage": "map", "index": "1"}
    assert [(a.task_id, a.state, a.exit_code, a.failure, a.outcome) for a in tries] == \
        [("j-1.map.1.1", "FAILED", 2, None, "retry"), ("j-1.map.1.2", "KILLED", None, "timeout", "index_failed")]
    assert (tries[0].started, tries[0].hostname, tries[0].spent) == (T0 + 3, "node-1", True)
    client.attempts("j-1")
    assert fake.requests[1]["query"] == {}
    fake.history = [{**attempt("j-1", "map", 0, 1), "user": "alice", "queue": "etl", "job_name": "j"}]
    history = client.history(user="alice", state="failed,lost", stage="map", since=T0, limit=10)
    assert fake.requests[2]["path"] == f"{PREFIX}/history"
    assert fake.requests[2]["query"] == {"user": "alice", "state": "FAILED,LOST", "stage": "map",
                                         "since": f"{T0:.3f}", "limit": "10"}
    assert [(a.job, a.user, a.queue, a.job_name) for a in history] == [("j-1", "alice", "etl", "j")]


def test_why_queues_health(api: tuple[FakeBatch, BatchClient]) -> None:
    fake, client = api
    fake.jobs["j-1"] = job("j-1")
    fake.why = {"queue": "default", "position": 3, "summary": "4 task(s) of job j-1 wait: ..."}
    why = client.why("j-1")
    assert (why["position"], why["job"]["id"]) == (3, "j-1")
    assert client.health() == {"ok": True, "subscribed": True, "framework_id": "F-batch"}
    assert calls(fake) == [("GET", "/jobs/j-1/why"), ("GET", "/health")]


def test_cancel_suspend_resume_retry_post_to_the_job(api: tuple[FakeBatch, BatchClient]) -> None:
    fake, client = api
    fake.jobs["j/1"] = job("j/1", "RUNNING")
    assert client.suspend("j/1").state == "SUSPENDED"
    assert client.resume("j/1").state == "PENDING"
    assert client.cancel("j/1").state == "CANCELLED"
    assert [(r["method"], r["path"], r["content_type"]) for r in fake.requests] == [
        ("POST", f"{PREFIX}/jobs/j%2F1/{action}", "application/json") for action in ("suspend", "resume", "cancel")]
    with pytest.raises(BatchError) as error:
        client.retry("j/1")
    assert (error.value.status, error.value.reason) == (409, "NOTHING_TO_RETRY")
    assert str(error.value).startswith("job j/1 has nothing to retry: it is CANCELLED")


def test_an_unknown_job_says_how_to_find_one(api: tuple[FakeBatch, BatchClient]) -> None:
    _fake, client = api
    with pytest.raises(BatchError) as error:
        client.get("nope")
    assert (error.value.status, error.value.reason) == (404, "UNKNOWN_JOB")
    assert str(error.value) == "no job nope: `tepui jobs list` shows the jobs kept"


# --- errors reaching the API ----------------------------------------------------------------------

def test_no_master_says_how_to_start_one() -> None:
    port = closed_port()
    with pytest.raises(BatchError) as error:
        BatchClient(f"127.0.0.1:{port}").get("j-1")
    assert error.value.unreachable and (error.value.status, error.value.reason) == (None, "UNREACHABLE")
    assert str(error.value).startswith(f"cannot reach the master's HTTP API at http://127.0.0.1:{port}: ")
    assert "Start one with `tepui up` (it starts the batch framework too)" in str(error.value)


def test_no_batch_framework_says_how_to_start_it(api: tuple[FakeBatch, BatchClient]) -> None:
    fake, client = api
    fake.framework_running = False
    with pytest.raises(BatchError) as error:
        client.list()
    assert error.value.unreachable and error.value.reason == "UNKNOWN_FRAMEWORK"
    assert str(error.value) == (f"the batch framework is not running: the master at {client.master} knows no "
                                "framework named 'batch'. Start it with `tepui batch` (`tepui up` starts one with "
                                "the cluster), then try again.")


def test_a_401_says_where_the_token_comes_from(api: tuple[FakeBatch, BatchClient],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    fake, client = api
    monkeypatch.setattr(fake, "handle", lambda *_: (401, {"error": "bad token", "reason": "UNAUTHORIZED"}))
    with pytest.raises(BatchError) as error:
        client.get("j-1")
    assert str(error.value) == ("the master wants a bearer token and no token was sent: bad token. Set "
                                "$TEPUI_HTTP_TOKEN to the contents of the master's --http-token-file (`tepui up` "
                                "writes it to the client config for you).")


# --- wait -----------------------------------------------------------------------------------------

def test_wait_follows_the_event_stream(api: tuple[FakeBatch, BatchClient]) -> None:
    fake, client = api
    fake.jobs["j-1"] = job("j-1", "PENDING", [stage("map", 4)])
    fake.updates["j-1"] = progress("j-1", [("RUNNING", 0, 0), ("RUNNING", 2, 0), ("SUCCEEDED", 4, 0)])
    seen: list[tuple[str, int]] = []
    final = client.wait("j-1", on_update=lambda j: seen.append((j.state, j.stages[0].done)))
    assert (final.state, final.exit_code, final.ended) == ("SUCCEEDED", 0, True)
    assert seen == [("PENDING", 0), ("RUNNING", 0), ("RUNNING", 2), ("SUCCEEDED", 4)]
    assert calls(fake) == [("GET", "/events"), ("GET", "/jobs/j-1")]  # subscribed first, then read the job
    assert fake.requests[0]["headers"]["accept"] == "text/event-stream"


def test_wait_polls_every_half_second_when_the_stream_breaks(api: tuple[FakeBatch, BatchClient]) -> None:
    fake, client = api
    assert client_module.POLL_INTERVAL == 0.5  # the contract's; the fixture makes it shorter
    fake.jobs["j-1"] = job("j-1", "PENDING", [stage("map", 4)])
    fake.updates["j-1"] = progress("j-1", [("RUNNING", 1, 0), ("RUNNING", 2, 0), ("RUNNING", 3, 1),
                                           ("FAILED", 3, 1)])
    fake.break_after = 1
    seen: list[str] = []
    final = client.wait("j-1", on_update=lambda j: seen.append(f"{j.state}:{j.stages[0].done}"))
    assert (final.state, final.exit_code) == ("FAILED", 1)
    assert seen == ["PENDING:0", "RUNNING:1", "RUNNING:2", "RUNNING:4", "FAILED:4"]
    assert calls(fake) == [("GET", "/events")] + [("GET", "/jobs/j-1")] * 4


def test_wait_polls_when_the_stream_goes_silent(api: tuple[FakeBatch, BatchClient],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    fake, client = api
    monkeypatch.setattr(client_module, "STREAM_IDLE", 0.2)  # no keepalive for this long: the stream is dead
    fake.silent = True
    fake.advance_on_get = True
    fake.jobs["j-1"] = job("j-1", "RUNNING", [stage("map", 4, "ACTIVE", running=4)])
    fake.updates["j-1"] = [fake.jobs["j-1"]] + progress("j-1", [("SUCCEEDED", 4, 0)])
    final = client.wait("j-1")
    assert final.state == "SUCCEEDED"
    assert calls(fake) == [("GET", "/events")] + [("GET", "/jobs/j-1")] * 2


def test_wait_polls_when_there_is_no_stream_and_rides_out_a_restart(api: tuple[FakeBatch, BatchClient]) -> None:
    fake, client = api
    fake.events = False
    fake.advance_on_get = True
    fake.jobs["j-1"] = job("j-1", "RUNNING", [stage("map", 4, "ACTIVE", running=4)])
    fake.updates["j-1"] = progress("j-1", [("RUNNING", 2, 0), ("CANCELLED", 2, 0)])
    fake.unavailable_gets = 0
    first = client.get("j-1")
    assert first.state == "RUNNING" and first.stages[0].done == 2  # this GET advanced it
    fake.requests.clear()
    fake.unavailable_gets = 2  # the framework restarts: two polls find none
    final = client.wait("j-1")
    assert (final.state, final.exit_code) == ("CANCELLED", 2)
    assert calls(fake) == [("GET", "/events")] + [("GET", "/jobs/j-1")] * 3


def test_wait_gives_up_on_an_api_gone_for_longer_than_the_grace(api: tuple[FakeBatch, BatchClient]) -> None:
    fake, client = api
    fake.events = False
    fake.jobs["j-1"] = job("j-1", "RUNNING")
    client.get("j-1")
    fake.unavailable_gets = 10_000
    client.unreachable_grace = 0.05
    with pytest.raises(BatchError) as error:
        client.wait("j-1")
    assert error.value.unreachable and "tepui batch" in str(error.value)


def test_wait_times_out_with_the_last_known_job(api: tuple[FakeBatch, BatchClient]) -> None:
    fake, client = api
    fake.jobs["j-1"] = job("j-1", "RUNNING")
    with pytest.raises(BatchError) as error:
        client.wait("j-1", timeout=0.3)
    assert error.value.reason == "WAIT_TIMEOUT" and error.value.job is not None
    assert error.value.job.state == "RUNNING"
    assert str(error.value) == ("job j-1 is still RUNNING after 0.3 s; it keeps running. Wait again, look at it with "
                                "`tepui jobs show j-1`, or stop it with `tepui jobs cancel j-1`.")


def test_wait_on_an_ended_job_returns_at_once(api: tuple[FakeBatch, BatchClient]) -> None:
    fake, client = api
    fake.jobs["j-1"] = job("j-1", "DEADLINE_EXCEEDED", reason="deadline PT1H passed")
    final = client.wait("j-1")
    assert (final.exit_code, final.reason, final.finished_at) == (3, "deadline PT1H passed", T0 + 65)


# --- time filters ---------------------------------------------------------------------------------

def test_parse_time_takes_dates_and_durations_back_from_now() -> None:
    now = T0
    assert parse_time("90s", now) == now - 90
    assert parse_time("1h30m", now) == now - 5400
    assert parse_time("2d", now) == now - 2 * 86400
    assert parse_time("1w", now) == now - 7 * 86400
    assert parse_time("PT1H", now) == now - 3600
    assert parse_time("P2D", now) == now - 2 * 86400
    assert parse_time("2026-05-28T20:26:40Z", now) == T0
    assert parse_time("2026-05-28T21:26:40+01:00", now) == T0
    assert parse_time(datetime(2026, 5, 28, 20, 26, 40, tzinfo=timezone.utc), now) == T0
    assert parse_time(1234.5, now) == 1234.5
    assert parse_time("2026-05-28", now) == datetime(2026, 5, 28).timestamp()  # local midnight, as `date`
    with pytest.raises(TimeError, match="write a duration with its unit"):
        parse_time("3600", now)
    with pytest.raises(TimeError, match="not a time: write an ISO 8601 date"):
        parse_time("yesterday", now)
    with pytest.raises(TimeError, match="years and months have no fixed length"):
        parse_time("P1M", now)
