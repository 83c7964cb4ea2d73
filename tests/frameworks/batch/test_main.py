"""The batch framework's shell without a master: the store's read side at start
(``read_store``), its write side (``write``), and group commit (``BatchShell.flush``) on a
fake reactor with a recording driver."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import msgspec
import pytest
from twisted.internet.task import Clock

from tepui.frameworks.batch import commands
from tepui.frameworks.batch.core import BatchCore
from tepui.frameworks.batch.effects import Persist
from tepui.frameworks.batch.main import BatchShell, read_store, write
from tepui.frameworks.batch.spec import parse_job
from tepui.sdk import Offer, Resources, SQLiteStore, TaskState, TaskStatus
from tepui.sdk.event_stream import EventHub

JOB = "name: j\nstages: [{name: s, command: 'true', array: 2, resources: {cpus: 1, mem: 32}}]\n"


class Driver:
    """Records what the shell asks of the SDK driver, and when the store held what."""

    framework_id = "fw"

    def __init__(self, store: SQLiteStore) -> None:
        self.store, self.calls = store, []  # type: ignore[var-annotated]

    def launch(self, offer_id: str, tasks: list[Any], filters: Any) -> None:
        stored = sorted(self.store.list("attempts"))
        self.calls.append(("launch", offer_id, [t.task_id for t in tasks], stored))

    def acknowledge(self, status: TaskStatus) -> None:
        entry = self.store.get("attempts", status.task_id)
        self.calls.append(("ack", status.task_id, msgspec.json.decode(entry.value)["state"] if entry else None))

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: self.calls.append((name,))


def offer(offer_id: str) -> Offer:
    return Offer(id=offer_id, framework_id="fw", agent_id="a1", hostname="h1",
                 resources=Resources.parse("cpus:4;mem:1024").to_wire())


def shell(tmp_path: Path) -> tuple[BatchShell, Driver, Clock, SQLiteStore]:
    clock = Clock()
    store = SQLiteStore(tmp_path / "batch.sqlite")
    core = BatchCore()
    sh = BatchShell(clock, core, store, EventHub(clock))
    driver = Driver(store)
    sh.driver = driver  # type: ignore[assignment]
    sh.queue(core.subscribed("fw", clock.seconds(), "http://m:5080"))
    clock.advance(0)
    driver.calls.clear()
    return sh, driver, clock, store


def test_one_turns_persists_are_one_commit_before_its_launches_and_acks(tmp_path: Path) -> None:
    sh, driver, clock, store = shell(tmp_path)
    sh.run_command(commands.submit, parse_job(JOB), "ana", clock.seconds(), "j1")
    commits = sh.commits
    driver.calls.clear()  # the submit's demand
    sh.offers(driver, [offer("o1")])  # type: ignore[arg-type]
    assert driver.calls == []  # nothing leaves before the turn's commit
    clock.advance(0)
    assert driver.calls[0] == ("launch", "o1", ["j1.s.0.1", "j1.s.1.1"], ["j1.s.0.1", "j1.s.1.1"])
    for index in (0, 1):
        sh.status_update(driver, TaskStatus(task_id=f"j1.s.{index}.1", state=TaskState.FINISHED,  # type: ignore[arg-type]
                                            agent_id="a1", uuid=b"u", exit_code=0))
    assert [c for c in driver.calls if c[0] == "ack"] == []  # acknowledged only after the commit
    clock.advance(0)
    assert [c for c in driver.calls if c[0] == "ack"] == [("ack", "j1.s.0.1", "FINISHED"), ("ack", "j1.s.1.1", "FINISHED")]
    assert sh.commits == commits + 2  # one for the offers' turn, one for both updates
    assert msgspec.json.decode(store.get("jobs", "j1").value)["state"] == "SUCCEEDED"  # type: ignore[union-attr]


def test_write_deletes_by_prefix_in_the_same_transaction(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.sqlite")
    write(store, [Persist((("attempts", "a.x.0.1", "1"), ("attempts", "a.x.1.1", "2"), ("attempts", "b.x.0.1", "3")))])
    write(store, [Persist((), (("jobs", "a"),), (("attempts", "a."),))])
    assert sorted(store.list("attempts")) == ["b.x.0.1"]


def test_a_stored_job_whose_spec_no_longer_loads_is_logged_and_left_in_the_store(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = SQLiteStore(tmp_path / "s.sqlite")
    core = BatchCore()
    _answer, effects = commands.submit(core, parse_job(JOB), "ana", 1.0, "good")
    write(store, [e for e in effects if isinstance(e, Persist)])
    store.put("jobs", "bad", store.get("jobs", "good").value.replace(b'"good"', b'"bad"'))  # type: ignore[union-attr]
    store.put("specs", "bad", b'{"name": "bad", "stages": [{"name": "s", "command": "true", "array": 0}]}')
    with caplog.at_level(logging.ERROR, "tepui.batch"):
        framework_id, jobs = read_store(store)
    assert [record.id for _spec, record, _attempts, _stages in jobs] == ["good"]
    assert "event=batch_job_unreadable job=bad" in caplog.text and "array" in caplog.text
    assert store.get("specs", "bad") is not None
