"""Docker tasks and fetched URIs through a real master and agent (the engine and the test image
come from scripts/test; skipped with a reason where they are missing)."""

from __future__ import annotations

import functools
import http.server
import io
import os
import pwd
import shutil
import signal
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from .conftest import Cluster, child_env, stop_process, tepui_cmd

pytestmark = pytest.mark.slow
IMAGE = os.environ.get("TEPUI_TEST_IMAGE", "tepui-test/busybox:1")


def docker_ready() -> str | None:
    try:
        client = docker.APIClient(base_url=os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock"), timeout=5)
        client.ping()
        client.inspect_image(IMAGE)
    except Exception as exc:  # noqa: BLE001 - any failure means "skip, and say why"
        return f"Docker engine or image {IMAGE} unavailable ({exc}); scripts/test sets both up"
    return None


@pytest.fixture(scope="module")
def local_files() -> Iterator[Path]:
    """The directory the agent allows local files from (reachable by the task user, nobody)."""
    root = Path(tempfile.mkdtemp(prefix="tepui-e2e-files-"))
    os.chmod(root, 0o755)
    (root / "data.txt").write_bytes(b"local payload\n")
    (root / "root-only.txt").write_bytes(b"not for tasks\n")
    os.chmod(root / "root-only.txt", 0o600)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, local_files: Path) -> Iterator[Cluster]:
    instance = Cluster(tmp_path_factory.mktemp("containers"), agents=1,
                       agent_args=["--fetcher-allowed-dir", str(local_files)])
    try:
        instance.start()
        yield instance
    finally:
        instance.stop()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("served")
    with tarfile.open(root / "pkg.tgz", "w:gz") as archive:
        data = b"payload-42\n"
        member = tarfile.TarInfo("pkg/data.txt")
        member.size = len(data)
        archive.addfile(member, io.BytesIO(data))
    (root / "tool.sh").write_text("#!/bin/sh\necho tool ran\n")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def run(cluster: Cluster, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(tepui_cmd("run", "--master", cluster.master, *args), capture_output=True, text=True,
                          timeout=timeout, env=child_env())


def test_fetched_archive_is_extracted_into_the_sandbox(cluster: Cluster, files: str) -> None:
    done = run(cluster, "--uri", f"{files}/pkg.tgz", "--", "cat", "pkg/data.txt")
    assert done.returncode == 0 and done.stdout == "payload-42\n", done.stdout + done.stderr


def test_a_failed_fetch_fails_the_task_with_the_reason(cluster: Cluster, files: str) -> None:
    done = run(cluster, "--uri", f"{files}/missing.tgz", "--", "true")
    assert done.returncode != 0
    assert "TASK_FAILED" in done.stderr and "404" in done.stderr and "missing.tgz" in done.stderr


def test_a_local_file_is_fetched_as_the_task_user(cluster: Cluster, local_files: Path) -> None:
    done = run(cluster, "--uri", f"file://{local_files}/data.txt", "--", "sh", "-c", "cat data.txt; stat -c %U data.txt")
    assert done.returncode == 0, done.stdout + done.stderr
    expected_owner = "nobody" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
    assert done.stdout == f"local payload\n{expected_owner}\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="the agent switches to the task's user only as root")
def test_a_local_file_the_task_user_may_not_read_fails_the_task(cluster: Cluster, local_files: Path) -> None:
    done = run(cluster, "--uri", f"file://{local_files}/root-only.txt", "--", "cat", "root-only.txt")
    assert done.returncode != 0 and "TASK_FAILED" in done.stderr, done.stdout + done.stderr
    assert "permission denied (the fetcher runs as the task's user 'nobody')" in done.stderr, done.stderr


def test_a_local_file_outside_the_allowed_directories_fails_the_task_naming_the_rule(cluster: Cluster) -> None:
    done = run(cluster, "--uri", "file:///etc/hostname", "--", "cat", "hostname")
    assert done.returncode != 0
    assert "TASK_FAILED" in done.stderr and "file:///etc/hostname" in done.stderr, done.stderr
    assert "--fetcher-allowed-dir" in done.stderr, done.stderr


def test_docker_task_output_and_exit_code(cluster: Cluster) -> None:
    problem = docker_ready()
    if problem:
        pytest.skip(problem)
    done = run(cluster, "--image", IMAGE, "--", "sh", "-c", "echo hi from docker; echo oops >&2; exit 3")
    assert done.returncode == 3, done.stdout + done.stderr
    assert done.stdout == "hi from docker\n" and "oops" in done.stderr


def test_docker_memory_limit_is_a_memory_failure(cluster: Cluster) -> None:
    problem = docker_ready()
    if problem:
        pytest.skip(problem)
    done = run(cluster, "--image", IMAGE, "--mem", "32", "--", "sh", "-c", "x=a; while true; do x=$x$x; done")
    assert done.returncode == 137, done.stdout + done.stderr
    assert "Memory limit exceeded" in done.stderr


def test_killing_a_docker_task_removes_its_container(cluster: Cluster) -> None:
    problem = docker_ready()
    if problem:
        pytest.skip(problem)
    client = docker.APIClient(base_url=os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock"), timeout=10)
    runner = subprocess.Popen(tepui_cmd("run", "--master", cluster.master, "--image", IMAGE, "--", "sleep", "300"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
    mine = {"label": ["tepui.framework_id"]}
    try:
        deadline = time.monotonic() + 30
        running = []
        while time.monotonic() < deadline and not running:
            running = [c for c in client.containers(filters=mine) if "sleep" in c["Command"]]
            time.sleep(0.2)
        assert running, "the container never ran"
        container_id = running[0]["Id"]
        runner.send_signal(signal.SIGTERM)
        runner.wait(30)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(c["Id"] == container_id for c in client.containers(all=True)):
            time.sleep(0.2)
        assert not any(c["Id"] == container_id for c in client.containers(all=True)), "container left behind"
    finally:
        stop_process(runner, 5)
