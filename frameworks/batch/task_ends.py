"""How the batch framework reads a task's end: the reason a retry rule sees.

Why apart: the mapping from Mesos ``TaskState``/``TaskReason`` onto the spec's reasons
(docs/batch.md, "Failure rules and the retry budget") is a table the docs print and users
check; it changes when the agent learns a new reason, not when the state machine does.
"""

from __future__ import annotations

from tepui.sdk import TaskReason, TaskState

__all__ = ["failure_reason"]

_LOST_STATES = frozenset({TaskState.LOST, TaskState.GONE, TaskState.GONE_BY_OPERATOR, TaskState.DROPPED, TaskState.UNKNOWN})
_AGENT_REASONS = frozenset({
    TaskReason.AGENT_REMOVED, TaskReason.AGENT_REMOVED_BY_OPERATOR, TaskReason.AGENT_RESTARTED,
    TaskReason.AGENT_UNKNOWN, TaskReason.AGENT_DISCONNECTED, TaskReason.MASTER_DISCONNECTED,
    TaskReason.RECONCILIATION, TaskReason.EXECUTOR_REREGISTRATION_TIMEOUT,
})
_REASONS = {
    TaskReason.CONTAINER_LIMITATION_MEMORY: "memory_limit", TaskReason.CONTAINER_LIMITATION_DISK: "disk_limit",
    # Not REASON_COMMAND_EXECUTOR_FAILED: the agent reports a command's own non-zero exit or
    # signal with it (agent/lifecycle/task_ends.py), which its exit code judges (exit 1 is no
    # launch failure, and an `on_reasons: [launch_failed]` rule must not retry it).
    TaskReason.CONTAINER_LAUNCH_FAILED: "launch_failed",
    TaskReason.TASK_INVALID: "launch_failed", TaskReason.FETCH_FAILED: "fetch_failed",
    TaskReason.CONTAINER_PREEMPTED: "preempted",
}


def failure_reason(state: TaskState, reason: TaskReason | None, killed_by: str | None) -> str | None:
    """The reason a retry rule sees (docs/batch.md's table); ``agent_lost`` for agent loss."""
    if state in _LOST_STATES or reason in _AGENT_REASONS:
        return "agent_lost"
    if killed_by == "timeout":
        return "timeout"
    if reason is not None and reason in _REASONS:
        return _REASONS[reason]
    if state == TaskState.KILLED:
        return "killed"
    if state == TaskState.ERROR:
        return "launch_failed"
    return None
