"""The Python client and ``tepui cron`` against the real cron API (CronApi on a real CronCore,
CronShell and SQLite store: tests/frameworks/cron/test_api.py's Harness), with the HTTP exchange
replaced by a direct call (``CronClient._send``): the contract the client was written against
(docs/cron.md "CLI and API") is the one the framework serves — the shapes of a schedule, its
next fires and its fire records, and the errors. ``tepui cron next`` on the nightly-report
example across the 2027 spring-forward agrees with the independent zoneinfo walk."""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tepui.cli.main import cli
from tepui.frameworks.cron.client import CronClient, CronError
from tests.cli.test_apps import table_rows
from tests.frameworks.batch.fake_batch_api import isolate
from tests.frameworks.cron.test_api import T0, Harness
from tests.frameworks.cron.test_examples import BERLIN, EXAMPLES, walk_fires

REPORT = EXAMPLES / "nightly-report.yaml"


class RealApiClient(CronClient):
    """A CronClient whose requests go straight into the Harness's CronApi."""

    def __init__(self, harness: Harness) -> None:
        super().__init__("127.0.0.1:9")
        self.harness = harness

    def _send(self, method: str, url: str, data: bytes | None, headers: dict[str, str]) -> tuple[int, bytes]:
        parts = urllib.parse.urlsplit(url)
        assert parts.path.startswith("/frameworks/cron/v1/"), url
        status, document = self.harness.call(method, parts.path.removeprefix("/frameworks/cron"), data,
                                              headers.get("content-type"), **dict(urllib.parse.parse_qsl(parts.query)))
        return status, json.dumps(document).encode()


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RealApiClient:
    isolate(monkeypatch, tmp_path)
    return RealApiClient(Harness(tmp_path))


def test_the_examples_shapes_from_the_real_api(client: RealApiClient) -> None:
    created = client.create(REPORT)
    assert (created.id, created.cron, created.interval, created.time_zone, created.concurrency_policy,
            created.suspended, created.last_run, created.running) == \
        ("nightly-report", "30 2 * * *", None, "Europe/Berlin", "Forbid", False, None, ())
    assert created.next_fire_at == walk_fires("30 2 * * *", BERLIN, T0, 1)[0][0]
    updated = client.apply(REPORT)
    assert (updated.id, updated.data["created"]) == ("nightly-report", False)
    shown = client.get("nightly-report")
    assert shown.spec is not None and shown.spec["starting_deadline"] == "PT4H"
    assert [s.id for s in client.list()] == ["nightly-report"]
    fires = client.next("nightly-report", 80)  # 2027-01-16 to 2027-04-05: the spring-forward inside
    assert [(f.at, f.local) for f in fires] == walk_fires("30 2 * * *", BERLIN, T0, 80)
    assert "2027-03-28T03:00:00+02:00" in [f.local for f in fires]
    assert fires[0].utc == "2027-01-16T01:30:00Z" and fires[0].key == f"nightly-report-{int(fires[0].at)}"
    fire = client.trigger("nightly-report")
    assert (fire.key, fire.state, fire.manual) == (f"nightly-report_manual_{int(T0)}", "INTENDED", True)
    assert [f.key for f in client.fires("nightly-report")] == [fire.key]
    assert client.suspend("nightly-report").suspended is True
    assert client.resume("nightly-report").suspended is False


def test_the_real_apis_refusals_say_what_to_do(client: RealApiClient, tmp_path: Path) -> None:
    client.create(REPORT)
    with pytest.raises(CronError) as exists:
        client.create(REPORT)
    assert (exists.value.status, exists.value.reason, exists.value.exit_code) == (409, "SCHEDULE_EXISTS", 1)
    assert str(exists.value).endswith("`tepui cron apply FILE` replaces its spec; `tepui cron show ID` shows the "
                                      "current one.")
    bad = tmp_path / "bad.yaml"
    bad.write_text(REPORT.read_text().replace('"30 2 * * *"', '"30 25 * * *"'))
    with pytest.raises(CronError) as invalid:
        client.apply(bad)
    assert (invalid.value.status, invalid.value.reason, invalid.value.field) == (422, "INVALID_SPEC", "cron")
    with pytest.raises(CronError) as unknown:
        client.next("nope")
    assert (unknown.value.status, unknown.value.reason, unknown.value.unreachable) == (404, "UNKNOWN_SCHEDULE", False)


def test_tepui_cron_next_on_the_real_api_agrees_with_the_walk(client: RealApiClient,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    client.create(REPORT)
    monkeypatch.setattr("tepui.cli.cron_commands.CronClient", lambda http: client)
    result = CliRunner().invoke(cli, ["cron", "next", "nightly-report", "-n", "80"])
    assert result.exit_code == 0, result.output
    rows: list[Any] = table_rows(result.output)[1:]
    assert [(row[0], row[2]) for row in rows] == [(local.replace("T", " "), f"nightly-report-{int(at)}")
                                                  for at, local in walk_fires("30 2 * * *", BERLIN, T0, 80)]
    assert [row for row in rows if row[3]] == [
        ["2027-03-28 03:00:00+02:00", "2027-03-28 01:00:00Z", "nightly-report-1806195600", "offset +01:00 → +02:00"]]
