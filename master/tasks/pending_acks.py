"""Which status update each task waits to have acknowledged, as this master forwarded it.

Every update that needs an acknowledgement travels agent → master → framework, so the master
sees each one pass (an agent sends a task's next update only after the previous one was
acknowledged: one in flight per task). Keeping the uuid it forwarded lets the master tell an
ACKNOWLEDGE of a real update — passed on to the agent — from one of an update that does not
exist, which is refused with an ERROR (issue 15, bug 6: such an ack used to be passed on and
dropped by the agent in silence; the live fuzzer found 1,592 of them unanswered in 100,016
hostile calls). Acknowledging one update twice is idempotent, not refused: a framework sees an
update twice whenever the agent resent it, and acknowledges each copy.

Refusing is safe even when this master's knowledge is incomplete (a failover, an entry evicted
at the bound): an agent whose update was not acknowledged sends it again with the same uuid
(10 s doubling to 10 min), that copy passes through the master and is recorded, and the
framework's next acknowledgement matches. A refused ack costs one retry interval, never an
update sent forever.
"""

from __future__ import annotations

from collections import OrderedDict

TaskKey = tuple[str, str]  # (framework id, task id)

LIMIT = 200_000
"""Entries kept in all (about 150 bytes each: ~30 MB at the bound). Past it the oldest entry
goes; its acknowledgement is then refused and healed by the agent's resend (above)."""


class PendingAcks:
    def __init__(self, limit: int = LIMIT) -> None:
        self.limit = limit
        # (agent, fid, tid) → (uuid of the last update forwarded, acknowledged since)
        self._pending: OrderedDict[tuple[str, str, str], tuple[bytes, bool]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._pending)

    def forwarded(self, agent_id: str, task: TaskKey, uuid: bytes) -> None:
        """An update with ``uuid`` from ``agent_id`` went on to its framework (or would have)."""
        key = (agent_id, *task)
        self._pending[key] = (uuid, False)
        self._pending.move_to_end(key)
        while len(self._pending) > self.limit:
            self._pending.popitem(last=False)

    def acknowledged(self, agent_id: str, task: TaskKey, uuid: bytes) -> bool:
        """True when ``uuid`` is the last update forwarded for this task: the one it waits to
        have acknowledged, or that one acknowledged again (kept until the next update)."""
        key = (agent_id, *task)
        entry = self._pending.get(key)
        if entry is None or entry[0] != uuid:
            return False
        self._pending[key] = (uuid, True)
        return True

    def forget_agent(self, agent_id: str) -> None:
        for key in [k for k in self._pending if k[0] == agent_id]:
            del self._pending[key]

    def forget_framework(self, framework_id: str) -> None:
        for key in [k for k in self._pending if k[1] == framework_id]:
            del self._pending[key]
