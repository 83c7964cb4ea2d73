"""Task groups (pods), the agent's side (Mesos default executor semantics), pure.

A group starts together or not at all, its members share a volume (``$TEPUI_SHARED``, linked as
``./shared``) and one cgroup envelope, and when one member fails the others are killed. The
functions here judge a group and end its members; launching it is ``launching.py``'s.
"""

from __future__ import annotations

from typing import Callable

from tepui.agent.events import AgentEffect, TaskKey
from tepui.agent.lifecycle.stopping import signal
from tepui.agent.tasks import TaskRecord, TaskTable
from tepui.sdk.protocol import agent as am
from tepui.sdk.protocol.values import TaskInfo
from tepui.sdk.resources import InvalidResources, Resources

Envelope = tuple[str, float | None, float | None]  # (group id, cpus, mem) in all


def group_problems(msg: am.RunTaskGroup, unsupported: Callable[[TaskInfo, str], str | None]) -> list[str]:
    """Why the group cannot start (empty: it can). ``unsupported`` judges one task."""
    framework_id = msg.framework_info.id or ""
    group = msg.executor.executor_id
    problems = []
    if msg.executor.type != "DEFAULT":
        problems.append("task groups run under the DEFAULT executor; custom group executors are not supported yet")
    if group in ("", ".", "..") or "/" in group or "\0" in group:  # it names the shared directory
        problems.append(f"executor id {group!r} cannot name a directory")
    try:
        Resources.from_wire(msg.executor.resources)
    except InvalidResources as exc:
        problems.append(f"the executor's resources are invalid: {exc}")
    for task in msg.task_group.tasks:
        problem = unsupported(task, framework_id)
        if problem is None and task.container is not None and task.container.type == "DOCKER":
            problem = "task groups run process tasks; Docker tasks in groups are not supported yet"
        if problem is not None:
            problems.append(f"task {task.task_id!r}: {problem}")
    return problems


def group_envelope(msg: am.RunTaskGroup) -> Envelope:
    """One resource envelope: the members' resources (and the executor's) in all."""
    total = Resources.from_wire(msg.executor.resources)
    for task in msg.task_group.tasks:
        total = total + Resources.from_wire(task.resources)
    return (msg.executor.executor_id, total.scalar("cpus") or None, total.scalar("mem") or None)


def kill_group_members(failed: TaskRecord, tasks: TaskTable, touch: Callable[[TaskKey], None], now: float,
                       out: list[AgentEffect]) -> None:
    """One member failed: the others are killed (``touch`` notes each for the checkpoint)."""
    for record in list(tasks.running.values()):
        if record.group == failed.group and record.framework_id == failed.framework_id and record is not failed \
                and not record.kill_requested:
            record.kill_requested = True
            record.kill_reason = f"killed because task {failed.info.task_id!r} of its group failed"
            touch(record.key)
            if record.pid is not None:
                signal(record, now, out)
            elif record.launch is None:
                pass  # spawning: it is signalled as soon as its pid is known
            else:
                continue  # still fetching: the fetch's end finishes it as killed during launch
