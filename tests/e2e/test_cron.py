"""The cron framework end to end (issue 18): a real master, two real agents, a real `tepui batch`
and a real `tepui cron serve` — the cron framework submitting each fire to the batch framework
through the master's proxy with the cluster token, as `tepui up` runs it.

The smoke test: a schedule firing every 2 seconds (``* * * * * */2``: croniter puts the seconds
last) runs ``true`` for about 10 seconds; then its fires are the batch framework's jobs
``every2-<unix>``, consecutive
(2 s apart, none skipped from the first to the last), each exactly once, each SUCCEEDED, and the
cron framework's own records agree (no MISSED, the last run SUCCEEDED).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.e2e.batch_harness import ENDED, Batch, batch_cluster, stage
from tests.e2e.cron_harness import Cron, batch_jobs, cron_running

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def frameworks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Batch, Cron]]:
    with cron_running(batch_cluster(tmp_path_factory.mktemp("cron"))) as running:
        yield running


def test_a_two_second_schedule_runs_each_fire_once_as_a_batch_job(frameworks: tuple[Batch, Cron]) -> None:
    batch, cron = frameworks
    spec = {"id": "every2", "cron": "* * * * * */2", "job": {"name": "tick", "stages": [stage("s", "true")]}}
    before = time.time()
    status, body = cron.call("POST", "/schedules", spec)
    after = time.time()
    assert status == 201, body
    time.sleep(10)
    status, body = cron.call("POST", "/schedules/every2/suspend")
    assert status == 200 and body["schedule"]["suspended"], body
    suspended = time.time()

    def all_ended() -> bool:
        jobs = batch_jobs(batch, "every2-")
        return bool(jobs) and all(j["state"] in ENDED for j in jobs)

    cron.wait(all_ended, 60, "every fire's job ended")
    jobs = batch_jobs(batch, "every2-")
    instants = sorted(int(j["id"].rsplit("-", 1)[1]) for j in jobs)
    print(f"cron smoke: {len(jobs)} jobs, fires {instants}")
    assert len(instants) == len(set(instants)), f"a fire ran twice: {instants}"
    assert instants[0] > before and instants[0] <= after + 2, (before, after, instants)
    assert instants[-1] <= suspended, (suspended, instants)
    assert instants == list(range(instants[0], instants[-1] + 1, 2)), f"fires skipped: {instants}"
    assert len(instants) >= 4, instants
    assert {j["state"] for j in jobs} == {"SUCCEEDED"}, [(j["id"], j["state"], j["reason"]) for j in jobs]

    def recorded() -> bool:
        status, body = cron.call("GET", "/schedules/every2/fires")
        return status == 200 and all(f["state"] == "SUCCEEDED" for f in body["fires"])

    cron.wait(recorded, 15, "the cron framework recorded every end")  # polled every 2 s
    status, body = cron.call("GET", "/schedules/every2/fires")
    assert [f["key"] for f in body["fires"]] == [f"every2-{t}" for t in reversed(instants[-3:])]  # history: 3 kept
    status, body = cron.call("GET", "/schedules/every2")
    assert body["schedule"]["last_run"]["key"] == f"every2-{instants[-1]}", body
    assert body["schedule"]["last_run"]["job_state"] == "SUCCEEDED", body
    status, health = cron.call("GET", "/health")
    assert health["batch"] == "reachable", health


def test_the_cron_api_is_proxied_and_refuses_a_bad_spec_with_its_field(frameworks: tuple[Batch, Cron]) -> None:
    _batch, cron = frameworks
    status, body = cron.call("POST", "/schedules", "id: bad\ncron: '0 30 * * * *'\njob: {stages: [x]}\n",
                             "application/yaml")
    assert status == 422 and body["reason"] == "INVALID_SPEC" and body["field"] == "cron", body
