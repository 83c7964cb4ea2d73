"""A custom executor (examples/echo_executor.py) run by a real agent: 5 tasks, messages both ways;
only the executor the agent started (with its secret) can subscribe as it."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import Cluster, child_env, stop_process

pytestmark = pytest.mark.slow
FRAMEWORK = Path(__file__).with_name("executor_framework.py")
EXECUTOR = Path(__file__).parents[2] / "examples" / "echo_executor.py"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    # The executor is this repository's Python program; the default task user (nobody) may not
    # be able to run this interpreter, so the agent runs tasks as its own user (root) here, which
    # the master allows only with a run_tasks rule naming root.
    root = tmp_path_factory.mktemp("executors")
    (root / "acls.yaml").write_text("permissive: true\nrun_tasks:\n  - principals: ANY\n    users: [root]\n")
    instance = Cluster(root, agents=1, agent_args=["--task-user", "root"],
                       master_args=["--acls", str(root / "acls.yaml")])
    try:
        instance.start()
        yield instance
    finally:
        instance.stop()


def test_custom_executor_runs_tasks_and_echoes_messages(cluster: Cluster) -> None:
    log_before = len(cluster.logs["agent-1"].read_text())  # the cluster is shared: count this run's starts
    done = subprocess.run([sys.executable, str(FRAMEWORK), "--master", cluster.master], capture_output=True,
                          text=True, timeout=90, env=child_env())
    assert done.returncode == 0, done.stdout + done.stderr + cluster.log_tails()
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    finished = {e["task"] for e in events if e["event"] == "status" and e["state"] == "TASK_FINISHED"}
    assert finished == {f"t{i}" for i in range(5)}, events
    sources = {e["source"] for e in events if e["event"] == "status"}
    assert sources == {"SOURCE_EXECUTOR"} and {e["executor"] for e in events if e["event"] == "status"} == {"echo"}
    assert {"event": "message", "executor": "echo", "data": "echo: ping"} in events
    log = cluster.logs["agent-1"].read_text()[log_before:]
    assert log.count("event=executor_starting") == 1, "one executor runs every task of its framework"


# Plays a hostile local user: plain pyzmq on the agent's executor socket.
IMPOSTOR = """
import json, sys, zmq
from tepui.sdk.codec import Codec, envelope
from tepui.sdk.protocol import executor as em
from tepui.sdk.protocol.envelope import ExecutorInbound

endpoint, framework_id, executor_id, pid = sys.argv[1:5]
result = {}
try:
    open(f"/proc/{pid}/environ", "rb").read()
    result["environ"] = "readable"
except OSError as exc:
    result["environ"] = type(exc).__name__
codec = Codec(ExecutorInbound)
sock = zmq.Context.instance().socket(zmq.DEALER)
sock.connect(endpoint)
answers = []
for number, secret in enumerate([None, "a-guessed-secret"], 1):
    sock.send(codec.encode(envelope(em.ExecutorSubscribe(framework_id, executor_id, secret=secret), number)))
    if not sock.poll(10000):
        answers.append(["no answer", ""])
        continue
    for env in codec.envelopes(sock.recv()):
        answers.append([type(env.body).__name__, getattr(env.body, "message", "")])
result["answers"] = answers
print(json.dumps(result))
"""


def wait_for(path: Path, process: subprocess.Popen[str], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, f"the framework ended early: {process.communicate()}"
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def environment_of(pid: str) -> dict[str, str]:
    with open(f"/proc/{pid}/environ", "rb") as f:
        pairs = [item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item]
    return {k.decode(): v.decode() for k, v in pairs}


def test_only_the_executor_the_agent_started_can_subscribe_as_it(cluster: Cluster, tmp_path: Path) -> None:
    """The executor socket's secret: a local process that knows everything about an executor the
    agent launched and is waiting for (socket, framework id, executor id) but not its secret cannot
    subscribe as it; the executor itself can. The secret shows up nowhere but in the executor's
    environment and the agent's 0600 checkpoint. (Last in this module: it starts a second executor.)"""
    launched, go = tmp_path / "launched", tmp_path / "go"
    # The executor says where it is, then waits (unsubscribed) until the impostor has tried.
    wrapper = (f'echo "$$ $TEPUI_AGENT_ENDPOINT $TEPUI_FRAMEWORK_ID" > {launched}.tmp && mv {launched}.tmp {launched}; '
               f'while [ ! -e {go} ]; do sleep 0.05; done; exec {sys.executable} {EXECUTOR}')
    framework = subprocess.Popen([sys.executable, str(FRAMEWORK), "--master", cluster.master,
                                  "--executor-command", wrapper],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
    try:
        wait_for(launched, framework)
        pid, endpoint, framework_id = launched.read_text().split()
        secret = environment_of(pid)["TEPUI_EXECUTOR_SECRET"]
        assert len(secret) >= 32
        checkpoint = cluster.work_dirs[0] / "meta" / "executors.json"
        assert secret in checkpoint.read_text() and stat.S_IMODE(checkpoint.stat().st_mode) == 0o600
        # Another local user (nobody), on the world-writable socket.
        drop = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--init-groups"] if os.geteuid() == 0 else []
        impostor = subprocess.run([*drop, sys.executable, "-c", IMPOSTOR, endpoint, framework_id, "echo", pid],
                                  capture_output=True, text=True, timeout=60, env=child_env(), cwd="/")
        assert impostor.returncode == 0, impostor.stderr
        seen = json.loads(impostor.stdout)
        assert [kind for kind, _ in seen["answers"]] == ["ExecutorError", "ExecutorError"], seen
        assert "sent no secret" in seen["answers"][0][1]
        assert "not the one this agent gave it" in seen["answers"][1][1]
        if drop:
            assert seen["environ"] == "PermissionError", "another user must not read the executor's environment"
        go.touch()
        out, err = framework.communicate(timeout=90)
    finally:
        stop_process(framework, 5)
    assert framework.returncode == 0, out + err + cluster.log_tails()
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    finished = {e["task"] for e in events if e["event"] == "status" and e["state"] == "TASK_FINISHED"}
    assert finished == {f"t{i}" for i in range(5)}, events
    log = cluster.logs["agent-1"].read_text()
    assert log.count("event=executor_subscribe_refused") == 2, log
    assert "reason=missing_secret" in log and "reason=wrong_secret" in log
    for path in [cluster.logs["agent-1"], cluster.logs["master"]] + [
            p for area in ("sandboxes", "executors") for p in (cluster.work_dirs[0] / area).rglob("*") if p.is_file()]:
        assert secret.encode() not in path.read_bytes(), f"the secret leaked into {path}"
