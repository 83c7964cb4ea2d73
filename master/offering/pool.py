"""The allocator as the master's flows use it: resources given back, and an allocation cycle
asked for — a component of :class:`tepui.master.core.MasterCore`.

Why a component rather than calls on the allocator: two rules hold at every place resources
return. A mismatch (a double recover) is a bug, counted in ``/metrics`` as ``recover_mismatch``
rather than silently minting resources; and whatever frees or adds resources asks for an
incremental cycle, which the core schedules once, after the event (``AllocateNow``), however
many flows asked during it.
"""

from __future__ import annotations

from typing import MutableMapping

from tepui.offers.allocator import Allocator
from tepui.sdk.resources import Resources


class Pool:
    def __init__(self, allocator: Allocator, counters: MutableMapping[str, int]) -> None:
        self.allocator = allocator
        self._counters = counters  # the master's, so that /metrics shows them
        self._wanted = False

    def recover(self, agent_id: str, framework_id: str, role: str, resources: Resources,
                refuse_seconds: float | None = None, now: float = 0.0) -> None:
        """Returns resources to the allocator (with the decline filter ``refuse_seconds``)."""
        if not self.allocator.recover(agent_id, framework_id, role, resources, refuse_seconds, now):
            self._counters["recover_mismatch"] += 1

    def request_allocation(self) -> None:
        self._wanted = True

    def take_request(self) -> bool:
        """Whether a cycle was asked for since the last call (the core's, once per event)."""
        wanted, self._wanted = self._wanted, False
        return wanted
