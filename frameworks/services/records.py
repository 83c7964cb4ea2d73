"""What the services framework persists: apps, their versions, instances and deployments.

Why these four records and nothing else: a restarted framework must resume exactly where it was
(issue 7), and :func:`~tepui.frameworks.services.deployment.plan_step` computes the next step
from nothing but the target and the instances that exist. So the store holds the target (the
app and its versions), the instances (written *before* their launch is sent, so a crash between
the write and the launch yields an instance the master does not know — reconciliation answers
for it and it is replaced — never a task the framework does not know), and the deployments (so
their deadlines and history survive). Offers, "why" statistics, launch backoff and readiness
results are soft state: rebuilt from the next offers and probes.

Store layout (namespaces of :class:`tepui.sdk.Store`, values JSON via ``put_json``):

- ``framework/id`` — the framework id, so a restart re-subscribes as the same framework and keeps
  its tasks (the failover timeout is a week).
- ``apps/<app id>`` — :class:`AppRecord`.
- ``versions/<app id>@<version>`` — :class:`VersionRecord` (the spec of every version).
- ``instances/<task id>`` — :class:`InstanceRecord`.
- ``deployments/<deployment id>`` — :class:`DeploymentRecord` (running ones, and the last
  finished ones per app, for the history).

Versions. Every change to an app is a new ``version`` (an ISO 8601 UTC timestamp, as in
Marathon). Instances belong to a *config* version: scaling makes a new version whose
``config_version`` is unchanged, so no running instance is replaced; anything else
(``restart`` included) starts a new config version and the upgrade strategy replaces them all.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = ["AppRecord", "DeploymentRecord", "InstanceRecord", "VersionRecord", "ACTIVE_STATES"]


class _Record(msgspec.Struct, kw_only=True):
    """Base of the mutable records (their fields change as a deployment goes)."""


class VersionRecord(msgspec.Struct, frozen=True):
    """One version of an app: the full spec as data, when and why it was made. Frozen, so not
    a :class:`_Record`: a frozen subclass of a mutable base is fine for msgspec but not for
    type checkers (PEP 681 dataclass rules)."""

    app: str
    version: str
    config_version: str
    created_at: float
    reason: str  # deploy | scale | restart | rollback to <version>
    spec: dict[str, Any]


class AppRecord(_Record):
    """An app: which version is the target, and its version history (newest last)."""

    id: str
    version: str
    config_version: str
    versions: list[str] = []
    removing: bool = False
    created_at: float = 0.0


#: Task states in which an instance still occupies (or may occupy) a place.
ACTIVE_STATES = frozenset({"TASK_STAGING", "TASK_STARTING", "TASK_RUNNING", "TASK_KILLING", "TASK_UNREACHABLE"})


class InstanceRecord(_Record):
    """One instance: one task of one config version of an app.

    The task id is the instance id: a replaced instance is a new instance (Marathon does the
    same for apps without persistent volumes). ``killing`` records that a kill was asked for,
    so the planner does not count it and a restarted framework asks again. ``ready`` is
    soft: readiness is probed again after a restart."""

    id: str
    app: str
    version: str  # the app version it was launched from
    config_version: str
    agent_id: str
    hostname: str
    host: str | None = None  # agent address (readiness probes, `apps tasks`)
    attributes: dict[str, str] = {}  # the agent's, for placement constraints of later instances
    ports: list[int] = []
    state: str = "TASK_STAGING"
    healthy: bool | None = None
    ready: bool = False
    launched_at: float = 0.0
    running_at: float | None = None
    killing: bool = False
    kill_asked_at: float | None = None
    unreachable_since: float | None = None
    message: str | None = None


class DeploymentRecord(_Record):
    """A deployment: the way from one version of an app to another (or to nothing)."""

    id: str
    app: str
    kind: str  # deploy | scale | restart | rollback | remove
    version: str
    config_version: str
    from_version: str | None
    instances: int
    started_at: float
    deadline_at: float
    status: str = "RUNNING"  # RUNNING | SUCCEEDED | FAILED | CANCELLED | ROLLED_BACK
    finished_at: float | None = None
    message: str = ""
    rollback: str | None = None
    auto_rollback: bool = False
    new_healthy: int = 0
    new_running: int = 0
    old_running: int = 0

    def view(self) -> dict[str, Any]:
        """The API's Deployment value (docs/services.md)."""
        return {
            "id": self.id, "app": self.app, "kind": self.kind, "version": self.version,
            "from_version": self.from_version, "status": self.status, "started_at": self.started_at,
            "finished_at": self.finished_at, "deadline_at": self.deadline_at, "message": self.message,
            "instances": self.instances, "rollback": self.rollback,
            "progress": {"new_healthy": self.new_healthy, "new_running": self.new_running,
                         "old_running": self.old_running, "target": self.instances},
        }
