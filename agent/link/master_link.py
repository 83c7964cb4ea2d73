"""The agent's side of its link with the master, as a flow (pure): register at start, retry
until answered, re-register when the master fell silent or the connection came back, answer
pings with what the agent holds, and resend every unacknowledged update to a new registration.

The state is :class:`~tepui.agent.link.registration.Registration`'s; what a re-registration and a
pong report comes from the :class:`~tepui.agent.link.reconcile.Reconciler`; a draining agent
registers no more (:class:`~tepui.agent.lifecycle.stopping.Drain`).
"""

from __future__ import annotations

from dataclasses import dataclass

from tepui.agent.events import AgentEffect, MasterChanged, MasterCheck, MasterReconnected, Register, SendToMaster, Start
from tepui.agent.frameworks import Frameworks
from tepui.agent.checkpointing.journal import CheckpointJournal
from tepui.agent.link.reconcile import Reconciler
from tepui.agent.link.registration import Registration
from tepui.agent.updates.reporting import StatusReporter
from tepui.agent.lifecycle.stopping import Drain
from tepui.sdk.effects import Log
from tepui.sdk.protocol import agent as am
from tepui.sdk.protocol.values import FrameworkInfo


@dataclass(eq=False)
class MasterLink:
    registration: Registration
    frameworks: Frameworks
    reconciler: Reconciler
    reporter: StatusReporter
    journal: CheckpointJournal
    drain: Drain

    def start(self, event: Start, now: float, out: list[AgentEffect]) -> None:
        self.registration.started(now)
        self._register(now, out)

    def _register(self, now: float, out: list[AgentEffect]) -> None:
        # Every task it runs, and every ended one whose final update is not acknowledged yet
        # (Mesos): a restarted master learns the truth about both, not "unknown".
        reports: list[am.TaskReport] = []
        frameworks: list[FrameworkInfo] = []
        if self.registration.agent_id is not None:
            reports = self.reconciler.task_reports()
            reported = {report.framework_id for report in reports}
            frameworks = [f for fid, f in self.frameworks.infos.items() if fid in reported]
        self.registration.register(self.registration.register_message(reports, frameworks), now, out)

    def register_timer(self, key: Register, now: float, out: list[AgentEffect]) -> None:
        if not self.registration.registered and not self.drain.stopping:
            self._register(now, out)

    def registered(self, msg: am.AgentRegistered | am.AgentReregistered, now: float, out: list[AgentEffect]) -> None:
        result = self.registration.accepted(msg.agent_id, msg.master_info, msg.ping_interval_seconds, now, out)
        if result.new_id:
            self.journal.agent_changed()
        if result.newly:
            self.reporter.resend_all(now, out)  # what the old connection may have lost

    def master_check(self, key: MasterCheck, now: float, out: list[AgentEffect]) -> None:
        if self.registration.master_silent(now, out):
            # No ping for too long: the master died or the link is cut. Re-register; the
            # master then reconciles our tasks (Mesos agent behaviour).
            self._register(now, out)
        self.registration.arm_master_check(now, out)

    def reconnected(self, event: MasterReconnected, now: float, out: list[AgentEffect]) -> None:
        if not self.drain.stopping and self.registration.link_lost(out):
            self._register(now, out)

    def changed(self, event: MasterChanged, now: float, out: list[AgentEffect]) -> None:
        """Another master leads (ZooKeeper): register with it at once. Its AGENT_REREGISTERED
        then makes every unacknowledged update go out again (``registered``), which covers what
        was queued for the old master and lost with the old connection."""
        if not self.drain.stopping:
            self.registration.leader_changed(event.leader, event.epoch, out)
            self._register(now, out)

    def master_error(self, msg: am.Error, now: float, out: list[AgentEffect]) -> None:
        """The master could not take something we sent: it could not decode it, or it is a
        standby, and then the message names the leader (an agent given ``zk://`` follows the
        leader anyway; one given a standby's address learns from this where to point it)."""
        out.append(Log("warning", "master_error", {"message": msg.message, "call_type": msg.call_type,
                                                    "field": msg.field}))

    def ping(self, msg: am.Ping, now: float, out: list[AgentEffect]) -> None:
        self.registration.pinged(msg.interval_seconds)
        if self.registration.registered:
            held = self.reconciler.held_for_master()
            out.append(SendToMaster(am.Pong(msg.seq, len(held), am.task_set_digest(held))))
