"""The frameworks this agent runs tasks for, pure: their latest ``FrameworkInfo`` (checkpointed
with the agent, sent back on re-registration) and those being shut down here.

A framework told to shut down (SHUTDOWN_FRAMEWORK) is remembered until it launches again: its
tasks' updates are dropped, not sent (nobody is left to acknowledge them), and the agent's
reports leave its tasks out (the master already dropped them).
"""

from __future__ import annotations

from tepui.sdk.protocol.values import FrameworkInfo


class Frameworks:
    def __init__(self) -> None:
        self.infos: dict[str, FrameworkInfo] = {}
        self.shutting_down: set[str] = set()

    def get(self, framework_id: str) -> FrameworkInfo | None:
        return self.infos.get(framework_id)

    def launching(self, info: FrameworkInfo) -> bool:
        """The framework launches here (again): its latest info is kept, and it is no longer
        shutting down. True when the info changed (the agent's checkpoint holds it)."""
        framework_id = info.id or ""
        self.shutting_down.discard(framework_id)
        if self.infos.get(framework_id) == info:
            return False
        self.infos[framework_id] = info
        return True

    def restore(self, infos: dict[str, FrameworkInfo]) -> None:
        self.infos = dict(infos)

    def partition_aware(self, framework_id: str, fallback: FrameworkInfo | None = None) -> bool:
        """Whether the framework takes TASK_DROPPED (else it is told TASK_LOST)."""
        framework = self.infos.get(framework_id) or fallback
        return framework is not None and "PARTITION_AWARE" in framework.capabilities

    def has_capability(self, framework_id: str, capability: str) -> bool:
        framework = self.infos.get(framework_id)
        return framework is not None and capability in framework.capabilities

    def is_shutting_down(self, framework_id: str) -> bool:
        return framework_id in self.shutting_down
