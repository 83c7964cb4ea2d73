"""The Python client against the real batch API (BatchApi on a real BatchCore and SQLite store,
tests/frameworks/batch/test_api.py's Harness) served over real HTTP under the master's
``/frameworks/batch/`` prefix by a private reactor in a thread: the contract the client was
written against (docs/batch.md) is the one the framework serves — the shapes of Job, Attempt,
``why`` and the history, the errors, and ``wait`` on the real event stream.

Not end to end (no master, no agents): the task updates are fed to the core by hand."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from twisted.internet.selectreactor import SelectReactor
from twisted.web import resource, server

from tepui.frameworks.batch.client import BatchClient, BatchError
from tepui.sdk import TaskState
from tests.frameworks.batch.fake_batch_api import isolate
from tests.frameworks.batch.test_api import SPEC_YAML, T0, Harness

T = TypeVar("T")


class Served:
    """The Harness's API on 127.0.0.1, run by a private reactor in a thread; ``do(fn)`` runs
    ``fn(harness)`` on that thread (the store's SQLite connection belongs to it)."""

    def __init__(self, path: Path) -> None:
        self.reactor = SelectReactor()
        self.harness: Harness | None = None
        self.port = 0
        ready: queue.Queue[Any] = queue.Queue()

        def start() -> None:
            try:
                self.harness = Harness(path)
                root, frameworks = resource.Resource(), resource.Resource()
                root.putChild(b"frameworks", frameworks)
                frameworks.putChild(b"batch", self.harness.api)
                self.listening = self.reactor.listenTCP(0, server.Site(root), interface="127.0.0.1")
                self.harness.hub.reactor = self.reactor
                ready.put(self.listening.getHost().port)
            except Exception as exc:  # noqa: BLE001 - handed to the test thread
                ready.put(exc)

        self.reactor.callWhenRunning(start)
        self.thread = threading.Thread(target=self.reactor.run, kwargs={"installSignalHandlers": False},
                                       daemon=True)
        self.thread.start()
        port = ready.get(timeout=10)
        if isinstance(port, Exception):
            raise port
        self.url = f"http://127.0.0.1:{port}"

    def do(self, fn: Callable[[Harness], T]) -> T:
        answer: queue.Queue[Any] = queue.Queue()

        def call() -> None:
            try:
                assert self.harness is not None
                answer.put((True, fn(self.harness)))
            except Exception as exc:  # noqa: BLE001 - re-raised in the test thread
                answer.put((False, exc))

        self.reactor.callFromThread(call)
        ok, value = answer.get(timeout=10)
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]

    def stop(self) -> None:
        def close() -> None:
            assert self.harness is not None
            self.harness.hub.stop()
            self.harness.store.close()
            self.listening.stopListening()
            self.reactor.stop()

        self.reactor.callFromThread(close)
        self.thread.join(10)


@pytest.fixture
def real(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[Served, BatchClient]]:
    isolate(monkeypatch, tmp_path)
    served = Served(tmp_path)
    client = BatchClient(served.url, user="ana")
    client.poll_interval = 0.01
    try:
        yield served, client
    finally:
        served.stop()


def test_submit_get_list_attempts_history_against_the_real_api(real: tuple[Served, BatchClient]) -> None:
    served, client = real
    job = client.submit(SPEC_YAML.decode(), job_id="sums-1")
    assert (job.id, job.user, job.state, job.submitted_at) == ("sums-1", "ana", "PENDING", T0)
    assert [(s.name, s.array, s.state, [d.stage for d in s.depends_on]) for s in job.stages] == \
        [("map", 2, "ACTIVE", []), ("reduce", 1, "WAITING", ["map"])]
    assert job.spec is not None and job.spec["name"] == "sums"
    assert client.submit(SPEC_YAML.decode(), job_id="sums-1").id == "sums-1"  # idempotent

    def launch_and_fail(h: Harness) -> None:
        h.now = T0 + 1
        h.offer()
        h.now = T0 + 2
        h.update("sums-1.map.0.1", TaskState.RUNNING)
        h.update("sums-1.map.1.1", TaskState.RUNNING)
        h.now = T0 + 5
        h.update("sums-1.map.0.1", TaskState.FINISHED, 0)
        h.update("sums-1.map.1.1", TaskState.FAILED, 3)

    served.do(launch_and_fail)
    job = client.get("sums-1")
    assert (job.state, job.exit_code, job.tasks.succeeded) == ("FAILED", 1, 1)
    assert [(s.name, s.state) for s in job.stages] == [("map", "FAILED"), ("reduce", "UPSTREAM_FAILED")]
    jobs = client.list(user="ana", state=["failed"], since=T0 - 1)
    assert [j.id for j in jobs] == ["sums-1"] and jobs.total == 1
    assert client.list(user="bob").total == 0
    tries = client.attempts("sums-1", stage="map")
    assert [(a.task_id, a.state, a.exit_code, a.hostname) for a in tries] == \
        [("sums-1.map.0.1", "FINISHED", 0, "node-1"), ("sums-1.map.1.1", "FAILED", 3, "node-1")]
    assert client.attempts("sums-1", stage="map", index=1)[0].task_id == "sums-1.map.1.1"
    history = client.history(user="ana", state="failed")
    assert [(a.task_id, a.user, a.queue, a.job_name) for a in history] == [("sums-1.map.1.1", "ana", "default",
                                                                            "sums")]
    why = client.why("sums-1")
    assert why["job"]["id"] == "sums-1" and why["summary"] == "Nothing of job sums-1 is pending."
    retried = client.retry("sums-1")
    assert retried.state in ("PENDING", "RUNNING")
    assert client.cancel("sums-1").state == "CANCELLED"
    with pytest.raises(BatchError) as error:
        client.cancel("sums-1")
    assert error.value.status == 409 and not error.value.unreachable


def test_refusals_of_the_real_api(real: tuple[Served, BatchClient]) -> None:
    _served, client = real
    with pytest.raises(BatchError) as error:
        client.submit({"name": "bad", "stages": [{"name": "map", "command": "true", "array": 0}]})
    assert (error.value.status, error.value.reason, error.value.field) == (400, "INVALID_SPEC", "stages[0].array")
    with pytest.raises(BatchError) as error:
        client.get("nope")
    assert (error.value.status, error.value.reason) == (404, "UNKNOWN_JOB")
    assert "tepui jobs list" in str(error.value)
    with pytest.raises(BatchError) as error:
        client.list(state="RUNING")
    assert (error.value.status, error.value.reason) == (400, "INVALID_FILTER")


def test_wait_follows_the_real_event_stream(real: tuple[Served, BatchClient]) -> None:
    served, client = real
    client.submit(SPEC_YAML.decode(), job_id="sums-1")
    seen: list[str] = []

    def progress(job: Any) -> None:
        seen.append(f"{job.state}:{job.tasks.succeeded}")
        if len(seen) == 1:  # the first answer: now run the job to its end, update by update
            threading.Thread(target=run_to_success, daemon=True).start()

    def run_to_success() -> None:
        def step(h: Harness) -> None:
            h.now = T0 + 1
            h.offer()
            for task_id in ("sums-1.map.0.1", "sums-1.map.1.1"):
                h.update(task_id, TaskState.RUNNING)
                h.execute(h.core.tick(h.now))  # the shell's timer: job_updated, once per batch
                h.update(task_id, TaskState.FINISHED, 0)
                h.execute(h.core.tick(h.now))
            h.offer("o2")
            h.update("sums-1.reduce.0.1", TaskState.RUNNING)
            h.update("sums-1.reduce.0.1", TaskState.FINISHED, 0)

        served.do(step)

    final = client.wait("sums-1", timeout=10, on_update=progress)
    assert (final.state, final.exit_code, final.tasks.succeeded) == ("SUCCEEDED", 0, 3)
    assert seen == ["PENDING:0", "RUNNING:0", "RUNNING:1", "RUNNING:2", "SUCCEEDED:3"]  # one call per change


def test_the_cli_reads_the_real_api(real: tuple[Served, BatchClient]) -> None:
    from click.testing import CliRunner

    from tepui.cli.main import cli

    served, client = real
    client.submit(SPEC_YAML.decode(), job_id="sums-1")

    def fail_map(h: Harness) -> None:
        h.now = T0 + 1
        h.offer()
        h.update("sums-1.map.0.1", TaskState.RUNNING)
        h.update("sums-1.map.0.1", TaskState.FINISHED, 0)
        h.update("sums-1.map.1.1", TaskState.FAILED, 3)

    served.do(fail_map)
    runner = CliRunner()
    show = runner.invoke(cli, ["jobs", "show", "sums-1", "--http", served.url])
    assert show.exit_code == 0, show.output
    assert show.output.splitlines()[-3:] == ["sums-1  FAILED  1/3 tasks succeeded",
                                             "└── map  FAILED  1/2 succeeded, failed 1 — 1 of 2 indices failed",
                                             "    └── reduce  UPSTREAM_FAILED  0/1 succeeded, skipped 1 — an "
                                             "upstream stage did not succeed"]
    history = runner.invoke(cli, ["jobs", "history", "--user", "ana", "--http", served.url])
    assert history.exit_code == 0, history.output
    assert "│ sums-1 │ map   │     1 │       1 │ FAILED   │    3 │ node-1 │" in history.output
    listed = runner.invoke(cli, ["jobs", "list", "--state", "failed", "--http", served.url])
    assert listed.exit_code == 0 and "│ sums-1 │ ana  │ default │   0 │ FAILED │  1/3 │       0 │      2 │" in \
        listed.output
    waited = runner.invoke(cli, ["jobs", "submit", "-", "--id", "sums-1", "--wait", "--http", served.url],
                           input=SPEC_YAML.decode())
    assert waited.exit_code == 1, waited.output  # the same spec under the same id: the existing, FAILED job
    assert "✗ job sums-1 FAILED" in waited.output
    assert "first failure: map[1] attempt 1 exit code 3" in waited.output
