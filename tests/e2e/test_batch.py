"""The batch framework end to end (issue 17, "Correct under failure"): a real master, two real
agents (agent-1, agent-2, 2 CPUs each), a real `tepui batch` process reached through the
master's `/frameworks/batch/` proxy with the cluster's token — as `tepui jobs` reaches it.

Each test proves one scenario from the API (the job, its attempts) and, where it matters, from
the master's /state or from a log the tasks append to in a directory shared by both agents (so
"no index ran twice at once" is checked from outside the framework too). Every wait is a
condition with a timeout; no test asserts on elapsed time beyond generous bounds.

Order matters only for the last test: it SIGKILLs an agent, which the master then declares
gone (it never comes back under its id), so it runs last on the module's cluster.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.batch_harness import Batch, batch_cluster, overlaps, shared_dir, stage

pytestmark = pytest.mark.slow

FAST_BACKOFF = {"initial": "PT0.5S", "factor": 1.0, "max": "PT0.5S"}


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Batch]:
    root = tmp_path_factory.mktemp("batch")
    cluster = batch_cluster(root)
    with Batch(cluster, root).running() as framework:
        yield framework
    survivors = cluster.watch.survivors()
    assert not survivors, f"left running after teardown: {survivors}"


def _by_index(attempts: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    found: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for a in attempts:
        found[a["index"]].append(a)
    return found


def _no_live_tasks(batch: Batch, job_id: str) -> bool:
    return not batch.master_tasks(job_id, frozenset({"TASK_STAGING", "TASK_STARTING", "TASK_RUNNING",
                                                     "TASK_KILLING"}))


def test_word_count_dag_moves_outputs_between_stages(batch: Batch) -> None:
    # Map index i counts a chunk of (i + 1) * 10 words; 1.5 CPUs each on 2-CPU agents, so the
    # maps run one per agent at a time (a second each) and the reduce reads outputs from both.
    count = "seq $(( (TEPUI_TASK_INDEX + 1) * 10 )) | wc -l > out.txt && sleep 1"
    spec = {"name": "wc", "stages": [
        {**stage("map", count, array=4, outputs=["out.txt"]),
         "resources": {"cpus": 1.5, "mem": 16}},
        stage("reduce", "cat map/*/out.txt | awk '{s += $1} END {print s}' > total.txt && cat total.txt",
              depends_on=["map"], outputs=["total.txt"]),
        stage("report", 'echo "maps=$(ls map | wc -l) total=$(cat reduce/0/total.txt)"', depends_on=["map", "reduce"]),
    ]}
    batch.submit(spec, "wc-1")
    job = batch.wait_job("wc-1", 90)
    assert job["state"] == "SUCCEEDED", job
    assert job["tasks"] == {"total": 6, "succeeded": 6, "failed": 0, "running": 0, "pending": 0}, job["tasks"]
    assert [s["state"] for s in job["stages"]] == ["SUCCEEDED"] * 3, job["stages"]
    attempts = batch.attempts("wc-1")
    maps = [a for a in attempts if a["stage"] == "map"]
    assert sorted(a["index"] for a in maps) == [0, 1, 2, 3], maps
    assert {batch.agent_of(a) for a in maps} == {1, 2}, "the maps ran on both agents"
    (reduce,) = [a for a in attempts if a["stage"] == "reduce"]
    (report,) = [a for a in attempts if a["stage"] == "report"]
    assert batch.task_file(reduce["task_id"]).strip() == "100"  # 10 + 20 + 30 + 40
    assert batch.task_file(report["task_id"]).strip() == "maps=4 total=100"
    # The reduce started only after every map had succeeded (all_succeeded).
    assert reduce["launched_at"] >= max(a["finished_at"] for a in maps)


def test_framework_restart_mid_job_loses_and_duplicates_nothing(batch: Batch) -> None:
    log = shared_dir(batch.cluster, "restart") / "runs.log"
    command = (f'echo "start $TEPUI_TASK_INDEX $TEPUI_ATTEMPT" >> {log}; sleep 2; '
               f'echo "end $TEPUI_TASK_INDEX $TEPUI_ATTEMPT" >> {log}')
    batch.submit({"name": "restart", "stages": [stage("work", command, array=12, parallelism=4)]}, "restart-1")

    def mid_job() -> bool:
        tasks = batch.job("restart-1")["tasks"]
        return tasks["succeeded"] >= 2 and tasks["running"] >= 2

    batch.wait(mid_job, 60, "restart-1 half way: some tasks done, some running")
    framework_id = batch.framework_id()
    batch.kill()
    # The running tasks end while the framework is down: their updates wait for it at the agents.
    batch.wait(lambda: log.read_text().count("start ") == log.read_text().count("end "), 30,
               "the running tasks ended while the framework was down")
    batch.start()
    assert batch.framework_id() == framework_id, "the restarted framework failed over to its own id"
    # Again, at once: killed while it reconciles and launches the next tasks, restarted at once.
    batch.wait(lambda: batch.job("restart-1")["tasks"]["running"] >= 1, 30, "restart-1 running again")
    batch.kill()
    batch.start()
    job = batch.wait_job("restart-1", 90)
    assert job["state"] == "SUCCEEDED", job
    assert job["tasks"]["succeeded"] == 12 and job["tasks"]["failed"] == 0, job["tasks"]

    by_index = _by_index(batch.attempts("restart-1"))
    assert sorted(by_index) == list(range(12))
    for index, tries in by_index.items():
        succeeded = [a for a in tries if a["outcome"] == "succeeded"]
        assert len(succeeded) == 1 and succeeded[0]["state"] == "FINISHED", (index, tries)
        # Any other try was a launch the master never saw (a crash between the write-ahead
        # record and the launch), retried free: never a second run.
        assert all(a["outcome"] == "lost" and not a["spent"] for a in tries if a is not succeeded[0]), tries
        assert len(tries) <= 2, tries
        assert not overlaps([(a["launched_at"], a["finished_at"]) for a in tries]), tries
    assert sum(len(t) for t in by_index.values()) <= 12 + 4, "at most one in-flight try per slot was redone"

    # From outside: each index started once and ended once, as the try recorded as its success.
    lines = [line.split() for line in log.read_text().splitlines()]
    starts = Counter(int(i) for kind, i, _ in lines if kind == "start")
    ends = {int(i): int(a) for kind, i, a in lines if kind == "end"}
    assert starts == Counter(range(12)), f"an index ran twice or never: {sorted(starts.items())}"
    assert len([1 for kind, *_ in lines if kind == "end"]) == 12, lines
    for index, tries in by_index.items():
        (won,) = [a for a in tries if a["outcome"] == "succeeded"]
        assert ends[index] == won["attempt"], (index, ends[index], tries)
    assert _no_live_tasks(batch, "restart-1")
    # The history (sacct) keeps the same tries, with the job's name and user.
    status, body = batch.call("GET", "/history?state=FINISHED&limit=1000")
    assert status == 200, body
    kept = [(a["index"], a["attempt"], a["job_name"]) for a in body["attempts"] if a["job"] == "restart-1"]
    assert sorted(kept) == sorted((i, a["attempt"], "restart") for i, tries in by_index.items() for a in tries
                                  if a["state"] == "FINISHED"), kept


def test_task_timeout_kills_and_retries_then_fails(batch: Batch) -> None:
    spec = {"name": "slow", "stages": [stage("work", "sleep 60", timeout="PT2S",
                                             retries={"attempts": 2, "backoff": FAST_BACKOFF})]}
    batch.submit(spec, "timeout-1")
    job = batch.wait_job("timeout-1", 60)
    assert job["state"] == "FAILED", job
    assert job["stages"][0]["state"] == "FAILED" and job["stages"][0]["failed"] == 1, job["stages"]
    attempts = batch.attempts("timeout-1")
    assert [a["attempt"] for a in attempts] == [1, 2], attempts
    for a in attempts:
        assert (a["failure"], a["killed_by"], a["spent"], a["state"]) == ("timeout", "timeout", True, "KILLED"), a
        # Killed at its timeout, not when `sleep 60` ended (a generous bound).
        assert a["finished_at"] - a["launched_at"] < 30, a
    assert [a["outcome"] for a in attempts] == ["retry", "index_failed"], attempts
    assert attempts[1]["launched_at"] >= attempts[0]["finished_at"], "one live attempt per index"
    batch.wait(lambda: _no_live_tasks(batch, "timeout-1"), 20, "timeout-1's tasks gone from the master")


def test_job_deadline_kills_everything(batch: Batch) -> None:
    spec = {"name": "late", "deadline": "PT6S", "stages": [
        stage("work", "sleep 60", array=3), stage("after", "true", depends_on=["work"])]}
    batch.submit(spec, "deadline-1")

    def started() -> bool:
        job = batch.job("deadline-1")
        return job["tasks"]["running"] == 3 or job["state"] != "RUNNING"

    batch.wait(started, 30, "deadline-1's 3 tasks running")
    job = batch.wait_job("deadline-1", 60)
    assert job["state"] == "DEADLINE_EXCEEDED", job
    assert job["finished_at"] - job["submitted_at"] < 30, job
    batch.wait(lambda: _no_live_tasks(batch, "deadline-1"), 30, "no task of deadline-1 left running in /state")

    def all_ended() -> bool:
        return all(a["state"] in ("KILLED", "FAILED", "FINISHED", "LOST") for a in batch.attempts("deadline-1"))

    batch.wait(all_ended, 30, "every attempt of deadline-1 ended")
    attempts = batch.attempts("deadline-1")
    assert len(attempts) == 3 and {a["stage"] for a in attempts} == {"work"}, attempts
    for a in attempts:
        assert (a["killed_by"], a["outcome"], a["state"]) == ("deadline", "deadline", "KILLED"), a
    assert batch.job("deadline-1")["state"] == "DEADLINE_EXCEEDED"


def test_gang_launches_all_or_nothing(batch: Batch) -> None:
    # 3 x 1.5 CPUs: each agent (2 CPUs) holds one, the cluster never all three at once.
    big = {"name": "biggang", "stages": [{**stage("ranks", "sleep 1", array=3, gang=True),
                                          "resources": {"cpus": 1.5, "mem": 16}}]}
    batch.submit(big, "gang-big")
    found: dict[str, Any] = {}

    def explained() -> bool:
        found.update(batch.why("gang-big"))
        return found["offers_seen"] >= 1 and any(s["reason"] == "gang cannot be placed whole" for s in found["stages"])

    batch.wait(explained, 30, "why gang-big waits: its gang cannot be placed whole")
    time.sleep(1.0)  # a few more offer rounds (every 0.2 s): still nothing may launch
    job = batch.job("gang-big")
    assert job["state"] == "PENDING" and job["tasks"]["pending"] == 3, job
    assert batch.attempts("gang-big") == [] and batch.master_tasks("gang-big") == []
    assert "gang" in batch.why("gang-big")["summary"], found
    status, body = batch.call("POST", "/jobs/gang-big/cancel")
    assert status == 200 and body["job"]["state"] == "CANCELLED", body

    # A gang that fits launches whole; index 0 fails its first try, so the siblings are killed
    # and the whole gang runs again as try 2 (retries.attempts 2).
    command = ('if [ "$TEPUI_ATTEMPT" = 1 ]; then if [ "$TEPUI_TASK_INDEX" = 0 ]; then sleep 1; exit 1; fi; '
               'sleep 60; fi; sleep 1')
    spec = {"name": "gang", "stages": [stage("ranks", command, array=3, gang=True,
                                            retries={"attempts": 2, "backoff": FAST_BACKOFF})]}
    batch.submit(spec, "gang-1")
    job = batch.wait_job("gang-1", 60)
    assert job["state"] == "SUCCEEDED", job
    attempts = batch.attempts("gang-1")
    first = sorted((a for a in attempts if a["attempt"] == 1), key=lambda a: a["index"])
    second = sorted((a for a in attempts if a["attempt"] == 2), key=lambda a: a["index"])
    assert len(attempts) == 6 and [a["index"] for a in first] == [0, 1, 2] == [a["index"] for a in second], attempts
    for tries in (first, second):
        launched = [a["launched_at"] for a in tries]
        assert max(launched) - min(launched) < 1.0, f"the gang launched together: {tries}"
    assert (first[0]["exit_code"], first[0]["outcome"], first[0]["spent"]) == (1, "gang_failed", True), first[0]
    for sibling in first[1:]:
        assert (sibling["killed_by"], sibling["outcome"], sibling["state"]) == ("gang", "gang", "KILLED"), sibling
    assert min(a["launched_at"] for a in second) >= max(a["finished_at"] for a in first), "no member ran twice at once"
    # A gang member's end is "finished": the success is the whole gang's (the stage's count).
    assert [(a["state"], a["outcome"]) for a in second] == [("FINISHED", "finished")] * 3, second
    assert job["stages"][0]["succeeded"] == 3, job["stages"]
    batch.wait(lambda: _no_live_tasks(batch, "gang-1"), 20, "gang-1's tasks gone from the master")


def test_agent_sigkill_mid_job_retries_elsewhere_without_spending_an_attempt(batch: Batch) -> None:
    # Runs last: the killed agent is declared gone and stays away.
    log = shared_dir(batch.cluster, "agent-loss") / "runs.log"
    command = f'echo "start $TEPUI_TASK_INDEX $TEPUI_ATTEMPT $HOST" >> {log}; sleep 6'
    spec = {"name": "loss", "stages": [stage("work", command, array=4, retries={"attempts": 1})]}
    batch.submit(spec, "loss-1")

    def running() -> bool:
        live = batch.attempts("loss-1", state="RUNNING")
        return len(live) == 4 and all(a.get("hostname") for a in live)

    batch.wait(running, 30, "loss-1's 4 tasks running")
    live = batch.attempts("loss-1", state="RUNNING")
    per_agent = Counter(batch.agent_of(a) for a in live)
    victim = max(per_agent, key=lambda i: per_agent[i])
    survivor = 2 if victim == 1 else 1
    lost = {a["index"] for a in live if batch.agent_of(a) == victim}
    batch.kill_agent(victim)

    job = batch.wait_job("loss-1", 90)
    assert job["state"] == "SUCCEEDED", job
    by_index = _by_index(batch.attempts("loss-1"))
    for index, tries in by_index.items():
        if index not in lost:
            assert [a["outcome"] for a in tries] == ["succeeded"], tries
            continue
        assert len(tries) == 2, tries
        gone, retry = tries
        assert (gone["state"], gone["outcome"], gone["spent"], gone["failure"]) == ("LOST", "lost", False,
                                                                                    "agent_lost"), gone
        assert batch.agent_of(gone) == victim and batch.agent_of(retry) == survivor, tries
        assert (retry["state"], retry["outcome"]) == ("FINISHED", "succeeded"), retry
        assert retry["launched_at"] >= gone["finished_at"], tries
    starts = [line.split() for line in log.read_text().splitlines()]
    assert sorted((int(i), int(a)) for _, i, a, _ in starts) == sorted(
        (index, a["attempt"]) for index, tries in by_index.items() for a in tries), starts
    state = batch.cluster.state()
    assert state["activated_slaves"] == 1, state["activated_slaves"]
    assert _no_live_tasks(batch, "loss-1")
