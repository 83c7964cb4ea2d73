"""``bench/vs_slurm.sh --smoke`` and ``bench/vs_swarm.sh --smoke`` as tests, so the side-by-side
benchmarks against Slurm and Docker Swarm cannot rot (issue 8).

Each script needs root (it installs Slurm with apt when missing, runs munged/slurmctld/slurmd, or
puts the Docker engine in Swarm mode) and ends with exactly one figure line; each must exit 0 and
leave no process of its own behind (everything it starts lives under its work dir, which it
prints as ``work dir <path>``)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{pid}: {cmdline}")
    return found


def _run(script: str, timeout: float) -> tuple[list[str], str]:
    env = {**os.environ, "PYTHON": sys.executable}
    process = subprocess.Popen(["bash", str(BENCH / script), "--smoke"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # SIGTERM first: the script's trap stops what it started (munged, slurmd, tepui up, ...).
        process.terminate()
        stdout, stderr = process.communicate(timeout=120)
        pytest.fail(f"{script} --smoke took more than {timeout:g} s\n{stdout}\n{stderr[-3000:]}")
    lines = stdout.strip().splitlines()
    assert process.returncode == 0 and lines, f"exit {process.returncode}\n{stdout}\n{stderr[-3000:]}"
    work = re.search(r"work dir (\S+)", stdout)
    assert work, stdout
    assert not os.path.exists(work.group(1)), "the work dir should be removed after a successful run"
    assert not _processes_mentioning(work.group(1)), "processes left behind"
    return lines, stdout


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (installs and runs Slurm / Docker Swarm)")


@pytest.mark.timeout(720)
def test_vs_slurm_smoke_prints_its_figure() -> None:
    _need_root()
    if not shutil.which("apt-get") and not shutil.which("slurmctld"):
        pytest.skip("no Slurm and no apt-get to install it")
    lines, out = _run("vs_slurm.sh", timeout=540)  # a fresh machine first installs Slurm (~8 s)
    assert re.fullmatch(r"speedup_vs_slurm_array=\d+\.\d\d", lines[-1]), out
    assert "round 1 Slurm: 100 jobs" in out and "round 1 Tepui (batch): job vs-slurm-r1, 100 tasks SUCCEEDED" in out, out


def test_vs_swarm_smoke_prints_its_figure() -> None:
    _need_root()
    if not shutil.which("docker") or subprocess.run(["docker", "info"], capture_output=True, timeout=30,
                                                    check=False).returncode != 0:
        pytest.skip("no Docker engine answering `docker info` (scripts/test starts one)")
    state = subprocess.run(["docker", "info", "--format", "{{.Swarm.LocalNodeState}}"], capture_output=True,
                           text=True, timeout=30, check=False).stdout.strip()
    lines, out = _run("vs_swarm.sh", timeout=200)
    assert re.fullmatch(r"speedup_vs_swarm=\d+\.\d\d", lines[-1]), out
    assert "round 1 Swarm: 3 replicas running" in out and "round 1 Tepui: 3 instances running" in out, out
    after = subprocess.run(["docker", "info", "--format", "{{.Swarm.LocalNodeState}}"], capture_output=True,
                           text=True, timeout=30, check=False).stdout.strip()
    assert after == state, f"the engine's swarm state changed from {state!r} to {after!r}"
