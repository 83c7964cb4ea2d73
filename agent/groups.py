"""Task groups (pods), the agent's side (Mesos default executor semantics), pure.

A group starts together or not at all, its members share a volume (``$TEPUI_SHARED``, linked as
``./shared``) and one cgroup envelope, and when one member fails the others are killed. A mixin
of :class:`tepui.agent.core.AgentCore`, whose state it shares.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tepui.sdk.effects import Log
from tepui.sdk.protocol import agent as am
from tepui.sdk.protocol.values import TaskInfo, TaskReason, TaskState
from tepui.sdk.resources import InvalidResources, Resources

if TYPE_CHECKING:
    from tepui.agent.core import AgentConfig, TaskRecord
    from tepui.sdk.protocol.values import FrameworkInfo

Effect = Any


class TaskGroups:
    config: AgentConfig
    tasks: dict[tuple[str, str], TaskRecord]
    frameworks: dict[str, FrameworkInfo]
    shutting_down_frameworks: set[str]

    if TYPE_CHECKING:
        def _already_known(self, framework_id: str, task_id: str) -> bool: ...
        def _new_record(self, framework_id: str, task: TaskInfo) -> TaskRecord: ...
        def _unsupported(self, task: TaskInfo, framework_id: str | None = None) -> str | None: ...
        def _start(self, record: TaskRecord, now: float, out: list[Effect], shared: str | None = None,
                   envelope: tuple[str, float | None, float | None] | None = None) -> None: ...
        def _terminal(self, record: TaskRecord, state: TaskState, reason: TaskReason | None, message: str,
                      now: float, out: list[Effect], healthy: bool | None = None) -> None: ...
        def _signal(self, record: TaskRecord, now: float, out: list[Effect]) -> None: ...

    def _on_RunTaskGroup(self, msg: am.RunTaskGroup, epoch: int, now: float, out: list[Effect]) -> None:
        """Mesos default executor semantics: the group starts together or not at all, its tasks
        share a volume, and when one of them fails the others are killed."""
        framework_id = msg.framework_info.id or ""
        self.frameworks[framework_id] = msg.framework_info
        self.shutting_down_frameworks.discard(framework_id)
        tasks = list(msg.task_group.tasks)
        if any(self._already_known(framework_id, t.task_id) for t in tasks):
            out.append(Log("warning", "duplicate_task_group_refused", {"executor_id": msg.executor.executor_id}))
            return
        group = msg.executor.executor_id
        records = [self._new_record(framework_id, task) for task in tasks]
        problems = []
        if msg.executor.type != "DEFAULT":
            problems.append("task groups run under the DEFAULT executor; custom group executors are not supported yet")
        if group in ("", ".", "..") or "/" in group or "\0" in group:  # it names the shared directory
            problems.append(f"executor id {group!r} cannot name a directory")
        try:
            Resources.from_wire(msg.executor.resources)
        except InvalidResources as exc:
            problems.append(f"the executor's resources are invalid: {exc}")
        for task in tasks:
            problem = self._unsupported(task, framework_id)
            if problem is None and task.container is not None and task.container.type == "DOCKER":
                problem = "task groups run process tasks; Docker tasks in groups are not supported yet"
            if problem is not None:
                problems.append(f"task {task.task_id!r}: {problem}")
        if problems:
            message = "the task group was not started: " + "; ".join(problems)
            for record in records:
                self._terminal(record, TaskState.ERROR, TaskReason.TASK_GROUP_INVALID, message, now, out)
            return
        shared = f"{self.config.work_dir}/groups/{framework_id}/{group}"
        # One resource envelope: the members' resources (and the executor's) in all.
        total = Resources.from_wire(msg.executor.resources)
        for task in tasks:
            total = total + Resources.from_wire(task.resources)
        envelope = (group, total.scalar("cpus") or None, total.scalar("mem") or None)
        for record in records:
            record.group = group
            self._start(record, now, out, shared, envelope)

    def _kill_group_members(self, failed: TaskRecord, now: float, out: list[Effect]) -> None:
        for record in list(self.tasks.values()):
            if record.group == failed.group and record.framework_id == failed.framework_id and record is not failed \
                    and not record.kill_requested:
                record.kill_requested = True
                record.kill_reason = f"killed because task {failed.info.task_id!r} of its group failed"
                self._touch((record.framework_id, record.info.task_id))  # type: ignore[attr-defined]
                if record.pid is not None:
                    self._signal(record, now, out)
                elif record.launch is None:
                    pass  # spawning: it is signalled as soon as its pid is known
                else:
                    continue  # still fetching: _on_fetched ends it as killed during launch
