"""A tiny SDK framework for the e2e kill test (run as a subprocess, like any framework).

Launches two tasks: ``sleep 60`` (ends on SIGTERM) and ``sh -c 'trap "" TERM; sleep 60'``
(ignores SIGTERM, so only the agent's SIGKILL after the grace period ends it). Once a task is
RUNNING *and* its ``sleep`` process exists (found in /proc by its sandbox working directory, so
the trap is certainly installed), it calls ``driver.kill(task_id, grace_period=G)``.

Prints one JSON object per line, each with a monotonic timestamp ``t``:
``subscribed``, ``launch``, ``status`` (every update), ``kill`` (with the task's pids and
whether its ``sleep`` ignores SIGTERM), and finally ``done``. Exits 0 when both tasks ended
TASK_KILLED, 1 otherwise, 2 on its own timeout.
"""

import argparse
import getpass
import json
import os
import sys
import time

from tepui.sdk import install_reactor

reactor = install_reactor()  # before anything else touches Twisted's reactor

from tepui.sdk import (  # noqa: E402
    CommandInfo, Filters, FrameworkInfo, Resources, Scheduler, SchedulerDriver, TaskInfo, TaskState,
)

TASK = Resources.of(cpus=0.1, mem=32)
# The stubborn one runs as an argv (shell=False): through the agent's own ``/bin/sh -c`` the
# outer shell would die of SIGTERM at once and the task would end before its grace period.
COMMANDS = {
    "sleep-term": CommandInfo(value="sleep 60"),
    "sleep-stubborn": CommandInfo(shell=False, arguments=["sh", "-c", 'trap "" TERM; sleep 60']),
}
SIGTERM_BIT = 1 << (15 - 1)


def emit(event, **fields):
    print(json.dumps({"event": event, "t": time.monotonic(), **fields}), flush=True)


def sandbox_processes(framework_id, task_id):
    """(pid, comm, ignores SIGTERM) of processes whose cwd is this task's sandbox."""
    suffix = f"/sandboxes/{framework_id}/{task_id}"
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if not os.readlink(f"/proc/{name}/cwd").endswith(suffix):
                continue
            with open(f"/proc/{name}/cmdline", "rb") as f:
                if b"tepui-task" in f.read().split(b"\0"):
                    continue  # the agent's supervisor of the task, not the task
            with open(f"/proc/{name}/status") as f:
                status = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
        except (OSError, ValueError):
            continue
        if status.get("State", "").startswith("Z"):
            continue
        ignored = int(status.get("SigIgn", "0"), 16)
        found.append((int(name), status.get("Name", "?"), bool(ignored & SIGTERM_BIT)))
    return found


class KillScheduler(Scheduler):
    def __init__(self, grace):
        self.grace = grace
        self.pending = list(COMMANDS)
        self.framework_id = None
        self.final = {}
        self.kill_requested = set()

    def subscribed(self, driver, framework_id, master_info):
        self.framework_id = framework_id
        emit("subscribed", framework_id=framework_id)

    def offers(self, driver, offers):
        for offer in offers:
            room, tasks = Resources.from_wire(offer.resources), []
            while self.pending and room.contains(TASK):
                task_id = self.pending.pop(0)
                room = room - TASK
                tasks.append(TaskInfo(name=task_id, task_id=task_id, agent_id=offer.agent_id,
                                      resources=TASK.to_wire(), command=COMMANDS[task_id]))
                emit("launch", task_id=task_id, agent_id=offer.agent_id, hostname=offer.hostname)
            if tasks:
                driver.launch(offer.id, tasks)
            else:
                driver.decline(offer.id, Filters(refuse_seconds=60))
        if not self.pending:
            driver.suppress()

    def status_update(self, driver, status):
        emit("status", task_id=status.task_id, state=status.state.value, message=status.message,
             exit_code=status.exit_code)
        if status.state == TaskState.RUNNING and status.task_id not in self.kill_requested:
            self.kill_requested.add(status.task_id)
            self._kill_when_sleeping(driver, status.task_id, time.monotonic() + 10.0)
        if status.state.is_terminal:
            self.final[status.task_id] = status.state
            if len(self.final) == len(COMMANDS):
                emit("done", states={k: v.value for k, v in self.final.items()})
                driver.stop_and_exit()

    def _kill_when_sleeping(self, driver, task_id, deadline):
        if task_id in self.final:
            return
        procs = sandbox_processes(self.framework_id, task_id)
        sleeping = [p for p in procs if p[1] == "sleep"]
        if not sleeping and time.monotonic() < deadline:
            reactor.callLater(0.02, self._kill_when_sleeping, driver, task_id, deadline)
            return
        emit("kill", task_id=task_id, grace=self.grace, pids=[p[0] for p in procs],
             sleep_ignores_term=bool(sleeping) and all(p[2] for p in sleeping),
             all_ignore_term=bool(procs) and all(p[2] for p in procs), found_sleep=bool(sleeping))
        driver.kill(task_id, grace_period=self.grace)

    def error(self, driver, message):
        emit("error", message=message)
        driver.stop_and_exit()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--master", required=True)
    parser.add_argument("--grace", type=float, default=2.0)
    parser.add_argument("--timeout", type=float, default=40.0)
    args = parser.parse_args()
    scheduler = KillScheduler(args.grace)
    driver = SchedulerDriver(scheduler, FrameworkInfo(user=getpass.getuser(), name="e2e-kill"), args.master,
                             reactor=reactor)
    timed_out = []

    def give_up():
        timed_out.append(True)
        emit("timeout", final={k: v.value for k, v in scheduler.final.items()})
        driver.stop_and_exit()

    reactor.callLater(args.timeout, give_up)
    driver.run()
    if timed_out:
        return 2
    return 0 if all(s == TaskState.KILLED for s in scheduler.final.values()) and len(scheduler.final) == 2 else 1


if __name__ == "__main__":
    sys.exit(main())
