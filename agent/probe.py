"""What this machine offers: detected resources, overridable by ``--resources``.

Mesos defaults: all CPUs; memory less what the host itself needs (1 GiB or half, whichever
is smaller); disk of the work dir less 5 GiB or half; ports 31000–32000.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess

from tepui.sdk.resources import Resources

log = logging.getLogger("tepui.agent.probe")

DEFAULT_PORTS = "[31000-32000]"
NVIDIA_SMI_TIMEOUT = 10.0


def _mem_total_mib() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 1024


def gpu_ids() -> tuple[int, ...]:
    """GPU indices from ``nvidia-smi`` when it is installed and answers the query (one index a
    line); none otherwise. An answer that is not such a list (a driver's message, another
    format, bytes that are not text) means none: digits picked out of prose would offer GPUs
    that do not exist, and the agent must start either way."""
    tool = shutil.which("nvidia-smi")
    if tool is None:
        return ()
    try:
        done = subprocess.run([tool, "--query-gpu=index", "--format=csv,noheader"], capture_output=True,
                              timeout=NVIDIA_SMI_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("event=gpus_not_detected tool=%s error=%r", tool, str(exc))
        return ()
    if done.returncode != 0:
        return ()
    lines = [line.strip() for line in done.stdout.decode("ascii", "replace").splitlines() if line.strip()]
    if not all(line.isdigit() for line in lines):  # ASCII only: a replaced byte is no digit
        log.warning("event=gpus_not_detected tool=%s error=\"unexpected answer\" answer=%r", tool, done.stdout[:200])
        return ()
    return tuple(int(line) for line in lines)


def detect(work_dir: str, gpus: tuple[int, ...]) -> Resources:
    """``gpus`` is ``gpu_ids()``, asked for once by the caller, which needs the indices too:
    nvidia-smi can take seconds and warn, so it runs once per agent start."""
    cpus = os.cpu_count() or 1
    mem = _mem_total_mib()
    mem -= min(1024, mem // 2)
    os.makedirs(work_dir, exist_ok=True)
    disk = shutil.disk_usage(work_dir).total // (1024 * 1024)
    disk -= min(5 * 1024, disk // 2)
    extra = f";gpus:{len(gpus)}" if gpus else ""
    return Resources.parse(f"cpus:{cpus};mem:{mem};disk:{disk};ports:{DEFAULT_PORTS}{extra}")


def agent_resources(work_dir: str, flag: str | None, gpus: tuple[int, ...]) -> Resources:
    """Detected resources, with every resource named in ``flag`` replacing the detected one."""
    detected = detect(work_dir, gpus)
    if not flag:
        return detected
    given = Resources.parse(flag)
    named = given.names()
    return detected.filter(lambda key: key.name not in named) + given


def parse_attributes(text: str | None) -> dict[str, str]:
    """``rack:r1;zone:a`` → ``{"rack": "r1", "zone": "a"}`` (Mesos ``--attributes`` syntax)."""
    attributes: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in (text or "").split(";"))):
        name, sep, value = part.partition(":")
        if not sep or not name.strip():
            raise ValueError(f"bad attribute {part!r}: expected NAME:VALUE, e.g. rack:r1")
        attributes[name.strip()] = value.strip()
    return attributes


def boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return None
