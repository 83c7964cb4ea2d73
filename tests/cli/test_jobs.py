"""``tepui jobs`` against a fake of the batch API on loopback (tests/frameworks/batch/
fake_batch_api.py, the contract of docs/batch.md behind the master's ``/frameworks/batch``
prefix): the requests each command sends, the tables and the tree it prints, ``submit --wait``'s
exit codes, ``logs`` finding the latest attempt, and what every error tells the user to do."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from tepui.cli.jobs_render import clock
from tepui.cli.main import cli
from tests.cli.test_apps import assert_aligned, table_rows
from tests.frameworks.batch.fake_batch_api import PREFIX, T0, FakeBatch, attempt, closed_port, isolate, job, serve, stage

WC = "wordcount-0123456789"
SPEC = "name: wordcount\nstages:\n  - {name: map, command: 'wc -w', array: 8}\n  - {name: reduce, depends_on: [map]}\n"


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[FakeBatch, str]]:
    isolate(monkeypatch, tmp_path)
    monkeypatch.setattr("tepui.frameworks.batch.client.POLL_INTERVAL", 0.01)
    fake = FakeBatch()
    with serve(fake) as url:
        yield fake, url


def run(http: str, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, ["jobs", *args, "--http", http], input=input)


def calls(fake: FakeBatch) -> list[tuple[str, str]]:
    return [(r["method"], r["path"].removeprefix(PREFIX)) for r in fake.requests]


def wordcount(state: str, map_counts: dict[str, int], reduce_state: str = "WAITING",
              reduce_counts: dict[str, int] | None = None, **fields: Any) -> dict[str, Any]:
    return job(WC, state, [stage("map", 8, "ACTIVE" if state in ("RUNNING", "PENDING") else state, **map_counts),
                           stage("reduce", 1, reduce_state, ["map"], **(reduce_counts or {}))], **fields)


def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "wordcount.yaml"
    path.write_text(SPEC)
    return path


# --- submit -------------------------------------------------------------------------------------

def test_submit_a_file_prints_the_job_and_how_to_follow_it(api: tuple[FakeBatch, str], tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    fake, http = api
    monkeypatch.setenv("TEPUI_HTTP_TOKEN", "jobs-token-0123456789")
    result = run(http, "submit", str(spec_file(tmp_path)), "--id", "wc-7")
    assert result.exit_code == 0, result.output
    assert result.output == ("job wc-7 submitted: 9 task(s) in 2 stage(s), queue default, user alice\n"
                             "look at it with `tepui jobs show wc-7`, or wait for its end with `tepui jobs wait wc-7`."
                             "\n")
    post = fake.requests[0]
    assert (post["method"], post["path"], post["query"], post["content_type"], post["body"]) == \
        ("POST", f"{PREFIX}/jobs", {"id": "wc-7"}, "application/yaml", SPEC.encode())
    assert (post["headers"]["authorization"], post["headers"]["x-tepui-user"]) == \
        ("Bearer jobs-token-0123456789", "alice")
    assert len(fake.requests) == 1


def test_submit_from_stdin(api: tuple[FakeBatch, str]) -> None:
    fake, http = api
    result = run(http, "submit", "-", input=json.dumps({"name": "one", "stages": [{"name": "main"}]}))
    assert result.exit_code == 0, result.output
    assert result.output.startswith("job one-0123456789 submitted: 1 task(s) in 1 stage(s)")
    assert fake.requests[0]["content_type"] == "application/json"
    result = run(http, "submit", "-", input="  \n")
    assert (result.exit_code, result.output) == (1, "error: stdin is empty.\nhint: Pipe a job spec in, or pass a "
                                                    "FILE.\n")


@pytest.mark.parametrize(("final", "code"), [("SUCCEEDED", 0), ("FAILED", 1), ("CANCELLED", 2),
                                             ("DEADLINE_EXCEEDED", 3)])
def test_submit_wait_exits_with_the_jobs_code(api: tuple[FakeBatch, str], tmp_path: Path, final: str,
                                              code: int) -> None:
    fake, http = api
    ended = ({"succeeded": 8}, "SUCCEEDED", {"succeeded": 1}) if final == "SUCCEEDED" else \
        ({"succeeded": 7, "failed": 1}, "UPSTREAM_FAILED", {"skipped": 1})
    fake.updates[WC] = [wordcount("RUNNING", {"succeeded": 4, "running": 4}),
                        wordcount(final, ended[0], ended[1], ended[2],
                                  reason="" if final == "SUCCEEDED" else f"the job ended {final}")]
    fake.attempts[WC] = [attempt(WC, "map", 3, 1, "FAILED", exit_code=2, outcome="retry"),
                         attempt(WC, "map", 3, 2, "FAILED", exit_code=2, failure=None, outcome="index_failed")]
    result = run(http, "submit", str(spec_file(tmp_path)), "--wait")
    assert result.exit_code == code, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"job {WC} submitted: 9 task(s) in 2 stage(s), queue default, user alice"
    bars = [line for line in lines if line.startswith(("map ", "reduce "))]
    assert [re.sub(r"━+", "BAR", line.rsplit(" ", 1)[0]).split() for line in bars[-2:]] == (
        [["map", "BAR", "8/8", "succeeded"], ["reduce", "BAR", "1/1", "succeeded"]] if final == "SUCCEEDED" else
        [["map", "BAR", "8/8", *f"{final.lower().replace('_', ' ')}:".split(), "1", "failed"],
         ["reduce", "BAR", "1/1", "upstream", "failed:", "1", "skipped"]])
    took = "00:01:05"
    if final == "SUCCEEDED":
        assert lines[-1] == f"✓ job {WC} SUCCEEDED: 9/9 tasks in {took}"
        assert calls(fake) == [("POST", "/jobs"), ("GET", "/events"), ("GET", f"/jobs/{WC}")]
        return
    assert f"✗ job {WC} {final}: the job ended {final} (7/9 tasks succeeded, 1 failed, in {took})" in lines
    if final == "FAILED":
        assert f"first failure: map[3] attempt 2 exit code 2; its stderr: `tepui jobs logs {WC} --stage map " \
               "--index 3 --stderr`" in lines
        assert lines[-1] == f"`tepui jobs show {WC}` shows each stage; `tepui jobs retry {WC}` re-runs the failed " \
                            "indices only."
        assert calls(fake)[-1] == ("GET", f"/jobs/{WC}/attempts")
    elif final == "DEADLINE_EXCEEDED":
        assert lines[-1].endswith(f"`tepui jobs retry {WC}` re-runs the failed indices only.")
    else:
        assert lines[-1].endswith("`tepui jobs history --since 1d` lists every attempt.")


def test_submit_wait_follows_by_polling_when_the_stream_breaks(api: tuple[FakeBatch, str], tmp_path: Path) -> None:
    fake, http = api
    fake.break_after = 1
    fake.updates[WC] = [wordcount("RUNNING", {"succeeded": 2, "running": 6}),
                        wordcount("RUNNING", {"succeeded": 8}, "ACTIVE", {"running": 1}),
                        wordcount("SUCCEEDED", {"succeeded": 8}, "SUCCEEDED", {"succeeded": 1})]
    result = run(http, "submit", str(spec_file(tmp_path)), "--wait")
    assert result.exit_code == 0, result.output
    assert calls(fake) == [("POST", "/jobs"), ("GET", "/events")] + [("GET", f"/jobs/{WC}")] * 3


def test_wait_follows_a_job_submitted_earlier(api: tuple[FakeBatch, str]) -> None:
    fake, http = api
    fake.jobs[WC] = wordcount("RUNNING", {"succeeded": 4, "running": 4})
    fake.updates[WC] = [wordcount("CANCELLED", {"succeeded": 4, "skipped": 4}, "UPSTREAM_FAILED", {"skipped": 1},
                                  reason="cancelled by alice")]
    result = run(http, "wait", WC)
    assert result.exit_code == 2, result.output
    assert f"✗ job {WC} CANCELLED: cancelled by alice (4/9 tasks succeeded, 0 failed, in 00:01:05)" in result.output
    assert calls(fake) == [("GET", f"/jobs/{WC}"), ("GET", "/events"), ("GET", f"/jobs/{WC}")]
    result = run(http, "wait", "nope")
    assert (result.exit_code, result.output) == (1, "error: no job nope: `tepui jobs list` shows the jobs kept\n")


def test_submit_wait_exits_4_when_the_api_cannot_be_reached(tmp_path: Path) -> None:
    port = closed_port()
    result = run(f"127.0.0.1:{port}", "submit", str(spec_file(tmp_path)), "--wait")
    assert result.exit_code == 4
    assert result.output.startswith(f"error: cannot reach the master's HTTP API at http://127.0.0.1:{port}: ")
    assert "hint: Is a cluster running? Start one with `tepui up` (it starts the batch framework too)" in result.output


def test_no_batch_framework_exits_4_and_says_how_to_start_it(api: tuple[FakeBatch, str], tmp_path: Path) -> None:
    fake, http = api
    fake.framework_running = False
    for args in (("submit", str(spec_file(tmp_path)), "--wait"), ("list",)):
        result = run(http, *args)
        assert result.exit_code == 4
        assert result.output == (f"error: the batch framework is not running: the master at {http} knows no "
                                 "framework named 'batch'.\nhint: Start it with `tepui batch` (`tepui up` starts one "
                                 "with the cluster), then try again.\n")


def test_an_invalid_spec_exits_1_naming_the_field(api: tuple[FakeBatch, str]) -> None:
    _fake, http = api
    result = run(http, "submit", "-", input="name: bad\nstages: [{name: map, array: 0}]\n")
    assert result.exit_code == 1
    assert result.output == ("error: stages[0].array: must be between 1 and 100000, got 0\nfield: stages[0].array\n"
                             "hint: Fix that field of the spec (docs/batch.md, 'Job spec') and submit again.\n")


def test_an_unreadable_file_says_what_to_do(api: tuple[FakeBatch, str], tmp_path: Path) -> None:
    fake, http = api
    result = run(http, "submit", str(tmp_path / "missing.yaml"))
    assert result.exit_code == 1 and fake.requests == []
    assert result.output.startswith(f"error: cannot read {tmp_path / 'missing.yaml'}: No such file or directory.")
    assert "hint: Check the path" in result.output


# --- list, show, history, why ---------------------------------------------------------------------

def test_list_sends_the_filters_and_aligns_the_table(api: tuple[FakeBatch, str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    fake, http = api
    fake.jobs = {WC: wordcount("RUNNING", {"succeeded": 4, "running": 3, "queued": 1}),
                 "array-big-ffffffffff": job("array-big-ffffffffff", "FAILED",
                                             [stage("a", 1000, "FAILED", succeeded=990, failed=10)],
                                             submitted_at=T0 + 60, user="bob", queue="prod", priority=-5,
                                             reason="stage a failed")}
    fake.total = 12
    monkeypatch.setattr("tepui.cli.jobs.time.time", lambda: T0 + 7200)
    result = run(http, "list", "--user", "bob", "--queue", "prod", "--state", "failed,running", "--state",
                 "SUSPENDED", "--since", "1h", "--until", "2026-05-28T20:26:40Z", "--limit", "2")
    assert result.exit_code == 0, result.output
    assert fake.requests[0]["query"] == {"user": "bob", "queue": "prod", "state": "FAILED,RUNNING,SUSPENDED",
                                         "since": f"{T0 + 3600:.3f}", "until": f"{T0:.3f}", "limit": "2",
                                         "offset": "0"}
    assert_aligned(result.output)
    rows = table_rows(result.output)
    assert rows[0] == ["JOB", "USER", "QUEUE", "PRI", "STATE", "DONE", "RUNNING", "FAILED", "SUBMITTED", "ELAPSED",
                       "REASON"]
    assert rows[1][:8] == ["array-big-ffffffffff", "bob", "prod", "-5", "FAILED", "990/1000", "0", "10"]
    assert rows[1][9:] == ["00:01:03", "stage a failed"]
    assert rows[2][:8] == [WC, "alice", "default", "0", "RUNNING", "4/9", "3", "0"]
    assert result.output.endswith("2 of 12 jobs shown; narrow with --since/--state/--user, or raise --limit.\n")


def test_list_json_and_nothing_to_list(api: tuple[FakeBatch, str]) -> None:
    fake, http = api
    result = run(http, "list")
    assert (result.exit_code, result.output) == (0, "no jobs yet; submit one with `tepui jobs submit FILE`\n")
    result = run(http, "list", "--user", "nobody")
    assert result.output == "no jobs match those filters\n"
    fake.jobs = {WC: wordcount("PENDING", {})}
    assert json.loads(run(http, "list", "--json").output) == {"jobs": [fake.jobs[WC]], "total": 1}


def test_a_bad_time_filter_is_a_usage_error_showing_both_forms(api: tuple[FakeBatch, str]) -> None:
    fake, http = api
    result = run(http, "history", "--since", "3600")
    assert result.exit_code == 2 and fake.requests == []
    assert "'3600' is a bare number: write a duration with its unit (3600s, 3600m, 3600h, 3600d) or an ISO 8601 " \
           "date" in result.output
    help_text = run(http, "list", "--help").output
    assert "ISO 8601 date or datetime" in help_text and "(30m, 1h, 2d, 1w)" in help_text


def test_show_prints_the_fields_and_the_dag_as_a_tree(api: tuple[FakeBatch, str]) -> None:
    fake, http = api
    fake.jobs[WC] = job(WC, "RUNNING", [
        stage("map", 8, "SUCCEEDED", succeeded=8),
        stage("reduce", 1, "ACTIVE", ["map"], running=1),
        stage("lint", 2, "FAILED", ["map"], succeeded=1, failed=1),
        stage("report", 1, "WAITING", [{"stage": "reduce", "condition": "any_finished"},
                                       {"stage": "lint", "condition": "any_finished"}])],
        spec={"deadline": "PT2H"}, queue="analytics", priority=10)
    result = run(http, "show", WC)
    assert result.exit_code == 0, result.output
    assert fake.requests[0]["path"] == f"{PREFIX}/jobs/{WC}"
    lines = result.output.splitlines()
    assert lines[:4] == [f"job        {WC}", "state      RUNNING", "user       alice",
                         "queue      analytics, priority 10"]
    assert lines[4].startswith(f"submitted  {clock(T0)} (")
    assert lines[5] == f"started    {clock(T0 + 2)}"
    assert lines[7:9] == ["tasks      12 in all: 9 succeeded, 1 running, 1 failed, 1 pending", "deadline   PT2H"]
    assert lines[9:] == [
        f"{WC}  RUNNING  9/12 tasks succeeded",
        "└── map  SUCCEEDED  8/8 succeeded",
        "    ├── reduce  ACTIVE  0/1 succeeded, running 1",
        "    │   └── report (any_finished)  WAITING  0/1 succeeded, pending 1",
        "    └── lint  FAILED  1/2 succeeded, failed 1",
        "        └── → report (any_finished), shown under reduce",
    ]
    assert json.loads(run(http, "show", WC, "--json").output)["job"]["spec"] == {"deadline": "PT2H"}


def test_an_unknown_job_says_how_to_find_one(api: tuple[FakeBatch, str]) -> None:
    _fake, http = api
    result = run(http, "show", "nope")
    assert (result.exit_code, result.output) == (1, "error: no job nope: `tepui jobs list` shows the jobs kept\n")


def test_history_is_an_aligned_sacct_table(api: tuple[FakeBatch, str]) -> None:
    fake, http = api
    fake.history = [
        {**attempt(WC, "map", 0, 1), "user": "alice", "queue": "default", "job_name": "wordcount"},
        {**attempt(WC, "map", 1, 1, "FAILED", exit_code=2, outcome="retry"), "user": "alice"},
        {**attempt("big-ffffffffff", "arr", 17, 3, "KILLED", failure="timeout", killed_by="timeout",
                   outcome="index_failed", hostname="node-10.example.com", running_at=None,
                   finished_at=T0 + 90061)},
        {**attempt("big-ffffffffff", "arr", 18, 1, "LOST", task_reason="REASON_AGENT_REMOVED", failure="agent_lost",
                   outcome="lost", hostname=None, agent_id="a-9")},
        {**attempt("big-ffffffffff", "arr", 19, 1, "LAUNCHED", running_at=None)},
    ]
    result = run(http, "history", "--user", "alice", "--queue", "default", "--state", "FAILED,KILLED", "--stage",
                 "map", "--since", "2026-05-28T20:26:40Z", "--limit", "5")
    assert result.exit_code == 0, result.output
    assert fake.requests[0]["path"] == f"{PREFIX}/history"
    assert fake.requests[0]["query"] == {"user": "alice", "queue": "default", "state": "FAILED,KILLED",
                                         "stage": "map", "since": f"{T0:.3f}", "limit": "5"}
    assert_aligned(result.output)
    rows = table_rows(result.output)
    assert rows[0] == ["JOB", "STAGE", "INDEX", "ATTEMPT", "STATE", "EXIT", "HOST", "START", "END", "ELAPSED",
                       "REASON"]
    start, end = clock(T0 + 3), clock(T0 + 13)
    assert rows[1] == [WC, "map", "0", "1", "FINISHED", "0", "node-1", start, end, "00:00:10", "-"]
    assert rows[2] == [WC, "map", "1", "1", "FAILED", "2", "node-1", start, end, "00:00:10", "retry"]
    assert rows[3] == ["big-ffffffffff", "arr", "17", "3", "KILLED", "-", "node-10.example.com", clock(T0 + 2),
                       clock(T0 + 90061), "1-01:00:59", "timeout (index_failed)"]
    assert rows[4] == ["big-ffffffffff", "arr", "18", "1", "LOST", "-", "a-9", start, end, "00:00:10",
                       "agent_lost (lost)"]
    assert rows[5][:8] == ["big-ffffffffff", "arr", "19", "1", "LAUNCHED", "-", "node-1", clock(T0 + 2)]
    assert rows[5][8] == "-" and re.fullmatch(r"\d+-\d\d:\d\d:\d\d", rows[5][9])  # still running: up to now
    assert result.output.endswith("the first 5 attempts shown; narrow with --since/--state/--user, or raise "
                                  "--limit.\n")


def test_why_prints_position_reasons_refusals_and_the_advice(api: tuple[FakeBatch, str]) -> None:
    fake, http = api
    fake.jobs[WC] = wordcount("PENDING", {})
    fake.why = {"queue": "analytics", "position": 2, "waiting_jobs": 5, "ahead_in_higher_queues": 3, "pending": 9,
                "stages": [{"stage": "map", "waiting": 8, "reason": "no offer fits its shape", "detail": ""}],
                "offers_seen": 3, "refusals": {"too small: missing cpus:8": 2, "rack=r2 fails rack IS r1": 1},
                "recent": [{"stage": "map", "offer_id": "o-1", "agent_id": "a-1", "hostname": "node-1",
                            "reason": "too small: missing cpus:8"},
                           {"stage": "map", "offer_id": "o-2", "agent_id": "a-2", "hostname": None,
                            "reason": "rack=r2 fails rack IS r1"}],
                "fits_nowhere": [{"stage": "map", "resources": "cpus:16;mem:1024", "rules": ["rack IS r1"],
                                  "largest_offer": "cpus:8;mem:4096", "missing_from_largest": "cpus:8"}],
                "summary": "Stage map asks for cpus:16;mem:1024, which fits none of the 3 offer(s) seen (the largest "
                           "lacks cpus:8): lower its resources or relax its constraints, or add agents that can "
                           "hold it."}
    result = run(http, "why", WC)
    assert result.exit_code == 0, result.output
    assert fake.requests[0]["path"] == f"{PREFIX}/jobs/{WC}/why"
    assert_aligned(result.output)
    lines = result.output.splitlines()
    assert lines[0] == (f"{WC}: 9 task(s) pending; number 2 in queue analytics (5 job(s) waiting there, 3 ahead in "
                        "higher queues); 3 offer(s) in the last round")
    rows = table_rows(result.output)
    assert rows == [["STAGE", "WAITING", "REASON", "DETAIL"], ["map", "8", "no offer fits its shape", "-"]]
    assert "│ too small: missing cpus:8 │     2 │" in result.output
    assert "│ map   │ a-2    │ o-2   │ rack=r2 fails rack IS r1  │" in result.output
    assert lines[-2] == ("stage map asks for cpus:16;mem:1024 with rack IS r1: it fits no offer; the largest "
                         "(cpus:8;mem:4096) lacks cpus:8")
    assert lines[-1] == fake.why["summary"]


# --- logs -----------------------------------------------------------------------------------------

def test_logs_reads_the_latest_attempt_of_the_task(api: tuple[FakeBatch, str]) -> None:
    fake, http = api
    fake.jobs[WC] = wordcount("RUNNING", {"succeeded": 8})
    fake.attempts[WC] = [attempt(WC, "map", 3, 1, "FAILED"), attempt(WC, "map", 3, 2),
                         attempt(WC, "map", 4, 1)]
    fake.files = {f"{WC}.map.3.2": {"stdout": "17 words\n", "stderr": "warning: chunk 3 is short\n"},
                  f"{WC}.map.3.1": {"stdout": "the first try\n"}}
    result = run(http, "logs", WC, "--stage", "map", "--index", "3")
    assert (result.exit_code, result.output) == (0, "17 words\n")
    attempts_call, health, read = fake.requests
    assert (attempts_call["path"], attempts_call["query"]) == (f"{PREFIX}/jobs/{WC}/attempts",
                                                               {"stage": "map", "index": "3"})
    assert health["path"] == f"{PREFIX}/health"
    assert read["path"] == f"/tasks/{WC}.map.3.2/files/read"
    assert read["query"] == {"path": "stdout", "offset": "0", "length": str(1024 * 1024), "framework_id": "F-batch"}
    result = run(http, "logs", WC, "--stage", "map", "--index", "3", "--stderr")
    assert result.output == "warning: chunk 3 is short\n"


def test_logs_follow_reads_until_the_task_ends(api: tuple[FakeBatch, str]) -> None:
    fake, http = api
    fake.jobs[WC] = wordcount("RUNNING", {"running": 1})
    fake.attempts[WC] = [attempt(WC, "map", 0, 1, "RUNNING")]
    fake.files = {f"{WC}.map.0.1": {"stdout": "line 1\n"}}
    fake.task_states = {f"{WC}.map.0.1": "TASK_FINISHED"}
    result = run(http, "logs", WC, "--stage", "map", "--index", "0", "-f")
    assert (result.exit_code, result.output) == (0, "line 1\n")
    assert [r["path"] for r in fake.requests][-2:] == ["/state", f"/tasks/{WC}.map.0.1/files/read"]


def test_logs_asks_which_task_when_several_match(api: tuple[FakeBatch, str]) -> None:
    fake, http = api
    fake.jobs[WC] = wordcount("RUNNING", {"succeeded": 8})
    fake.attempts[WC] = [attempt(WC, "map", i, 1) for i in range(6)]
    result = run(http, "logs", WC)
    assert result.exit_code == 1
    assert result.output == (f"error: job {WC} has 6 tasks with attempts; say which.\nhint: Pass --stage map "
                             "--index 0, --stage map --index 1, --stage map --index 2, --stage map --index 3, ....\n")


def test_logs_of_a_task_not_started_says_why_and_how_to_wait(api: tuple[FakeBatch, str]) -> None:
    fake, http = api
    fake.jobs[WC] = wordcount("PENDING", {})
    result = run(http, "logs", WC, "--stage", "reduce")
    assert result.exit_code == 1
    assert result.output == (f"error: job {WC} has no attempt for stage reduce yet.\nhint: `tepui jobs show {WC}` "
                             f"shows its stages, `tepui jobs why {WC}` why it waits; -f waits for the task to "
                             "start.\n")
    fake.jobs[WC] = wordcount("CANCELLED", {})
    result = run(http, "logs", WC, "--stage", "reduce", "--index", "0", "-f")
    assert result.exit_code == 1
    assert result.output.startswith(f"error: job {WC} ended CANCELLED without running stage reduce index 0.")


# --- control --------------------------------------------------------------------------------------

def test_cancel_suspend_resume_retry(api: tuple[FakeBatch, str]) -> None:
    fake, http = api
    fake.jobs[WC] = wordcount("RUNNING", {"running": 8})
    expected = [("suspend", "suspended: its running tasks are killed (no attempt spent), nothing launches until "
                            "`tepui jobs resume` (now SUSPENDED)"),
                ("resume", "resumed: its remaining tasks launch again (now PENDING)"),
                ("cancel", "cancelled: its running tasks are killed, nothing else of it runs (now CANCELLED)")]
    for action, said in expected:
        result = run(http, action, WC)
        assert (result.exit_code, result.output) == (0, f"✓ job {WC} {said}\n")
    assert [(r["method"], r["path"]) for r in fake.requests] == [
        ("POST", f"{PREFIX}/jobs/{WC}/{action}") for action, _ in expected]
    result = run(http, "retry", WC)
    assert result.exit_code == 1
    assert result.output == (f"error: job {WC} has nothing to retry: it is CANCELLED; only a FAILED or "
                             "DEADLINE_EXCEEDED job has failed indices\n")
    fake.jobs[WC]["state"] = "FAILED"
    result = run(http, "retry", WC)
    assert result.output == (f"✓ job {WC} retried: its failed and skipped indices run again, succeeded ones are "
                             "kept (now PENDING)\n")


def test_rm_forgets_an_ended_job_and_refuses_a_running_one(api: tuple[FakeBatch, str]) -> None:
    fake, http = api
    fake.jobs[WC] = wordcount("RUNNING", {"running": 8})
    result = run(http, "rm", WC)
    assert (result.exit_code, result.output) == (1, f"error: job {WC} is RUNNING; `tepui jobs cancel` it first\n")
    fake.jobs[WC]["state"] = "SUCCEEDED"
    result = run(http, "rm", WC)
    assert (result.exit_code, result.output) == (0, f"✓ job {WC} forgotten\n")
    assert WC not in fake.jobs and fake.requests[-1]["method"] == "DELETE"
