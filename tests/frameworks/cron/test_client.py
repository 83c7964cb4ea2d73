"""The Python client's own duties against the fake cron API: the three forms a spec is given
in (dict, path, text) and the request each makes, the id ``apply`` reads for its URL, and the
error class — its ``str()`` says what to do, ``unreachable`` and ``exit_code`` tell a refusal
from a dead cluster."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tepui.frameworks.cron.client import CronClient, CronError
from tests.frameworks.batch.fake_batch_api import closed_port, isolate
from tests.frameworks.cron.fake_cron_api import PREFIX, FakeCron, serve
from tests.frameworks.cron.test_examples import EXAMPLES

PROBE = EXAMPLES / "health-probe.yaml"
SPEC = {"id": "tick", "cron": "*/5 * * * *", "job": {"stages": [{"name": "main", "command": "true"}]}}


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[FakeCron, CronClient]]:
    isolate(monkeypatch, tmp_path)
    api = FakeCron()
    with serve(api) as url:
        yield api, CronClient(url)


def test_a_spec_as_a_dict_a_path_or_text(fake: tuple[FakeCron, CronClient]) -> None:
    api, client = fake
    assert client.create(SPEC).id == "tick"
    assert client.apply(PROBE).data["created"] is True
    assert client.apply(PROBE.read_text()).data["created"] is False
    assert client.apply(str(PROBE)).id == "health-probe"
    assert [(r["method"], r["path"].removeprefix(PREFIX), r["content_type"]) for r in api.requests] == [
        ("POST", "/schedules", "application/json"), ("PUT", "/schedules/health-probe", "application/yaml"),
        ("PUT", "/schedules/health-probe", "application/yaml"), ("PUT", "/schedules/health-probe", "application/yaml")]
    assert json.loads(api.requests[0]["body"]) == SPEC
    assert api.requests[1]["body"] == PROBE.read_bytes()


def test_apply_needs_the_id_before_any_request(fake: tuple[FakeCron, CronClient], tmp_path: Path) -> None:
    api, client = fake
    with pytest.raises(CronError) as no_id:
        client.apply({"cron": "* * * * *", "job": {}})
    assert str(no_id.value) == ("a schedule needs an id (a DNS label such as nightly-report). (field: id) Fix that "
                                "field of the schedule (docs/cron.md, 'Schedule spec') and try again.")
    with pytest.raises(CronError) as unreadable:
        client.apply(tmp_path / "missing.yaml")
    assert (unreadable.value.reason, unreadable.value.exit_code) == ("UNREADABLE_SPEC", 1)
    assert str(unreadable.value).startswith(f"cannot read {tmp_path / 'missing.yaml'}: No such file or directory.")
    assert api.requests == []


def test_refused_and_unreachable_are_told_apart(fake: tuple[FakeCron, CronClient],
                                                monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    api, client = fake
    with pytest.raises(CronError) as unknown:
        client.fires("nope")
    assert (unknown.value.status, unknown.value.reason, unknown.value.unreachable, unknown.value.exit_code) == \
        (404, "UNKNOWN_SCHEDULE", False, 1)
    api.framework_running = False
    with pytest.raises(CronError) as missing:
        client.health()
    assert (missing.value.reason, missing.value.unreachable, missing.value.exit_code) == ("UNKNOWN_FRAMEWORK", True, 4)
    with pytest.raises(CronError) as dead:
        CronClient(f"127.0.0.1:{closed_port()}").list()
    assert (dead.value.reason, dead.value.status, dead.value.exit_code) == ("UNREACHABLE", None, 4)


def test_health_and_the_views_of_a_fresh_schedule(fake: tuple[FakeCron, CronClient]) -> None:
    api, client = fake
    assert client.health() == {"ok": True, "subscribed": True, "framework_id": "F-cron", "batch": "reachable"}
    client.create(SPEC)
    (schedule,) = client.list()
    assert (schedule.rule, schedule.time_zone, schedule.concurrency_policy, schedule.spec) == \
        ("*/5 * * * *", "UTC", "Allow", None)  # the list carries no spec; get does
    assert client.get("tick").spec == SPEC
    assert [f.utc for f in client.next("tick", 2)] == ["2026-03-27T08:30:00Z", "2026-03-27T08:35:00Z"]
    assert client.rm("tick") == []
