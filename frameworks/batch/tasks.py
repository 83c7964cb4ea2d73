"""From a placed batch task to the TaskInfo the agent runs, and back from a task id.

Task ids are ``<job id>.<stage>.<index>.<attempt>``: readable in ``tepui tasks`` and logs, unique
per try (the attempt number counts every try of an index), and parseable, so a status update
names its job, stage and index without a lookup table of 100,000 entries (job ids and stage
names are refused if they contain a dot). Every task carries labels ``tepui.batch/job``,
``/stage`` and ``/index`` too, so a task found by reconciliation is traced to its job by
anyone reading ``/state``.

Ports: the queue only counts them (``resources.ports``); the ports themselves are picked here,
the lowest free ones of the offer's ranges, as the services framework does for ``port: 0``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from tepui.frameworks.batch.spec import JobSpec
from tepui.sdk import CommandInfo, CommandURI, ContainerInfo, DockerInfo, Resources, TaskInfo

JOB_LABEL, STAGE_LABEL, INDEX_LABEL = "tepui.batch/job", "tepui.batch/stage", "tepui.batch/index"


class TaskKey(NamedTuple):
    job: str
    stage: str
    index: int  # type: ignore[assignment]  # shadows tuple.index on purpose: the domain's word
    attempt: int


def task_id(job: str, stage: str, index: int, attempt: int) -> str:
    return f"{job}.{stage}.{index}.{attempt}"


def parse_task_id(value: str) -> TaskKey | None:
    """The key of one of our task ids; None for any other id."""
    parts = value.rsplit(".", 3)
    if len(parts) != 4 or not parts[2].isdigit() or not parts[3].isdigit():
        return None
    return TaskKey(parts[0], parts[1], int(parts[2]), int(parts[3]))


class PortPicker:
    """The host ports of one offer handed out to its tasks, lowest first."""

    def __init__(self, ranges: Sequence[tuple[int, int]]) -> None:
        self._ranges = sorted(ranges)
        self._next = 0  # ports below this (in range order) are taken
        self._at = 0

    def take(self, count: int) -> tuple[int, ...]:
        chosen: list[int] = []
        while len(chosen) < count:
            if self._at >= len(self._ranges):
                raise ValueError(f"the offer has fewer than {count} free ports left")  # the queue counted them
            lo, hi = self._ranges[self._at]
            port = max(lo, self._next)
            if port > hi:
                self._at += 1
                continue
            chosen.append(port)
            self._next = port + 1
        return tuple(chosen)


def _ports_resources(ports: Sequence[int]) -> Resources:
    if not ports:
        return Resources()
    return Resources.parse("ports:[" + ",".join(f"{p}-{p}" for p in ports) + "]")


def task_info(spec: JobSpec, job_id: str, stage_name: str, index: int, attempt: int, agent_id: str,
              hostname: str, ports: Sequence[int], inputs: Sequence[CommandURI] = ()) -> TaskInfo:
    """The TaskInfo of try ``attempt`` of index ``index`` of ``stage_name`` on ``agent_id``;
    ``inputs``: the upstream outputs to fetch (:mod:`.artifacts`)."""
    stage = spec.stage(stage_name)
    tid = task_id(job_id, stage_name, index, attempt)
    env = {**spec.task_env(stage_name, index), "TEPUI_JOB_ID": job_id, "TEPUI_TASK_ID": tid,
           "TEPUI_ATTEMPT": str(attempt), "HOST": hostname}
    for i, port in enumerate(ports):
        env[f"PORT{i}"] = str(port)
    if ports:
        env["PORT"], env["PORTS"] = str(ports[0]), ",".join(str(p) for p in ports)
    uris = [CommandURI(value=uri, extract=True) for uri in stage.uris] + list(inputs)
    if stage.args is not None:
        command = CommandInfo(value=None, arguments=list(stage.args), shell=False, environment=env, uris=uris)
    else:
        command = CommandInfo(value=stage.command, shell=stage.command is not None, environment=env, uris=uris)
    container = None
    if stage.container is not None:
        c = stage.container
        container = ContainerInfo(type="DOCKER", docker=DockerInfo(
            image=c.image, network=c.network, privileged=c.privileged, parameters=dict(c.parameters),
            force_pull_image=c.force_pull_image))
    return TaskInfo(
        name=f"{spec.name}.{stage_name}.{index}", task_id=tid, agent_id=agent_id,
        resources=(stage.resources.scalars() + _ports_resources(ports)).to_wire(),
        command=command, container=container,
        labels={**spec.labels, JOB_LABEL: job_id, STAGE_LABEL: stage_name, INDEX_LABEL: str(index)},
    )
