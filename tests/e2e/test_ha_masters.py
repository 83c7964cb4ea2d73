"""Three real masters on the real 3-server ZooKeeper ensemble (RELIABILITY scenarios 23 and 26).

- **23, standby form**: the standbys answer HTTP with a 307 to the leader and ZeroMQ with an
  error naming it. When the leader is SIGKILLed, a standby wins, recovers the registry from
  ZooKeeper, the agents re-register with their ids, every task still runs (not relaunched), the
  framework re-subscribes with its id, and offers are regenerated (a new task launches).
- **26**: the leader is cut off from ZooKeeper (a real partition: iptables drops its packets to
  the ensemble's ports, matched by its cgroup) → it stops acting within the session timeout and
  exits non-zero; a new leader is elected and the cluster carries on.

Agents and the framework are given the master as ``zk://…`` and follow the leader."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import msgspec
import pytest
import zmq

from tepui.sdk.codec import envelope
from tepui.sdk.protocol import scheduler as sm

from .conftest import child_env, free_ports, stop_agent, stop_process, tail, tepui_cmd, write_token

pytestmark = pytest.mark.slow

SESSION_TIMEOUT = 2.0
HERE = Path(__file__).parent


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 30.0, logs: Callable[[], str] = str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{logs()}")


def http(port: int, path: str) -> tuple[int, dict[str, str], Any]:
    """(status, headers, JSON body) without following redirects."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(f"http://127.0.0.1:{port}{path}", timeout=3) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, json.loads(exc.read() or b"null")


CGROUP_ROOT = Path("/sys/fs/cgroup/unified")


def _partition_supported() -> str | None:
    if os.geteuid() != 0:
        return "needs root (iptables, cgroups)"
    if not CGROUP_ROOT.is_dir() or shutil.which("iptables") is None:
        return f"needs iptables and the cgroup v2 hierarchy at {CGROUP_ROOT}"
    return None


class HaCluster:
    """Three masters (``--zk``), two agents and the HA test framework, all following ZooKeeper."""

    def __init__(self, root: Path, zk_url: str) -> None:
        self.root, self.zk = root, zk_url
        ports = free_ports(6)
        self.ports = ports[:3]
        self.http_ports = ports[3:]
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, Path] = {}
        self.agents_root = Path(os.environ.get("TMPDIR", "/tmp")) / f"tepui-ha-{uuid.uuid4().hex[:8]}"
        self.agents_root.mkdir(mode=0o711)
        self.cgroups: dict[int, Path] = {}  # master index → the cgroup it starts in (for partitions)
        self.token = write_token(root / "http-token")  # one token for the cluster, as `tepui up --ha`

    def use_cgroups(self) -> None:
        """Each master starts in a cgroup of its own, so a test can cut it off from ZooKeeper."""
        for index in range(3):
            self.cgroups[index] = CGROUP_ROOT / f"tepui-e2e-{uuid.uuid4().hex[:8]}-m{index}"
            self.cgroups[index].mkdir()

    def spawn(self, name: str, args: list[str], python: bool = False,
              cgroup: Path | None = None) -> subprocess.Popen[bytes]:
        path = self.root / f"{name}.log"
        self.logs[name] = path
        command = [sys.executable, *args] if python else tepui_cmd(*args)

        def join_cgroup() -> None:  # in the child, before exec: every socket it makes is the cgroup's
            if cgroup is not None:
                (cgroup / "cgroup.procs").write_text(str(os.getpid()))

        with open(path, "ab") as log:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                       env=child_env(), cwd=self.root, preexec_fn=join_cgroup)
        self.processes[name] = process
        return process

    def start_master(self, index: int) -> subprocess.Popen[bytes]:
        return self.spawn(f"master-{index}", [
            "master", "--ip", "127.0.0.1", "--port", str(self.ports[index]), "--http-port", str(self.http_ports[index]),
            "--insecure", "--zk", self.zk, "--zk-session-timeout", str(SESSION_TIMEOUT),
            "--http-token-file", str(self.root / "http-token"),
            "--agent-reregister-timeout", "60", "--heartbeat-interval", "1"], cgroup=self.cgroups.get(index))

    def start(self) -> None:
        for index in range(3):
            self.start_master(index)
        self.leader()
        for index in (1, 2):
            self.spawn(f"agent-{index}", [
                "agent", "--master", self.zk, "--work-dir", str(self.agents_root / f"agent-{index}"),
                "--hostname", f"agent-{index}", "--http-port", "0", "--insecure", "--resources", "cpus:2;mem:1024"])
        wait_for(lambda: len(self.state().get("slaves", [])) == 2, "both agents to register", logs=self.log_tails)

    def start_framework(self, tasks: int = 2) -> None:
        self.spawn("framework", [str(HERE / "ha_framework.py"), "--master", self.zk, "--tasks", str(tasks)],
                   python=True)

    def call(self, index: int, method: str, path: str, body: object) -> int:
        request = urllib.request.Request(f"http://127.0.0.1:{self.http_ports[index]}{path}", method=method,
                                         data=json.dumps(body).encode(),
                                         headers={"authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)

    def health(self, index: int) -> dict[str, Any] | None:
        try:
            return http(self.http_ports[index], "/health")[2]  # type: ignore[no-any-return]
        except (OSError, ValueError):
            return None

    def leader(self, timeout: float = 30.0, other_than: int | None = None) -> int:
        def leading() -> int | None:
            for index in range(3):
                if index != other_than and (self.health(index) or {}).get("leading"):
                    return index + 1  # truthy
            return None

        return int(wait_for(leading, "a leading master", timeout, self.log_tails)) - 1

    def state(self) -> dict[str, Any]:
        for index in range(3):
            health = self.health(index)
            if health and health.get("leading"):
                status, _headers, body = http(self.http_ports[index], "/state")
                if status == 200:
                    return body  # type: ignore[no-any-return]
        return {}

    def events(self, kind: str) -> list[dict[str, Any]]:
        path = self.logs.get("framework")
        if path is None or not path.exists():
            return []
        found = []
        for line in path.read_text().splitlines():
            if line.startswith("{"):
                event = json.loads(line)
                if event["event"] == kind:
                    found.append(event)
        return found

    def running(self) -> dict[str, str]:
        """task id → agent id of every task the leader's /state shows RUNNING."""
        return {task["id"]: task["slave_id"] for framework in self.state().get("frameworks", [])
                for task in framework.get("tasks", []) if task["state"] == "TASK_RUNNING"}

    def log_tails(self) -> str:
        return "\n".join(f"===== {name} =====\n{tail(path, 30)}" for name, path in self.logs.items())

    def stop(self) -> None:
        for name, process in self.processes.items():
            if name.startswith("agent") and process.poll() is None:
                process.send_signal(signal.SIGUSR1)  # end your tasks too
        for name, process in self.processes.items():
            if name.startswith("agent"):
                stop_agent(process, 15)
        for name, process in self.processes.items():
            if not name.startswith("agent"):
                stop_process(process, 10)
        shutil.rmtree(self.agents_root, ignore_errors=True)
        for cgroup in self.cgroups.values():
            if cgroup.exists():
                cgroup.rmdir()  # empty: its master has exited


def _cluster(tmp_path: Path, zk_ensemble: Any, cgroups: bool) -> Iterator[HaCluster]:
    cluster = HaCluster(tmp_path, zk_ensemble.zk_url(f"/tepui-e2e-{uuid.uuid4().hex[:8]}"))
    try:
        if cgroups:
            cluster.use_cgroups()
        cluster.start()
        yield cluster
    except BaseException:
        print(cluster.log_tails())
        raise
    finally:
        cluster.stop()


@pytest.fixture
def ha(tmp_path: Path, zk_ensemble: Any) -> Iterator[HaCluster]:
    yield from _cluster(tmp_path, zk_ensemble, cgroups=False)


@pytest.fixture
def ha_cuttable(tmp_path: Path, zk_ensemble: Any) -> Iterator[HaCluster]:
    """:func:`ha` with each master in a cgroup of its own, so it can be cut off from ZooKeeper."""
    reason = _partition_supported()
    if reason:
        pytest.skip(reason)
    yield from _cluster(tmp_path, zk_ensemble, cgroups=True)


def zmq_call(port: int) -> dict[str, Any]:
    """One framework call to the master on ``port``; the decoded answer."""
    context = zmq.Context.instance()
    socket = context.socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    try:
        socket.connect(f"tcp://127.0.0.1:{port}")
        call = envelope(sm.Decline(framework_id="F-none", offer_ids=["o1"]), 1, call_id="probe-1")
        socket.send(msgspec.msgpack.encode(call))
        assert socket.poll(5000), "no answer from the master within 5 s"
        return msgspec.msgpack.decode(socket.recv())  # type: ignore[no-any-return]
    finally:
        socket.close()


def test_23_the_leader_dies_a_standby_takes_over_with_every_agent_task_and_framework(ha: HaCluster) -> None:
    ha.start_framework(tasks=2)
    wait_for(lambda: len(ha.running()) == 2, "the framework's two tasks to run", logs=ha.log_tails)
    leader = ha.leader()
    standby = (leader + 1) % 3
    leader_url = f"http://127.0.0.1:{ha.http_ports[leader]}"
    agents_before = sorted(agent["id"] for agent in ha.state()["slaves"])
    tasks_before = ha.running()
    framework_id = ha.events("subscribed")[0]["framework_id"]
    first_epoch = ha.events("subscribed")[0]["epoch"]
    ha.call(leader, "PUT", "/weights", [{"role": "db", "weight": 4}])
    ha.call(leader, "POST", "/quota", {"role": "db", "limit": {"cpus": 1}})

    # The standby form: HTTP redirects to the leader, ZeroMQ names it.
    code, headers, body = http(ha.http_ports[standby], "/state?x=1")
    assert (code, headers["location"]) == (307, f"{leader_url}/state?x=1")
    assert http(ha.http_ports[standby], "/redirect")[1]["location"] == f"{leader_url}/"
    assert http(ha.http_ports[standby], "/health")[2]["leading"] is False
    answer = zmq_call(ha.ports[standby])
    assert answer["body"]["type"] == "ERROR" and answer["body"]["call_id"] == "probe-1"
    assert f"the leading master is {body['leader']['id']} at 127.0.0.1:{ha.ports[leader]}" in answer["body"]["message"]

    # The leader dies without a word.
    killed_at = time.monotonic()
    ha.processes[f"master-{leader}"].send_signal(signal.SIGKILL)
    ha.processes[f"master-{leader}"].wait(10)
    new_leader = ha.leader(other_than=leader)
    elected_after = time.monotonic() - killed_at
    wait_for(lambda: sorted(agent["id"] for agent in ha.state().get("slaves", [])) == agents_before,
             "both agents to re-register under their ids", logs=ha.log_tails)
    wait_for(lambda: len(ha.events("subscribed")) >= 2, "the framework to re-subscribe", logs=ha.log_tails)
    resubscribed = ha.events("subscribed")[1]
    assert resubscribed["framework_id"] == framework_id  # the same framework: a failover, not a new one
    assert resubscribed["epoch"] > first_epoch  # the new leader's epoch fences the old one
    wait_for(lambda: "probe-2" in ha.running(), "a new task to launch on the new leader's offers",
             logs=ha.log_tails)
    recovered_after = time.monotonic() - killed_at
    running = ha.running()
    assert {task: running[task] for task in tasks_before} == tasks_before  # still running, where they ran
    assert http(ha.http_ports[new_leader], "/weights")[2] == [{"role": "db", "weight": 4.0}]  # from the registry
    quota = http(ha.http_ports[new_leader], "/quota")[2]["infos"]
    assert [(info["role"], info["limit"]) for info in quota] == [("db", {"cpus": 1.0})]
    launches = [event["task_id"] for event in ha.events("launch")]
    assert sorted(launches) == ["long-0", "long-1", "probe-2"]  # nothing relaunched
    print(f"elected after {elected_after:.2f} s; agents, framework and a new task after {recovered_after:.2f} s")

    # The killed master comes back as a standby of the new leader.
    ha.start_master(leader)
    wait_for(lambda: (ha.health(leader) or {}).get("leader", {}) and ha.health(leader)["leader"]["id"]  # type: ignore[index]
             == ha.health(new_leader)["id"], "the restarted master to stand by", logs=ha.log_tails)  # type: ignore[index]
    assert ha.health(leader)["leading"] is False  # type: ignore[index]


class ZooKeeperPartition:
    """Cuts the processes of one cgroup off from the ensemble's client ports: their packets to
    them are dropped (iptables' cgroup match), everyone else's pass. A socket belongs to the
    cgroup its process was in when it was created, so the master must start in it
    (:meth:`HaCluster.start_master` with ``cgroup``), not be moved there later."""

    def __init__(self, cgroup: Path, ports: list[int]) -> None:
        self.rule = ["OUTPUT", "-o", "lo", "-p", "tcp", "-m", "multiport", "--dports", ",".join(map(str, ports)),
                     "-m", "cgroup", "--path", cgroup.name, "-j", "DROP"]
        subprocess.run(["iptables", "-A", *self.rule], check=True)

    def heal(self) -> None:
        subprocess.run(["iptables", "-D", *self.rule], check=False)


def test_26_a_leader_cut_off_from_zookeeper_stops_acting_and_exits_and_another_leads(
        ha_cuttable: HaCluster, zk_ensemble: Any) -> None:
    ha = ha_cuttable
    ha.start_framework(tasks=1)
    wait_for(lambda: len(ha.running()) == 1, "the framework's task to run", logs=ha.log_tails)
    leader = ha.leader()
    process = ha.processes[f"master-{leader}"]
    zk_ports = [int(host.rsplit(":", 1)[1]) for host in zk_ensemble.connect_string.split(",")]
    log = ha.logs[f"master-{leader}"]

    partition = ZooKeeperPartition(ha.cgroups[leader], zk_ports)
    cut_at = time.monotonic()
    try:
        wait_for(lambda: "event=master_paused" in log.read_text(), "the cut-off leader to pause",
                 timeout=SESSION_TIMEOUT * 2, logs=ha.log_tails)
        paused_after = time.monotonic() - cut_at
        new_leader = ha.leader(other_than=leader)
        elected_after = time.monotonic() - cut_at
        code = process.wait(SESSION_TIMEOUT * 4)
        exited_after = time.monotonic() - cut_at
    finally:
        partition.heal()
    assert code == 1  # it exits non-zero, as a Mesos master aborts; a supervisor restarts it
    assert "event=leadership_lost" in log.read_text()
    # It stopped acting (paused: kazoo's SUSPENDED comes after ⅔ of the session timeout of
    # silence at most) before any successor could exist (ZooKeeper expires the session after
    # the whole timeout), and it gave up within the timeout after that.
    assert paused_after < elected_after
    assert paused_after <= SESSION_TIMEOUT
    assert exited_after <= paused_after + SESSION_TIMEOUT + 1.0
    print(f"paused after {paused_after:.2f} s, new leader after {elected_after:.2f} s, "
          f"old leader exited after {exited_after:.2f} s")
    # The cluster carries on with the new leader: the framework is back, a new task runs.
    wait_for(lambda: len(ha.events("subscribed")) >= 2, "the framework to re-subscribe", logs=ha.log_tails)
    wait_for(lambda: "probe-2" in ha.running(), "a new task on the new leader", logs=ha.log_tails)
    assert ha.leader() == new_leader
