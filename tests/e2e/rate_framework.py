"""Run by test_rate_limits.py (scenario 37), as a real framework process, in one of two modes:

``--mode latency``: subscribes as principal ``calm`` and launches ``--launches`` tasks (``true``)
one after another, timing each from its ACCEPT to its TASK_RUNNING; prints
``{"event": "latency", "seconds": ...}`` per task and ``{"event": "done"}``.

``--mode flood``: subscribes as principal ``flood`` and sends EXPLAIN calls at ``--rate`` per
second (in batches every 10 ms) until killed or ``--seconds`` pass; prints ``{"event":
"flooding"}`` once subscribed and at the end how many calls it sent and how many ERRORs
(rate limited) and EXPLANATIONs (processed) it got back.
"""

import argparse
import json
import sys
import time

from tepui.sdk import install_reactor

reactor = install_reactor()

from twisted.internet import task as twisted_task  # noqa: E402

from tepui.sdk import (  # noqa: E402
    CommandInfo, Filters, FrameworkInfo, Resources, Scheduler, SchedulerDriver, TaskInfo, TaskState,
)


def say(event, **fields):
    print(json.dumps({"event": event, **fields}), flush=True)


class Latency(Scheduler):
    def __init__(self, launches):
        self.left = launches
        self.in_flight = None  # (task id, accept time)
        self.seq = 0

    def offers(self, driver, offers):
        # Unused resources are refused for a minute (no offer ping-pong while a task starts);
        # REVIVE after each measurement brings the next offer at once.
        if self.in_flight is not None or self.left == 0:
            driver.decline([o.id for o in offers], Filters(refuse_seconds=60.0))
            return
        offer, rest = offers[0], offers[1:]
        if rest:
            driver.decline([o.id for o in rest], Filters(refuse_seconds=60.0))
        self.seq += 1
        task_id = f"lat-{self.seq}"
        info = TaskInfo(name=task_id, task_id=task_id, agent_id=offer.agent_id,
                        resources=Resources.of(cpus=0.1, mem=16).to_wire(), command=CommandInfo(value="true"))
        self.in_flight = (task_id, time.monotonic())
        driver.launch(offer.id, [info], Filters(refuse_seconds=60.0))

    def status_update(self, driver, status):
        if self.in_flight is None or status.task_id != self.in_flight[0]:
            return
        if status.state == TaskState.RUNNING or status.state.is_terminal:
            say("latency", seconds=time.monotonic() - self.in_flight[1], state=status.state.value)
            self.in_flight = None
            self.left -= 1
            if self.left == 0:
                say("done")
                driver.stop_and_exit()
            else:
                driver.revive()

    def error(self, driver, message):
        say("error", message=message)


class Flood(Scheduler):
    def __init__(self, rate, seconds):
        self.rate, self.seconds = rate, seconds
        self.sent = self.errors = self.explanations = 0
        self.loop = None

    def subscribed(self, driver, framework_id, master_info):
        if self.loop is not None:
            return
        say("flooding")
        self.loop = twisted_task.LoopingCall(self.burst, driver, time.monotonic())
        self.loop.start(0.01)
        reactor.callLater(self.seconds, self.finish, driver)

    def burst(self, driver, started):
        due = int((time.monotonic() - started) * self.rate) - self.sent
        for _ in range(max(0, due)):
            driver.explain()
            self.sent += 1

    def offers(self, driver, offers):
        driver.decline([o.id for o in offers], Filters(refuse_seconds=3600.0))

    def error(self, driver, message):
        self.errors += 1

    def explanation(self, driver, roles):
        self.explanations += 1

    def finish(self, driver):
        say("flood_done", sent=self.sent, errors=self.errors, explanations=self.explanations)
        driver.stop_and_exit()


parser = argparse.ArgumentParser()
parser.add_argument("--master", required=True)
parser.add_argument("--mode", choices=["latency", "flood"], required=True)
parser.add_argument("--launches", type=int, default=10)
parser.add_argument("--rate", type=float, default=1000.0)
parser.add_argument("--seconds", type=float, default=60.0)
args = parser.parse_args()
if args.mode == "latency":
    scheduler, principal = Latency(args.launches), "calm"
else:
    scheduler, principal = Flood(args.rate, args.seconds), "flood"
driver = SchedulerDriver(scheduler, FrameworkInfo(user="test", name=principal, principal=principal), args.master,
                         reactor=reactor)
reactor.callLater(120, lambda: (say("timeout"), driver.stop_and_exit()))
driver.run()
sys.exit(0)
