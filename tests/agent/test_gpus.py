"""GPU detection (``agent/probe.py``) through a fake ``nvidia-smi`` first on PATH: a small shell
script that answers the query the agent makes (``--query-gpu=index --format=csv,noheader``: one
index a line, as the real tool prints) and refuses any other, the way the real one fails.

The contract (``gpu_ids``): the indices the tool lists; none when it is missing, fails, hangs
or answers something that is not a list of indices — the agent must still start (without GPUs);
a starting agent runs the tool once (``detect`` takes the indices its caller already has).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tepui.agent import probe

QUERY = "--query-gpu=index --format=csv,noheader"


def fake_nvidia_smi(directory: Path, stdout: bytes = b"", exit_code: int = 0, hang: bool = False) -> None:
    """Also appends a line to ``directory/runs`` each time it runs, so a test can count them."""
    (directory / "out").write_bytes(stdout)
    script = directory / "nvidia-smi"
    script.write_text(
        "#!/bin/sh\n"
        f'echo run >> "{directory / "runs"}"\n'
        f'[ "$*" = "{QUERY}" ] || {{ echo "Invalid combination of input arguments." >&2; exit 2; }}\n'
        + ("exec sleep 60\n" if hang else "")
        + f'cat "{directory / "out"}"\n'
        f"exit {exit_code}\n")
    script.chmod(0o755)


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "bin"
    directory.mkdir()
    monkeypatch.setenv("PATH", f"{directory}{os.pathsep}{os.environ.get('PATH', '')}")
    return directory


def test_without_nvidia_smi_there_are_no_gpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no nvidia-smi anywhere
    assert probe.gpu_ids() == ()


@pytest.mark.parametrize("stdout, expected", [
    (b"0\n", (0,)),
    (b"0\n1\n2\n3\n", (0, 1, 2, 3)),
    (b"0\r\n1\r\n", (0, 1)),
    (b"3\n5\n", (3, 5)),  # indices as listed (e.g. under CUDA_VISIBLE_DEVICES), not a count
    (b"", ()),
], ids=["one", "four", "crlf", "sparse", "none"])
def test_the_listed_indices_are_the_gpus(bin_dir: Path, stdout: bytes, expected: tuple[int, ...]) -> None:
    fake_nvidia_smi(bin_dir, stdout)
    assert probe.gpu_ids() == expected


def test_no_devices_is_no_gpus(bin_dir: Path) -> None:
    fake_nvidia_smi(bin_dir, b"No devices were found\n", exit_code=6)
    assert probe.gpu_ids() == ()


def test_a_failing_nvidia_smi_means_no_gpus_even_with_indices_on_stdout(bin_dir: Path) -> None:
    fake_nvidia_smi(bin_dir, b"NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n",
                    exit_code=9)
    assert probe.gpu_ids() == ()
    fake_nvidia_smi(bin_dir, b"0\n1\n", exit_code=15)
    assert probe.gpu_ids() == ()


@pytest.mark.parametrize("stdout", [
    b"Failed to initialize NVML: Driver/library version mismatch\n",
    b"GPU 0 of 2 lost\n",  # digits inside prose are not indices
    b"index\n0, 1\n",  # another format than the one asked for
    b"\xff\xfe\x00garbage\x81\n",  # not even text
    "²\n".encode(),  # a digit to str.isdigit, not to int()
], ids=["prose", "prose-with-numbers", "other-format", "binary", "superscript"])
def test_garbage_output_means_no_gpus_not_a_crash(bin_dir: Path, stdout: bytes,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    fake_nvidia_smi(bin_dir, stdout)
    assert probe.gpu_ids() == ()
    assert "event=gpus_not_detected" in caplog.text and "unexpected answer" in caplog.text


def test_a_hanging_nvidia_smi_is_abandoned(bin_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                           caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(probe, "NVIDIA_SMI_TIMEOUT", 0.5)
    fake_nvidia_smi(bin_dir, b"0\n", hang=True)
    assert probe.gpu_ids() == ()
    assert "event=gpus_not_detected" in caplog.text and "timed out" in caplog.text


def test_detected_gpus_are_offered(bin_dir: Path, tmp_path: Path) -> None:
    fake_nvidia_smi(bin_dir, b"0\n1\n")
    assert probe.detect(str(tmp_path / "work"), probe.gpu_ids()).scalar("gpus") == 2
    fake_nvidia_smi(bin_dir, b"", exit_code=9)
    assert probe.detect(str(tmp_path / "work"), probe.gpu_ids()).scalar("gpus") == 0


def runs(directory: Path) -> int:
    path = directory / "runs"
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.mark.slow
def test_an_agent_runs_nvidia_smi_once_at_start(bin_dir: Path, tmp_path: Path) -> None:
    """A real ``tepui agent`` (no master answers: it only has to start) asks nvidia-smi once, so
    a slow or failing tool costs its time and its warning once. ``event=agent_starting`` is
    logged after resources and GPUs are settled."""
    fake_nvidia_smi(bin_dir, b"0\n1\n")
    log_path = tmp_path / "agent.log"
    with open(log_path, "ab") as log_file:
        agent = subprocess.Popen(
            [sys.executable, "-m", "tepui.cli", "agent", "--master", "127.0.0.1:9", "--work-dir", str(tmp_path / "work"),
             "--http-port", "0", "--isolation", "none", "--containerizers", "mesos", "--insecure"],
            stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 60  # bounds a broken start only: not a timing assertion
        while "event=agent_starting" not in log_path.read_text(errors="replace"):
            assert agent.poll() is None and time.monotonic() < deadline, log_path.read_text(errors="replace")
            time.sleep(0.05)
        assert "gpus:2" in log_path.read_text() and runs(bin_dir) == 1
    finally:
        agent.send_signal(signal.SIGTERM)
        try:
            agent.wait(20)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait()
