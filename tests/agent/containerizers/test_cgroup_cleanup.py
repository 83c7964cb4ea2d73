"""The agent's own cgroup directories (``tepui/<agent>`` in every hierarchy) do not pile up.

On the host's real hierarchies (root only; skipped otherwise): a real agent stopped with SIGTERM
or Ctrl-C removes its directories; a start sweeps the empty ones agents that no longer run left
behind, and keeps a live agent's (its flock) and a dead agent's that still holds a task's
cgroup (the kernel refuses the ``rmdir``; its next start adopts the task). Other agents may run
on this host during the test: the names are this test's own, and a sweep only ever removes
empty directories of agents that are gone.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import tepui.agent.containerizers.cgroups as cgroups_module
from tepui.agent.containerizers.cgroups import CgroupInUse, Cgroups, Limits

from .test_cgroups_v2 import wait_for

pytestmark = pytest.mark.skipif(not Cgroups.usable(), reason="needs root and a usable cgroup hierarchy")

REPO = Path(__file__).resolve().parents[3]


def agent_dirs(name: str) -> list[str]:
    """Where an agent called ``name`` has (or would have) its directories on this host."""
    probe = Cgroups.detect(f"probe-{uuid.uuid4().hex[:8]}")
    assert probe is not None
    probe.release()
    own = [probe.base] if isinstance(probe.base, str) else list(dict.fromkeys(probe.base.values()))
    return [os.path.join(os.path.dirname(path), name) for path in own]


def existing(name: str) -> list[str]:
    return [path for path in agent_dirs(name) if os.path.isdir(path)]


@pytest.fixture
def names() -> Iterator[Callable[[str], str]]:
    """Unique agent names for this test; whatever is left of them is removed afterwards."""
    made: list[str] = []

    def make(role: str) -> str:
        made.append(f"cgtest-{role}-{uuid.uuid4().hex[:8]}")
        return made[-1]

    yield make
    for name in made:
        for path in existing(name):
            for directory, _dirs, _files in os.walk(path, topdown=False):
                os.rmdir(directory)


def test_a_start_sweeps_dead_agents_empty_dirs_and_keeps_live_and_busy_ones(names: Callable[[str], str]) -> None:
    stale, live, busy, mine = names("stale"), names("live"), names("busy"), names("mine")
    # An agent killed outright: its directories stay, its lock goes with its process.
    subprocess.run([sys.executable, "-c", f"from tepui.agent.containerizers.cgroups import Cgroups; assert Cgroups.detect({stale!r})"],
                   check=True, cwd=REPO)
    assert len(existing(stale)) == len(agent_dirs(stale))
    running = Cgroups.detect(live)  # a live agent with no task yet
    gone = Cgroups.detect(busy)  # an agent that left a running task behind (SIGTERM) and is gone
    assert running is not None and gone is not None
    task = gone.create("F1", "t1", Limits())
    sleeper = subprocess.Popen(["/bin/sh", "-c", 'echo $$ > "$1" && exec sleep 60', "sh", task.procs_files[0]])
    try:
        wait_for(lambda: task.pids() == [sleeper.pid], "the task's process in its cgroup")
        gone.release()
        assert existing(busy), "a cgroup with a task in it cannot be removed"
        agent = Cgroups.detect(mine)
        assert agent is not None
        assert agent.sweep_siblings() >= 1
        assert existing(stale) == []
        assert len(existing(live)) == len(agent_dirs(live))
        assert len(existing(busy)) == len(agent_dirs(busy))
        assert task.pids() == [sleeper.pid] and sleeper.poll() is None
        agent.release()
        assert existing(mine) == []
    finally:
        task.destroy()
        sleeper.wait(10)
        running.release()
        gone.release()


def test_a_second_agent_with_the_same_name_is_refused(names: Callable[[str], str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    name = names("twice")
    first = Cgroups.detect(name)
    assert first is not None
    monkeypatch.setattr(cgroups_module, "CLAIM_SECONDS", 0.0)
    try:
        with pytest.raises(CgroupInUse, match="another live agent process holds the cgroup"):
            Cgroups.detect(name)
    finally:
        first.release()
    second = Cgroups.detect(name)  # the first one gone: free again
    assert second is not None
    second.release()


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_an_agent_stopped_cleanly_leaves_no_cgroup_directory(tmp_path: Path, names: Callable[[str], str],
                                                             stop: signal.Signals) -> None:
    hostname = names("stopped")
    work_dir = tmp_path / "work"
    name = f"{hostname}-{hashlib.sha1(os.path.abspath(work_dir).encode()).hexdigest()[:8]}"
    log = tmp_path / "agent.log"
    with open(log, "wb") as out:
        agent = subprocess.Popen([sys.executable, "-m", "tepui.cli", "agent", "--master", "127.0.0.1:1",
                                  "--insecure", "--work-dir", str(work_dir), "--http-port", "0", "--ip", "127.0.0.1",
                                  "--hostname", hostname, "--isolation", "cgroups"],
                                 stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
                                 preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        wait_for(lambda: re.search(r"url=https?://[^:]+:(\d+)", log.read_text()) is not None, "the agent serving HTTP")
        port = re.search(r"url=https?://[^:]+:(\d+)", log.read_text()).group(1)  # type: ignore[union-attr]
        wait_for(lambda: answers(f"http://127.0.0.1:{port}/health"), "the agent's reactor running")
        assert len(existing(name)) == len(agent_dirs(name))
        agent.send_signal(stop)
        assert agent.wait(30) == 0, log.read_text()
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait(10)
    assert existing(name) == []


def answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2).close()
    except urllib.error.HTTPError:
        return True  # refused (a token is asked for) is an answer
    except OSError:
        return False
    return True
