"""Anti-entropy with each agent, the flow half: sending an audit of the tasks the master holds
on an agent, and every ping interval asking unanswered audits again and repeating kills of
tasks that have not ended. The state (what is pending, since when) is
:class:`~tepui.master.failures.task_audit.TaskAudits`; the answers are handled in
:mod:`tepui.master.failures.readoption` (``TASK_AUDIT``) and :mod:`tepui.master.failures.failure_detection` (a
``PONG`` whose digest disagrees). Stateless.
"""

from __future__ import annotations

from tepui.master.events import MasterEffect, Send
from tepui.master.records import AgentRecord
from tepui.master.members.roster import Roster
from tepui.master.failures.task_audit import TaskAudits
from tepui.sdk.protocol import agent as am


class AuditFlow:
    def __init__(self, roster: Roster, audits: TaskAudits) -> None:
        self._roster = roster
        self._audits = audits

    def audit(self, agent: AgentRecord, now: float, out: list[MasterEffect]) -> None:
        infos = {fid: framework.info for fid, framework in self._roster.frameworks.items()}
        out.append(Send(agent.peer, self._audits.ask(agent.agent_id, agent.tasks, infos, now)))

    def retry_audits_and_kills(self, now: float, interval: float, out: list[MasterEffect]) -> None:
        """Every ping interval: audits still unanswered are asked again, kills of tasks that
        have not ended are sent again (no decision hangs on one message)."""
        agents = self._roster.agents
        for agent_id in self._audits.unanswered(now, interval):
            agent = agents.get(agent_id)
            if agent is None:
                self._audits.forget_agent(agent_id)
            else:
                self.audit(agent, now, out)
        for (framework_id, task_id), kill in self._audits.kills_due(now, interval):
            agent = agents.get(kill.agent_id)
            if agent is None or (framework_id, task_id) not in agent.tasks:
                self._audits.task_ended((framework_id, task_id))
            else:
                out.append(Send(agent.peer, am.KillTask(framework_id, task_id, kill.kill_policy)))
