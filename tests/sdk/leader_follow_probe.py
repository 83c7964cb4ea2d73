"""Run as a subprocess by test_master_follower.py: two fake masters (real ZeroMQ ROUTERs that
answer registrations and subscriptions) and their ``json.info_`` nodes in a real ZooKeeper; a
client given ``zk://`` — a ``SchedulerDriver`` in this process, or a ``tepui agent`` or ``tepui
sim`` child — must register with the first, then move to the second and register again within a
second of the second publishing its epoch, while the first still answers (so no silence timeout
can be what moved it).

Usage: leader_follow_probe.py ZK_HOSTS PATH driver|agent|sim WORK_DIR; prints one JSON line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

from tepui.sdk.runtime import install_reactor

reactor = install_reactor()

from kazoo.client import KazooClient  # noqa: E402

from tepui.sdk.codec import Codec, envelope  # noqa: E402
from tepui.sdk.leadership import LeaderInfo  # noqa: E402
from tepui.sdk.protocol import agent as am  # noqa: E402
from tepui.sdk.protocol import scheduler as sm  # noqa: E402
from tepui.sdk.protocol.envelope import MasterInbound  # noqa: E402
from tepui.sdk.protocol.values import FrameworkInfo, MasterInfo  # noqa: E402
from tepui.sdk.router import RouterEndpoint  # noqa: E402

HOSTS, PATH, KIND, WORK = sys.argv[1:5]
SIM_AGENTS = int(os.environ.get("PROBE_SIM_AGENTS", "40"))
SIM_WAVE = os.environ.get("PROBE_SIM_WAVE", "15")
SIM_TRANSPORT = os.environ.get("PROBE_SIM_TRANSPORT", "auto")
URL = f"zk://{HOSTS}{PATH}"
zk = KazooClient(hosts=HOSTS)
zk.start(timeout=10)
codec: Codec[Any] = Codec(MasterInbound)
result: dict[str, Any] = {}


class FakeMaster:
    def __init__(self, name: str, epoch: int) -> None:
        self.name, self.epoch = name, epoch
        self.got: list[tuple[float, str]] = []
        self.router = RouterEndpoint(reactor, "tcp://127.0.0.1:*", self.on_payload)
        self.address = self.router.address[len("tcp://"):]
        self.info = MasterInfo(id=name, address=self.address, hostname="probe", version="0", epoch=epoch)
        self.node: str | None = None

    def publish(self, epoch: int) -> None:
        data = json.dumps({"id": self.name, "address": self.address, "http": f"http://{self.name}.example:5080",
                           "epoch": epoch}).encode()
        if self.node is None:
            self.node = zk.create(f"{PATH}/masters/json.info_", data, ephemeral=True, sequence=True, makepath=True)
        else:
            zk.set(self.node, data)

    def on_payload(self, peer: bytes, payload: bytes) -> None:
        for env in codec.envelopes(payload):
            body = env.body
            self.got.append((time.monotonic(), type(body).__name__))
            if isinstance(body, am.RegisterAgent):
                self.send(peer, am.AgentRegistered(f"S-{body.agent_info.hostname}", self.info, 15.0))
            elif isinstance(body, am.ReregisterAgent):
                self.send(peer, am.AgentReregistered(body.agent_info.id or "?", self.info, 15.0))
            elif isinstance(body, sm.Subscribe):
                self.send(peer, sm.Subscribed(body.framework_info.id or "F-1", 15.0, self.info))

    def send(self, peer: bytes, body: Any) -> None:
        self.router.send(peer, codec.encode(envelope(body, 1, self.epoch)))

    def count(self, kind: str, since: float = 0.0) -> int:
        return sum(1 for at, name in self.got if name == kind and at >= since)


first, second = FakeMaster("A", 1), FakeMaster("B", 2)
first.publish(1)
child: subprocess.Popen[bytes] | None = None
driver: Any = None
sim_out = os.path.join(WORK, "sim.out")
wanted = {"driver": ("Subscribe", "Subscribe", 1), "agent": ("RegisterAgent", "ReregisterAgent", 1),
          "sim": ("RegisterAgent", "ReregisterAgent", SIM_AGENTS)}[KIND]


def start_client() -> None:
    global child, driver
    cli = [sys.executable, "-m", "tepui.cli"]
    if KIND == "driver":
        from tepui.sdk.scheduler import Scheduler, SchedulerDriver

        driver = SchedulerDriver(Scheduler(), FrameworkInfo(user="probe", name="probe"), URL, reactor=reactor,
                                 insecure=True)
        driver.start()
    elif KIND == "agent":
        child = subprocess.Popen(cli + ["agent", "--master", URL, "--insecure", "--work-dir", WORK, "--hostname",
                                        "probe-agent", "--isolation", "none", "--containerizers", "mesos",
                                        "--http-port", "0", "--log-level", "info"],
                                 stdout=open(os.path.join(WORK, "agent.out"), "wb"), stderr=subprocess.STDOUT)
    else:
        child = subprocess.Popen(cli + ["sim", "--master", URL, "--insecure", "--agents", str(SIM_AGENTS), "--wave",
                                        SIM_WAVE, "--transport", SIM_TRANSPORT, "--stats-interval", "0", "--log-level", "info"],
                                 stdout=open(sim_out, "wb"), stderr=open(os.path.join(WORK, "sim.err"), "wb"))
    wait_until(lambda: first.count(wanted[0]) >= wanted[2], 30.0, change)


def wait_until(condition: Any, timeout: float, then: Any, started: float | None = None) -> None:
    started = time.monotonic() if started is None else started
    if condition():
        then()
    elif time.monotonic() - started > timeout:
        result["timed_out"] = then.__name__
        result["seen"] = {"first": len(first.got), "second": len(second.got),
                          "second_kinds": sorted({name for _, name in second.got})}
        finish()
    else:
        reactor.callLater(0.02, wait_until, condition, timeout, then, started)


def change() -> None:
    """The leader A leaves (its node goes; its socket still answers), B joins as a standby (epoch
    0: nobody may move yet), then serves (epoch 2)."""
    result["first"] = {"registrations": first.count(wanted[0])}
    second.publish(0)
    assert first.node is not None
    zk.delete(first.node)
    reactor.callLater(0.3, serve)


def serve() -> None:
    result["before_serving"] = second.count(wanted[1]) + second.count(wanted[0])
    second.publish(2)
    result["changed_at"] = changed = time.monotonic()
    wait_until(lambda: second.count(wanted[1], changed) >= wanted[2] and (KIND != "sim" or reregistered_line()),
               10.0, done)


def reregistered_line() -> bool:
    try:
        with open(sim_out) as f:
            return any(line.startswith("reregistered ") for line in f)
    except FileNotFoundError:
        return False


def done() -> None:
    changed = result["changed_at"]
    times = sorted(at for at, name in second.got if name == wanted[1] and at >= changed)
    result["second"] = {"registrations": len(times), "last_after_s": times[-1] - changed if times else None,
                        "quartiles_s": [round(times[min(len(times) - 1, len(times) * q // 4)] - changed, 3)
                                        for q in range(5)] if times else None}
    result["first_after_change"] = first.count(wanted[1], changed) + first.count(wanted[0], changed)
    if KIND == "sim":
        with open(sim_out) as f:
            result["sim_stdout"] = f.read().splitlines()
    if driver is not None:
        result["driver_connected"] = driver.connected
    finish()


def finish() -> None:
    if child is not None:
        child.terminate()
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
    zk.delete(PATH, recursive=True)
    zk.stop()
    zk.close()
    reactor.stop()


reactor.callWhenRunning(start_client)
reactor.callLater(60, lambda: (result.setdefault("timed_out", "probe"), finish()))
reactor.run()
print(json.dumps(result), flush=True)
