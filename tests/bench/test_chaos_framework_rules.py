"""The chaos framework's relaunch rule (bench/chaos_framework.py) is judged on an attempt's first
terminal report: a TASK_FAILED the command caused (REASON_COMMAND_EXECUTOR_FAILED) is not
relaunched, and the reconciliation answers that repeat it later (reason RECONCILIATION) do not
change that. Seen in a chaos run: the final reconciliation relaunched such an item seconds
before the framework tore down, leaving a RUNNING attempt behind. A FAILED for an agent-side
reason is relaunched once. Runs in a subprocess: importing the framework installs a reactor."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"

SCRIPT = r"""
import argparse, json, sys
sys.path.insert(0, sys.argv[1])
import chaos_framework as cf
from tepui.sdk import TaskReason, TaskSource, TaskState
from tepui.sdk.protocol.values import TaskStatus

class Driver:
    connected = True
    def revive(self, roles=()): pass

args = argparse.Namespace(tasks=2, launch_window=0.0, long_share=0.0, long_max=4.0, seed=1, starts="/dev/null",
                          settle=1.0, final_reconcile=1.0)
scheduler = cf.ChaosScheduler(args, cf.Recorder(sys.argv[2]))
for item in (0, 1):
    scheduler.items[item].attempts.append(f"w{item}-0")
    scheduler.attempts[f"w{item}-0"] = cf.Attempt(f"w{item}-0", item, "a1", 0.0)
def status(task_id, state, reason, source):
    scheduler.status_update(Driver(), TaskStatus(task_id=task_id, state=state, reason=reason, source=source,
                                                 agent_id="a1"))
status("w0-0", TaskState.FAILED, TaskReason.COMMAND_EXECUTOR_FAILED, TaskSource.AGENT)
status("w0-0", TaskState.FAILED, TaskReason.RECONCILIATION, TaskSource.MASTER)
status("w1-0", TaskState.FAILED, TaskReason.EXECUTOR_TERMINATED, TaskSource.AGENT)
status("w1-0", TaskState.FAILED, TaskReason.RECONCILIATION, TaskSource.MASTER)
print(json.dumps(list(scheduler.queue)))
"""


def test_a_failed_attempt_is_judged_on_its_first_terminal_report(tmp_path: Path) -> None:
    record = tmp_path / "framework.jsonl"
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(BENCH), str(record)], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [1], "only item 1 waits for a new attempt"
    relaunches = [json.loads(line) for line in record.read_text().splitlines() if '"relaunch"' in line]
    assert [(r["task_id"], r["reason"]) for r in relaunches] == [("w1-0", "REASON_EXECUTOR_TERMINATED")]
