"""A lossy ZeroMQ link for bench/chaos.py: one process per link (one agent, or the framework)
between its DEALER and the master's ROUTER, that drops, duplicates or cuts messages.

    agent DEALER ──► proxy ROUTER (--listen) ─┬─ DEALER, routing id = the agent's ──► master ROUTER
                                              └─ (one DEALER per downstream routing id)

Each downstream peer (whatever connects to ``--listen``) gets its own upstream DEALER whose
routing id is the peer's own, so the master sees the same identities it would see without the
proxy (``ROUTER_HANDOVER`` included). Socket options mirror ``tepui.sdk.transport``,
``.router`` and ``.dealer`` (``ROUTER_MANDATORY``, HWMs, ``MAXMSGSIZE``, ZMTP heartbeats,
reconnect intervals). Connection state is mirrored both ways, so that peers see what they would
see without the proxy:

* a downstream peer that vanished (``EHOSTUNREACH`` on the ROUTER, e.g. a SIGKILLed agent)
  gets its upstream DEALER closed, so the master's ROUTER sees it disappear;
* while the master is unreachable (a sentinel DEALER's socket monitor reports its connection
  lost, e.g. the master was SIGKILLed) the proxy's ROUTER is closed, so every downstream
  DEALER sees its connection drop and keep failing to reconnect; once the master accepts
  connections again the ROUTER is bound again on the same port and the peers reconnect (their
  socket monitors report "connection restored", as with a direct link). Messages a peer sends
  meanwhile wait in its own DEALER, as they would.

With ``--follow`` (``bench/chaos.py --masters 3``, where the bench names each new leader with
``master``) a lost master leaves the downstream ROUTER bound: the peers see their connection
drop when the next leader is named — the moment a ``zk://`` client retargets — and reconnect
within one reconnect interval (100 ms). Closing it at the loss instead, as above, measured
ZeroMQ's reconnect backoff (it grows to 5 s against a closed port: agents back 3–7 s after a
leader SIGKILL whose successor served after 2 s), and a blip at the loss set the agents
re-registering into the void, so that the new leader got them only at their next retry (1–5 s).

Production code has no hooks for any of this.

Faults, per message and per direction, from a seeded RNG (a frame that batches several
envelopes, ``tepui.sdk.batch``, is split and each envelope meets its own fault; the survivors go
on as one frame): with probability ``--fault-rate`` the message is dropped; with probability ``--duplicate-rate`` (default: the same) it is
forwarded twice, back to back. While the link is partitioned everything is dropped in both directions; the
TCP connections stay up (like a cable cut with no RST: only application pings notice).

A master failover with the old master still alive (epoch fencing, tests/chaos/test_epoch_fencing.py):
``master HOST:PORT`` points the link at a new master. The upstream DEALERs to the old one stay
open and what it sends still reaches the peers (its stale-epoch messages must be dropped by
them; those to the masters before it, and any to the new master's address, are closed: that is
how ``bench/chaos.py --masters 3`` makes the link follow the leading master), new ones to the new master are opened as peers speak, and the downstream ROUTER is bound
again so that every peer sees its connection drop and reconnects at once, as after its detector
names a new leader. ``hold`` keeps back what the current master sends (it waits in the proxy as
in a socket buffer) and ``release`` delivers it, so that messages of the old master queued
across the failover reach peers that already follow the new one.

Control: one command per line on stdin — ``partition SECONDS``, ``heal``, ``rate DROP [DUPLICATE]``,
``hold``, ``release``, ``master HOST:PORT``, ``stats``, ``quit`` (EOF on stdin also quits, so a
proxy never outlives the bench). Answers and
``{"event": "ready"}`` are JSON lines on stdout. Every dropped or duplicated message is logged
(type, task ids where the message carries them) to ``--fault-log`` as JSON lines, so a lost or
duplicated task can be traced to the exact message that was lost or duplicated.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from typing import Any

import msgspec
import zmq

from tepui.sdk.batch import BatchError, pack, split

MAX_BYTES = 4 * 1024 * 1024 + 1024  # tepui.sdk.codec.DEFAULT_MAX_BYTES + 1024, as the transport sets it
HWM = 10_000


def _common(sock: zmq.Socket, linger_ms: int) -> None:
    sock.setsockopt(zmq.LINGER, linger_ms)
    sock.setsockopt(zmq.SNDHWM, HWM)
    sock.setsockopt(zmq.RCVHWM, HWM)
    sock.setsockopt(zmq.MAXMSGSIZE, MAX_BYTES)
    sock.setsockopt(zmq.HEARTBEAT_IVL, 5000)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 15000)
    sock.setsockopt(zmq.HEARTBEAT_TTL, 15000)


def describe(payload: bytes) -> dict[str, Any]:
    """The message's type and, where it carries them, its task ids (for the fault log)."""
    try:
        env = msgspec.msgpack.decode(payload)
        body = env.get("body", {})
        kind = body.get("type", "?")
        info: dict[str, Any] = {"type": kind}
        if "status" in body:
            info["task_id"] = body["status"].get("task_id")
            info["state"] = body["status"].get("state")
        elif "task" in body and isinstance(body["task"], dict):
            info["task_id"] = body["task"].get("task_id")
        elif "task_id" in body:
            info["task_id"] = body["task_id"]
        elif "operations" in body:
            info["task_ids"] = [t.get("task_id") for op in body["operations"] for t in op.get("task_infos", [])]
            info["offer_ids"] = body.get("offer_ids")
        elif "task_ids" in body:
            info["task_ids"] = body["task_ids"]
        elif "tasks" in body and isinstance(body["tasks"], list):
            info["tasks"] = len(body["tasks"])
        return info
    except Exception:  # noqa: BLE001 - not ours to judge: the receiver's codec does that
        return {"type": "undecodable"}


class Proxy:
    def __init__(self, args: argparse.Namespace) -> None:
        self.name = args.name
        self.follow = args.follow
        self.master = _tcp(args.master)
        self.rate = args.fault_rate
        self.dup_rate = args.fault_rate if args.duplicate_rate is None else args.duplicate_rate
        self.rng = random.Random(args.seed)
        self.ctx = zmq.Context()
        self.listen = f"tcp://127.0.0.1:{args.listen}"
        self.poller = zmq.Poller()
        self.front: zmq.Socket | None = None
        self._bind_front()
        self.backs: dict[bytes, zmq.Socket] = {}  # to the current master, by peer
        self.by_socket: dict[zmq.Socket, bytes] = {}  # every upstream DEALER (old masters' too) → its peer
        self.generation: dict[zmq.Socket, int] = {}  # which master (0 first, +1 per ``master``) it reaches
        self.target: dict[zmq.Socket, str] = {}  # the master address it connects to
        self.master_generation = 0
        self.held: list[tuple[zmq.Socket, bytes, bytes]] = []  # (from, peer, payload), kept back by ``hold``
        self.holding: int | None = None  # the generation whose messages are held
        self.poller.register(sys.stdin.fileno(), zmq.POLLIN)
        self._watch_master()
        self.partitioned_until = 0.0
        self.fault_log = open(args.fault_log, "a", buffering=1) if args.fault_log else None
        self.stats: dict[str, int] = {k: 0 for k in (
            "up_forwarded", "up_dropped", "up_duplicated", "up_partition_dropped", "up_hwm_dropped",
            "down_forwarded", "down_dropped", "down_duplicated", "down_partition_dropped", "down_hwm_dropped",
            "down_unreachable", "peers_opened", "peers_closed", "master_connection_lost",
            "down_held", "down_from_old_master", "master_changes")}
        self.stdin_buffer = b""
        self.running = True

    def _bind_front(self, again: bool = False) -> None:
        """Binds the downstream ROUTER; ``again`` (after the master came back): quietly not yet
        while the port is still being released — the main loop retries."""
        sock = self.ctx.socket(zmq.ROUTER)
        _common(sock, 0)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
        try:
            sock.bind(self.listen)
        except zmq.ZMQError as exc:
            sock.close(0)
            if again and exc.errno == zmq.EADDRINUSE:
                return
            raise
        self.front = sock
        self.poller.register(sock, zmq.POLLIN)

    def _watch_master(self) -> None:
        """The sentinel never sends: it only tells, through its monitor, whether the master is there."""
        self.sentinel = self.ctx.socket(zmq.DEALER)
        _common(self.sentinel, 0)
        self.sentinel.setsockopt(zmq.RECONNECT_IVL, 100)
        self.sentinel.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
        self.monitor = self.sentinel.get_monitor_socket(zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED)
        self.poller.register(self.monitor, zmq.POLLIN)
        self.sentinel.connect(self.master)
        self.master_lost = False

    def _unwatch_master(self) -> None:
        self.poller.unregister(self.monitor)
        self.sentinel.disable_monitor()
        self.monitor.close(0)
        self.sentinel.close(0)

    def _change_master(self, master: str) -> None:
        """Points the link at ``master`` (see the module docstring): the old master's DEALERs
        stay open, the peers reconnect at once."""
        self.master = _tcp(master)
        self.master_generation += 1
        self.backs = {}  # the next message of each peer opens its DEALER to the new master
        # Only the last master's DEALERs stay (what it sends still reaches the peers). Older ones
        # go, and so does any old DEALER to the new master's own address (a master that led
        # before, restarted there): with the peer's routing id it would fight the new DEALER
        # for that identity on the master's ROUTER (handover, back and forth).
        for sock, generation in list(self.generation.items()):
            if generation < self.master_generation - 1 or self.target.get(sock) == self.master:
                self._close_backend(sock)
        self._unwatch_master()
        self._watch_master()
        self._close_front()  # bound again by the main loop
        self.stats["master_changes"] += 1
        self._say("master_changed", master=self.master)

    def _close_front(self) -> None:
        if self.front is not None:
            self.poller.unregister(self.front)
            self.front.close(0)
            self.front = None

    def _master_event(self) -> None:
        from zmq.utils.monitor import recv_monitor_message

        while True:
            try:
                event = recv_monitor_message(self.monitor, zmq.NOBLOCK)["event"]
            except zmq.Again:
                return
            if event == zmq.EVENT_DISCONNECTED and not self.master_lost:
                self.master_lost = True
                self.stats["master_connection_lost"] += 1
                if not self.follow:
                    self._close_front()  # downstream peers see their connection drop, as without us
                self._say("master_lost")
            elif event == zmq.EVENT_CONNECTED and self.master_lost:
                self.master_lost = False
                self._say("master_back")

    def _backend(self, identity: bytes) -> zmq.Socket:
        sock = self.backs.get(identity)
        if sock is None:
            sock = self.ctx.socket(zmq.DEALER)
            _common(sock, 0)
            sock.setsockopt(zmq.ROUTING_ID, identity)
            sock.setsockopt(zmq.RECONNECT_IVL, 100)
            sock.setsockopt(zmq.RECONNECT_IVL_MAX, 5000)
            sock.connect(self.master)
            self.backs[identity] = sock
            self.by_socket[sock] = identity
            self.generation[sock] = self.master_generation
            self.target[sock] = self.master
            self.poller.register(sock, zmq.POLLIN)
            self.stats["peers_opened"] += 1
        return sock

    def _close_backend(self, sock: zmq.Socket) -> None:
        identity = self.by_socket.pop(sock, None)
        if identity is None:
            return  # closed already
        if self.backs.get(identity) is sock:
            del self.backs[identity]
        del self.generation[sock]
        self.target.pop(sock, None)
        self.poller.unregister(sock)
        sock.close(0)
        self.stats["peers_closed"] += 1

    def _log_fault(self, direction: str, fault: str, payload: bytes) -> None:
        if self.fault_log is not None:
            record = {"t": round(time.monotonic(), 3), "link": self.name, "dir": direction, "fault": fault}
            record.update(describe(payload))
            self.fault_log.write(json.dumps(record) + "\n")

    def _faulted(self, direction: str, frame: bytes) -> tuple[bytes | None, int]:
        """The frame to forward after each of its envelopes met its fault (None: nothing is
        left), and how many envelopes it holds."""
        try:
            parts = [bytes(part) for part in split(frame)]
        except BatchError:
            parts = [frame]  # not ours to judge: the receiver's codec does that
        kept = [part for part in parts for _ in range(self._copies(direction, part))]
        return (pack(kept) if kept else None), len(kept)

    def _copies(self, direction: str, payload: bytes) -> int:
        """How many times to forward this message: 0 (dropped), 1, or 2 (duplicated)."""
        if time.monotonic() < self.partitioned_until:
            self.stats[f"{direction}_partition_dropped"] += 1
            return 0
        roll = self.rng.random()
        if roll < self.rate:
            self.stats[f"{direction}_dropped"] += 1
            self._log_fault(direction, "drop", payload)
            return 0
        if roll < self.rate + self.dup_rate:
            self.stats[f"{direction}_duplicated"] += 1
            self._log_fault(direction, "duplicate", payload)
            return 2
        return 1

    def _upstream(self) -> None:
        assert self.front is not None
        for _ in range(1000):
            try:
                frames = self.front.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(frames) != 2:
                continue  # a DEALER sends one payload frame; the master would refuse anything else
            identity, payload = frames
            sock = self._backend(identity)
            forward, count = self._faulted("up", payload)
            if forward is None:
                continue
            try:
                sock.send(forward, zmq.NOBLOCK)
                self.stats["up_forwarded"] += count
            except zmq.Again:
                self.stats["up_hwm_dropped"] += count

    def _downstream(self, sock: zmq.Socket) -> None:
        identity = self.by_socket[sock]
        for _ in range(1000):
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if self.holding is not None and self.generation[sock] == self.holding:
                self.held.append((sock, identity, frames[-1]))
                self.stats["down_held"] += 1  # frames (a frame may batch several envelopes)
                continue
            if not self._to_peer(sock, identity, frames[-1], self.generation[sock]):
                return

    def _to_peer(self, sock: zmq.Socket, identity: bytes, payload: bytes, generation: int) -> bool:
        """Forwards what a master (of ``generation``) sent to its peer; False when the peer is
        gone (and so, now, is the DEALER ``sock`` that stood for it upstream)."""
        if self.front is None:
            self.stats["down_unreachable"] += 1  # the link is down: the peer cannot get it
            return True
        forward, count = self._faulted("down", payload)
        if forward is None:
            return True
        try:
            self.front.send_multipart([identity, forward], zmq.NOBLOCK)
            self.stats["down_forwarded"] += count
            if generation < self.master_generation:
                self.stats["down_from_old_master"] += count
        except zmq.Again:
            self.stats["down_hwm_dropped"] += count
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EHOSTUNREACH:
                raise
            # The downstream peer is gone (its process died): so is its upstream twin.
            self.stats["down_unreachable"] += count
            self._close_backend(sock)
            return False
        return True

    def _release(self) -> None:
        held, generation, self.held, self.holding = self.held, self.holding, [], None
        for sock, identity, payload in held:
            self._to_peer(sock, identity, payload, generation or 0)
        self._say("released", messages=len(held))

    def _command(self, line: str) -> None:
        words = line.split()
        if not words:
            return
        if words[0] == "partition":
            self.partitioned_until = time.monotonic() + float(words[1])
            self._say("partitioned", seconds=float(words[1]))
        elif words[0] == "heal":
            self.partitioned_until = 0.0
            self._say("healed")
        elif words[0] == "rate":
            self.rate = float(words[1])
            self.dup_rate = float(words[2]) if len(words) > 2 else self.rate
            self._say("rate", rate=self.rate, duplicate_rate=self.dup_rate)
        elif words[0] == "hold":
            self.holding = self.master_generation
            self._say("holding")
        elif words[0] == "release":
            self._release()
        elif words[0] == "master":
            self._change_master(words[1])
        elif words[0] == "stats":
            self._say("stats", **self.stats)
        elif words[0] == "quit":
            self.running = False

    def _stdin(self) -> None:
        chunk = os.read(sys.stdin.fileno(), 4096)
        if not chunk:
            self.running = False
            return
        self.stdin_buffer += chunk
        while b"\n" in self.stdin_buffer:
            line, self.stdin_buffer = self.stdin_buffer.split(b"\n", 1)
            self._command(line.decode())

    def _say(self, event: str, **fields: Any) -> None:
        sys.stdout.write(json.dumps({"event": event, "link": self.name, **fields}) + "\n")
        sys.stdout.flush()

    def run(self) -> None:
        self._say("ready")
        stdin_fd = sys.stdin.fileno()
        while self.running:
            if self.front is None and not self.master_lost:
                self._bind_front(again=True)  # the master is back: so is the link
            for sock, _ in self.poller.poll(50 if self.front is None else 200):
                if sock == stdin_fd:
                    self._stdin()
                elif sock is self.monitor:
                    self._master_event()
                elif sock is self.front:
                    self._upstream()
                elif sock in self.by_socket:
                    self._downstream(sock)
        self._say("stats", **self.stats)
        for sock in list(self.by_socket):
            self._close_backend(sock)
        self._close_front()
        self._unwatch_master()
        self.ctx.term()


def _tcp(address: str) -> str:
    return address if address.startswith("tcp://") else f"tcp://{address}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listen", type=int, required=True, help="port on 127.0.0.1 the peer connects to")
    parser.add_argument("--master", required=True, help="the master's HOST:PORT")
    parser.add_argument("--name", default="link")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fault-rate", type=float, default=0.05)
    parser.add_argument("--duplicate-rate", type=float, default=None, help="default: --fault-rate")
    parser.add_argument("--fault-log", default=None)
    parser.add_argument("--follow", action="store_true",
                        help="HA: the bench follows the leader (command master); a lost master only blips the link")
    Proxy(parser.parse_args()).run()


if __name__ == "__main__":
    main()
