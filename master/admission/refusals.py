"""How the master answers a call it refuses (issue 15): never in silence, and naming the call.

Every ERROR a scheduler call causes carries the call's ``type`` and the ``call_id`` its
envelope had (:func:`correlate`), so a client with several calls in flight tells which one was
refused. Why one stamp after the handler rather than the id threaded into every refusal:
ERRORs are built in a dozen places (the core, offers, admission, identity, validation), and any
place added later would have to remember the id; here none can forget it. A refusal names its
``field`` itself (only it knows which one is at fault). Errors to a different peer than the
caller's, and ones already stamped, are left as they are.

The rest are the refusals of calls that name something the master does not know (an agent, an
executor), in words a framework can act on; docs/protocol.md ("Flows") lists them all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable

import msgspec

from tepui.master.events import MasterEffect, Received, Send
from tepui.sdk.protocol import scheduler as sm

if TYPE_CHECKING:
    from tepui.master.durability.durable import Recovery
    from tepui.master.failures.partitions import PartitionTracker
    from tepui.master.records import AgentRecord, FrameworkRecord, TaskRecord

SHOWN = 64  # characters of a client's string quoted back in an ERROR


def shown(value: str) -> str:
    """``value`` quoted for an ERROR, cut to :data:`SHOWN` characters: a client's megabyte id
    must not come back as a megabyte ERROR."""
    return repr(value) if len(value) <= SHOWN else repr(value[:SHOWN]) + f"... ({len(value)} characters)"


def call_type(body: Any) -> str | None:
    """The wire ``type`` of a message (``DECLINE``), None for anything that is not a message."""
    tag = type(body).__struct_config__.tag if isinstance(body, msgspec.Struct) else None
    return tag if isinstance(tag, str) else None


def correlate(event: Received, out: list[MasterEffect]) -> None:
    """Stamps ``event``'s call id and type on every ERROR in ``out`` that answers its sender."""
    stamp: dict[str, Any] | None = None
    for index, effect in enumerate(out):
        if isinstance(effect, Send) and type(effect.body) is sm.Error and effect.peer == event.peer \
                and effect.body.call_type is None:
            stamp = stamp or {"call_id": event.call_id, "call_type": call_type(event.body)}
            out[index] = Send(effect.peer, msgspec.structs.replace(effect.body, **stamp))


def agent_missing(agent_id: str, partitions: PartitionTracker, recovery: Recovery) -> str:
    """Why ``agent_id`` names no registered agent, in words a framework can act on."""
    if agent_id in partitions.unreachable:
        return f"agent {shown(agent_id)} is unreachable (it may come back)"
    if agent_id in recovery.recovered_agents:
        return f"agent {shown(agent_id)} has not re-registered since the master failed over (it may come back)"
    if agent_id in partitions.gone:
        return f"agent {shown(agent_id)} is gone"
    return f"agent {shown(agent_id)} is unknown to the master"


def executor_agent(peer: bytes, framework: FrameworkRecord | None, msg: sm.Message | sm.Shutdown,
                   agents: dict[str, AgentRecord], partitions: PartitionTracker, recovery: Recovery,
                   out: list[MasterEffect]) -> AgentRecord | None:
    """The agent where the framework's executor runs (for MESSAGE, SHUTDOWN), or None — with an
    ERROR saying why not, unless there is no framework (its refusal is already said)."""
    if framework is None:
        return None
    call = "MESSAGE" if isinstance(msg, sm.Message) else "SHUTDOWN"
    agent = agents.get(msg.agent_id)
    if agent is None:
        out.append(Send(peer, sm.Error(f"{call} not delivered: {agent_missing(msg.agent_id, partitions, recovery)}",
                                       field="$.body.agent_id")))
    elif not runs_executor(agent, framework.completed, framework.framework_id, msg.executor_id):
        out.append(Send(peer, sm.Error(
            f"{call} not delivered: no task of framework {framework.framework_id} on agent {agent.agent_id} runs "
            f"or ran under executor {shown(msg.executor_id)} (only custom executors, named in TaskInfo.executor, "
            "can be reached)", field="$.body.executor_id")))
        return None
    return agent


def runs_executor(agent: AgentRecord, completed: Iterable[TaskRecord], framework_id: str, executor_id: str) -> bool:
    """Whether a task of the framework on ``agent`` runs, or ran, under the custom executor
    ``executor_id``: the master knows executors only through their tasks (a task group's
    DEFAULT executor is the agent itself and takes no MESSAGE or SHUTDOWN)."""
    def under(task: TaskRecord) -> bool:
        executor = task.info.executor
        return executor is not None and executor.executor_id == executor_id

    return any(key[0] == framework_id and under(task) for key, task in agent.tasks.items()) or any(
        task.agent_id == agent.agent_id and under(task) for task in completed)
