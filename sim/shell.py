"""The simulator's I/O shell: connections, timers, waves of registrations, the ready line.

Thin like every shell (DESIGN §2): decode, ``core.handle``, perform. What is particular to
running 10,000 agents in one process is here:

* registrations go in waves (``wave`` agents connect and register, the next wave starts once
  they are registered or after ``wave_timeout``), so the master is never handed 10,000
  registrations at once, and a progress line shows how far it got;
* with ``--master zk://...``, a new leading master (:meth:`SimShell.master_changed`) moves the
  agents' connections and re-registers them in waves the same way, at once rather than after
  the silence limit, and prints ``reregistered agents=N leader=ID epoch=E seconds=S`` on
  stdout when the last one is registered again (what bench/failover.py measures). Measured
  with tests/sdk/leader_follow_probe.py (two fake masters in one Python process, a 2-core
  machine at load 3-6): 1,000 agents re-registered 0.6-2.4 s after the new leader published
  its epoch in waves of 250, 1.2 s in one wave of 1,000; 40 agents in 0.16 s;
* every core timer lives in one heap under one reactor call (:class:`TimerHeap`): 100,000
  task-end timers and as many update retries would otherwise be 200,000 reactor DelayedCalls;
* nothing is logged per message; a stats line every ``stats_interval`` seconds says what the
  agents are doing.
"""

from __future__ import annotations

import heapq
import logging
import os
import sys
import time
from typing import Any, Callable, Hashable

from tepui.sdk.batch import Outbox
from tepui.sdk.codec import Codec, ProtocolError, envelope
from tepui.sdk.effects import TimerFired
from tepui.sdk.protocol.envelope import AgentInbound
from tepui.sdk.shell import TimersAndLogs
from tepui.sim.core import SimCore
from tepui.sim.events import CloseAgent, MasterChanged, Received, SendToMaster, Start, Stop
from tepui.sim.links import Links

log = logging.getLogger("tepui.sim")

TIMER_BATCH = 5000  # timers fired per reactor turn before pings and acks get a turn


class TimerHeap:
    """``ScheduleTimer``/``CancelTimer`` semantics (one pending timer per key; scheduling a
    key again replaces it) with one heap and one reactor call for all keys. Cancelled entries
    stay in the heap until they come up (or until they outnumber the live ones: then the heap
    is rebuilt), which keeps cancel O(1)."""

    def __init__(self, reactor: Any, fire: Callable[[Hashable], None]) -> None:
        self._reactor = reactor
        self._fire = fire
        self._heap: list[tuple[float, int, Hashable]] = []
        self._live: dict[Hashable, int] = {}
        self._seq = 0
        self._call: Any = None
        self._call_at = 0.0

    def __len__(self) -> int:
        return len(self._live)

    def schedule(self, at: float, key: Hashable) -> None:
        self._seq += 1
        self._live[key] = self._seq
        heapq.heappush(self._heap, (at, self._seq, key))
        if self._call is None or at < self._call_at:
            self._arm(at)

    def cancel(self, key: Hashable) -> None:
        self._live.pop(key, None)

    def cancel_all(self) -> None:
        self._live.clear()
        self._heap.clear()
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _arm(self, at: float) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call_at = at
        self._call = self._reactor.callLater(max(0.0, at - self._reactor.seconds()), self._run)

    def _run(self) -> None:
        self._call = None
        heap, live = self._heap, self._live
        now = self._reactor.seconds()
        fired = 0
        while heap and heap[0][0] <= now and fired < TIMER_BATCH:
            _, seq, key = heapq.heappop(heap)
            if live.get(key) != seq:
                continue  # cancelled or replaced
            del live[key]
            fired += 1
            self._fire(key)
        if len(heap) > 2 * len(live) + 10_000:
            self._heap = heap = [entry for entry in heap if live.get(entry[2]) == entry[1]]
            heapq.heapify(heap)
        if heap and self._call is None:
            self._arm(heap[0][0])
        elif heap and heap[0][0] < self._call_at:
            self._arm(heap[0][0])


class SimShell:
    def __init__(self, reactor: Any, core: SimCore, make_links: Callable[[Callable[[int, Any], None]], Links],
                 wave: int = 250, wave_timeout: float = 10.0, stats_interval: float = 10.0,
                 on_ready: Callable[[], None] | None = None, progress: Callable[[str], None] | None = None) -> None:
        self.reactor = reactor
        self.core = core
        self.codec: Codec[Any] = Codec(AgentInbound)
        self.links = make_links(self._on_payload)
        # What each agent sends in one turn of the loop leaves as one frame (tepui.sdk.batch),
        # as from the real agent's transport.
        self._outbox: Outbox[int] = Outbox(self.codec.max_bytes)
        self._outbox_scheduled = False
        self.timers = TimerHeap(reactor, lambda key: self.handle(TimerFired(key)))
        self.timers_and_logs = TimersAndLogs(self.timers, log)
        self.wave = max(1, wave)
        self.wave_timeout = wave_timeout
        self.stats_interval = stats_interval
        self._on_ready = on_ready
        self._progress = progress or (lambda line: print(line, file=sys.stderr, flush=True))
        agents = core.config.agents
        self._msg_ids = [0] * agents
        # Ordered by process start, as the real agent's (the master fences off older ones).
        self._incarnation_prefix = f"{time.time_ns():020d}-"
        self._routing_prefix = os.urandom(4)
        self.malformed = 0
        self._opened = 0
        self._wave_started = 0.0
        self._started_at = 0.0
        self._ready = False
        self._stopping = False
        self._stats_call: Any = None
        self._round = 0  # registration rounds: the start, then one per new leading master
        self._moving: tuple[str, int, float] | None = None  # a new leader's id, epoch, when it was seen
        self._target = agents  # agents the current round registers

    def identity(self, index: int) -> bytes:
        """A routing id that is unique per agent and per sim process, and never starts with a
        zero byte (reserved by ZeroMQ)."""
        return b"sim" + self._routing_prefix + index.to_bytes(4, "big")

    # --- start: waves of registrations ------------------------------------------------------

    def start(self) -> None:
        self._started_at = self.reactor.seconds()
        self._next_wave()

    def master_changed(self, leader: str, epoch: int, address: str, server_key: bytes | None) -> None:
        """ZooKeeper names another serving master: every running agent moves its connection
        there and registers again, in waves as at start, beginning now (not after the master's
        silence limit). A change during a round starts the round over."""
        if self._stopping:
            return
        now = self.reactor.seconds()
        self.links.move(address, server_key)
        self._perform(self.core.handle(MasterChanged(leader, epoch), now))
        self._moving = (leader, epoch, now)
        self._target = sum(1 for agent in self.core.agents if not agent.closed)
        self._progress(f"sim: master {leader} (epoch {epoch}) at {address} leads; re-registering "
                       f"{self._target} agents")
        self._round += 1
        self._opened = 0
        self._next_wave()

    def _next_wave(self) -> None:
        total = self.core.config.agents
        start, end = self._opened, min(total, self._opened + self.wave)
        now = self.reactor.seconds()
        agents = self.core.agents
        for index in range(start, end):
            if self._moving is None:
                self.links.open(index)
            elif agents[index].closed:
                continue  # shut down by the master: nothing to move
            else:
                self.links.reopen(index)
            self._perform(self.core.handle(Start(index), now))
        self._opened = end
        self._wave_started = now
        self.reactor.callLater(self._watch_interval(), self._watch_registrations, self._round)

    def _watch_registrations(self, round: int = 0) -> None:
        if self._stopping or round != self._round:
            return  # stopped, or a newer round (another leader) took over
        total, registered = self.core.config.agents, self.core.registered
        now = self.reactor.seconds()
        if registered >= self._target:
            if self._moving is not None and self._ready:
                self._reregistered(now)
            else:
                self._became_ready(now)
            return
        # Agents closed since (SHUTDOWN_AGENT) will not register: they count as done.
        opened = self._opened - sum(1 for agent in self.core.agents[:self._opened] if agent.closed) \
            if self._moving is not None else self._opened
        if self._opened < total and (registered >= opened or now - self._wave_started > self.wave_timeout):
            rate = registered / max(now - (self._moving[2] if self._moving else self._started_at), 1e-3)
            self._progress(f"sim: {registered}/{self._target} agents registered ({rate:.0f}/s), "
                           f"connecting {self._opened + 1}-{min(total, self._opened + self.wave)}")
            self._next_wave()
            return
        self.reactor.callLater(self._watch_interval(), self._watch_registrations, round)

    def _watch_interval(self) -> float:
        """How often a round's progress is checked: every 10 ms while moving to a new leader
        (each wave waits for the one before, and the whole move is part of the failover time
        bench/failover.py measures), every 50 ms at start."""
        return 0.01 if self._moving is not None else 0.05

    def _reregistered(self, now: float) -> None:
        assert self._moving is not None
        leader, epoch, seen = self._moving
        self._moving = None
        seconds = now - seen
        self._progress(f"sim: {self.core.registered}/{self._target} agents re-registered with {leader} "
                       f"(epoch {epoch}) in {seconds:.2f} s")
        print(f"reregistered agents={self.core.registered} leader={leader} epoch={epoch} seconds={seconds:.3f}",
              flush=True)

    def _became_ready(self, now: float) -> None:
        total = self.core.config.agents
        self._ready = True
        self._moving = None
        self._progress(f"sim: {total}/{total} agents registered in {now - self._started_at:.1f} s")
        if self._on_ready is not None:
            self._on_ready()
        if self.stats_interval > 0:
            self._stats_call = self.reactor.callLater(self.stats_interval, self._stats_line)

    def _stats_line(self) -> None:
        self._progress("sim: " + self.summary())
        self._stats_call = self.reactor.callLater(self.stats_interval, self._stats_line)

    def summary(self) -> str:
        core = self.core
        stats = core.stats
        unacked = sum(len(agent.pending) for agent in core.agents)
        parts = [f"agents={core.config.agents}", f"registered={core.registered}", f"tasks_running={core.running}",
                 f"tasks_launched={stats['tasks_launched']}", f"tasks_finished={stats['tasks_finished']}",
                 f"tasks_killed={stats['tasks_killed']}", f"updates_unacked={unacked}", f"timers={len(self.timers)}"]
        for name in sorted(stats):
            if name not in ("tasks_launched", "tasks_finished", "tasks_killed") and stats[name]:
                parts.append(f"{name}={stats[name]}")
        for name, value in sorted(self.links.stats.items()):
            if value:
                parts.append(f"{name}={value}")
        if self.malformed:
            parts.append(f"malformed_messages={self.malformed}")
        return " ".join(parts)

    # --- stop -------------------------------------------------------------------------------

    def stop(self, unregister: bool = False) -> None:
        """Stops every agent (with ``unregister``: UNREGISTER_AGENT first); the caller gives
        the links a moment to flush before :meth:`close`."""
        if self._stopping:
            return
        self._stopping = True
        if self._stats_call is not None and self._stats_call.active():
            self._stats_call.cancel()
        self._perform(self.core.handle(Stop(unregister), self.reactor.seconds()))
        self.timers.cancel_all()

    def close(self) -> None:
        self._flush()
        self.links.close_all()
        self._progress("sim: stopped; " + self.summary())

    # --- messages and effects ---------------------------------------------------------------

    def handle(self, event: Any) -> None:
        self._perform(self.core.handle(event, self.reactor.seconds()))

    def _on_payload(self, index: int, payload: Any) -> None:
        for env in self.codec.envelopes(payload):  # one, or a batch (tepui.sdk.batch)
            if isinstance(env, ProtocolError):
                self.malformed += 1
                if self.malformed == 1:
                    log.warning("event=malformed_message agent_index=%d error=%r note=\"logged once; counted\"",
                                index, str(env))
                continue
            self._perform(self.core.handle(Received(index, env.body, env.epoch), self.reactor.seconds()))

    def _perform(self, effects: list[Any]) -> None:
        common = self.timers_and_logs
        for effect in effects:
            kind = type(effect)
            if kind is SendToMaster:
                self._send(effect.index, effect.body)
            elif kind is CloseAgent:
                self._flush()  # its last words (UNREGISTER_AGENT) first
                self.links.close(effect.index)
            elif not common.perform(effect):  # pragma: no cover
                log.error("event=unknown_effect effect=%r", effect)

    def _send(self, index: int, body: Any) -> None:
        self._msg_ids[index] += 1
        incarnation = f"{self._incarnation_prefix}sim{index:09d}"
        data = self.codec.encode(envelope(body, self._msg_ids[index], self.core.agents[index].master_epoch,
                                          incarnation))
        self._outbox.add(index, data)
        if not self._outbox_scheduled:
            self._outbox_scheduled = True
            self.reactor.callLater(0, self._flush)

    def _flush(self) -> None:
        self._outbox_scheduled = False
        for index, frame, _ in self._outbox.take():
            self.links.send(index, frame)
