"""The chaos benchmark's accounting (``bench/chaos.py``): from the framework's durable record,
the tasks' own start marks and the proxies' counts, what was launched, started, finished,
lost or duplicated, and how fast failures were detected. The definitions are in chaos.py's
docstring; this module prints the summary table and returns the counts (``Tally``) that
``bench/chaos_seeds.py`` puts in its one-row-per-seed table."""

from __future__ import annotations

import collections
import statistics
from dataclasses import dataclass, field
from typing import Any

PING_INTERVAL, MAX_PING_TIMEOUTS = 0.5, 6  # the bench's master: silent for 3 s → unreachable
FAULT_KINDS = ("agent_kill", "agent_stop", "agent_partition", "master_kill", "framework_partition")
# States that, after TASK_FINISHED, contradict it (UNKNOWN does not: a master that failed over
# has no record of tasks that ended before, and says so).
DENIALS = ("TASK_LOST", "TASK_DROPPED", "TASK_GONE", "TASK_UNREACHABLE", "TASK_FAILED", "TASK_KILLED", "TASK_ERROR")
TERMINAL = {"TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_ERROR", "TASK_LOST", "TASK_DROPPED", "TASK_GONE",
            "TASK_GONE_BY_OPERATOR"}


@dataclass
class Tally:
    """One run's counts, as printed in its summary (``problems``: its first detail lines)."""

    tasks: int = 0
    launched: int = 0
    started: int = 0
    launched_twice: int = 0
    finished_twice: int = 0
    lost: int = 0
    actions: int = 0  # chaos actions taken (kills, stops, partitions)
    dropped: int = 0  # messages the proxies dropped at random (partitions not included)
    duplicated: int = 0
    wrong_reports: int = 0  # lost-type reports for tasks that ran, and denials after TASK_FINISHED
    ha_problems: int = 0  # --masters N: a master not fenced, something left behind (chaos_ha.py)
    problems: list[str] = field(default_factory=list)

    @property
    def lost_or_duplicated(self) -> int:
        return self.lost + self.launched_twice + self.finished_twice


# --- the analysis -----------------------------------------------------------------------------


def analyse(run: Any, proxy_stats: list[dict[str, Any]]) -> Tally:
    run.read_records()
    records = run.records
    launches = {r["task_id"]: r for r in records if r["event"] == "launch"}
    statuses: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for r in records:
        if r["event"] == "status":
            statuses[r["task_id"]].append(r)
    relaunches = [r for r in records if r["event"] == "relaunch"]
    starts_path = run.root / "starts" / "starts.log"
    starts = collections.Counter(line.strip() for line in starts_path.read_text().splitlines() if line.strip()) \
        if starts_path.exists() else collections.Counter()

    def final_state(task_id: str) -> str | None:
        seen = statuses.get(task_id, [])
        if any(s["state"] == "TASK_FINISHED" for s in seen):
            return "TASK_FINISHED"
        return seen[-1]["state"] if seen else None

    finals = {task_id: final_state(task_id) for task_id in launches}
    items: dict[int, list[str]] = collections.defaultdict(list)
    for task_id, r in launches.items():
        items[r["item"]].append(task_id)
    lost_items: list[tuple[int, str]] = []
    finished_twice: list[int] = []
    for item in range(run.args.tasks):
        attempts = items.get(item, [])
        done = [t for t in attempts if finals[t] == "TASK_FINISHED"]
        # Told: a terminal state, or the master's reconciliation answer TASK_UNKNOWN ("I have no
        # record of it") for a task that indeed never started (its launch was lost).
        open_ = [t for t in attempts if finals[t] not in TERMINAL
                 and not (finals[t] == "TASK_UNKNOWN" and not starts.get(t))]
        if not attempts:
            lost_items.append((item, "never launched"))
        elif not done:
            lost_items.append((item, "no attempt finished: " + ", ".join(f"{t} {finals[t]}" for t in attempts)))
        elif open_:
            lost_items.append((item, "fate never told: " + ", ".join(f"{t} {finals[t]}" for t in open_)))
        if len(done) > 1:
            finished_twice.append(item)
    twice = sorted(t for t, n in starts.items() if n > 1)
    started = sum(1 for t in launches if starts.get(t))
    unknown_starts = sorted(t for t in starts if t not in launches)
    finished_attempts = sum(1 for s in finals.values() if s == "TASK_FINISHED")
    finished_no_start = sorted(t for t, s in finals.items() if s == "TASK_FINISHED" and not starts.get(t))
    # Reports that turned out wrong: a lost-type report for a task that later ran.
    misreported: list[str] = []
    for task_id, seen in statuses.items():
        for k, s in enumerate(seen):
            if s["state"] in ("TASK_LOST", "TASK_DROPPED", "TASK_GONE", "TASK_UNKNOWN") and any(
                    later["state"] in ("TASK_RUNNING", "TASK_FINISHED") for later in seen[k + 1:]):
                misreported.append(f"{task_id}: {s['state']} ({s['reason']}, {s['source']}) then "
                                   + "/".join(dict.fromkeys(x["state"] for x in seen[k + 1:])))
                break
    after_finish = finished_then_denied(statuses)

    # --- detection times
    hostname_to_id = {r["hostname"]: r["agent_id"] for r in launches.values()}
    hostname_to_id.update({f"agent-{i}": a for i, a in run.agent_ids.items()})
    detections: list[str] = []
    detection_times: list[float] = []
    for fault in run.faults:
        if fault.agent_index is None:
            continue
        agent_id = hostname_to_id.get(f"agent-{fault.agent_index}")
        end = (fault.end or fault.start) + 10.0
        # The master's own detection only (reason AGENT_DISCONNECTED), not reconciliation answers.
        hits = [r["t"] for r in records if r["event"] == "status" and r["state"] == "TASK_UNREACHABLE"
                and r.get("reason") == "REASON_AGENT_DISCONNECTED" and r.get("agent_id") == agent_id
                and fault.start <= r["t"] <= end]
        length = (fault.end or fault.start) - fault.start
        label = f"{fault.kind} {fault.target} at {fault.start - run.t0:5.1f} s ({length:.1f} s)"
        if fault.registered_at_start is False:
            detections.append(f"{label}: not measured (the agent was not registered when it began: still away "
                              "after an earlier fault)")
        elif hits:
            detection_times.append(min(hits) - fault.start)
            detections.append(f"{label}: TASK_UNREACHABLE after {min(hits) - fault.start:.2f} s ({len(hits)} tasks)")
        elif length < PING_INTERVAL * MAX_PING_TIMEOUTS:
            detections.append(f"{label}: none (back before the {PING_INTERVAL * MAX_PING_TIMEOUTS:g} s limit)")
        else:
            detections.append(f"{label}: none (no task of the framework on it, or none reported)")

    # --- the table
    kinds = collections.Counter(f.kind for f in run.faults)
    total = {k: sum(int(s.get(k, 0)) for s in proxy_stats) for k in (
        "up_forwarded", "down_forwarded", "up_dropped", "down_dropped", "up_duplicated", "down_duplicated",
        "up_partition_dropped", "down_partition_dropped")}
    forwarded = total["up_forwarded"] + total["down_forwarded"]
    dropped = total["up_dropped"] + total["down_dropped"]
    duplicated = total["up_duplicated"] + total["down_duplicated"]
    cut = total["up_partition_dropped"] + total["down_partition_dropped"]
    seen_msgs = max(1, forwarded - duplicated + dropped + cut)
    relaunch_why = collections.Counter(
        r["state"] + (f"/{r['reason']}" if r.get("reason") else "") for r in relaunches)
    final = next((r for r in reversed(records) if r["event"] == "final"), None)
    resubscribe = [i["framework_back"] - i["killed"] for i in run.master_restarts if "framework_back" in i]
    agents_back = [i["agents_back"] - i["killed"] for i in run.master_restarts if "agents_back" in i]
    lost = len(lost_items)

    def spread(values: list[float]) -> str:
        if not values:
            return "none"
        return (f"n={len(values)}, min {min(values):.2f} s, median {statistics.median(values):.2f} s, "
                f"max {max(values):.2f} s")

    items_finished = sum(1 for i in range(run.args.tasks) if any(finals[t] == "TASK_FINISHED" for t in items.get(i, [])))
    rows = [
        ("run", (f"{run.args.tasks} tasks, {run.args.duration:g} s of chaos, {run.args.agents} agents, "
                 f"seed {run.args.seed}, drop rate {run.args.fault_rate:g}, duplicate rate {run.args.duplicate_rate:g}")
         + ("" if len(run.args.faults) == len(FAULT_KINDS) else f", faults {','.join(run.args.faults)}")),
        ("chaos actions", ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())) or "none"),
        ("messages through proxies", (f"{seen_msgs} sent, {dropped} dropped ({100 * dropped / seen_msgs:.1f}%), "
                                      f"{duplicated} duplicated ({100 * duplicated / seen_msgs:.1f}%), "
                                      f"{cut} cut by partitions")),
        ("task ids launched", str(len(launches))),
        ("task ids started", f"{started}" + (f" (+{len(unknown_starts)} never launched!)" if unknown_starts else "")),
        ("task ids finished", str(finished_attempts)),
        ("work items finished", f"{items_finished} / {run.args.tasks}"),
        ("relaunched (new id)", f"{len(relaunches)}" + (
            " (" + ", ".join(f"{k} {n}" for k, n in relaunch_why.most_common()) + ")" if relaunches else "")),
        ("reports proven wrong", f"{len(misreported)} (LOST/DROPPED/GONE/UNKNOWN, then RUNNING/FINISHED)"),
        ("finished, then denied", f"{len(after_finish)} task ids (a LOST/DROPPED/GONE/UNREACHABLE/failure report after FINISHED)"),
        ("framework final view", "settled" if final and final.get("items_finished") == run.args.tasks else
         ("missing (framework did not finish)" if final is None else
          f"{final.get('items_finished')} items finished")),
        ("detection (→ UNREACHABLE)", spread(detection_times)),
        ("master SIGKILL → re-subscribed" if run.ha is None else "master failover → re-subscribed",
         spread(resubscribe)),
        ("master SIGKILL → agents back" if run.ha is None else "master failover → agents back", spread(agents_back)),
        ("lost", str(lost)),
        ("launched twice", str(len(twice))),
        ("finished twice", str(len(finished_twice))),
    ]
    width = max(len(k) for k, _ in rows)
    print("\n== chaos summary ==")
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    if detections:
        print("\ndetection per fault:")
        for line in detections:
            print(f"  {line}")
    problems: list[str] = []
    for item, why in lost_items[:20]:
        problems.append(f"lost: item {item}: {why}")
    for task_id in twice[:20]:
        problems.append(f"launched twice: {task_id} started {starts[task_id]} times")
    for item in finished_twice[:20]:
        problems.append(f"finished twice: item {item}: " + "; ".join(
            f"{t}: " + " ".join(s["state"].removeprefix("TASK_") + (f"({s['reason'].removeprefix('REASON_')})"
                                                                  if s.get("reason") else "")
                                for s in statuses.get(t, [])) for t in items[item]))
    for line in misreported[:10]:
        problems.append(f"wrong report: {line}")
    for line in after_finish[:10]:
        problems.append(f"finished, then denied: {line}")
    if finished_no_start:
        problems.append(f"note: {len(finished_no_start)} finished task ids left no start mark (e.g. "
                        f"{', '.join(finished_no_start[:5])}): check the starts file's permissions")
    if problems:
        print("\ndetails:")
        for line in problems:
            print(f"  {line}")
    return Tally(tasks=run.args.tasks, launched=len(launches), started=started, launched_twice=len(twice),
                 finished_twice=len(finished_twice), lost=lost, actions=len(run.faults), dropped=dropped,
                 duplicated=duplicated, wrong_reports=len(misreported) + len(after_finish), problems=problems)


def finished_then_denied(statuses: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Task ids that, after TASK_FINISHED, were reported in a state that denies it (one line
    each: the first such report). Harmless to this framework, which stops acting on an item
    once it finished, but a framework that had not yet seen the FINISHED (still in the agent's
    retry queue) would relaunch on the DROPPED or wait on the UNREACHABLE: the work would run
    twice or never be confirmed. Stale RUNNING/STARTING (an agent's queued updates arriving
    after a reconciliation answer) are not denials."""
    lines: list[str] = []
    for task_id, seen in statuses.items():
        first = next((k for k, s in enumerate(seen) if s["state"] == "TASK_FINISHED"), None)
        if first is None:
            continue
        denial = next((s for s in seen[first + 1:] if s["state"] in DENIALS), None)
        if denial is not None:
            lines.append(f"{task_id}: FINISHED, then {denial['state']} ({denial.get('reason')}, {denial.get('source')})"
                         + (f": {denial['message']}" if denial.get("message") else ""))
    return lines
