#!/usr/bin/env python3
"""The failover benchmark's framework (bench/failover.py): an SDK ``SchedulerDriver`` given the
masters as ``zk://...``, so it follows the serving master the way every Tepui framework does.

It launches ``--tasks`` long tasks (one hour: the ``tepui.sim/duration`` label, read by
``tepui sim``), at most ceil(tasks / agents) per offer so they spread over the agents, prints
``all_running tasks=N t=T`` once they all run, and suppresses offers. Then, after every
re-subscription (a master failover), it prints ``resubscribed t=T master=ID epoch=E`` and
launches one probe task on the first offer that fits, printing ``probe_running t=T task=ID``
when its TASK_RUNNING arrives: "a new task can be launched", the last phase of a failover.

``T`` is ``time.monotonic()`` — CLOCK_MONOTONIC is one clock for every process of the
machine, so the bench subtracts its own SIGKILL instant from it without the delay of the pipe.
A long task that ends (lost with its agent) is reported as ``task_ended ...`` and replaced.
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

from tepui.sdk import (  # noqa: E402
    CommandInfo, Filters, FrameworkInfo, Resources, Scheduler, SchedulerDriver, TaskInfo, TaskState,
)

LONG_FILTER = Filters(refuse_seconds=3600.0)
PROBE_SECONDS = 2.0  # the probe task ends by itself: it only has to reach RUNNING


def say(line: str) -> None:
    print(line, flush=True)


class FailoverScheduler(Scheduler):
    def __init__(self, total: int, per_agent: int) -> None:
        self.total, self.per_agent = total, per_agent
        self.resources = Resources.of(cpus=0.01, mem=8).to_wire()
        self.long_labels = {"tepui.sim/duration": "3600"}
        self.probe_labels = {"tepui.sim/duration": f"{PROBE_SECONDS:g}"}
        self.launched = 0
        self.active: set[str] = set()  # long tasks launched and not ended
        self.running: set[str] = set()
        self.announced = False
        self.subscriptions = 0
        self.probe_wanted = False
        self.probes = 0
        self.probe_id: str | None = None

    # --- subscription -------------------------------------------------------------------------

    def subscribed(self, driver: SchedulerDriver, framework_id: str, master_info: Any) -> None:
        self.subscriptions += 1
        now = time.monotonic()
        if self.subscriptions == 1:
            say(f"subscribed t={now:.6f} master={master_info.id} epoch={master_info.epoch} framework={framework_id}")
            return
        say(f"resubscribed t={now:.6f} master={master_info.id} epoch={master_info.epoch}")
        self.probe_wanted = True
        driver.revive()

    # --- offers -------------------------------------------------------------------------------

    def offers(self, driver: SchedulerDriver, offers: list[Any]) -> None:
        declined = []
        for offer in offers:
            room = Resources.from_wire(offer.resources)
            fits = min(int(room.scalar("cpus") / 0.01 + 1e-9), int(room.scalar("mem") / 8 + 1e-9))
            if self.probe_wanted and fits > 0:
                self.probe_wanted = False
                self.probes += 1
                self.probe_id = f"probe-{self.probes}"
                say(f"probe_launched t={time.monotonic():.6f} task={self.probe_id} agent={offer.agent_id}")
                driver.launch(offer.id, [self._task(self.probe_id, offer.agent_id, self.probe_labels)], LONG_FILTER)
                continue
            count = min(self.total - len(self.active), self.per_agent, fits)
            if count <= 0:
                declined.append(offer.id)
                continue
            tasks = []
            for _ in range(count):
                task_id = f"long-{self.launched}"
                self.launched += 1
                self.active.add(task_id)
                tasks.append(self._task(task_id, offer.agent_id, self.long_labels))
            driver.launch(offer.id, tasks, LONG_FILTER)
        if declined:
            driver.decline(declined, LONG_FILTER)
        if len(self.active) >= self.total and not self.probe_wanted:
            driver.suppress()

    def _task(self, task_id: str, agent_id: str, labels: dict[str, str]) -> TaskInfo:
        duration = labels["tepui.sim/duration"]
        return TaskInfo(name=task_id, task_id=task_id, agent_id=agent_id, resources=self.resources,
                        command=CommandInfo(value=f"sleep {duration}"), labels=labels)

    # --- updates ------------------------------------------------------------------------------

    def status_update(self, driver: SchedulerDriver, status: Any) -> None:
        task_id, state = status.task_id, status.state
        if task_id == self.probe_id:
            if state == TaskState.RUNNING:
                say(f"probe_running t={time.monotonic():.6f} task={task_id}")
                self.probe_id = None
            elif state.is_terminal:
                say(f"probe_failed t={time.monotonic():.6f} task={task_id} state={state.value} "
                    f"message={status.message!r}")
                self.probe_id = None
                self.probe_wanted = True  # try again on the next offer
                driver.revive()
            return
        if task_id not in self.active:
            return  # a finished probe, or a repeated update
        if state == TaskState.RUNNING:
            self.running.add(task_id)
        elif state.is_terminal:
            self.active.discard(task_id)
            self.running.discard(task_id)
            say(f"task_ended t={time.monotonic():.6f} task={task_id} state={state.value} message={status.message!r}")
            driver.revive()  # replaced on the next offer
        if not self.announced and len(self.running) >= self.total:
            self.announced = True
            say(f"all_running tasks={self.total} t={time.monotonic():.6f}")

    def error(self, driver: SchedulerDriver, message: str) -> None:
        print(f"error from master: {message}", file=sys.stderr, flush=True)

    def disconnected(self, driver: SchedulerDriver) -> None:
        say(f"disconnected t={time.monotonic():.6f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--master", required=True, help="zk://HOSTS/PATH of the masters")
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--agents", type=int, default=1000, help="tasks per offer are capped at ceil(tasks / agents)")
    args = parser.parse_args()
    scheduler = FailoverScheduler(args.tasks, max(1, math.ceil(args.tasks / max(1, args.agents))))
    framework = FrameworkInfo(user=getpass.getuser(), name="failover-bench", failover_timeout=3600.0)
    driver = SchedulerDriver(scheduler, framework, args.master, reactor=reactor, insecure=True)
    driver.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
