"""Validation of what frameworks ask the master to run (Mesos ``validation.cpp`` in spirit).

Each check returns ``None`` or one sentence that names the field and says what to do, which
becomes the ``message`` of a TASK_ERROR update. A bad task never reaches an agent and never
costs the framework its offer: the resources go back.

A task is checked on one path, :func:`checked_task`, which returns either the problem or the
task's resources, parsed: the launch records and subtracts that value. (The launch used to
parse a task's resources two or three times — once to validate, again to record, and a third
time for a task group's running remainder.) The spec's fields are checked in
:mod:`tepui.master.admission.task_checks`, ids in :mod:`tepui.master.admission.ids`.
"""

from __future__ import annotations

import math
from collections.abc import Container

from tepui.offers.allocator import Demand
from tepui.offers.roles import InvalidRole, validate_role
from tepui.master.admission.ids import validate_id
from tepui.master.admission.task_checks import spec_problem
from tepui.sdk.protocol.values import DemandShape, KillPolicy, TaskInfo
from tepui.sdk.resources import InvalidResources, Resources

MAX_GRACE_SECONDS = 86400.0


def grace_problem(where: str, policy: KillPolicy | None) -> str | None:
    """A kill policy's grace period: finite, from 0 to a day. NaN and infinity would reach the
    agent's timers (and an agent's drain waits for its longest grace period); a negative one
    means nothing."""
    grace = policy.grace_period_seconds if policy is not None else None
    if grace is not None and not (math.isfinite(grace) and 0 <= grace <= MAX_GRACE_SECONDS):
        return (f"{where}kill_policy.grace_period_seconds must be a number of seconds from 0 to "
                f"{MAX_GRACE_SECONDS:.0f} (a day), got {grace!r}")
    return None


def task_resources(task: TaskInfo) -> tuple[Resources | None, str | None]:
    try:
        resources = Resources.from_wire(task.resources)
    except InvalidResources as exc:
        return None, f"task {task.task_id!r} has invalid resources: {exc}"
    if not resources:
        return None, f"task {task.task_id!r} asks for no resources; give it at least cpus or mem"
    if resources.scalar("cpus") <= 0 and resources.scalar("mem") <= 0:
        return None, f"task {task.task_id!r} needs cpus or mem greater than zero"
    return resources, None


class EitherOf(Container[str]):
    """``x in EitherOf(a, b)``: in ``a`` or in ``b``, without copying either (a task group's ids
    so far, beside the framework's tasks)."""

    def __init__(self, *parts: Container[str]) -> None:
        self.parts = parts

    def __contains__(self, item: object) -> bool:
        return any(item in part for part in self.parts)


def checked_task(task: TaskInfo, agent_id: str, available: Resources, active_ids: Container[str],
                 allow_host_volumes: bool = False) -> Resources | str:
    """The task's resources, parsed, if it may launch with what ``available`` holds; else the
    first problem, as one sentence. Everything checkable at the master before a task may launch
    (the spec's fields in :mod:`tepui.master.admission.task_checks`). ``active_ids`` is anything
    answering ``in`` — the framework's task dict itself: copying it into a set per task made
    launching quadratic (87% of the master's time at 100,000 tasks, bench/scale.py)."""
    problem = validate_id("task_id", task.task_id)
    if problem:
        return problem
    if task.task_id in active_ids:
        return f"task_id {task.task_id!r} is already in use by this framework; launch under a new id"
    if task.agent_id != agent_id:
        return f"task {task.task_id!r} names agent {task.agent_id!r} but the offer is for agent {agent_id!r}"
    if (task.command is None) == (task.executor is None):
        return f"task {task.task_id!r} needs exactly one of `command` or `executor`"
    if task.command is not None:
        command = task.command
        if command.shell and not command.value:
            return f"task {task.task_id!r}: a shell command needs `command.value`"
        if not command.shell and not (command.value or command.arguments):
            return f"task {task.task_id!r}: an argv command needs `command.arguments`"
    problem = grace_problem(f"task {task.task_id!r}: ", task.kill_policy)
    if problem:
        return problem
    problem = spec_problem(task, allow_host_volumes)
    if problem:
        return problem
    resources, problem = task_resources(task)
    if problem:
        return problem
    assert resources is not None
    if not available.contains(resources):
        return (
            f"task {task.task_id!r} asks for {resources} but the offers hold only {available} "
            f"(missing {resources.missing_from(available)})"
        )
    return resources


def validate_task(task: TaskInfo, agent_id: str, available: Resources, active_ids: Container[str],
                  allow_host_volumes: bool = False) -> str | None:
    """The problem :func:`checked_task` finds, or None."""
    checked = checked_task(task, agent_id, available, active_ids, allow_host_volumes)
    return checked if isinstance(checked, str) else None


def roles_problem(roles: list[str]) -> str | None:
    for role in roles:
        try:
            validate_role(role)
        except InvalidRole as exc:
            return str(exc)
    return None


def demand_problem(demand: list[DemandShape] | None) -> str | None:
    for i, shape in enumerate(demand or []):
        if shape.count < 0:
            return f"demand[{i}].count must be >= 0"
        if shape.role is not None and roles_problem([shape.role]):
            return f"demand[{i}].role: {roles_problem([shape.role])}"
        try:
            Resources.from_wire(shape.resources)
        except InvalidResources as exc:
            return f"demand[{i}].resources: {exc}"
    return None


def demand_of(demand: list[DemandShape] | None) -> list[Demand] | None:
    if demand is None:
        return None
    return [Demand(Resources.from_wire(d.resources), d.count, d.role) for d in demand]
