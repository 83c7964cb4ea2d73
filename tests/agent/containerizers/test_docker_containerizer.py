"""The Docker containerizer: what a task asks for (pure, fast) and real containers on the local
engine (slow; each scenario in a subprocess with its own asyncio reactor, see docker_probe.py).

The slow tests need the engine at $DOCKER_HOST (default unix:///var/run/docker.sock) and the local
image $TEPUI_TEST_IMAGE (default tepui-test/busybox:1), both set up by scripts/test; without them
they skip, saying which is missing. They only touch containers labelled with their own unique
``tepui.agent_id``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tepui.agent.containerizers.docker_containerizer import (
    SANDBOX_MOUNT,
    LaunchError,
    container_name,
    container_spec,
)
from tepui.sdk.protocol.values import (
    CommandInfo,
    ContainerInfo,
    DockerInfo,
    PortMapping,
    Range,
    Resource,
    TaskInfo,
    Volume,
)

PROBE = os.path.join(os.path.dirname(__file__), "docker_probe.py")
IMAGE = os.environ.get("TEPUI_TEST_IMAGE") or "tepui-test/busybox:1"  # scripts/test exports it
DOCKER_HOST = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


ECHO = CommandInfo(value="echo hi")


def task(command: CommandInfo | None = ECHO, *, docker: DockerInfo | None = None,
         volumes: list[Volume] | None = None, resources: list[Resource] | None = None,
         hostname: str | None = None) -> TaskInfo:
    return TaskInfo(
        name="t", task_id="t1", agent_id="a1",
        resources=resources if resources is not None else [Resource(name="cpus", scalar=0.25),
                                                           Resource(name="mem", scalar=64)],
        command=command,
        container=ContainerInfo(type="DOCKER", docker=docker or DockerInfo(image=IMAGE), volumes=volumes or [],
                                hostname=hostname),
    )


def spec(t: TaskInfo, env: dict[str, str] | None = None, **kw: Any) -> Any:
    return container_spec(t, "/srv/sandboxes/fw/t1", "fw", "a1", env or {}, **kw)


# --- what a task asks for (no engine) -----------------------------------------------------------


def test_container_names_are_docker_safe_and_unique_per_task() -> None:
    name = container_name("fw/1:x", "täsk id")
    assert name.startswith("tepui-fw_1_x-t_sk_id-")
    assert all(c.isalnum() or c in "_.-" for c in name) and name.isascii()
    # Sanitizing or splitting differently never makes two tasks share a name.
    assert container_name("a-b", "c") != container_name("a", "b-c")
    assert container_name("fw", "a/b") != container_name("fw", "a:b")
    assert container_name("fw", "t") == container_name("fw", "t")
    assert len(container_name("f" * 300, "t" * 300)) < 128


def test_shell_commands_replace_the_entrypoint_and_argv_commands_keep_it() -> None:
    shell = spec(task(CommandInfo(value="echo $X")))
    assert (shell.entrypoint, shell.command) == (["/bin/sh", "-c"], ["echo $X"])
    argv = spec(task(CommandInfo(shell=False, arguments=["serve", "--port", "80"])))
    assert (argv.entrypoint, argv.command) == (None, ["serve", "--port", "80"])
    default = spec(task(None))
    assert (default.entrypoint, default.command) == (None, None)


def test_environment_labels_limits_and_sandbox_mount() -> None:
    s = spec(task(CommandInfo(value="true", environment={"A": "task", "B": "b"})),
             {"A": "agent", "MESOS_SANDBOX": "/srv/sandboxes/fw/t1", "TEPUI_SANDBOX": "/srv/sandboxes/fw/t1"})
    assert s.environment["A"] == "task" and s.environment["B"] == "b"
    assert s.environment["MESOS_SANDBOX"] == SANDBOX_MOUNT == s.environment["TEPUI_SANDBOX"]
    assert s.labels == {"tepui.task_id": "t1", "tepui.framework_id": "fw", "tepui.agent_id": "a1"}
    assert (s.nano_cpus, s.cpu_shares, s.mem_bytes) == (250_000_000, 256, 64 * 1024 * 1024)
    assert s.mounts[0] == ("/srv/sandboxes/fw/t1", SANDBOX_MOUNT, False)
    assert s.network_mode == "bridge" and not s.privileged


def test_port_mappings_must_be_offered_host_ports_on_the_bridge() -> None:
    ports = Resource(name="ports", type="RANGES", ranges=[Range(begin=31000, end=31010)])
    base = [Resource(name="cpus", scalar=1), Resource(name="mem", scalar=64), ports]
    ok = spec(task(docker=DockerInfo(image=IMAGE, port_mappings=[
        PortMapping(host_port=31000, container_port=80), PortMapping(host_port=31001, container_port=53, protocol="UDP")]),
        resources=base))
    assert ok.port_bindings == {"80/tcp": [31000], "53/udp": [31001]}
    with pytest.raises(LaunchError, match="host port 8080 is not among the task's port resources"):
        spec(task(docker=DockerInfo(image=IMAGE, port_mappings=[PortMapping(host_port=8080, container_port=80)]),
                  resources=base))
    with pytest.raises(LaunchError, match="BRIDGE"):
        spec(task(docker=DockerInfo(image=IMAGE, network="HOST",
                                    port_mappings=[PortMapping(host_port=31000, container_port=80)]), resources=base))
    assert spec(task(docker=DockerInfo(image=IMAGE, network="HOST"))).network_mode == "host"


def test_volumes_map_host_paths_with_their_mode_relative_ones_to_the_sandbox() -> None:
    s = spec(task(volumes=[Volume(container_path="/data", host_path="/srv/data", mode="RO"),
                           Volume(container_path="cache", host_path="cache")]))
    assert s.mounts[1:] == [("/srv/data", "/data", True),
                            ("/srv/sandboxes/fw/t1/cache", f"{SANDBOX_MOUNT}/cache", False)]
    with pytest.raises(LaunchError, match="no host_path"):
        spec(task(volumes=[Volume(container_path="/data")]))
    with pytest.raises(LaunchError, match=f"two volumes are mounted at {SANDBOX_MOUNT}"):
        spec(task(volumes=[Volume(container_path=SANDBOX_MOUNT, host_path="/x")]))


def test_privileged_raw_parameters_and_tiny_memory_are_refused() -> None:
    with pytest.raises(LaunchError, match="privileged containers are not allowed"):
        spec(task(docker=DockerInfo(image=IMAGE, privileged=True)))
    assert spec(task(docker=DockerInfo(image=IMAGE, privileged=True)), allow_privileged=True).privileged
    with pytest.raises(LaunchError, match="docker parameters are not supported.*cap-add"):
        spec(task(docker=DockerInfo(image=IMAGE, parameters={"cap-add": "ALL"})))
    with pytest.raises(LaunchError, match="network USER is not supported"):
        spec(task(docker=DockerInfo(image=IMAGE, network="USER")))
    with pytest.raises(LaunchError, match="below Docker's minimum"):
        spec(task(resources=[Resource(name="mem", scalar=2)]))


# --- real containers ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine() -> Iterator[Any]:
    docker = pytest.importorskip("docker")
    try:
        api = docker.APIClient(base_url=DOCKER_HOST, version="auto", timeout=10)
        api.ping()
    except Exception as exc:
        pytest.skip(f"no Docker engine answers at {DOCKER_HOST} (`docker info` fails): {exc}")
    try:
        api.inspect_image(IMAGE)
    except docker.errors.ImageNotFound:
        pytest.skip(f"the local test image {IMAGE} is missing; scripts/test builds it (docker import of busybox)")
    yield api
    api.close()


@pytest.fixture
def agent_id(engine: Any) -> Iterator[str]:
    """A label value unique to this test; whatever it leaves behind is removed, and only that."""
    value = f"test-{uuid.uuid4().hex[:12]}"
    try:
        yield value
    finally:
        for container in engine.containers(all=True, filters={"label": f"tepui.agent_id={value}"}):
            engine.remove_container(container["Id"], v=True, force=True)


def probe(scenario: str, work_dir: Any, agent_id: str, *extra: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, PROBE, scenario, str(work_dir), agent_id, *extra],
                          check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    assert "error" not in result, result["error"] + done.stderr
    return result


def gone(result: dict[str, Any]) -> bool:
    return result["engine_after"] == {"present": [], "labelled": 0}


@pytest.mark.slow
def test_container_tasks_run_with_their_output_in_the_sandbox_and_exit_codes_propagated(tmp_path: Any,
                                                                                       agent_id: str) -> None:
    result = probe("basics", tmp_path, agent_id)
    assert result["available"] is None
    shell = result["shell"]
    assert (shell["exit_code"], shell["signal"], shell["oom_killed"]) == (0, None, False)
    # Task environment on top of the agent's; the sandbox is seen at its mount point.
    assert shell["stdout"] == f"out-bar {SANDBOX_MOUNT} {SANDBOX_MOUNT}\n"
    assert shell["stderr"] == "err-line\n"
    assert result["argv"]["exit_code"] == 0 and result["argv"]["stdout"] == "two  words\n"
    three = result["three"]
    assert (three["exit_code"], three["signal"], three["stdout"]) == (3, None, "failing\n")
    # Every container was removed after its exit.
    assert result["running_after"] == [] and gone(result)


@pytest.mark.slow
def test_memory_limit_is_enforced(tmp_path: Any, agent_id: str) -> None:
    hog = probe("oom", tmp_path, agent_id)["hog"]
    assert hog["oom_killed"] is True and hog["exit_code"] == 137 and hog["signal"] is None
    assert "out of memory" in hog["message"] and "32 MiB" in hog["message"]


@pytest.mark.slow
def test_port_mapping_answers_on_the_host_port(tmp_path: Any, agent_id: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = probe("port", tmp_path, agent_id, str(port))
    assert result.get("body") == "hello-port\n", result
    assert result["web"]["signal"] == 15 and gone(result)


@pytest.mark.slow
def test_term_ends_a_task_and_kill_ends_one_that_ignores_term(tmp_path: Any, agent_id: str) -> None:
    result = probe("signals", tmp_path, agent_id)
    labels = sorted(result["labels"], key=lambda c: c["tepui.task_id"])
    assert [(c["tepui.task_id"], c["tepui.framework_id"], c["tepui.agent_id"]) for c in labels] == [
        ("polite", f"fw-{agent_id}", agent_id), ("stubborn", f"fw-{agent_id}", agent_id)]
    assert labels[0]["name"].startswith(f"tepui-fw-{agent_id}-polite-")
    mib64 = 64 * 1024 * 1024
    assert labels[0]["host_config"] == {"NanoCpus": 500_000_000, "CpuShares": 512, "Memory": mib64,
                                        "MemorySwap": mib64, "Init": True, "Privileged": False}
    assert result["running"] == ["polite", "stubborn"]
    assert result["live_stdout"] == "started\n"  # the sandbox shows output while the task runs
    assert (result["polite"]["exit_code"], result["polite"]["signal"]) == (143, 15)
    assert result["stubborn_alive_after_term"] is True
    assert (result["stubborn"]["exit_code"], result["stubborn"]["signal"]) == (137, 9)
    assert gone(result)


@pytest.mark.slow
def test_refused_launches_say_why(tmp_path: Any, agent_id: str) -> None:
    result = probe("refusals", tmp_path, agent_id)
    missing = result["missing"]["error"]
    assert result["missing_image"] in missing and "build or load it" in missing
    assert "privileged containers are not allowed" in result["privileged"]["error"]
    # force_pull_image where no registry answers: the local image is used, a missing one is named.
    assert result["forced-local"]["exit_code"] == 0 and result["forced-local"]["stdout"] == "pulled-or-local\n"
    forced = result["forced-missing"]["error"]
    assert result["missing_image"] in forced and "pull failed" in forced
    assert result["running_after"] == []
    assert "does not answer" in result["down_available"] and "no-such.sock" in result["down_available"]
    assert "does not answer" in result["down_launch"]["error"]


@pytest.mark.slow
def test_output_is_recovered_from_the_engine_when_the_live_stream_fails(tmp_path: Any, agent_id: str) -> None:
    result = probe("recopy", tmp_path, agent_id)["recopy"]
    assert (result["exit_code"], result["stdout"], result["stderr"]) == (4, "o1\no2\n", "e1\n")
