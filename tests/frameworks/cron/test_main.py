"""The cron framework's shell without a master: its ticks on a fake clock (twisted's Clock), its
batch calls over real loopback HTTP (tests/private_reactor.py) to a fake batch API — a
twisted.web Site serving ``POST /v1/jobs?id=`` idempotently and ``GET /v1/jobs/ID`` — and the
store read back: the fire is stored INTENDED before its POST arrives, a 201 confirms it, a 409
fails it with the batch framework's reason, a 503 is retried under the same id, and a job's end
is polled."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from twisted.internet import task
from twisted.web import resource, server

from tepui.frameworks.cron import commands
from tepui.frameworks.cron.batch_link import Answer, BatchLink, SubmitOutcome, job_end, submit_outcome
from tepui.frameworks.cron.core import CronCore
from tepui.frameworks.cron.definition import build
from tepui.frameworks.cron.main import CronShell, read_store
from tepui.sdk import SQLiteStore
from tepui.sdk.event_stream import EventHub
from tests.private_reactor import run

T0 = 1_800_000_000.0
JOB = {"name": "report", "stages": [{"name": "s", "command": "true"}]}
KEY = "r-1800000060"  # the first fire of the schedule below


class FakeBatch(resource.Resource):
    """``/v1/jobs``: idempotent submit (same id and spec: 200 ``created: false``; another spec:
    409 JOB_EXISTS), a job's state, and forced answers (``fail_next``). ``on_submit`` runs when
    a POST arrives — before it is answered — to read what the cron store held then."""

    isLeaf = True

    def __init__(self, on_submit: Callable[[str], None] = lambda job_id: None) -> None:
        super().__init__()
        self.jobs: dict[str, dict[str, Any]] = {}
        self.states: dict[str, str] = {}
        self.requests: list[tuple[str, str, str | None, str | None]] = []  # method, path, bearer, user
        self.fail_next: list[int] = []
        self.on_submit = on_submit

    def render(self, request: Any) -> bytes:
        method, path = request.method.decode(), request.path.decode()
        auth, user = request.getHeader(b"authorization"), request.getHeader(b"x-tepui-user")
        self.requests.append((method, path, auth and auth.decode(), user and user.decode()))
        request.setHeader(b"content-type", b"application/json")
        if self.fail_next:
            request.setResponseCode(self.fail_next.pop(0))
            return b'{"error": "try later", "reason": "UNAVAILABLE"}'
        if method == "POST" and path == "/v1/jobs":
            job_id = request.args[b"id"][0].decode()
            self.on_submit(job_id)
            spec = json.loads(request.content.read())
            known = self.jobs.get(job_id)
            if known is not None and known != spec:
                request.setResponseCode(409)
                return json.dumps({"error": f"job {job_id} exists with another spec", "reason": "JOB_EXISTS"}).encode()
            self.jobs[job_id] = spec
            self.states.setdefault(job_id, "PENDING")
            request.setResponseCode(201 if known is None else 200)
            return json.dumps({"job": {"id": job_id, "state": self.states[job_id]}, "created": known is None}).encode()
        if method == "GET" and path.startswith("/v1/jobs/"):
            job_id = path.rsplit("/", 1)[1]
            if job_id not in self.states:
                request.setResponseCode(404)
                return json.dumps({"error": f"no job {job_id!r}", "reason": "UNKNOWN_JOB"}).encode()
            return json.dumps({"job": {"id": job_id, "state": self.states[job_id]}}).encode()
        request.setResponseCode(404)
        return b'{"error": "no route", "reason": "NOT_FOUND"}'


class Driver:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def suppress(self) -> None:
        self.calls.append(("suppress",))

    def decline(self, offer_ids: list[str], filters: Any) -> None:
        self.calls.append(("decline", offer_ids, filters.refuse_seconds))


class Rig:
    """The shell on a Clock at T0 with a schedule firing every minute, its link on the private
    reactor to the fake batch API."""

    def __init__(self, reactor: Any, tmp: Path, fake: FakeBatch, job: dict[str, Any] = JOB) -> None:
        self.reactor, self.fake = reactor, fake
        self.port = reactor.listenTCP(0, server.Site(fake), interface="127.0.0.1")
        self.clock = task.Clock()
        self.clock.advance(T0)
        self.store = SQLiteStore(tmp / "cron.sqlite")
        self.core = CronCore()
        self.link = BatchLink(reactor, f"http://127.0.0.1:{self.port.getHost().port}/v1/", "tok")
        self.shell = CronShell(self.clock, self.core, self.store, EventHub(self.clock), self.link)
        self.shell.run_command(commands.create, build({"id": "r", "interval": "R/2027-01-15T08:00:00Z/PT1M",
                                                       "job": job}), T0)

    def at(self, seconds: float) -> None:
        """The clock at T0 + ``seconds``, and the tick that comes with it."""
        self.clock.advance(T0 + seconds - self.clock.seconds())
        self.shell.tick()

    def fire(self, key: str = KEY) -> dict[str, Any]:
        entry = self.store.get("fires", f"r/{key}")
        assert entry is not None
        return dict(msgspec.json.decode(entry.value))

    async def until(self, condition: Callable[[], bool], what: str) -> None:
        for _ in range(500):
            if condition():
                return
            await task.deferLater(self.reactor, 0.01, lambda: None)
        raise AssertionError(f"not within 5 s: {what}")

    async def close(self) -> None:
        await self.link.close()
        await self.port.stopListening()
        self.store.close()


def test_the_fire_is_stored_intended_before_its_post_arrives_and_a_201_confirms_it(tmp_path: Path) -> None:
    seen: list[str | None] = []

    async def scenario(reactor: Any) -> None:
        rig = Rig(reactor, tmp_path, FakeBatch(lambda job_id: seen.append(rig.fire(job_id)["state"])),
                  {**JOB, "user": "ana"})
        rig.at(60)
        assert rig.fake.requests == []  # the tick only queued the call; the store has the fire already
        assert rig.fire()["state"] == "INTENDED"
        await rig.until(lambda: rig.core.following() == [KEY], "the submit confirmed")
        assert seen == ["INTENDED"]
        assert rig.fake.requests == [("POST", "/v1/jobs", "Bearer tok", "ana")]
        assert (rig.fire()["state"], rig.fire()["submitted_at"]) == ("SUBMITTED", T0 + 60)
        assert rig.fake.jobs == {KEY: {**JOB, "user": "ana"}}
        await rig.close()

    run(scenario)


def test_a_409_fails_the_fire_with_the_batch_frameworks_reason(tmp_path: Path) -> None:
    async def scenario(reactor: Any) -> None:
        rig = Rig(reactor, tmp_path, FakeBatch())
        rig.fake.jobs[KEY] = {"name": "someone else's"}
        rig.at(60)
        await rig.until(lambda: rig.fire()["state"] != "INTENDED", "the refusal recorded")
        fire = rig.fire()
        assert (fire["state"], fire["reason"]) == (
            "FAILED", f"submit refused: 409 JOB_EXISTS: job {KEY} exists with another spec")
        assert rig.fake.requests == [("POST", "/v1/jobs", "Bearer tok", "cron")]
        rig.at(70)
        await task.deferLater(reactor, 0.05, lambda: None)
        assert len(rig.fake.requests) == 1  # never asked again
        await rig.close()

    run(scenario)


def test_a_503_is_retried_under_the_same_id_after_the_backoff(tmp_path: Path) -> None:
    async def scenario(reactor: Any) -> None:
        rig = Rig(reactor, tmp_path, FakeBatch())
        rig.fake.fail_next = [503]
        rig.at(60)
        await rig.until(lambda: len(rig.fake.requests) == 1 and KEY not in rig.core._asked, "the 503 told")
        assert rig.fire()["state"] == "INTENDED"
        rig.at(60.5)  # within the 1 s backoff: not again
        await task.deferLater(reactor, 0.05, lambda: None)
        assert len(rig.fake.requests) == 1
        rig.at(61)
        await rig.until(lambda: rig.fire()["state"] == "SUBMITTED", "the retry confirmed")
        assert [r[:2] for r in rig.fake.requests] == [("POST", "/v1/jobs")] * 2
        assert list(rig.fake.jobs) == [KEY]
        await rig.close()

    run(scenario)


def test_the_end_of_a_followed_job_is_polled(tmp_path: Path) -> None:
    async def scenario(reactor: Any) -> None:
        rig = Rig(reactor, tmp_path, FakeBatch())
        rig.at(60)
        await rig.until(lambda: rig.core.following() == [KEY], "submitted")
        rig.shell.poll()  # still PENDING: nothing changes
        await rig.until(lambda: len(rig.fake.requests) == 2, "polled")
        await task.deferLater(reactor, 0.05, lambda: None)
        assert rig.fire()["state"] == "SUBMITTED"
        rig.fake.states[KEY] = "SUCCEEDED"
        rig.clock.advance(2)
        rig.shell.poll()
        await rig.until(lambda: rig.fire()["state"] == "SUCCEEDED", "the end recorded")
        fire = rig.fire()
        assert (fire["job_state"], fire["ended_at"]) == ("SUCCEEDED", T0 + 62)
        assert rig.fake.requests[1:] == [("GET", f"/v1/jobs/{KEY}", "Bearer tok", None)] * 2
        await rig.close()

    run(scenario)


def test_a_job_the_batch_framework_forgot_ends_unknown(tmp_path: Path) -> None:
    async def scenario(reactor: Any) -> None:
        rig = Rig(reactor, tmp_path, FakeBatch())
        rig.at(60)
        await rig.until(lambda: rig.core.following() == [KEY], "submitted")
        del rig.fake.states[KEY]
        rig.shell.poll()
        await rig.until(lambda: rig.fire()["state"] == "FAILED", "the end recorded")
        assert rig.fire()["job_state"] == "UNKNOWN"
        await rig.close()

    run(scenario)


def test_how_answers_are_read() -> None:
    assert submit_outcome(Answer(201, {})) == SubmitOutcome(True)
    assert submit_outcome(Answer(200, {"created": False})) == SubmitOutcome(True)
    for status in (400, 409, 422):
        assert submit_outcome(Answer(status, {"error": "bad", "reason": "INVALID_SPEC"})) == SubmitOutcome(
            False, False, f"{status} INVALID_SPEC: bad")
    for status in (500, 502, 503, 504, 429, 404, 401):  # 404: the proxy's UNKNOWN_FRAMEWORK (batch down)
        assert submit_outcome(Answer(status, {})).retryable
    assert submit_outcome(Answer(0, {}, "ConnectionRefusedError")) == SubmitOutcome(
        False, True, "no answer (ConnectionRefusedError)")
    assert submit_outcome(Answer(502, {}, "Bad Gateway")).why == "502 Bad Gateway"
    assert job_end(Answer(200, {"job": {"state": "DEADLINE_EXCEEDED"}})) == "DEADLINE_EXCEEDED"
    assert job_end(Answer(200, {"job": {"state": "RUNNING"}})) is None
    assert job_end(Answer(404, {"reason": "UNKNOWN_JOB"})) == "UNKNOWN"
    assert job_end(Answer(404, {"reason": "UNKNOWN_FRAMEWORK"})) is None  # the batch framework is away
    assert job_end(Answer(0, {}, "timeout")) is None


def test_an_unreachable_batch_api_is_an_answer_of_none_and_a_retry(tmp_path: Path) -> None:
    async def scenario(reactor: Any) -> Answer:
        port = reactor.listenTCP(0, server.Site(FakeBatch()), interface="127.0.0.1")
        number = port.getHost().port
        await port.stopListening()
        link = BatchLink(reactor, f"http://127.0.0.1:{number}/v1")
        answer: Answer = await link.submit("r-1", JOB, "cron")
        assert link.reachable.startswith("unreachable: ")
        await link.close()
        return answer

    answer = run(scenario)
    assert answer.status == 0 and "ConnectionRefused" in answer.problem
    assert submit_outcome(answer).retryable


def test_subscribing_suppresses_offers_and_keeps_the_framework_id(tmp_path: Path) -> None:
    clock = task.Clock()
    store = SQLiteStore(tmp_path / "cron.sqlite")
    shell = CronShell(clock, CronCore(), store, EventHub(clock), None)
    driver = Driver()
    master: Any = type("M", (), {"address": "m:5050"})()
    shell.subscribed(driver, "F7", master)
    shell.offers(driver, [type("O", (), {"id": "o1"})()])
    assert driver.calls == [("suppress",), ("decline", ["o1"], 3600.0)]
    assert read_store(store) == ("F7", [])


def test_a_stored_schedule_whose_spec_no_longer_loads_is_logged_and_left(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = SQLiteStore(tmp_path / "cron.sqlite")
    store.put("schedules", "old", msgspec.json.encode({"id": "old", "spec": {"id": "old", "cron": "0 0 31 2 *",
                                                                             "job": JOB},
                                                       "created_at": T0, "checked_through": T0}))
    with caplog.at_level(logging.ERROR, "tepui.cron"):
        assert read_store(store) == (None, [])
    assert "event=cron_schedule_unreadable schedule=old" in caplog.text
    assert store.get("schedules", "old") is not None


class Standby(resource.Resource):
    """A standby master of an HA cluster: every call is a 307 to the same path on the leader."""

    isLeaf = True

    def __init__(self, leader: str) -> None:
        super().__init__()
        self.leader, self.calls = leader, 0

    def render(self, request: Any) -> bytes:
        self.calls += 1
        request.setResponseCode(307)
        request.setHeader(b"location", (self.leader + request.uri.decode()).encode())
        return b'{"error": "a standby"}'


def test_a_307_from_a_standby_is_followed_once_with_the_same_method_body_and_token() -> None:
    """`tepui up --ha` points --batch at one master, which may be a standby: its 307 names the
    leader, and the submit must arrive there as it was sent (a POST with its spec and Bearer)."""
    fake = FakeBatch()

    async def scenario(reactor: Any) -> tuple[Answer, int]:
        leader = reactor.listenTCP(0, server.Site(fake), interface="127.0.0.1")
        standby = Standby(f"http://127.0.0.1:{leader.getHost().port}")
        front = reactor.listenTCP(0, server.Site(standby), interface="127.0.0.1")
        link = BatchLink(reactor, f"http://127.0.0.1:{front.getHost().port}/v1", "tok")
        answer: Answer = await link.submit("r-1", JOB, "cron")
        await link.close()
        await leader.stopListening()
        await front.stopListening()
        return answer, standby.calls

    answer, standby_calls = run(scenario)
    assert (answer.status, standby_calls) == (201, 1)
    assert fake.requests == [("POST", "/v1/jobs", "Bearer tok", "cron")]
    assert fake.jobs == {"r-1": JOB}


def test_a_redirect_loop_is_not_followed_twice() -> None:
    async def scenario(reactor: Any) -> tuple[Answer, int]:
        standby = Standby("")
        front = reactor.listenTCP(0, server.Site(standby), interface="127.0.0.1")
        standby.leader = f"http://127.0.0.1:{front.getHost().port}"  # itself: a loop
        link = BatchLink(reactor, f"{standby.leader}/v1", "tok")
        answer: Answer = await link.submit("r-1", JOB, "cron")
        await link.close()
        await front.stopListening()
        return answer, standby.calls

    answer, calls = run(scenario)
    assert (answer.status, calls) == (307, 2)
    assert submit_outcome(answer).retryable
