"""An in-process cluster for reliability scenarios: the master core, agent cores and a simple
framework wired together with no sockets, on a fake clock, through a network that can drop,
duplicate or delay messages by type and direction (DESIGN §2; RELIABILITY.md "Harness").

Processes are simulated: a ``LaunchProcess`` "runs" until the test ends it with
``finish_task``; kills end it at once (the agent's TERM). Everything is deterministic.

The master's ``Persist`` effects go to an in-memory registry (``store``), so ``restart_master``
is a failover: a new core (next epoch) recovers from it while messages already in flight still
arrive. ``hang`` freezes an agent's core with its link up (a main loop stuck, a SIGSTOP): what
reaches it waits, unread, until ``resume``. Timers follow the shell's rule: scheduling a key
again replaces the earlier timer.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tepui.agent.core import AgentConfig, AgentCore
from tepui.agent.events import LaunchProcess, Received as AgentReceived, SendToMaster, SignalProcess, Start, \
    TaskExited, TaskSpawned
from tepui.master.core import MasterConfig, MasterCore
from tepui.master.events import Abort, Received as MasterReceived, Send
from tepui.master.durability.registry import Persist, decode
from tepui.sdk.effects import CancelTimer, ScheduleTimer, TimerFired
from tepui.sdk.protocol import scheduler as sm
from tepui.sdk.protocol.values import CommandInfo, FrameworkInfo, TaskInfo, TaskState, TaskStatus
from tepui.sdk.resources import Resources

Rule = Callable[[str, str, Any], str | None]  # (source, destination, body) → "drop" | "duplicate" | None


@dataclass
class FrameworkStub:
    """Records what it hears, acknowledges every update, launches on request."""

    peer: bytes
    info: FrameworkInfo
    framework_id: str | None = None
    updates: list[TaskStatus] = field(default_factory=list)
    offers: list[Any] = field(default_factory=list)
    acknowledge: bool = True


class Sim:
    def __init__(self, agents: int = 1, partition_aware: bool = True, **master_config: Any) -> None:
        self.now = 0.0
        self._timers: list[tuple[float, int, str, Any]] = []
        self._cancelled: dict[tuple[str, Any], int] = {}
        self._seq = itertools.count()
        self.rules: list[Rule] = []
        self.delivered: list[tuple[str, str, Any]] = []
        self.launches: list[tuple[str, str]] = []  # (agent, task id) every time a process starts
        self.running: dict[tuple[str, str, str], int] = {}  # (agent, fid, tid) → pid
        self.store: dict[str, dict[str, bytes]] = {}  # the master's registry
        self.aborted: list[str] = []  # reasons of master Abort effects
        self.hung: dict[str, list[tuple[str, Any]]] = {}  # agent → what waits for it to resume
        self.master = MasterCore(MasterConfig(master_id="m", **master_config))
        self._do("master", self.master.start(self.now))
        self.agents: dict[str, AgentCore] = {}
        uuids = itertools.count(1)
        for i in range(agents):
            name = f"agent-{i}"
            config = AgentConfig(hostname=name, resources=Resources.parse("cpus:4;mem:4096"), work_dir=f"/w/{name}",
                                 update_retry_initial=10.0)
            self.agents[name] = AgentCore(config, lambda: f"u{next(uuids)}".encode())
            self._do(name, self.agents[name].handle(Start(), self.now))
        capabilities = ["PARTITION_AWARE"] if partition_aware else []
        self.framework = FrameworkStub(b"fw", FrameworkInfo(user="u", name="sim", capabilities=capabilities,
                                                            failover_timeout=3600.0))
        self.send_from_framework(sm.Subscribe(self.framework.info))
        self.run_until(1.0)

    # --- the network ----------------------------------------------------------------------

    def _deliver(self, source: str, destination: str, body: Any, delay: float = 0.0) -> None:
        verdict = None
        for rule in self.rules:
            verdict = rule(source, destination, body) or verdict
        if verdict == "drop":
            return
        copies = 2 if verdict == "duplicate" else 1
        for _ in range(copies):
            self._schedule(self.now + delay, "deliver", (source, destination, body))

    def send_from_framework(self, body: Any) -> None:
        self._deliver("framework", "master", body)

    # --- effects --------------------------------------------------------------------------

    def _do(self, who: str, effects: list[Any]) -> None:
        if who == "master" and any(isinstance(effect, Abort) for effect in effects):
            # The shell performs nothing of a batch that ends the master.
            self.aborted.extend(effect.reason for effect in effects if isinstance(effect, Abort))
            return
        for effect in effects:
            if isinstance(effect, ScheduleTimer):
                generation = self._cancelled.get((who, effect.key), 0) + 1  # replaces an earlier one
                self._cancelled[(who, effect.key)] = generation
                self._schedule(effect.at, "timer", (who, effect.key, generation))
            elif isinstance(effect, Persist) and who == "master":
                table = self.store.setdefault(effect.ns, {})
                if effect.value is None:
                    table.pop(effect.key, None)
                else:
                    table[effect.key] = effect.value
            elif isinstance(effect, CancelTimer):
                self._cancelled[(who, effect.key)] = self._cancelled.get((who, effect.key), 0) + 1
            elif isinstance(effect, Send):
                destination = "framework" if effect.peer == self.framework.peer else effect.peer.decode()
                self._deliver("master", destination, effect.body)
            elif isinstance(effect, SendToMaster):
                self._deliver(who, "master", effect.body)
            elif isinstance(effect, LaunchProcess):
                pid = 1000 + len(self.launches)
                self.launches.append((who, effect.task_id))
                self.running[(who, effect.framework_id, effect.task_id)] = pid
                self._schedule(self.now, "spawned", (who, effect.framework_id, effect.task_id, pid))
            elif isinstance(effect, SignalProcess):
                if self.running.pop((who, effect.framework_id, effect.task_id), None) is not None:
                    sig = 15 if effect.signal == "TERM" else 9
                    self._schedule(self.now, "exited", (who, effect.framework_id, effect.task_id, None, sig))

    def _schedule(self, at: float, kind: str, payload: Any) -> None:
        heapq.heappush(self._timers, (at, next(self._seq), kind, payload))

    def run_until(self, until: float) -> None:
        while self._timers and self._timers[0][0] <= until:
            at, _seq, kind, payload = heapq.heappop(self._timers)
            self.now = max(self.now, at)
            frozen = self._target(kind, payload)
            if frozen in self.hung:
                self.hung[frozen].append((kind, payload))
                continue
            if kind == "deliver":
                self._arrive(*payload)
            elif kind == "timer":
                who, key, generation = payload
                if self._cancelled.get((who, key), 0) == generation:
                    self._do(who, self._core(who).handle(TimerFired(key), self.now))
            elif kind == "spawned":
                who, fid, tid, pid = payload
                self._do(who, self.agents[who].handle(TaskSpawned(fid, tid, pid), self.now))
            elif kind == "exited":
                who, fid, tid, code, sig = payload
                self._do(who, self.agents[who].handle(TaskExited(fid, tid, code, sig), self.now))
        self.now = max(self.now, until)

    @staticmethod
    def _target(kind: str, payload: Any) -> str:
        """Whose core an event runs in."""
        if kind == "deliver":
            return str(payload[1])
        return str(payload[0])

    def _core(self, who: str) -> Any:
        return self.master if who == "master" else self.agents[who]

    def _arrive(self, source: str, destination: str, body: Any) -> None:
        self.delivered.append((source, destination, body))
        if destination == "master":
            peer = self.framework.peer if source == "framework" else source.encode()
            self._do("master", self.master.handle(MasterReceived(peer, body), self.now))
        elif destination == "framework":
            self._framework_hears(body)
        elif destination in self.agents:
            epoch = self.master.config.epoch
            self._do(destination, self.agents[destination].handle(AgentReceived(body, epoch=epoch), self.now))

    def _framework_hears(self, body: Any) -> None:
        framework = self.framework
        if isinstance(body, sm.Subscribed):
            framework.framework_id = body.framework_id
        elif isinstance(body, sm.Offers):
            framework.offers.extend(body.offers)
        elif isinstance(body, sm.Update):
            framework.updates.append(body.status)
            if framework.acknowledge and body.status.uuid is not None and body.status.agent_id:
                self.send_from_framework(sm.Acknowledge(framework.framework_id or "", body.status.agent_id,
                                                        body.status.task_id, body.status.uuid))

    # --- conveniences ---------------------------------------------------------------------

    def launch(self, task_ids: list[str]) -> None:
        offer = self.framework.offers.pop(0)
        tasks = [TaskInfo(name=t, task_id=t, agent_id=offer.agent_id, resources=Resources.of(cpus=0.1).to_wire(),
                          command=CommandInfo(value="sleep 100")) for t in task_ids]
        self.send_from_framework(sm.Accept(self.framework.framework_id or "", [offer.id], [sm.Launch(tasks)]))

    def finish_task(self, agent: str, task_id: str, code: int = 0) -> None:
        fid = self.framework.framework_id or ""
        if self.running.pop((agent, fid, task_id), None) is not None:
            self._schedule(self.now, "exited", (agent, fid, task_id, code, None))

    def states(self, task_id: str) -> list[TaskState]:
        return [s.state for s in self.framework.updates if s.task_id == task_id]

    def cut(self, agent: str) -> Rule:
        """Drops everything between the master and ``agent`` (both directions)."""
        def rule(source: str, destination: str, body: Any) -> str | None:
            return "drop" if agent in (source, destination) else None
        self.rules.append(rule)
        return rule

    def cut_one_way(self, source: str, destination: str) -> Rule:
        """Drops everything from ``source`` to ``destination`` only."""
        def rule(src: str, dst: str, body: Any) -> str | None:
            return "drop" if (src, dst) == (source, destination) else None
        self.rules.append(rule)
        return rule

    def heal(self, rule: Rule) -> None:
        self.rules.remove(rule)

    def hang(self, agent: str) -> None:
        """The agent's core stops: it reads nothing, answers nothing, fires no timer; its link
        stays up, so what is sent to it waits, in order, like bytes in a socket buffer."""
        self.hung.setdefault(agent, [])

    def resume(self, agent: str) -> None:
        """The core runs again and works through everything that waited, in order."""
        for kind, payload in self.hung.pop(agent, []):
            self._schedule(self.now, kind, payload)

    def restart_master(self, **master_config: Any) -> MasterCore:
        """A failover: the old master stops (its timers with it), a new one — next epoch, built
        with ``master_config`` (defaults otherwise) — recovers the registry and starts. Messages in flight reach the new one (ZeroMQ queues
        cross restarts); agents find it when they notice the silence and re-register."""
        self._timers = [t for t in self._timers if not (t[2] == "timer" and t[3][0] == "master")]
        heapq.heapify(self._timers)
        self._cancelled = {k: v for k, v in self._cancelled.items() if k[0] != "master"}
        config = MasterConfig(master_id=f"m{self.master.config.epoch + 1}", epoch=self.master.config.epoch + 1,
                              **master_config)
        self.master = MasterCore(config)
        recovered = decode(self.store)
        if not recovered.empty:
            self._do("master", self.master.recover(recovered, self.now))
        self._do("master", self.master.start(self.now))
        return self.master

