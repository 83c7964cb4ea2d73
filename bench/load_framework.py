#!/usr/bin/env python3
"""A load-generating framework (on ``tepui.sdk`` only): launches M tasks as fast as offers allow
and reports launch throughput and ACCEPT → RUNNING latency. Run by bench/launch_throughput.py;
usable on its own against any cluster.

    python bench/load_framework.py [--master HOST:PORT] [--insecure] --tasks M [--command CMD]
        [--duration S] [--cpus C] [--mem MB] [--image IMG] [--timeout S]

Without ``--master`` the driver reads the client configuration (address and CURVE keys, as
written by ``tepui up``); ``--insecure`` connects in plain text (bench clusters run
``--insecure``).

What it does: subscribes with its demand declared (one shape, M of it), so that offers come only
from agents where a task fits. Every offer is packed with as many tasks as it holds, in one
ACCEPT per offer, whose leftover is declined with no filter while tasks remain (the demand
already keeps unusable leftovers away, and a filter would also hold back that agent's resources
freed by finished tasks); an offer that arrives when nothing is left is declined with a short
filter. Once all M tasks are launched it suppresses. Status updates are acknowledged implicitly
after the callback.

``--duration S`` sets the task label ``tepui.sim/duration=S`` (the agent simulator, ``tepui sim``,
finishes a task S seconds after TASK_RUNNING); real agents run ``--command`` (default ``true``,
or ``sleep S`` when ``--duration`` is given without ``--command``).

Per task it records the time its ACCEPT was sent, the time TASK_RUNNING arrived and the time
its terminal update arrived (all on this process's clock, at the callback). Progress goes to
stderr, at most a line a second. The last stdout line is one JSON object:

    {"tasks", "finished", "failed", "seconds" (first ACCEPT -> last terminal update),
     "launch_seconds" (first ACCEPT -> last TASK_RUNNING), "launches_per_second"
     (tasks / launch_seconds), "latency_ms": {"p50", "p90", "p99", "max"} (ACCEPT -> RUNNING)}

Exit status 0 when every task finished, 1 otherwise (failed, timed out, or refused).
"""

from __future__ import annotations

import argparse
import getpass
import json
import math
import sys
import time
from typing import Any

from tepui.sdk import install_reactor

reactor = install_reactor()  # before anything else touches Twisted's reactor

from twisted.internet.task import LoopingCall  # noqa: E402

from tepui.sdk import (  # noqa: E402
    CommandInfo, ContainerInfo, DockerInfo, Filters, FrameworkInfo, Resources, Scheduler, SchedulerDriver, TaskInfo,
    TaskState,
)

DURATION_LABEL = "tepui.sim/duration"
NO_FILTER = Filters(refuse_seconds=0)  # on ACCEPT: the leftover goes straight back to the pool
SHORT_FILTER = Filters(refuse_seconds=1.0)  # on DECLINE of an offer we cannot use


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (0 for an empty one)."""
    if not ordered:
        return 0.0
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))]


def latency_summary(latencies_seconds: list[float]) -> dict[str, float]:
    ordered = sorted(latencies_seconds)
    return {name: round(percentile(ordered, q) * 1000, 3)
            for name, q in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))}


class LoadScheduler(Scheduler):
    def __init__(self, total: int, task: Resources, command: CommandInfo, container: ContainerInfo | None,
                 labels: dict[str, str]) -> None:
        self.total, self.task, self.command, self.container, self.labels = total, task, command, container, labels
        self.task_wire = task.to_wire()
        self.need = {name: amount for name, amount in task.fixed_totals().items() if amount > 0}
        self.launched = self.finished = self.failed = 0
        self.accepted_at: list[float] = [0.0] * total
        self.running_at: dict[int, float] = {}
        self.terminal_at: dict[int, float] = {}
        self.accepts = 0
        self.errors: list[str] = []
        self.suppressed = False
        self.started = time.perf_counter()
        self.done = False

    # --- callbacks -------------------------------------------------------------------------

    def offers(self, driver: SchedulerDriver, offers: list[Any]) -> None:
        for offer in offers:
            remaining = self.total - self.launched
            fits = self._fits(offer) if remaining else 0
            if not fits:
                driver.decline(offer.id, SHORT_FILTER)
                continue
            count = min(fits, remaining)
            first = self.launched
            tasks = [TaskInfo(name=f"load-{i}", task_id=f"load-{i}", agent_id=offer.agent_id,
                              resources=self.task_wire, command=self.command, container=self.container,
                              labels=self.labels)
                     for i in range(first, first + count)]
            self.launched += count
            now = time.perf_counter()
            for i in range(first, first + count):
                self.accepted_at[i] = now
            self.accepts += 1
            driver.launch(offer.id, tasks, NO_FILTER)
        if self.launched == self.total and not self.suppressed:
            self.suppressed = True
            driver.suppress()  # nothing left to launch: no more offers

    def status_update(self, driver: SchedulerDriver, status: Any) -> None:
        now = time.perf_counter()
        index = _index(status.task_id)
        if index is None:
            return
        if status.state == TaskState.RUNNING:
            self.running_at.setdefault(index, now)
        elif status.state.is_terminal and index not in self.terminal_at:
            self.terminal_at[index] = now
            if status.state == TaskState.FINISHED:
                self.finished += 1
            else:
                self.failed += 1
                if len(self.errors) < 5:
                    self.errors.append(f"{status.task_id}: {status.state.value} {status.message or ''}".strip())
                    print(f"task failed: {self.errors[-1]}", file=sys.stderr, flush=True)
            if self.finished + self.failed == self.total:
                self.finish(driver)

    def error(self, driver: SchedulerDriver, message: str) -> None:
        # Refusals (an invalid task, a rate limit) are reported; the run goes on, and a lost
        # call shows as tasks that never finish (the timeout ends the run).
        print(f"error from master: {message}", file=sys.stderr, flush=True)
        self.errors.append(message)

    # --- helpers ---------------------------------------------------------------------------

    def _fits(self, offer: Any) -> int:
        """How many tasks the offer holds: the smallest quotient over the task's scalars."""
        offered = Resources.from_wire(offer.resources).fixed_totals()
        return min(offered.get(name, 0) // amount for name, amount in self.need.items()) if self.need else 1

    def progress(self) -> None:
        print(f"[{time.perf_counter() - self.started:6.1f} s] launched {self.launched}/{self.total} "
              f"running {len(self.running_at)} finished {self.finished} failed {self.failed} "
              f"accepts {self.accepts}", file=sys.stderr, flush=True)

    def result(self) -> dict[str, Any]:
        first = min(self.accepted_at[:self.launched]) if self.launched else 0.0
        last_running = max(self.running_at.values(), default=first)
        last_terminal = max(self.terminal_at.values(), default=first)
        launch_seconds = last_running - first
        latencies = [at - self.accepted_at[i] for i, at in self.running_at.items()]
        return {
            "tasks": self.total,
            "finished": self.finished,
            "failed": self.failed,
            "seconds": round(last_terminal - first, 4),
            "launch_seconds": round(launch_seconds, 4),
            "launches_per_second": round(len(self.running_at) / launch_seconds, 1) if launch_seconds > 0 else 0.0,
            "latency_ms": latency_summary(latencies),
        }

    def finish(self, driver: SchedulerDriver) -> None:
        if not self.done:
            self.done = True
            self.progress()
            print(json.dumps(self.result()), flush=True)
            driver.stop_and_exit()


def _index(task_id: str) -> int | None:
    prefix, _, number = task_id.partition("-")
    return int(number) if prefix == "load" and number.isdigit() else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--master", default=None,
                        help="master HOST:PORT (default: the client configuration `tepui up` writes, with its keys)")
    parser.add_argument("--insecure", action="store_true", help="plain-text connection (a master run --insecure)")
    parser.add_argument("--tasks", type=int, required=True, help="how many tasks to launch")
    parser.add_argument("--command", default=None, help="shell command of each task (default: true, or sleep S)")
    parser.add_argument("--duration", type=float, default=None,
                        help=f"seconds each task runs: label {DURATION_LABEL}=S for the simulator")
    parser.add_argument("--cpus", type=float, default=0.1)
    parser.add_argument("--mem", type=float, default=32)
    parser.add_argument("--image", default=None, help="run each task in this Docker image")
    parser.add_argument("--timeout", type=float, default=600, help="give up (exit 1) after this many seconds")
    parser.add_argument("--name", default="load", help="framework name")
    args = parser.parse_args()
    if args.tasks < 1:
        parser.error("--tasks must be at least 1")

    command_line = args.command or (f"sleep {args.duration:g}" if args.duration is not None else "true")
    labels = {DURATION_LABEL: f"{args.duration:g}"} if args.duration is not None else {}
    container = ContainerInfo(type="DOCKER", docker=DockerInfo(image=args.image)) if args.image else None
    task = Resources.of(cpus=args.cpus, mem=args.mem)
    scheduler = LoadScheduler(args.tasks, task, CommandInfo(value=command_line), container, labels)
    framework = FrameworkInfo(user=getpass.getuser(), name=args.name)
    driver = SchedulerDriver(scheduler, framework, args.master, reactor=reactor, insecure=args.insecure,
                             demand=[(task, args.tasks)])
    ticker = LoopingCall(scheduler.progress)
    reactor.callWhenRunning(ticker.start, 1.0, now=False)

    def give_up() -> None:
        print(f"timed out after {args.timeout:g} s", file=sys.stderr, flush=True)
        scheduler.finish(driver)

    reactor.callLater(args.timeout, give_up)
    driver.run()
    if not scheduler.done:  # the reactor stopped without a result (e.g. interrupted)
        print(json.dumps(scheduler.result()), flush=True)
    return 0 if scheduler.finished == args.tasks else 1


if __name__ == "__main__":
    sys.exit(main())
