"""The cron REST API (docs/cron.md "REST API") through twisted.web's DummyRequest, on a real
CronCore, a real SQLiteStore and the real shell's ``run_command`` (its batch calls recorded, not
sent): each route's status code and exact JSON, and the refusals with their field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from twisted.internet import defer, task
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from tepui.frameworks.cron.api import CronApi
from tepui.frameworks.cron.core import CronCore
from tepui.frameworks.cron.main import CronShell
from tepui.sdk import SQLiteStore
from tepui.sdk.event_stream import EventHub

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z (09:00 in Berlin)
NIGHTLY = b"""
id: nightly
cron: "30 2 * * *"
time_zone: Europe/Berlin
concurrency_policy: Forbid
job: {name: report, stages: [{name: s, command: "true"}]}
"""
JOB = {"name": "report", "stages": [{"name": "s", "command": "true"}]}
SPEC = {"id": "nightly", "cron": "30 2 * * *", "time_zone": "Europe/Berlin", "concurrency_policy": "Forbid", "job": JOB}
NEXT_AT = 1_800_063_000.0  # 2027-01-16T02:30:00+01:00


class Link:
    """The batch link, recording; its answers never come (the fires stay INTENDED)."""

    reachable = "reachable"

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    def submit(self, job_id: str, spec: dict[str, Any], user: str) -> defer.Deferred[Any]:
        self.calls.append(("submit", job_id, user))
        return defer.Deferred()

    def cancel(self, job_id: str) -> defer.Deferred[Any]:
        self.calls.append(("cancel", job_id))
        return defer.Deferred()


class _Body:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self) -> bytes:
        return self.data


class Harness:
    def __init__(self, path: Path) -> None:
        self.clock = task.Clock()
        self.clock.advance(T0)
        self.store = SQLiteStore(path / "cron.sqlite")
        self.core = CronCore()
        self.hub = EventHub(self.clock)
        self.link = Link()
        self.shell = CronShell(self.clock, self.core, self.store, self.hub, self.link)
        self.api = CronApi(self.core, self.shell.run_command, self.hub, self.shell.now,
                           lambda: {"subscribed": True, "framework_id": "F1"}, lambda: self.link.reachable)

    def call(self, method: str, path: str, body: bytes | None = None, content_type: str | None = None,
             **args: str) -> tuple[int, Any]:
        request: Any = DummyRequest([p.encode() for p in path.strip("/").split("/")])
        request.method, request.path = method.encode(), path.encode()
        request.content = None if body is None else _Body(body)
        if content_type:
            request.requestHeaders.setRawHeaders(b"content-type", [content_type.encode()])
        for name, value in args.items():
            request.addArg(name.encode(), value.encode())
        rendered = self.api.render(request)
        assert isinstance(rendered, bytes)
        assert request.responseHeaders.getRawHeaders(b"content-type") == [b"application/json"]
        return int(request.responseCode), json.loads(rendered)

    def stored(self, ns: str, key: str) -> Any:
        entry = self.store.get(ns, key)
        return None if entry is None else msgspec.json.decode(entry.value)


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


def summary(**fields: Any) -> dict[str, Any]:
    value = {"id": "nightly", "suspended": False, "last_fire_at": None, "next_fire_at": NEXT_AT, "running": [],
             "last_run": None, "cron": "30 2 * * *", "interval": None, "time_zone": "Europe/Berlin",
             "concurrency_policy": "Forbid"}
    value.update(fields)
    return value


def test_health_says_the_subscription_and_whether_the_batch_api_answers(h: Harness) -> None:
    assert h.call("GET", "/v1/health") == (200, {"ok": True, "subscribed": True, "framework_id": "F1",
                                                 "batch": "reachable"})
    h.link.reachable = "unreachable: ConnectionRefusedError"
    assert h.call("GET", "/v1/health")[1]["batch"] == "unreachable: ConnectionRefusedError"


def test_create_stores_the_schedule_before_it_answers_201_and_lists_it(h: Harness) -> None:
    assert h.call("POST", "/v1/schedules", NIGHTLY, "application/yaml") == (201, {"schedule": summary()})
    assert h.stored("schedules", "nightly")["spec"] == SPEC
    assert h.call("GET", "/v1/schedules") == (200, {"schedules": [summary()]})
    assert h.call("GET", "/v1/schedules/nightly") == (200, {"schedule": {**summary(), "spec": SPEC}})


def test_a_json_body_and_the_defaults_shown_in_the_summary(h: Harness) -> None:
    body = json.dumps({"id": "probe", "interval": "R/2027-01-15T08:00:00Z/PT1M", "job": JOB}).encode()
    code, answer = h.call("POST", "/v1/schedules", body, "application/json")
    assert code == 201
    assert answer["schedule"] == {"id": "probe", "suspended": False, "last_fire_at": None, "next_fire_at": T0 + 60,
                                  "running": [], "last_run": None, "cron": None,
                                  "interval": "R/2027-01-15T08:00:00Z/PT1M", "time_zone": "UTC",
                                  "concurrency_policy": "Allow"}


def test_create_refuses_an_existing_id_and_a_bad_spec_with_its_field(h: Harness) -> None:
    h.call("POST", "/v1/schedules", NIGHTLY)
    assert h.call("POST", "/v1/schedules", NIGHTLY) == (409, {
        "error": "schedule nightly exists; `tepui cron apply` replaces its spec", "reason": "SCHEDULE_EXISTS",
        "field": "id"})
    code, answer = h.call("POST", "/v1/schedules", NIGHTLY.replace(b"time_zone", b"time_zon"))
    assert (code, answer["reason"], answer["field"]) == (422, "INVALID_SPEC", "time_zon")
    assert "did you mean 'time_zone'" in answer["error"]
    code, answer = h.call("POST", "/v1/schedules", NIGHTLY.replace(b"Europe/Berlin", b"Europe/Berlln"))
    assert (code, answer["field"]) == (422, "time_zone")


def test_put_creates_then_replaces_and_refuses_a_body_naming_another_id(h: Harness) -> None:
    assert h.call("PUT", "/v1/schedules/nightly", NIGHTLY) == (201, {"schedule": summary(), "created": True})
    changed = NIGHTLY.replace(b"30 2", b"45 3")
    assert h.call("PUT", "/v1/schedules/nightly", changed) == (200, {
        "schedule": summary(cron="45 3 * * *", next_fire_at=NEXT_AT + 4500), "created": False})
    assert h.stored("schedules", "nightly")["spec"]["cron"] == "45 3 * * *"
    assert h.call("PUT", "/v1/schedules/other", NIGHTLY) == (422, {
        "error": "id: the body's id 'nightly' is not the URL's 'other'; PUT /v1/schedules/nightly",
        "reason": "INVALID_SPEC", "field": "id"})


def test_next_lists_fires_in_the_zone_and_in_utc_and_bounds_n(h: Harness) -> None:
    h.call("POST", "/v1/schedules", NIGHTLY)
    assert h.call("GET", "/v1/schedules/nightly/next", n="2") == (200, {"next": [
        {"at": NEXT_AT, "utc": "2027-01-16T01:30:00Z", "local": "2027-01-16T02:30:00+01:00",
         "key": "nightly-1800063000"},
        {"at": NEXT_AT + 86400, "utc": "2027-01-17T01:30:00Z", "local": "2027-01-17T02:30:00+01:00",
         "key": "nightly-1800149400"}]})
    assert len(h.call("GET", "/v1/schedules/nightly/next")[1]["next"]) == 10
    for bad in ("0", "1001", "x"):
        assert h.call("GET", "/v1/schedules/nightly/next", n=bad) == (400, {
            "error": f"n={bad!r}: write a whole number from 1 to 1000", "reason": "INVALID_ARGUMENT", "field": "n"})


def test_trigger_writes_the_fire_ahead_then_submits_it_and_fires_lists_it(h: Harness) -> None:
    h.call("POST", "/v1/schedules", NIGHTLY)
    code, answer = h.call("POST", "/v1/schedules/nightly/trigger")
    key = "nightly_manual_1800000000"
    fire = {"schedule": "nightly", "key": key, "scheduled_at": T0, "state": "INTENDED", "reason": "",
            "decided_at": T0, "submit_after": T0, "submitted_at": None, "ended_at": None, "job_state": None,
            "through": None, "count": 1, "manual": True, "replace": False, "seq": 1}
    assert (code, answer) == (201, {"schedule": summary(running=[key]), "fire": fire, "created": True})
    assert h.stored("fires", f"nightly/{key}")["state"] == "INTENDED"
    assert h.link.calls == [("submit", key, "cron")]  # the template names no user
    assert h.call("POST", "/v1/schedules/nightly/trigger") == (200, {"schedule": summary(running=[key]),
                                                                      "fire": fire, "created": False})
    assert h.call("GET", "/v1/schedules/nightly/fires") == (200, {"fires": [fire]})


def test_suspend_and_resume_answer_the_schedule(h: Harness) -> None:
    h.call("POST", "/v1/schedules", NIGHTLY)
    assert h.call("POST", "/v1/schedules/nightly/suspend") == (200, {"schedule": summary(suspended=True,
                                                                                          next_fire_at=None)})
    assert h.stored("schedules", "nightly")["suspended"] is True
    assert h.call("POST", "/v1/schedules/nightly/resume") == (200, {"schedule": summary()})


def test_rm_is_refused_while_a_fire_is_unconfirmed_then_forgets_the_schedule(h: Harness) -> None:
    h.call("POST", "/v1/schedules", NIGHTLY)
    h.call("POST", "/v1/schedules/nightly/trigger")
    key = "nightly_manual_1800000000"
    code, answer = h.call("DELETE", "/v1/schedules/nightly")
    assert (code, answer["reason"], answer["field"]) == (409, "FIRE_UNCONFIRMED", "id")
    h.shell.execute(h.core.submitted(key, T0 + 1))
    assert h.call("DELETE", "/v1/schedules/nightly") == (200, {"deleted": "nightly", "running": [key]})
    assert h.stored("schedules", "nightly") is None and h.stored("fires", f"nightly/{key}") is None
    assert h.call("GET", "/v1/schedules/nightly") == (404, {
        "error": "no schedule 'nightly'; `tepui cron list` shows them", "reason": "UNKNOWN_SCHEDULE", "field": "id"})


def test_unknown_routes_and_methods(h: Harness) -> None:
    h.call("POST", "/v1/schedules", NIGHTLY)
    assert h.call("GET", "/v2/schedules")[0] == 404
    assert h.call("GET", "/v1/nothing")[1]["reason"] == "NOT_FOUND"
    assert h.call("GET", "/v1/schedules/nightly/nope") == (404, {
        "error": "a schedule has no 'nope': use one of next, fires, suspend, resume, trigger "
                 "(/v1/schedules/nightly/ACTION, see docs/cron.md, 'REST API')", "reason": "NOT_FOUND"})
    assert h.call("DELETE", "/v1/schedules") == (405, {
        "error": "DELETE is not allowed here; use GET or POST (see docs/cron.md, 'REST API')",
        "reason": "METHOD_NOT_ALLOWED"})
    assert h.call("GET", "/v1/schedules/nightly/trigger")[0] == 405
    assert h.call("POST", "/v1/schedules/ghost/trigger")[1]["reason"] == "UNKNOWN_SCHEDULE"


def test_events_stream_the_cores_publishes(h: Harness) -> None:
    request: Any = DummyRequest([b"v1", b"events"])
    request.method, request.path = b"GET", b"/v1/events"
    request.channel = None  # no transport: nothing buffered
    assert h.api.render(request) is NOT_DONE_YET
    h.call("POST", "/v1/schedules", NIGHTLY)
    written = b"".join(request.written).decode()
    assert "event: schedule_created\n" in written and '"id":"nightly"' in written
