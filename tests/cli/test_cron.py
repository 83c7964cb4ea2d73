"""``tepui cron`` against a fake of the cron API on loopback (tests/frameworks/cron/fake_cron_api.py:
the real core and spec parser behind a fake HTTP shell, under the master's ``/frameworks/cron``
prefix): the requests each command sends, the tables it prints, the exit codes (1 refused, 4
unreachable) and what every error tells the user to do. ``next`` on the examples is checked
against the independent zoneinfo walk of tests/frameworks/cron/test_examples.py (the issue's
"`tepui cron next` agrees with an independent computation for the examples")."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from tepui.cli.main import cli
from tests.cli.test_apps import assert_aligned, table_rows
from tests.frameworks.batch.fake_batch_api import closed_port, isolate
from tests.frameworks.cron.fake_cron_api import PREFIX, T0, FakeCron, serve
from tests.frameworks.cron.test_examples import BERLIN, EXAMPLES, walk_fires

REPORT, PROBE = EXAMPLES / "nightly-report.yaml", EXAMPLES / "health-probe.yaml"
UTC = dt.timezone.utc
FIRE_28 = dt.datetime(2026, 3, 28, 1, 30, tzinfo=UTC).timestamp()  # the report's 02:30 +01:00 on 03-28


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[FakeCron, str]]:
    isolate(monkeypatch, tmp_path)
    fake = FakeCron()
    monkeypatch.setattr("tepui.cli.cron_commands.now", lambda: fake.now)
    with serve(fake) as url:
        yield fake, url


def run(http: str, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, ["cron", *args, "--http", http], input=input)


def calls(fake: FakeCron) -> list[tuple[str, str, dict[str, str]]]:
    return [(r["method"], r["path"].removeprefix(PREFIX), r["query"]) for r in fake.requests]


def two_schedules_after_a_night(fake: FakeCron, http: str) -> None:
    """Both examples created at T0; the framework then stopped ticking until the report's fire
    on 03-28, whose job succeeded while the probe's failed."""
    assert run(http, "create", str(REPORT)).exit_code == 0
    assert run(http, "create", str(PROBE)).exit_code == 0
    assert fake.advance(FIRE_28) == ["nightly-report-1774661400", "health-probe-1774661400"]
    fake.advance(FIRE_28 + 30, {"nightly-report-1774661400": "SUCCEEDED", "health-probe-1774661400": "FAILED"})
    fake.requests.clear()


# --- create and apply ---------------------------------------------------------------------------

def test_create_sends_the_file_as_it_is_and_prints_the_next_fire(api: tuple[FakeCron, str],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    fake, http = api
    monkeypatch.setenv("TEPUI_HTTP_TOKEN", "cron-token-0123456789")
    result = run(http, "create", str(REPORT))
    assert result.exit_code == 0, result.output
    assert result.output == (
        "schedule nightly-report created: 30 2 * * * in Europe/Berlin; next fire 2026-03-28 02:30:00+01:00 "
        "(2026-03-28 01:30:00Z, in 17h 3m)\n"
        "`tepui cron next nightly-report` lists the coming fires, `tepui cron history nightly-report` the past ones.\n")
    post = fake.requests[0]
    assert (post["method"], post["path"], post["content_type"], post["body"]) == \
        ("POST", f"{PREFIX}/schedules", "application/yaml", REPORT.read_bytes())
    assert (post["headers"]["authorization"], post["headers"]["x-tepui-user"]) == \
        ("Bearer cron-token-0123456789", "alice")
    assert len(fake.requests) == 1


def test_create_of_an_existing_id_is_refused_with_what_to_do(api: tuple[FakeCron, str]) -> None:
    fake, http = api
    run(http, "create", str(REPORT))
    result = run(http, "create", str(REPORT))
    assert (result.exit_code, result.output) == (1, (
        "error: schedule nightly-report exists; `tepui cron apply` replaces its spec\n"
        "field: id\n"
        "hint: `tepui cron apply FILE` replaces its spec; `tepui cron show ID` shows the current one.\n"))


def test_an_invalid_spec_names_the_field(api: tuple[FakeCron, str], tmp_path: Path) -> None:
    fake, http = api
    path = tmp_path / "typo.yaml"
    path.write_text(REPORT.read_text().replace("time_zone:", "time_zon:"))
    result = run(http, "create", str(path))
    assert (result.exit_code, result.output) == (1, (
        "error: time_zon: unknown field (did you mean 'time_zone'?)\n"
        "field: time_zon\n"
        "hint: Fix that field of the schedule (docs/cron.md, 'Schedule spec') and try again.\n"))
    path.write_text("id: x\ncron: [\n")
    result = run(http, "apply", str(path))  # apply reads the id itself: a broken document never leaves
    assert result.exit_code == 1
    assert result.output.startswith(f"error: {path}: invalid YAML: ")
    assert result.output.endswith("field: (document)\nhint: Fix that field of the schedule (docs/cron.md, "
                                  "'Schedule spec') and try again.\n")
    assert [c[:2] for c in calls(fake)] == [("POST", "/schedules")]


def test_apply_creates_then_updates_under_the_files_id(api: tuple[FakeCron, str], tmp_path: Path) -> None:
    fake, http = api
    result = run(http, "apply", str(PROBE))
    assert (result.exit_code, result.output) == (0, "schedule health-probe created: * * * * * in Europe/Berlin; next "
                                                    "fire 2026-03-27 09:27:00+01:00 (2026-03-27 08:27:00Z, in 20s)\n")
    changed = tmp_path / "probe.json"
    changed.write_text('{"id": "health-probe", "cron": "*/5 * * * *", "job": {"stages": [{"name": "p"}]}}')
    result = run(http, "apply", str(changed))
    assert (result.exit_code, result.output) == (0, "schedule health-probe updated: */5 * * * * in UTC; next fire "
                                                    "2026-03-27 08:30:00Z (2026-03-27 08:30:00Z, in 3m 20s)\n")
    assert [(r["method"], r["path"], r["content_type"]) for r in fake.requests] == [
        ("PUT", f"{PREFIX}/schedules/health-probe", "application/yaml"),
        ("PUT", f"{PREFIX}/schedules/health-probe", "application/json")]


def test_create_from_stdin(api: tuple[FakeCron, str]) -> None:
    fake, http = api
    result = run(http, "create", "-", input=REPORT.read_text())
    assert result.exit_code == 0, result.output
    assert result.output.startswith("schedule nightly-report created")
    result = run(http, "create", "-", input="\n")
    assert (result.exit_code, result.output) == (1, "error: stdin is empty.\nhint: Pipe a schedule spec in, or pass "
                                                    "a FILE.\n")


# --- next: the examples against the independent walk -------------------------------------------

@pytest.mark.parametrize(("name", "after", "n"), [
    ("nightly-report", "2026-03-27T08:26:40+00:00", 4),    # the 2026 spring-forward night
    ("nightly-report", "2026-10-23T12:00:00+00:00", 4),    # the 2026 fall-back night
    ("nightly-report", "2027-03-26T12:00:00+00:00", 4),
    ("nightly-report", "2027-10-29T12:00:00+00:00", 4),
    ("health-probe", "2026-03-29T00:57:30+00:00", 5),      # 01:59 +01:00, then 03:00 +02:00
    ("health-probe", "2026-10-25T00:57:30+00:00", 5),      # 02:59 +02:00, then 02:00 +01:00
    ("health-probe", "2027-10-31T00:57:30+00:00", 5),
])
def test_next_on_the_examples_agrees_with_the_zoneinfo_walk(api: tuple[FakeCron, str], name: str, after: str,
                                                            n: int) -> None:
    fake, http = api
    fake.now = dt.datetime.fromisoformat(after).timestamp()
    assert run(http, "create", str(EXAMPLES / f"{name}.yaml")).exit_code == 0
    result = run(http, "next", name, "-n", str(n))
    assert result.exit_code == 0, result.output
    assert_aligned(result.output)
    rows = table_rows(result.output)
    assert rows[0] == ["LOCAL (Europe/Berlin)", "UTC", "KEY", "NOTE"]
    expected, offset = [], None
    for at, local in walk_fires("30 2 * * *" if name == "nightly-report" else "* * * * *", BERLIN, fake.now, n):
        note = f"offset {offset} → {local[-6:]}" if offset is not None and local[-6:] != offset else ""
        expected.append([local.replace("T", " "), dt.datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%SZ"),
                         f"{name}-{int(at)}", note])
        offset = local[-6:]
    assert rows[1:] == expected
    assert sum(1 for row in rows[1:] if row[3]) == 1  # each window holds one transition, marked
    assert calls(fake)[1:] == [("GET", f"/schedules/{name}/next", {"n": str(n)}), ("GET", f"/schedules/{name}", {})]


def test_next_spring_forward_exactly(api: tuple[FakeCron, str]) -> None:
    fake, http = api
    run(http, "create", str(REPORT))
    result = run(http, "next", "nightly-report", "-n", "3")
    assert table_rows(result.output)[1:] == [
        ["2026-03-28 02:30:00+01:00", "2026-03-28 01:30:00Z", "nightly-report-1774661400", ""],
        ["2026-03-29 03:00:00+02:00", "2026-03-29 01:00:00Z", "nightly-report-1774746000", "offset +01:00 → +02:00"],
        ["2026-03-30 02:30:00+02:00", "2026-03-30 00:30:00Z", "nightly-report-1774830600", ""]]
    result = run(http, "next", "nightly-report", "-n", "1001")
    assert result.exit_code == 2 and "1001 is not in the range 1<=x<=1000" in result.output


def test_next_json_is_the_apis_answer(api: tuple[FakeCron, str]) -> None:
    fake, http = api
    run(http, "create", str(REPORT))
    result = run(http, "next", "nightly-report", "-n", "1", "--json")
    assert result.output == ('{\n  "next": [\n    {\n      "at": 1774661400.0,\n      "key": "nightly-report-1774661400",\n'
                             '      "local": "2026-03-28T02:30:00+01:00",\n      "utc": "2026-03-28T01:30:00Z"\n    }\n  ]\n}\n')


# --- list, show, history ------------------------------------------------------------------------

def test_list_shows_each_schedules_last_run_its_result_and_the_next_fire(api: tuple[FakeCron, str]) -> None:
    fake, http = api
    result = run(http, "list")
    assert (result.exit_code, result.output) == (0, "no schedules yet; create one with `tepui cron create FILE` "
                                                    "(examples/cron/)\n")
    two_schedules_after_a_night(fake, http)
    result = run(http, "list")
    assert result.exit_code == 0, result.output
    assert_aligned(result.output)
    assert table_rows(result.output) == [
        ["ID", "SCHEDULE", "ZONE", "POLICY", "SUSPENDED", "LAST RUN", "NEXT"],
        ["health-probe", "* * * * *", "Europe/Berlin", "Forbid", "no",
         "FAILED 2026-03-28 02:30:00+01:00 health-probe-1774661400", "2026-03-28 02:31:00+01:00 (in 30s)"],
        ["nightly-report", "30 2 * * *", "Europe/Berlin", "Forbid", "no",
         "SUCCEEDED 2026-03-28 02:30:00+01:00 nightly-report-1774661400", "2026-03-29 03:00:00+02:00 (in 23h 29m)"]]
    assert calls(fake) == [("GET", "/schedules", {})]


def test_list_shows_a_running_fire_and_a_suspended_schedule(api: tuple[FakeCron, str]) -> None:
    fake, http = api
    two_schedules_after_a_night(fake, http)
    assert fake.advance(FIRE_28 + 60) == ["health-probe-1774661460"]  # submitted, not ended
    assert run(http, "suspend", "nightly-report").exit_code == 0
    rows = table_rows(run(http, "list").output)
    assert [row[4:] for row in rows[1:]] == [
        ["no", "FAILED 2026-03-28 02:30:00+01:00 health-probe-1774661400; running",
         "2026-03-28 02:32:00+01:00 (in 1m)"],
        ["yes", "SUCCEEDED 2026-03-28 02:30:00+01:00 nightly-report-1774661400", "suspended"]]


def test_show_prints_the_settings_and_the_newest_fires(api: tuple[FakeCron, str]) -> None:
    fake, http = api
    two_schedules_after_a_night(fake, http)
    result = run(http, "show", "nightly-report")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[:10] == [
        "schedule   nightly-report",
        "cron       30 2 * * *",
        "time zone  Europe/Berlin",
        "policy     Forbid",
        "deadline   PT4H",
        "catch-up   latest",
        "suspended  no",
        "job        nightly-report",
        "last run   SUCCEEDED 2026-03-28 02:30:00+01:00 nightly-report-1774661400",
        "next fire  2026-03-29 03:00:00+02:00 = 2026-03-29 01:00:00Z (in 23h 29m)"]
    assert lines[10].strip() == "Recent fires (newest first)"
    assert table_rows("\n".join(lines[11:])) == [
        ["KEY", "SCHEDULED (Europe/Berlin)", "UTC", "STATE", "JOB STATE", "REASON"],
        ["nightly-report-1774661400", "2026-03-28 02:30:00+01:00", "2026-03-28 01:30:00Z", "SUCCEEDED", "SUCCEEDED",
         "-"]]
    assert calls(fake) == [("GET", "/schedules/nightly-report", {}), ("GET", "/schedules/nightly-report/fires", {})]


def test_history_lists_runs_and_a_counted_missed_range(api: tuple[FakeCron, str]) -> None:
    fake, http = api
    two_schedules_after_a_night(fake, http)
    result = run(http, "history", "health-probe")
    assert result.exit_code == 0, result.output
    assert_aligned(result.output)
    rows = table_rows(result.output)
    assert rows[:3] == [
        ["KEY", "SCHEDULED (Europe/Berlin)", "UTC", "STATE", "JOB STATE", "REASON"],
        ["health-probe-1774661400", "2026-03-28 02:30:00+01:00", "2026-03-28 01:30:00Z", "FAILED", "FAILED", "-"],
        # the probe's 1023 minutes from T0 to the report's fire: catch_up none, one record
        ["health-probe-1774600020", "2026-03-27 09:27:00+01:00", "2026-03-27 08:27:00Z", "MISSED ×1023", "-",
         rows[2][5]]]
    reason = " ".join(row[5] for row in rows[2:]).strip()
    assert reason.startswith("late by starting_deadline (30s) or more")
    assert reason.endswith("fires up to 2026-03-28 02:29:30+01:00")
    assert result.output.splitlines()[-1] == "the jobs themselves: `tepui jobs show KEY`, `tepui jobs logs KEY`"


def test_history_before_any_fire(api: tuple[FakeCron, str]) -> None:
    fake, http = api
    run(http, "create", str(REPORT))
    result = run(http, "history", "nightly-report")
    assert (result.exit_code, result.output) == (0, "schedule nightly-report has not fired yet; `tepui cron next "
                                                    "nightly-report` says when it will\n")


# --- suspend, resume, trigger, rm ---------------------------------------------------------------

def test_suspend_resume_trigger_and_rm(api: tuple[FakeCron, str]) -> None:
    fake, http = api
    two_schedules_after_a_night(fake, http)
    assert run(http, "suspend", "health-probe").output == \
        "schedule health-probe suspended: no fires until `tepui cron resume health-probe`\n"
    fake.now = FIRE_28 + 600
    assert run(http, "resume", "health-probe").output == \
        "schedule health-probe resumed; next fire 2026-03-28 02:41:00+01:00 (2026-03-28 01:41:00Z, in 1m)\n"
    result = run(http, "trigger", "nightly-report")
    assert (result.exit_code, result.output) == (0, "triggered nightly-report: job nightly-report_manual_1774662000 "
                                                    "(intended); follow it with `tepui jobs wait "
                                                    "nightly-report_manual_1774662000`\n")
    result = run(http, "rm", "nightly-report")  # the trigger's submit is not confirmed yet
    assert (result.exit_code, result.output) == (1, (
        "error: the batch framework has not confirmed nightly-report_manual_1774662000 yet; try again once it answers "
        "(`tepui cron suspend` stops new fires meanwhile)\nfield: id\n"))
    fake.core.submitted("nightly-report_manual_1774662000", fake.now)
    result = run(http, "rm", "nightly-report")
    assert (result.exit_code, result.output) == (0, (
        "schedule nightly-report removed\n"
        "still running in the batch framework: nightly-report_manual_1774662000 (`tepui jobs cancel JOB` stops one)\n"))
    assert [c[:2] for c in calls(fake)] == [("POST", "/schedules/health-probe/suspend"),
                                            ("POST", "/schedules/health-probe/resume"),
                                            ("POST", "/schedules/nightly-report/trigger"),
                                            ("DELETE", "/schedules/nightly-report"),
                                            ("DELETE", "/schedules/nightly-report")]


# --- errors and exit codes ----------------------------------------------------------------------

def test_an_unknown_schedule_exits_1_and_says_where_to_look(api: tuple[FakeCron, str]) -> None:
    fake, http = api
    for command in (["show", "nope"], ["next", "nope"], ["history", "nope"], ["suspend", "nope"], ["rm", "nope"]):
        result = run(http, *command)
        assert (result.exit_code, result.output) == (1, "error: no schedule 'nope'; `tepui cron list` shows them\n"
                                                        "field: id\n"), command


def test_no_cron_framework_exits_4_and_says_how_to_start_it(api: tuple[FakeCron, str]) -> None:
    fake, http = api
    fake.framework_running = False
    result = run(http, "list")
    assert (result.exit_code, result.output) == (4, (
        f"error: the cron framework is not running: the master at {http} knows no framework named 'cron'.\n"
        "hint: Start it with `tepui cron serve` (`tepui up` starts one with the cluster), then try again.\n"))


def test_no_master_exits_4(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate(monkeypatch, tmp_path)
    http = f"127.0.0.1:{closed_port()}"
    result = run(http, "list")
    assert result.exit_code == 4
    assert result.output.startswith(f"error: cannot reach the master's HTTP API at http://{http}: ")
    assert result.output.endswith("hint: Is a cluster running? Start one with `tepui up` (it starts the cron framework "
                                  "too), or give the master's address (--http HOST:PORT, CronClient(master=...), "
                                  "$TEPUI_MASTER_HTTP).\n")
