"""Anti-entropy between the master's record of each agent's tasks and the agent's own (issue 14).

No decision may hang on one message: links lose single messages (ZeroMQ drops at reconnects
and at the high-water mark; the chaos proxies drop 5%), so every control message whose loss
would leave master, agent and framework disagreeing is either retried until answered or caught
by a periodic comparison. This component owns that state; the master core asks it what to do
and performs the answers (the flows ``master/failures/audit_flow.py``, ``failure_detection.py`` and ``readoption.py``
hold the handlers).

- **Audits.** ``AUDIT_TASKS`` carries every task the master holds on an agent; the agent
  answers ``TASK_AUDIT`` with every task it holds (and DROPPED, through its reliable status
  updates, for asked ids it never saw). An audit starts after a re-registration that left
  tasks unreported (Mesos sends ``ReconcileTasksMessage`` once; a lost one left a task
  UNREACHABLE for good in a chaos run) and whenever the agent's ``PONG`` digest disagrees with
  the master's twice running. An unanswered audit is asked again, with a new ``seq``, every ping
  interval for as long as the agent stays registered.
- **Digests.** Each ``PONG`` carries the count and :func:`task_set_digest` of the tasks the
  agent holds. Messages between two processes arrive in order, so when the master reads the
  pong of ping ``seq`` it has read every update the agent sent before it, and the agent had
  handled every RUN_TASK sent before that ping: the master compares with its tasks on the agent
  launched before the ping (each task carries a launch mark; the ping remembers the mark of its
  time). One disagreement can still be an update on its way (a final one queued behind an
  unacknowledged one); two in a row start an audit.
- **Kills.** KILL_TASK is sent again every ping interval until the task ends (an agent ignores
  a second kill of a task it is killing, and one for a task that already ended).

Cost: a pong costs the master one CRC-32 per task on that agent (0.2 µs each: 100,000 tasks on
10,000 agents pinged every 5 s is about 4 ms a second); an audit is one message each way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, MutableMapping, Protocol

from tepui.sdk.protocol import agent as am
from tepui.sdk.protocol.values import FrameworkInfo, KillPolicy

TaskKey = tuple[str, str]  # (framework id, task id)
PING_MARKS_KEPT = 8  # pongs older than this many pings are not compared (their marks are gone)


class AuditedTask(Protocol):
    launch_mark: int


@dataclass(frozen=True)
class PendingAudit:
    seq: int
    asked_at: float


@dataclass(frozen=True)
class PendingKill:
    agent_id: str
    kill_policy: KillPolicy | None
    sent_at: float


class TaskAudits:
    def __init__(self, counters: MutableMapping[str, int]) -> None:
        self.counters = counters  # the master's, so that /metrics shows them
        self._launches = 0
        self._ping_marks: dict[int, int] = {}  # ping seq → launches when it was sent
        self._mismatches: dict[str, int] = {}  # agent id → pongs in a row that disagreed
        self._pending: dict[str, PendingAudit] = {}  # agent id → the unanswered audit
        self._seq = 0
        self._kills: dict[TaskKey, PendingKill] = {}

    # --- launches and pings ---------------------------------------------------------------

    def launched(self) -> int:
        """The mark of a task launched now: later than every ping sent before it."""
        self._launches += 1
        return self._launches

    def pinged(self, seq: int) -> None:
        self._ping_marks[seq] = self._launches
        for old in [s for s in self._ping_marks if s <= seq - PING_MARKS_KEPT]:
            del self._ping_marks[old]

    def pong_disagrees(self, agent_id: str, pong: am.Pong, tasks: Mapping[TaskKey, AuditedTask]) -> bool:
        """Whether this pong starts an audit: it disagrees with the master's tasks on the agent
        launched before its ping, and so did the previous one."""
        mark = self._ping_marks.get(pong.seq)
        if pong.digest is None or pong.tasks is None or mark is None:
            return False
        expected = [key for key, task in tasks.items() if task.launch_mark <= mark]
        if len(expected) == pong.tasks and am.task_set_digest(expected) == pong.digest:
            self._mismatches.pop(agent_id, None)
            return False
        self.counters["task_digest_mismatches"] += 1
        seen = self._mismatches.get(agent_id, 0) + 1
        self._mismatches[agent_id] = seen
        return seen >= 2 and agent_id not in self._pending

    # --- audits ---------------------------------------------------------------------------

    def ask(self, agent_id: str, keys: Iterable[TaskKey], frameworks: Mapping[str, FrameworkInfo],
            now: float) -> am.AuditTasks:
        """A new audit of the agent (or the next attempt of its unanswered one)."""
        retry = agent_id in self._pending
        self._seq += 1
        self._pending[agent_id] = PendingAudit(self._seq, now)
        self._mismatches.pop(agent_id, None)
        self.counters["task_audits_retried" if retry else "task_audits"] += 1
        by_framework: dict[str, list[str]] = {}
        for framework_id, task_id in keys:
            by_framework.setdefault(framework_id, []).append(task_id)
        infos = [frameworks[fid] for fid in sorted(by_framework) if fid in frameworks]
        return am.AuditTasks(self._seq, by_framework, infos)

    def answered(self, agent_id: str, seq: int) -> None:
        """Any answer ends the agent's pending audit: it tells the truth as of its question, and
        the digests catch whatever changed since."""
        self.counters["task_audit_answers"] += 1
        pending = self._pending.get(agent_id)
        if pending is not None and seq <= pending.seq:
            del self._pending[agent_id]

    def unanswered(self, now: float, after: float) -> list[str]:
        """Agents whose audit went unanswered for ``after`` seconds: ask them again."""
        return [agent_id for agent_id, pending in self._pending.items() if now - pending.asked_at >= after]

    def pending(self, agent_id: str) -> PendingAudit | None:
        return self._pending.get(agent_id)

    def forget_agent(self, agent_id: str) -> None:
        """The agent left (unreachable, gone, unregistered): nothing is asked of it any more;
        its re-registration starts afresh."""
        self._pending.pop(agent_id, None)
        self._mismatches.pop(agent_id, None)
        for key in [k for k, kill in self._kills.items() if kill.agent_id == agent_id]:
            del self._kills[key]

    # --- kills ----------------------------------------------------------------------------

    def kill_sent(self, key: TaskKey, agent_id: str, kill_policy: KillPolicy | None, now: float) -> None:
        self._kills[key] = PendingKill(agent_id, kill_policy, now)

    def kills_due(self, now: float, after: float) -> list[tuple[TaskKey, PendingKill]]:
        """Kills sent ``after`` seconds ago or more whose task has not ended: send them again."""
        due = [(key, kill) for key, kill in self._kills.items() if now - kill.sent_at >= after]
        for key, kill in due:
            self._kills[key] = PendingKill(kill.agent_id, kill.kill_policy, now)
        self.counters["kills_retried"] += len(due)
        return due

    def task_ended(self, key: TaskKey) -> None:
        self._kills.pop(key, None)
