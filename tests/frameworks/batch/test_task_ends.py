"""How a task's end reads as the reason a retry rule sees (docs/batch.md's table)."""

from __future__ import annotations

import pytest

from tepui.frameworks.batch.task_ends import failure_reason
from tepui.sdk import TaskReason, TaskState


@pytest.mark.parametrize(("state", "reason", "killed_by", "expected"), [
    # The agent's account of a command that ran and exited 1 (or was signalled): no reason,
    # the exit code decides; it is not a launch failure.
    (TaskState.FAILED, TaskReason.COMMAND_EXECUTOR_FAILED, None, None),
    (TaskState.FAILED, TaskReason.CONTAINER_LAUNCH_FAILED, None, "launch_failed"),
    (TaskState.ERROR, TaskReason.TASK_INVALID, None, "launch_failed"),
    (TaskState.ERROR, None, None, "launch_failed"),
    (TaskState.FAILED, TaskReason.CONTAINER_LIMITATION_MEMORY, None, "memory_limit"),
    (TaskState.FAILED, TaskReason.FETCH_FAILED, None, "fetch_failed"),
    (TaskState.KILLED, None, "timeout", "timeout"),
    (TaskState.KILLED, None, None, "killed"),
    (TaskState.GONE, TaskReason.AGENT_REMOVED, None, "agent_lost"),
    (TaskState.FAILED, TaskReason.AGENT_RESTARTED, None, "agent_lost"),
])
def test_failure_reason(state: TaskState, reason: TaskReason | None, killed_by: str | None,
                        expected: str | None) -> None:
    assert failure_reason(state, reason, killed_by) == expected
