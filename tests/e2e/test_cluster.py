"""End to end: a real master and real agents as separate processes, driven the way users drive
them — the example framework, ``tepui run``, an SDK framework of our own, raw bytes on the
master's socket, HTTP, and ``tepui up``.

Every subprocess call has a timeout, so a hang fails the test instead of stalling CI; every
process a test starts it also stops (and only those).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zmq

from tepui.sdk.config import load_client_config

from tests.e2e.conftest import (
    EXAMPLES,
    HERE,
    Cluster,
    LogBook,
    ProcessWatch,
    child_env,
    children_of,
    cmdline,
    free_ports,
    get_state,
    http_get,
    is_alive,
    processes_under,
    stop_process,
    tepui_cmd,
    up_ports,
)

pytestmark = pytest.mark.slow

RUN_TIMEOUT = 30.0


def run_hello(cluster: Cluster, tasks: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / "hello_framework.py"), "--master", cluster.master, "--tasks", str(tasks)],
        check=False, capture_output=True, text=True, timeout=RUN_TIMEOUT, env=child_env(),
    )


def tepui_run(cluster_master: str, *command: str, timeout: float = RUN_TIMEOUT,
              options: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run(tepui_cmd("run", "--master", cluster_master, *options, "--", *command),
                          check=False, capture_output=True, text=True, timeout=timeout, env=child_env())


def completed_framework(cluster: Cluster, name: str, known: set[str]) -> dict[str, Any]:
    """The one framework called ``name`` that completed since ``known`` was taken."""
    deadline = time.monotonic() + 5
    while True:
        state = cluster.state()
        new = [f for f in state["completed_frameworks"] if f["name"] == name and f["id"] not in known]
        if new or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert len(new) == 1, f"expected one new completed framework {name!r}, got {new}"
    return new[0]


def completed_ids(cluster: Cluster) -> set[str]:
    return {f["id"] for f in cluster.state()["completed_frameworks"]}


def describe(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"


# --- the example framework ----------------------------------------------------------------------


def test_example_framework_runs_20_tasks_to_finished(cluster: Cluster) -> None:
    known = completed_ids(cluster)
    result = run_hello(cluster, 20)
    assert result.returncode == 0, describe(result)
    assert "20 tasks finished" in result.stdout, describe(result)
    finished = set(re.findall(r"^(hello-\d+): TASK_FINISHED", result.stdout, re.MULTILINE))
    assert finished == {f"hello-{i}" for i in range(20)}, describe(result)
    assert "TASK_FAILED" not in result.stdout and "TASK_LOST" not in result.stdout, describe(result)

    framework = completed_framework(cluster, "hello", known)
    assert framework["tasks"] == [], "a torn-down framework has no active tasks"
    states = {t["id"]: t["state"] for t in framework["completed_tasks"]}
    assert {f"hello-{i}" for i in range(20)} <= set(states), states
    assert {states[f"hello-{i}"] for i in range(20)} == {"TASK_FINISHED"}, states
    # Both agents took part or at least were offered: the tasks landed on registered agents.
    agent_ids = {s["id"] for s in cluster.state()["slaves"]}
    assert {t["slave_id"] for t in framework["completed_tasks"]} <= agent_ids


# --- tepui run ----------------------------------------------------------------------------------


def test_run_exit_code_is_the_tasks(cluster: Cluster) -> None:
    failed = tepui_run(cluster.master, "sh", "-c", "exit 3")
    assert failed.returncode == 3, describe(failed)
    # Status lines may go to stdout or stderr (stderr keeps stdout for the task's own output).
    lines = [line for line in (failed.stdout + failed.stderr).splitlines() if "TASK_FAILED" in line]
    assert lines, describe(failed)
    assert "exit" in lines[-1] and re.search(r"\b3\b", lines[-1]), describe(failed)

    ok = tepui_run(cluster.master, "true")
    assert ok.returncode == 0, describe(ok)
    assert "TASK_FINISHED" in ok.stdout + ok.stderr, describe(ok)


def test_run_output_lands_in_the_sandbox(cluster: Cluster) -> None:
    result = tepui_run(cluster.master, "sh", "-c", "echo out; echo err >&2")
    assert result.returncode == 0, describe(result)
    said = result.stdout + result.stderr
    framework_id = re.search(r"subscribed as framework (\S+?);", said)
    task_id = re.search(r"^(\S+): launching on", said, re.MULTILINE)
    assert framework_id and task_id, describe(result)
    sandboxes = [d / "sandboxes" / framework_id.group(1) / task_id.group(1) for d in cluster.work_dirs]
    existing = [s for s in sandboxes if s.is_dir()]
    assert len(existing) == 1, f"expected the sandbox on exactly one agent, found {existing} of {sandboxes}"
    assert (existing[0] / "stdout").read_text() == "out\n"
    assert (existing[0] / "stderr").read_text() == "err\n"


# --- kill with a grace period -------------------------------------------------------------------


def test_kill_ends_killed_within_grace_period(cluster: Cluster) -> None:
    grace = 2.0
    result = subprocess.run(
        [sys.executable, str(HERE / "kill_framework.py"), "--master", cluster.master, "--grace", str(grace)],
        check=False, capture_output=True, text=True, timeout=60, env=child_env(),
    )
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert result.returncode == 0, describe(result)

    kills = {e["task_id"]: e for e in events if e["event"] == "kill"}
    ends = {e["task_id"]: e for e in events if e["event"] == "status" and e["state"] not in
            ("TASK_STAGING", "TASK_STARTING", "TASK_RUNNING", "TASK_KILLING")}
    assert set(kills) == set(ends) == {"sleep-term", "sleep-stubborn"}, describe(result)
    for task_id in kills:
        assert kills[task_id]["found_sleep"], f"{task_id}: its sleep never appeared\n{describe(result)}"
        assert ends[task_id]["state"] == "TASK_KILLED", describe(result)
    assert not kills["sleep-term"]["sleep_ignores_term"]
    assert kills["sleep-stubborn"]["all_ignore_term"], f"the stubborn task must really ignore SIGTERM\n{describe(result)}"

    quick = ends["sleep-term"]["t"] - kills["sleep-term"]["t"]
    stubborn = ends["sleep-stubborn"]["t"] - kills["sleep-stubborn"]["t"]
    assert quick < 2.0, f"sleep 60 took {quick:.2f} s to die of SIGTERM\n{describe(result)}"
    assert grace - 0.2 <= stubborn < grace + 3.0, \
        f"TERM-ignoring task ended {stubborn:.2f} s after the kill\n{describe(result)}"
    assert ends["sleep-term"]["exit_code"] == 128 + signal.SIGTERM, describe(result)
    assert ends["sleep-stubborn"]["exit_code"] == 128 + signal.SIGKILL, describe(result)

    # Nothing of either task is left: the pids seen before the kill, and anything in a sandbox.
    watch = ProcessWatch()
    deadline = time.monotonic() + 3
    pids = [pid for k in kills.values() for pid in k["pids"]]
    assert pids, describe(result)
    while True:
        left = [pid for pid in pids if is_alive(pid)]
        in_sandboxes = processes_under(cluster.work_dirs[0]) + processes_under(cluster.work_dirs[1])
        if not left and not in_sandboxes or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    watch.add(left + in_sandboxes)
    assert not left and not in_sandboxes, f"task processes left running: {watch.survivors()}"


# --- garbage never disturbs the master ----------------------------------------------------------


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE)
    assert match, f"metric {name} not exposed; /metrics has:\n{text}"
    return float(match.group(1))


def _deep_nesting(depth: int) -> bytes:
    return b"\x91" * depth + b"\xc0"  # [[[[...[nil]...]]]] without recursing in Python


def _expect_errors(dealer: zmq.Socket, what: str, count: int = 1) -> list[str]:
    """The next ``count`` replies, each an ERROR; a frame is one envelope (a map) or a batch of
    them (an array, docs/protocol.md "Frames"), as a framework in another language reads it."""
    replies: list[Any] = []
    while len(replies) < count:
        assert dealer.poll(5000, zmq.POLLIN), f"no reply from the master to {what} (got {replies!r})"
        frames = dealer.recv_multipart()
        assert len(frames) == 1, f"{what}: expected a single-frame reply, got {len(frames)} frames"
        reply = msgpack.unpackb(frames[0], raw=False)
        replies.extend(reply if isinstance(reply, list) else [reply])
    assert len(replies) == count, f"{what}: expected {count} replies, got {replies!r}"
    for reply in replies:
        assert isinstance(reply, dict) and isinstance(reply.get("body"), dict), f"{what}: odd reply {reply!r}"
        assert reply["body"]["type"] == "ERROR", f"{what}: expected ERROR, got {reply!r}"
    return [str(reply["body"]["message"]) for reply in replies]


def _expect_error(dealer: zmq.Socket, what: str) -> str:
    return _expect_errors(dealer, what)[0]


def test_garbage_never_disturbs_the_master(cluster: Cluster) -> None:
    port = cluster.port
    # (a) raw TCP: random bytes, then a ZMTP 3.0 greeting followed by a frame claiming 2^62 bytes.
    # The master may hang up at any point (a NULL-mechanism greeting to a CURVE server is refused
    # at once): a closed connection is a right answer; only its health afterwards matters.
    def send_raw(*chunks: bytes) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as raw:
            try:
                for chunk in chunks:
                    raw.sendall(chunk)
                time.sleep(0.2)
            except (BrokenPipeError, ConnectionResetError):
                pass

    send_raw(os.urandom(4096))
    greeting = (b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x03\x00" + b"NULL".ljust(20, b"\x00") + b"\x00" + b"\x00" * 31)
    ready = b"\x05READY" + b"\x0bSocket-Type" + struct.pack(">I", 6) + b"DEALER"
    send_raw(greeting, b"\x04" + bytes([len(ready)]) + ready, b"\x02" + struct.pack(">Q", 1 << 62) + os.urandom(1024))
    send_raw(b"\xff" + struct.pack(">Q", (1 << 63) - 1) + b"\x7f" + os.urandom(512))  # ZMTP 1.0 style huge length

    # (b) a well-behaved transport carrying bad payloads: each is answered with ERROR.
    ctx = zmq.Context()
    dealer = ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    # An authenticated client with a key of its own (its frame violation below costs that key a
    # cool-down, which must not hit the cluster's other clients).
    keys = load_client_config(cluster.env_for("garbage")["TEPUI_CONFIG"]).keys
    assert keys is not None
    dealer.curve_serverkey, dealer.curve_publickey, dealer.curve_secretkey = keys.server, keys.public, keys.secret
    try:
        dealer.connect(f"tcp://127.0.0.1:{port}")

        def header(body: Any) -> bytes:
            return msgpack.packb({"v": 1, "id": 1, "body": body})  # type: ignore[no-any-return]

        dealer.send(b"\xc1\xc1 this is not msgpack \xc1")
        assert "MessagePack" in _expect_error(dealer, "non-msgpack garbage")

        # An array is a batch of envelopes: each bad element gets its own ERROR, naming it.
        dealer.send(msgpack.packb([1, 2, 3]))
        messages = _expect_errors(dealer, "an array of numbers instead of envelopes", count=3)
        for index, message in enumerate(messages):
            assert f"envelope {index} of a batch of 3" in message and "Expected `object`" in message, messages

        dealer.send(msgpack.packb([]))
        assert "empty batch" in _expect_error(dealer, "an empty batch")

        dealer.send(header({"type": "SUBSCRIBE", "framework_info": {"user": 7, "name": "x"}}))
        message = _expect_error(dealer, "a wrong field type")
        assert "framework_info.user" in message, message

        dealer.send(header({"type": "NO_SUCH_CALL", "framework_id": "x"}))
        message = _expect_error(dealer, "an unknown message type")
        assert "NO_SUCH_CALL" in message and "$.body.type" in message, message

        dealer.send(_deep_nesting(100_000))
        message = _expect_error(dealer, "100k levels of nesting")
        assert "malformed batch" in message and "recursion depth" in message, message

        deep_body = (b"\x83" + msgpack.packb("v") + msgpack.packb(1) + msgpack.packb("id") + msgpack.packb(1)
                     + msgpack.packb("body") + b"\x82" + msgpack.packb("type") + msgpack.packb("SUBSCRIBE")
                     + msgpack.packb("framework_info") + _deep_nesting(50_000))
        dealer.send(deep_body)
        message = _expect_error(dealer, "deep nesting inside a Subscribe")
        assert "framework_info" in message, message

        dealer.send(header({"type": "SUBSCRIBE"}))
        message = _expect_error(dealer, "a call missing a required field")
        assert "framework_info" in message, message

        # Scenario 33: a message of more than one payload frame disconnects its sender, whose key
        # is then refused for a cool-down: neither it nor anything after it is answered.
        dealer.send_multipart([header({"type": "TEARDOWN", "framework_id": "x"}), b"second frame"])
        dealer.send(header({"type": "SUBSCRIBE"}))
        assert not dealer.poll(1000, zmq.POLLIN), "a reply after the multi-frame message"
    finally:
        dealer.close(0)
        ctx.term()

    # (c) the master is healthy and serves everyone else as before.
    status, body = http_get(cluster.http_port, "/health")
    assert status == 200 and json.loads(body)["healthy"] is True
    assert cluster.state()["activated_slaves"] == 2
    result = run_hello(cluster, 5)
    assert result.returncode == 0 and "5 tasks finished" in result.stdout, describe(result)
    assert cluster.alive() == ["master", "agent-1", "agent-2"]

    status, body = http_get(cluster.http_port, "/metrics")
    assert status == 200
    metrics = body.decode()
    assert _metric(metrics, "tepui_master_malformed_messages_total") >= 9
    assert _metric(metrics, "tepui_master_transport_bad_frames_total") >= 1
    assert _metric(metrics, "tepui_master_transport_disconnected_peers_total") >= 1


# --- HTTP ---------------------------------------------------------------------------------------


def test_unknown_http_path_is_a_json_404(cluster: Cluster) -> None:
    status, body = http_get(cluster.http_port, "/nope")
    assert status == 404
    document = json.loads(body)
    assert "/nope" in document["error"]
    assert {"/health", "/state", "/metrics"} <= set(document["endpoints"])


# --- no master ----------------------------------------------------------------------------------


def test_run_without_a_master_exits_125_and_says_tepui_up() -> None:
    (port,) = free_ports(1)
    started = time.monotonic()
    result = tepui_run(f"127.0.0.1:{port}", "true", options=("--timeout", "2"), timeout=20)
    took = time.monotonic() - started
    assert result.returncode == 125, describe(result)
    assert "tepui up" in result.stdout + result.stderr, describe(result)
    assert 1.5 <= took < 8.0, f"took {took:.1f} s with --timeout 2"


# --- tepui up -----------------------------------------------------------------------------------


class _Lines:
    """Collects a pipe's lines in a thread so the test can wait for one without blocking."""

    def __init__(self, stream: Any) -> None:
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for line in iter(stream.readline, ""):
            with self._lock:
                self.lines.append(line)

    def text(self) -> str:
        with self._lock:
            return "".join(self.lines)

    def wait_for(self, needle: str, timeout: float, alive: Any = None) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.text():
                return True
            if alive is not None and not alive():
                return needle in self.text()
            time.sleep(0.05)
        return False


def test_up_runs_a_cluster_and_stops_everything_on_sigterm(tmp_path: Path, logbook: LogBook,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # `tepui up` writes its client configuration (keys, address) where clients look; here that
    # is this test's own file, not the module cluster's nor the user's.
    monkeypatch.setenv("TEPUI_CONFIG", str(tmp_path / "config.yaml"))
    port, http_port = up_ports()
    state_dir = logbook.add("state-dir", tmp_path / "state")
    master = f"127.0.0.1:{port}"
    up = subprocess.Popen(
        tepui_cmd("up", "--agents", "2", "--state-dir", str(state_dir), "--port", str(port),
                  "--http-port", str(http_port), "--timeout", "20"),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=child_env(),
    )
    output = _Lines(up.stdout)
    sleeper: subprocess.Popen[bytes] | None = None
    watch = ProcessWatch()
    try:
        ready = output.wait_for("Tepui is up", 25, alive=lambda: up.poll() is None)
        assert ready, f"`tepui up` never said it is up (exit {up.poll()}):\n{output.text()}"
        state = get_state(http_port)
        assert state is not None and state["activated_slaves"] == 2, state

        children = children_of(up.pid)
        names = [cmdline(c) for c in children]
        assert len(children) == 6, ("expected a master, two agents, the services, batch and cron frameworks "
                                    f"under `tepui up`, got {names}")
        for framework in ("services", "batch", "cron"):
            assert sum(f" tepui.cli {framework} " in name for name in names) == 1, names
            found = [f for f in state["frameworks"] if f["name"] == framework]
            assert len(found) == 1 and found[0]["connected"], state["frameworks"]
        watch.add([up.pid, *children])

        # A second `tepui up` on the same ports fails fast and says why.
        second_started = time.monotonic()
        second = subprocess.run(
            tepui_cmd("up", "--agents", "1", "--state-dir", str(tmp_path / "second"), "--port", str(port),
                      "--http-port", str(http_port)),
            check=False, capture_output=True, text=True, timeout=15, env=child_env(),
        )
        assert second.returncode != 0, describe(second)
        assert time.monotonic() - second_started < 8, "a second `tepui up` on busy ports should fail fast"
        assert "already in use" in second.stdout + second.stderr, describe(second)
        assert str(port) in second.stdout + second.stderr, describe(second)
        assert up.poll() is None, "the second `tepui up` disturbed the first"

        ok = tepui_run(master, "true")
        assert ok.returncode == 0, describe(ok)

        sleeper_log = logbook.add("tepui-run-sleep", tmp_path / "sleeper.log")
        with open(sleeper_log, "wb") as log_file:
            sleeper = subprocess.Popen(tepui_cmd("run", "--master", master, "--", "sleep", "300"),
                                       stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                       env=child_env())
        deadline = time.monotonic() + 15
        while "TASK_RUNNING" not in sleeper_log.read_text() and time.monotonic() < deadline:
            assert sleeper.poll() is None, f"tepui run exited early:\n{sleeper_log.read_text()}"
            time.sleep(0.05)
        assert "TASK_RUNNING" in sleeper_log.read_text(), sleeper_log.read_text()
        deadline = time.monotonic() + 5
        tasks: list[int] = []
        while not tasks and time.monotonic() < deadline:
            tasks = [p for p in processes_under(state_dir)
                     if Path(f"/proc/{p}/cmdline").read_bytes().startswith(b"sleep\x00300")]
            time.sleep(0.05)
        assert tasks, "the `sleep 300` task process was not found in an agent's sandbox"
        watch.add(tasks)
        for child in children:  # anything else the agents started
            watch.add([p for p in children_of(child)])

        stopping = time.monotonic()
        up.send_signal(signal.SIGTERM)
        try:
            code = up.wait(20)
        except subprocess.TimeoutExpired:
            pytest.fail(f"`tepui up` did not stop within 20 s of SIGTERM:\n{output.text()}")
        took = time.monotonic() - stopping
        assert code == 0, f"`tepui up` exited {code} after SIGTERM:\n{output.text()}"
        time.sleep(0.2)
        survivors = watch.survivors()
        assert not survivors, f"left running after `tepui up` stopped ({took:.1f} s): {survivors}"
        assert not processes_under(state_dir), "processes still run in the agents' sandboxes"
        assert "stopped." in output.text(), output.text()
        # The framework whose task ran there hears that it ended, and exits on its own.
        try:
            sleeper.wait(10)
        except subprocess.TimeoutExpired:
            pytest.fail(f"`tepui run -- sleep 300` still waits after the cluster stopped:\n{sleeper_log.read_text()}")
        # The agent reports the real end (KILLED by SIGTERM: 128 + 15) before it unregisters.
        assert sleeper.returncode == 143, sleeper_log.read_text()
        assert "TASK_KILLED" in sleeper_log.read_text(), sleeper_log.read_text()
    finally:
        for leftover in (sleeper, up):
            if leftover is not None:
                stop_process(leftover, 5)
        watch.add([])
        # Kill only what we recorded as ours (children of our `tepui up`, our task), if left.
        for entry in watch.survivors():
            pid = int(entry.split()[0])
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
