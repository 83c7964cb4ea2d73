"""`tepui up`'s supervision shell (cli/up.py, Cluster.supervise) with real but fake children:
small Python processes that fail as told, under a policy with short delays. The decisions
themselves are tests/cli/test_supervision.py's; here: they are carried out."""

from __future__ import annotations

import io
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from rich.console import Console

from tepui.cli.up import Cluster, Ending
from tepui.cli.supervision import RestartPolicy

pytestmark = pytest.mark.slow

FAST = RestartPolicy(initial_delay=0.05, max_delay=0.2, burst=3, interval=60.0)
DEADLINE = 60.0  # generous: a busy machine starts a Python process in well under a second


class Shell:
    def __init__(self, root: Path, policy: RestartPolicy = FAST) -> None:
        self.root = root
        self.out = io.StringIO()
        self.cluster = Cluster(str(root), 0, 0, 0, Console(file=self.out, width=300), policy=policy)

    def add(self, name: str, code: str) -> None:
        """A child that appends one line to ``<name>.runs`` each time it starts, then runs ``code``."""
        runs = self.root / f"{name}.runs"
        script = f"open({str(runs)!r}, 'a').write('run\\n'); import os, sys, time, signal\n{code}"
        self.cluster.add(name, [sys.executable, "-c", script], "its state")

    def runs(self, name: str) -> int:
        path = self.root / f"{name}.runs"
        return len(path.read_text().splitlines()) if path.exists() else 0

    def supervise_until(self, condition: Callable[[], bool]) -> Ending | None:
        """Supervises until ``condition()`` (then stops) or until supervision ends by itself."""
        deadline = time.monotonic() + DEADLINE
        ending = self.cluster.supervise(lambda: condition() or time.monotonic() > deadline, poll=0.02)
        assert time.monotonic() <= deadline or ending is not None, f"nothing happened in {DEADLINE} s:\n{self.text()}"
        return ending

    def text(self) -> str:
        return self.out.getvalue()


@pytest.fixture
def shell(tmp_path: Path) -> Iterator[Shell]:
    instance = Shell(tmp_path)
    yield instance
    instance.cluster.stop()
    alive = [c.name for c in instance.cluster.children if c.process.poll() is None]
    assert not alive, f"left running: {alive}"


def test_a_child_that_cannot_start_is_restarted_with_backoff_then_given_up_on(shell: Shell) -> None:
    shell.add("flaky", "print('flaky: cannot open its store', flush=True); sys.exit(3)")
    ending = shell.supervise_until(lambda: False)
    assert ending is not None and ending.failed, shell.text()
    assert shell.runs("flaky") == 4, shell.text()  # the first start and three restarts
    for count, delay in ((1, "0.05"), (2, "0.1"), (3, "0.2")):
        assert (f"flaky exited with code 3; restarting it on its state in {delay} s (restart {count} of 3 in 60 s)"
                in shell.text()), shell.text()
    assert shell.text().count("flaky restarted (pid ") == 3, shell.text()
    assert ending.message.startswith("flaky exited with code 3 again: 3 restarts within 60 s did not help (a crash "
                                     "loop); giving up on it and stopping the cluster."), ending.message
    assert "then start `tepui up` again, which starts flaky on its state again. Last lines of" in ending.message, ending.message
    assert "flaky: cannot open its store" in ending.message, "the tail of its log"
    log = (shell.root / "flaky.log").read_text()
    assert log.count("flaky: cannot open its store") == 4 and "--- tepui up: restart 3 of flaky at " in log, log


def test_a_killed_child_is_restarted_and_the_others_are_left_alone(shell: Shell) -> None:
    shell.add("agent-1", "time.sleep(600)")
    shell.add("agent-2", "time.sleep(600)")
    first, other = shell.cluster.children[0].process, shell.cluster.children[1].process
    deadline = time.monotonic() + DEADLINE
    while shell.runs("agent-1") < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(first.pid, signal.SIGKILL)
    assert shell.supervise_until(lambda: shell.runs("agent-1") == 2) is None, shell.text()
    assert "agent-1 exited with code -9 (killed); restarting it on its state in 0.05 s (restart 1 of 3 in 60 s)" \
        in shell.text()
    second = shell.cluster.children[0].process
    assert second.pid != first.pid and second.poll() is None, shell.text()
    assert f"agent-1 restarted (pid {second.pid})" in shell.text()
    assert shell.cluster.children[1].process is other and other.poll() is None and shell.runs("agent-2") == 1


def test_a_clean_exit_is_not_restarted_and_the_cluster_runs_on(shell: Shell) -> None:
    shell.add("services", "sys.exit(0)")
    shell.add("agent-1", "time.sleep(600)")
    assert shell.supervise_until(lambda: "not restarted" in shell.text()) is None
    assert shell.text().startswith("services exited with code 0: a clean stop, not a failure, so it is not "
                                   "restarted; the cluster runs on without it"), shell.text()
    # It stays down while the rest is supervised on.
    assert shell.supervise_until(lambda: True) is None
    assert shell.runs("services") == 1 and shell.cluster.children[1].process.poll() is None


def test_the_master_stopped_cleanly_stops_the_cluster_without_a_failure(shell: Shell) -> None:
    shell.add("master", "os.kill(os.getpid(), signal.SIGTERM); time.sleep(600)")
    ending = shell.supervise_until(lambda: False)
    assert ending == Ending("the master exited with code -15 (terminated): someone stopped it, so the cluster "
                            "stops too", failed=False), shell.text()
    assert shell.runs("master") == 1


def test_a_stop_requested_during_the_backoff_restarts_nothing(tmp_path: Path) -> None:
    shell = Shell(tmp_path, RestartPolicy(initial_delay=3600.0, max_delay=3600.0))
    shell.add("agent-1", "sys.exit(1)")
    assert shell.supervise_until(lambda: "restarting it" in shell.text()) is None
    assert "restarting it on its state in 3600 s (restart 1 of 5 in 120 s)" in shell.text(), shell.text()
    shell.cluster.stop()  # the child is dead and waits for its restart: stop leaves it so
    assert shell.runs("agent-1") == 1 and "restarted (pid" not in shell.text()
