"""The master's ``/state`` document, shaped like Mesos's (``slaves``, ``frameworks`` with
``tasks`` and ``completed_tasks``, resources as ``{"cpus": 2.0, "ports": "[31000-32000]"}``)
so that people and tools that know Mesos can read it. Pure: a function of the core's state."""

from __future__ import annotations

from typing import Any, Iterable

from tepui.master.core import MasterCore
from tepui.master.records import AgentRecord, FrameworkRecord, TaskRecord
from tepui.offers.explain import explain
from tepui.sdk.resources import EMPTY, Resources


def _task_json(task: TaskRecord) -> dict[str, Any]:
    status = task.status
    return {
        "id": task.task_id,
        "name": task.info.name,
        "framework_id": task.framework_id,
        "slave_id": task.agent_id,
        "state": task.state.value,
        "resources": task.resources.to_json(),
        "role": task.role,
        "labels": dict(task.info.labels),
        "launched_at": task.launched_at,
        "message": status.message if status else None,
        "exit_code": status.exit_code if status else None,
        "statuses": [{"state": state, "timestamp": at} for state, at in task.history],
    }


def _framework_json(framework: FrameworkRecord, offered: Resources, allocation: list[dict[str, str]]) -> dict[str, Any]:
    used = EMPTY
    for task in framework.tasks.values():
        used = used + task.resources
    info = framework.info
    return {
        "id": framework.framework_id,
        "name": info.name,
        "user": info.user,
        "principal": info.principal,
        "roles": list(info.roles),
        "active": framework.active,
        "connected": framework.peer is not None,
        "failover_timeout": info.failover_timeout,
        "capabilities": list(info.capabilities),
        "webui_url": info.webui_url,
        "registered_time": framework.registered_at,
        "used_resources": used.to_json(),
        "offered_resources": offered.to_json(),
        "tasks": [_task_json(t) for t in framework.tasks.values()],
        "completed_tasks": [_task_json(t) for t in framework.completed],
        "offers": sorted(framework.offers),
        "allocation": allocation,
    }


def agent_url(agent: AgentRecord) -> str | None:
    """Where the agent's HTTP API (sandbox files) is reached: its advertised address, or
    127.0.0.1 when it advertised none (every agent of a local cluster), over https:// when the
    agent serves it with TLS; None without a port."""
    if agent.http_port is None:
        return None
    host = agent.address or "127.0.0.1"
    scheme = "https" if agent.http_tls else "http"
    return f"{scheme}://[{host}]:{agent.http_port}" if ":" in host else f"{scheme}://{host}:{agent.http_port}"


def agent_files(core: MasterCore, agent_id: str) -> tuple[str, str | None] | None:
    """A registered agent's hostname and files API URL, None when no such agent is registered:
    how the files proxy reaches a task it forgot, by the agent id the caller names."""
    agent = core.agents.get(agent_id)
    return (agent.hostname, agent_url(agent)) if agent is not None else None


def find_tasks(core: MasterCore, task_id: str, framework_id: str | None = None) -> list[TaskRecord]:
    """The task with this id in each framework that has one (active first, else the latest
    completed run), over active and completed frameworks; at most one per framework."""
    found: dict[str, TaskRecord] = {}
    for framework in [*core.frameworks.values(), *core.completed_frameworks]:
        fid = framework.framework_id
        if fid in found or (framework_id is not None and fid != framework_id):
            continue
        task = framework.tasks.get(task_id)
        if task is None:
            task = next((t for t in reversed(framework.completed) if t.task_id == task_id), None)
        if task is not None:
            found[fid] = task
    return list(found.values())


def _counts(tasks: Iterable[TaskRecord]) -> dict[str, int]:
    counts = dict.fromkeys(_SUMMARY_STATES, 0)
    for task in tasks:
        counts[task.state.value] = counts.get(task.state.value, 0) + 1
    return counts


_SUMMARY_STATES = ("TASK_STAGING", "TASK_STARTING", "TASK_RUNNING", "TASK_KILLING", "TASK_FINISHED",
                   "TASK_KILLED", "TASK_FAILED", "TASK_LOST", "TASK_ERROR", "TASK_UNREACHABLE")


def render_state_summary(core: MasterCore, now: float) -> dict[str, Any]:
    """Mesos's ``/state-summary``: agents and frameworks with their resources and task counts
    by state, no tasks. What a dashboard polls: at 10,000 agents and 100,000 tasks ``/state``
    is tens of megabytes and seconds of the reactor's time, this is a fraction of both."""
    agents_of: dict[str, set[str]] = {}
    slaves = []
    for agent in core.agents.values():
        used = EMPTY
        for (framework_id, _), task in agent.tasks.items():
            used = used + task.resources
            agents_of.setdefault(framework_id, set()).add(agent.agent_id)
        slaves.append({
            "id": agent.agent_id,
            "hostname": agent.hostname,
            "resources": agent.total.to_json(),
            "used_resources": used.to_json(),
            "attributes": dict(agent.attributes),
            "active": True,
            "registered_time": agent.registered_at,
            "framework_ids": sorted({framework_id for framework_id, _ in agent.tasks}),
            **_counts(agent.tasks.values()),
        })
    frameworks = []
    for framework in core.frameworks.values():
        used = EMPTY
        for task in framework.tasks.values():
            used = used + task.resources
        counts = _counts(framework.tasks.values())
        for task in framework.completed:
            counts[task.state.value] = counts.get(task.state.value, 0) + 1
        frameworks.append({
            "id": framework.framework_id,
            "name": framework.info.name,
            "active": framework.active,
            "connected": framework.peer is not None,
            "roles": list(framework.info.roles),
            "used_resources": used.to_json(),
            "slave_ids": sorted(agents_of.get(framework.framework_id, ())),
            **counts,
        })
    return {
        "hostname": core.config.hostname,
        "id": core.config.master_id,
        "now": now,
        "slaves": slaves,
        "frameworks": frameworks,
        "unreachable_slaves": len(core.unreachable),
        "outstanding_offers": len(core.offers),
    }


def render_state(core: MasterCore, now: float) -> dict[str, Any]:
    offered: dict[str, Resources] = {}
    for offer in core.offers.values():
        offered[offer.framework_id] = offered.get(offer.framework_id, EMPTY) + offer.resources
    slaves = []
    totals = EMPTY
    used_total = EMPTY
    for agent in core.agents.values():
        used = EMPTY
        for task in agent.tasks.values():
            used = used + task.resources
        totals = totals + agent.total
        used_total = used_total + used
        slaves.append({
            "id": agent.agent_id,
            "hostname": agent.hostname,
            "resources": agent.total.to_json(),
            "used_resources": used.to_json(),
            "unreserved_resources": agent.total.unreserved().to_json(),
            "attributes": dict(agent.attributes),
            "active": True,
            "version": agent.version,
            "registered_time": agent.registered_at,
            "last_pong": agent.last_pong,
            "task_count": len(agent.tasks),
            "http_port": agent.http_port,
            "url": agent_url(agent),
        })
    return {
        "version": core.config.version,
        "id": core.config.master_id,
        "hostname": core.config.hostname,
        "address": core.config.address,
        "leader": core.config.address,
        "epoch": core.config.epoch,
        "start_time": core.started_at,
        "now": now,
        "activated_slaves": len(core.agents),
        "unreachable_slaves": len(core.unreachable),
        "gone_slaves": len(core.gone),
        "unreachable_agents": [{"id": agent_id, "hostname": u.info.hostname, "unreachable_since": u.since}
                               for agent_id, u in core.unreachable.items()],
        "resources": totals.to_json(),
        "used_resources": used_total.to_json(),
        "slaves": slaves,
        "frameworks": [
            _framework_json(f, offered.get(f.framework_id, EMPTY),
                            [e.to_json() for e in explain(core.allocator, f.framework_id, now)])
            for f in core.frameworks.values()
        ],
        "completed_frameworks": [_framework_json(f, EMPTY, []) for f in core.completed_frameworks],
        "weights": core.allocator.weights(),
        "outstanding_offers": len(core.offers),
    }
