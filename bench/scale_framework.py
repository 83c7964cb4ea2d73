#!/usr/bin/env python3
"""The scale benchmark's framework (and the sim's end-to-end test's): launches ``--tasks``
tasks of ``--duration`` seconds (the ``tepui.sim/duration`` label, read by ``tepui sim``; the
command says ``sleep N`` too) as fast as offers allow, at most ``--per-agent`` per offer so they
spread over the agents, then suppresses offers.

Prints a progress line every second and:

* ``--until finished``: ``N tasks finished`` and exits (0 when none failed) once all ended;
* ``--until running``: ``all_running tasks=N seconds=S`` once N run at once, then stays
  subscribed (the tasks keep running) and answers commands on stdin, one per line. A task that
  ends before (lost with its agent, or with an offer that timed out) is replaced under a new id,
  as a long-running framework does. Commands:
  ``probe`` — revives, declines every offer with a one-hour filter, and prints
  ``probe offers=N first_offer_seconds=S last_offer_seconds=S``: the time from REVIVE to the
  first OFFERS is one full allocation cycle over every agent, as seen from outside the master.

    python bench/scale_framework.py --master 127.0.0.1:5050 --tasks 1000 --duration 0 --until finished
"""

from __future__ import annotations

import argparse
import getpass
import math
import sys
import time
from typing import Any

from tepui.sdk import install_reactor

reactor = install_reactor()

from twisted.internet import stdio, task  # noqa: E402
from twisted.protocols.basic import LineReceiver  # noqa: E402

from tepui.sdk import (  # noqa: E402
    CommandInfo, Filters, FrameworkInfo, Resources, Scheduler, SchedulerDriver, TaskInfo, TaskState,
)

LONG_FILTER = Filters(refuse_seconds=3600.0)


class ScaleScheduler(Scheduler):
    def __init__(self, total: int, duration: float, per_agent: int, cpus: float, mem: float, until: str) -> None:
        self.total, self.duration, self.per_agent, self.until = total, duration, per_agent, until
        self.cpus, self.mem = cpus, mem
        self.resources = Resources.of(cpus=cpus, mem=mem).to_wire()  # one list shared by every task
        self.labels = {"tepui.sim/duration": f"{duration:g}"}
        self.command = CommandInfo(value=f"sleep {duration:g}")
        self.launched = self.running = self.finished = self.failed = self.offers_seen = 0
        self.active = 0  # launched and not ended
        self.started = time.monotonic()
        self.seen_running: set[str] = set()
        self.ended: set[str] = set()
        self.announced = False
        self.suppressed = False
        self.probe_started: float | None = None
        self.probe_offers = 0
        self.probe_first: float | None = None
        self.probe_last: float | None = None

    def offers(self, driver: SchedulerDriver, offers: list[Any]) -> None:
        self.offers_seen += len(offers)
        if self.probe_started is not None:
            self._probe_offers(driver, offers)
            return
        declined = []
        for offer in offers:
            remaining = self.total - self.active if self.until == "running" else self.total - self.launched
            room = Resources.from_wire(offer.resources)
            fits = min(int(room.scalar("cpus") / self.cpus + 1e-9), int(room.scalar("mem") / self.mem + 1e-9))
            count = min(remaining, self.per_agent, fits)
            if count <= 0:
                declined.append(offer.id)
                continue
            tasks = []
            for _ in range(count):
                i = self.launched
                self.launched += 1
                self.active += 1
                tasks.append(TaskInfo(name=f"scale-{i}", task_id=f"scale-{i}", agent_id=offer.agent_id,
                                      resources=self.resources, command=self.command, labels=self.labels))
            driver.launch(offer.id, tasks, LONG_FILTER)
        if declined:
            driver.decline(declined, LONG_FILTER)
        if not self.suppressed and (self.active if self.until == "running" else self.launched) >= self.total:
            self.suppressed = True
            driver.suppress()

    def _probe_offers(self, driver: SchedulerDriver, offers: list[Any]) -> None:
        now = time.monotonic()
        assert self.probe_started is not None
        if self.probe_first is None:
            self.probe_first = now - self.probe_started
        self.probe_last = now - self.probe_started
        self.probe_offers += len(offers)
        driver.decline([offer.id for offer in offers], LONG_FILTER)

    def status_update(self, driver: SchedulerDriver, status: Any) -> None:
        task_id, state = status.task_id, status.state
        if state == TaskState.RUNNING:
            if task_id not in self.seen_running and task_id not in self.ended:
                self.seen_running.add(task_id)
                self.running += 1
        elif state.is_terminal and task_id not in self.ended:  # updates are at-least-once
            self.ended.add(task_id)
            self.active -= 1
            if task_id in self.seen_running:
                self.running -= 1
            if state == TaskState.FINISHED:
                self.finished += 1
            else:
                self.failed += 1
                if self.failed <= 5:
                    print(f"task {task_id} ended {state.value}: {status.message}", flush=True)
                if self.until == "running" and self.suppressed and self.probe_started is None:
                    self.suppressed = False  # offers again, to replace it
                    driver.revive()
        if self.announced:
            return
        if self.until == "finished" and self.finished + self.failed >= self.total:
            self.announced = True
            self.progress()
            print(f"{self.finished} tasks finished" + (f", {self.failed} failed" if self.failed else ""), flush=True)
            driver.stop_and_exit()
        elif self.until == "running" and self.running >= self.total:
            self.announced = True
            self.progress()
            print(f"all_running tasks={self.total} seconds={time.monotonic() - self.started:.1f}", flush=True)

    def error(self, driver: SchedulerDriver, message: str) -> None:
        print(f"error from master: {message}", file=sys.stderr, flush=True)

    def progress(self) -> None:
        print(f"framework: t={time.monotonic() - self.started:.1f}s offers={self.offers_seen} launched={self.launched} "
              f"running={self.running} finished={self.finished} failed={self.failed}", flush=True)

    def start_probe(self, driver: SchedulerDriver) -> None:
        self.probe_started = time.monotonic()
        self.probe_offers, self.probe_first, self.probe_last = 0, None, None
        driver.revive()

    def check_probe(self, driver: SchedulerDriver) -> None:
        """The probe ends once offers stopped coming for 2 s (or none came in 120 s)."""
        if self.probe_started is None:
            return
        waited = time.monotonic() - self.probe_started
        quiet = self.probe_last is not None and waited - self.probe_last > 2.0
        if quiet or (self.probe_first is None and waited > 120):
            first = "none" if self.probe_first is None else f"{self.probe_first:.3f}"
            last = "none" if self.probe_last is None else f"{self.probe_last:.3f}"
            print(f"probe offers={self.probe_offers} first_offer_seconds={first} last_offer_seconds={last}", flush=True)
            self.probe_started = None
            driver.suppress()


class Commands(LineReceiver):
    delimiter = b"\n"

    def __init__(self, scheduler: ScaleScheduler, driver: SchedulerDriver) -> None:
        self.scheduler, self.driver = scheduler, driver

    def lineReceived(self, line: bytes) -> None:
        if line.strip() == b"probe":
            self.scheduler.start_probe(self.driver)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--master", required=True)
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--duration", type=float, default=0.0, help="seconds each task runs (on tepui sim)")
    parser.add_argument("--agents", type=int, default=None,
                        help="agents expected: tasks per offer are capped at ceil(tasks / agents)")
    parser.add_argument("--per-agent", type=int, default=None, help="cap on tasks per offer (overrides --agents)")
    parser.add_argument("--cpus", type=float, default=0.01)
    parser.add_argument("--mem", type=float, default=8.0)
    parser.add_argument("--until", choices=["finished", "running"], default="finished")
    args = parser.parse_args()
    per_agent = args.per_agent or (math.ceil(args.tasks / args.agents) if args.agents else args.tasks)
    scheduler = ScaleScheduler(args.tasks, args.duration, per_agent, args.cpus, args.mem, args.until)
    framework = FrameworkInfo(user=getpass.getuser(), name="scale", failover_timeout=3600.0)
    driver = SchedulerDriver(scheduler, framework, args.master, reactor=reactor, insecure=True)
    def tick() -> None:
        scheduler.progress()
        scheduler.check_probe(driver)

    ticks = task.LoopingCall(tick)
    ticks.clock = reactor
    reactor.callWhenRunning(ticks.start, 1.0, False)
    if args.until == "running":
        stdio.StandardIO(Commands(scheduler, driver), reactor=reactor)
    driver.run()
    if args.until == "finished":
        return 0 if scheduler.failed == 0 and scheduler.finished >= args.tasks else 1
    return 0 if scheduler.announced else 1


if __name__ == "__main__":
    sys.exit(main())
