"""One simulated agent's state (pure), for :class:`tepui.sim.core.SimCore`, which holds them all.

Plain objects with ``__slots__``: a simulator holds 10,000 of them and about ten tasks each,
so what matters is bytes per agent and per task, not encapsulation per field. What the agent
reports — the tasks it holds for a re-registration, the digest's set for a pong, whether a task
id was already seen — is answered here, as the real agent answers it (``agent/link/reconcile.py``,
``agent/lifecycle/launching.py``).
"""

from __future__ import annotations

from tepui.agent.updates.status_updates import StatusUpdateQueue
from tepui.sdk.protocol import agent as am
from tepui.sdk.protocol.values import TaskInfo, TaskState
from tepui.sim.events import SendToMaster

Key = tuple[str, str]  # (framework id, task id)


class SimTask:
    __slots__ = ("framework_id", "info", "state", "group")

    def __init__(self, framework_id: str, info: TaskInfo, state: TaskState, group: str | None = None) -> None:
        self.framework_id, self.info, self.state, self.group = framework_id, info, state, group


class SimAgent:
    """One simulated agent. ``tasks`` are live; ``ended`` hold ended tasks whose final update
    waits for its ack (reported on re-registration, as the real agent does); ``completed``
    remembers the last ended task ids, so a late duplicate RUN_TASK is refused."""

    __slots__ = ("index", "hostname", "attributes", "agent_id", "registered", "stopping", "closed", "master_epoch",
                 "last_contact", "backoff", "tasks", "ended", "completed", "completed_limit", "pending", "groups",
                 "shutting_down")

    def __init__(self, index: int, hostname: str, attributes: dict[str, str], backoff: float, completed_limit: int,
                 updates: StatusUpdateQueue[SendToMaster]) -> None:
        self.index, self.hostname, self.attributes = index, hostname, attributes
        self.agent_id: str | None = None
        self.registered = False
        self.stopping = False  # SHUTDOWN_AGENT: draining
        self.closed = False  # done: no more messages either way
        self.master_epoch = 0
        self.last_contact = 0.0
        self.backoff = backoff
        self.tasks: dict[Key, SimTask] = {}
        self.ended: dict[Key, SimTask] = {}
        self.completed: dict[Key, TaskState | None] = {}  # insertion-ordered, bounded; how each ended
        self.completed_limit = completed_limit
        self.pending = updates  # unacknowledged status updates, per task
        self.groups: dict[Key, list[str]] = {}  # (framework id, executor id) → its task ids
        self.shutting_down: set[str] = set()  # frameworks told to shut down here

    def known(self, key: Key) -> bool:
        """Live, ended with its update waiting, or among the last ended: a RUN_TASK for it is a duplicate."""
        return key in self.tasks or key in self.ended or key in self.pending or key in self.completed

    def remember(self, key: Key, state: TaskState | None = None) -> None:
        completed = self.completed
        completed[key] = state
        if len(completed) > self.completed_limit:
            del completed[next(iter(completed))]

    def reports(self) -> list[am.TaskReport]:
        """Live tasks and ended ones whose final update waits for its ack, as re-registration reports them."""
        held = list(self.tasks.values()) + list(self.ended.values())
        return [am.TaskReport(t.framework_id, t.info, t.state) for t in held]

    def held_for_master(self) -> list[Key]:
        """As the real agent (agent/link/reconcile.py): live tasks, and ended ones whose final update waits."""
        held = list(self.tasks)
        pending = self.pending
        held.extend(key for key in self.ended if key in pending and not pending[key].queue[0].state.is_terminal)
        return held
