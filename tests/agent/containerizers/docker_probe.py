"""Run as a subprocess by test_docker_containerizer.py: one scenario of the Docker containerizer on
a real asyncio reactor (a reactor runs once per process, so it cannot live inside pytest's).

Usage: ``docker_probe.py SCENARIO WORK_DIR AGENT_ID [PORT]``; prints one JSON object. Every
container carries the label ``tepui.agent_id=AGENT_ID``, unique to the test, by which the test
cleans up whatever a failure left behind.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.request
from typing import Any

from tepui.sdk.runtime import install_reactor

reactor = install_reactor()

import docker  # noqa: E402
from twisted.internet import defer, task, threads  # noqa: E402

from tepui.agent.containerizers.docker_containerizer import ContainerExit, DockerContainerizer, LaunchError  # noqa: E402
from tepui.sdk.protocol.values import (  # noqa: E402
    CommandInfo,
    ContainerInfo,
    DockerInfo,
    PortMapping,
    Range,
    Resource,
    TaskInfo,
)

IMAGE = os.environ.get("TEPUI_TEST_IMAGE") or "tepui-test/busybox:1"
SCENARIO, WORK_DIR, AGENT_ID = sys.argv[1], sys.argv[2], sys.argv[3]
FRAMEWORK = f"fw-{AGENT_ID}"  # container names derive from it: concurrent test runs never collide
PORT = int(sys.argv[4]) if len(sys.argv) > 4 else 0

containerizer = DockerContainerizer(reactor, os.environ.get("DOCKER_HOST"))
result: dict[str, Any] = {}


def make_task(task_id: str, command: CommandInfo | None, *, image: str = IMAGE, mem: float = 64, cpus: float = 0.5,
              ports: list[PortMapping] | None = None, privileged: bool = False, force_pull: bool = False) -> TaskInfo:
    resources = [Resource(name="cpus", scalar=cpus), Resource(name="mem", scalar=mem)]
    if ports:
        resources.append(Resource(name="ports", type="RANGES",
                                  ranges=[Range(begin=p.host_port, end=p.host_port) for p in ports]))
    return TaskInfo(name=task_id, task_id=task_id, agent_id=AGENT_ID, resources=resources, command=command,
                    container=ContainerInfo(type="DOCKER", docker=DockerInfo(
                        image=image, port_mappings=ports or [], privileged=privileged, force_pull_image=force_pull)))


def sandbox_of(task_id: str) -> str:
    return os.path.join(WORK_DIR, "sandboxes", FRAMEWORK, task_id)


def start(task_id: str, command: CommandInfo | None, **kw: Any) -> tuple[defer.Deferred[str], defer.Deferred[ContainerExit]]:
    """Launches; returns (launched, exited) Deferreds."""
    exited: defer.Deferred[ContainerExit] = defer.Deferred()
    env = {"TEPUI_TASK_ID": task_id, "MESOS_SANDBOX": sandbox_of(task_id), "TEPUI_SANDBOX": sandbox_of(task_id)}
    launched = containerizer.launch((FRAMEWORK, task_id), sandbox_of(task_id), make_task(task_id, command, **kw),
                                    FRAMEWORK, AGENT_ID, env, exited.callback)
    return launched, exited


def exit_dict(exit: ContainerExit) -> dict[str, Any]:
    return {"exit_code": exit.exit_code, "signal": exit.signal, "oom_killed": exit.oom_killed, "message": exit.message}


def read(task_id: str, name: str) -> str | None:
    try:
        with open(os.path.join(sandbox_of(task_id), name)) as f:
            return f.read()
    except OSError:
        return None


def blocking(fn: Any, *args: Any) -> defer.Deferred[Any]:
    return threads.deferToThreadPool(reactor, reactor.getThreadPool(), fn, *args)


def engine_state(container_ids: list[str]) -> dict[str, Any]:
    """Still present? (each id, and anything with our agent label)."""
    api = docker.APIClient(base_url=containerizer.docker_host, version="auto")
    try:
        present = []
        for cid in container_ids:
            try:
                api.inspect_container(cid)
                present.append(cid)
            except docker.errors.NotFound:
                pass
        labelled = api.containers(all=True, filters={"label": f"tepui.agent_id={AGENT_ID}"})
        return {"present": present, "labelled": len(labelled)}
    finally:
        api.close()


def labels_of_running() -> list[dict[str, Any]]:
    api = docker.APIClient(base_url=containerizer.docker_host, version="auto")
    try:
        found = api.containers(filters={"label": f"tepui.agent_id={AGENT_ID}"})
        out = []
        for c in found:
            host = api.inspect_container(c["Id"])["HostConfig"]
            limits = {k: host[k] for k in ("NanoCpus", "CpuShares", "Memory", "MemorySwap", "Init", "Privileged")}
            out.append({"name": c["Names"][0].lstrip("/"), **c["Labels"], "host_config": limits})
        return out
    finally:
        api.close()


def http_get(url: str, deadline: float) -> str:
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return str(response.read().decode())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@defer.inlineCallbacks
def basics() -> Any:
    result["available"] = yield containerizer.available()
    tasks = {
        "shell": CommandInfo(value="echo out-$FOO $MESOS_SANDBOX $TEPUI_SANDBOX; echo err-line >&2",
                             environment={"FOO": "bar"}),
        "argv": CommandInfo(shell=False, arguments=["echo", "two  words"]),
        "three": CommandInfo(value="echo failing; exit 3"),
    }
    started = {tid: start(tid, cmd) for tid, cmd in tasks.items()}
    ids = []
    for tid, (launched, exited) in started.items():
        cid = yield launched
        ids.append(cid)
    result["running_while_up"] = sorted(t for _, t in containerizer.running())
    for tid, (launched, exited) in started.items():
        exit = yield exited
        result[tid] = {**exit_dict(exit), "stdout": read(tid, "stdout"), "stderr": read(tid, "stderr")}
    result["running_after"] = containerizer.running()
    result["engine_after"] = yield blocking(engine_state, ids)


@defer.inlineCallbacks
def oom() -> Any:
    launched, exited = start("hog", CommandInfo(value="x=a; while true; do x=$x$x; done"), mem=32)
    yield launched
    result["hog"] = exit_dict((yield exited))


@defer.inlineCallbacks
def port() -> Any:
    mapping = PortMapping(host_port=PORT, container_port=8080)
    launched, exited = start("web", CommandInfo(
        value="echo hello-port > $MESOS_SANDBOX/index.html; exec httpd -f -p 8080 -h $MESOS_SANDBOX"), ports=[mapping])
    cid = yield launched
    try:
        result["body"] = yield blocking(http_get, f"http://127.0.0.1:{PORT}/", time.monotonic() + 10)
    except Exception as exc:
        result["body_error"] = repr(exc)
    containerizer.signal((FRAMEWORK, "web"), "TERM")
    result["web"] = exit_dict((yield exited))
    result["engine_after"] = yield blocking(engine_state, [cid])


@defer.inlineCallbacks
def signals() -> Any:
    polite_launched, polite_exit = start("polite", CommandInfo(value="echo started; sleep 60"))
    stubborn_launched, stubborn_exit = start("stubborn", CommandInfo(value='trap "" TERM; sleep 60'))
    ids = [(yield polite_launched), (yield stubborn_launched)]
    result["labels"] = yield blocking(labels_of_running)
    result["running"] = sorted(t for _, t in containerizer.running())
    # The output reaches the sandbox while the task runs, not only after it ended.
    for _ in range(50):
        if read("polite", "stdout"):
            break
        yield task.deferLater(reactor, 0.1, lambda: None)
    result["live_stdout"] = read("polite", "stdout")
    t0 = reactor.seconds()
    containerizer.signal((FRAMEWORK, "polite"), "TERM")
    containerizer.signal((FRAMEWORK, "stubborn"), "TERM")
    result["polite"] = exit_dict((yield polite_exit))
    result["polite_seconds"] = reactor.seconds() - t0
    yield task.deferLater(reactor, 1.0, lambda: None)
    result["stubborn_alive_after_term"] = (FRAMEWORK, "stubborn") in containerizer.running()
    containerizer.signal((FRAMEWORK, "stubborn"), "KILL")
    result["stubborn"] = exit_dict((yield stubborn_exit))
    result["engine_after"] = yield blocking(engine_state, ids)


@defer.inlineCallbacks
def refusals() -> Any:
    missing = f"tepui-test/missing-{AGENT_ID}:1"
    for tid, kw in (("missing", {"image": missing}), ("privileged", {"privileged": True})):
        launched, exited = start(tid, CommandInfo(value="true"), **kw)
        try:
            yield launched
            result[tid] = {"launched": True}
        except LaunchError as exc:
            result[tid] = {"error": exc.message}
    result["missing_image"] = missing
    # No registry here: force_pull_image falls back to the local image, or names the failed pull.
    launched, exited = start("forced-local", CommandInfo(value="echo pulled-or-local"), force_pull=True)
    yield launched
    result["forced-local"] = {**exit_dict((yield exited)), "stdout": read("forced-local", "stdout")}
    launched, _ = start("forced-missing", CommandInfo(value="true"), image=missing, force_pull=True)
    try:
        yield launched
        result["forced-missing"] = {"launched": True}
    except LaunchError as exc:
        result["forced-missing"] = {"error": exc.message}
    result["running_after"] = containerizer.running()
    down = DockerContainerizer(reactor, f"unix://{WORK_DIR}/no-such.sock")
    result["down_available"] = yield down.available()
    try:
        yield down.launch((FRAMEWORK, "down"), sandbox_of("down"), make_task("down", CommandInfo(value="true")),
                          FRAMEWORK, AGENT_ID, {}, lambda e: None)
        result["down_launch"] = {"launched": True}
    except LaunchError as exc:
        result["down_launch"] = {"error": exc.message}


@defer.inlineCallbacks
def recopy() -> Any:
    """The live log stream fails (here: never starts): the files are rebuilt from the engine's log."""
    from tepui.agent.containerizers import docker_containerizer

    docker_containerizer._LogFollower._run = lambda self: None  # type: ignore[method-assign]
    launched, exited = start("recopy", CommandInfo(value="echo o1; echo e1 >&2; echo o2; exit 4"))
    yield launched
    result["recopy"] = {**exit_dict((yield exited)), "stdout": read("recopy", "stdout"), "stderr": read("recopy", "stderr")}


SCENARIOS = {"basics": basics, "oom": oom, "port": port, "signals": signals, "refusals": refusals, "recopy": recopy}


def run() -> None:
    def done(outcome: Any) -> None:
        if isinstance(outcome, Exception) or hasattr(outcome, "getTraceback"):
            result["error"] = outcome.getTraceback() if hasattr(outcome, "getTraceback") else repr(outcome)
        if reactor.running:
            reactor.stop()

    SCENARIOS[SCENARIO]().addBoth(done)


def timeout() -> None:
    result["error"] = "probe timed out"
    reactor.stop()


reactor.callWhenRunning(run)
reactor.callLater(45, timeout)
reactor.run()
json.dump(result, sys.stdout)
