"""A PARTITION_AWARE SDK framework for the real-process partition tests (run as a subprocess).

Launches ``--tasks`` long-running tasks (ids ``part-0``, ``part-1``, ...), each
``echo $$ >> LAUNCH_DIR/<task id>; exec sleep 300``: every start of a task appends the pid of
its ``sleep`` to a file named after it, so the test can count real launches per task id
independently of what the master or the framework believe. It then suppresses offers and just
listens until the test stops it (or ``--timeout``).

Writes one JSON object per line to ``--out`` (flushed at once), each with a monotonic ``t``:
``subscribed``, ``launch`` (one per task the framework sends), ``status`` (every update it
receives: task_id, state, reason, message, agent_id), ``agent_lost``, ``disconnected``,
``error``, ``timeout``.
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
    CommandInfo, Filters, FrameworkInfo, Resources, Scheduler, SchedulerDriver, TaskInfo,
)

TASK = Resources.of(cpus=0.1, mem=16)


class Recorder:
    def __init__(self, path):
        self.file = open(path, "a", buffering=1)

    def __call__(self, event, **fields):
        self.file.write(json.dumps({"event": event, "t": time.monotonic(), **fields}) + "\n")
        self.file.flush()
        os.fsync(self.file.fileno())


class PartitionScheduler(Scheduler):
    def __init__(self, emit, count, launch_dir):
        self.emit = emit
        self.pending = [f"part-{i}" for i in range(count)]
        self.launch_dir = launch_dir

    def subscribed(self, driver, framework_id, master_info):
        self.emit("subscribed", framework_id=framework_id)

    def offers(self, driver, offers):
        for offer in offers:
            room, tasks = Resources.from_wire(offer.resources), []
            while self.pending and room.contains(TASK):
                task_id = self.pending.pop(0)
                room = room - TASK
                marker = os.path.join(self.launch_dir, task_id)
                tasks.append(TaskInfo(name=task_id, task_id=task_id, agent_id=offer.agent_id,
                                      resources=TASK.to_wire(),
                                      command=CommandInfo(value=f"echo $$ >> {marker}; exec sleep 300")))
                self.emit("launch", task_id=task_id, agent_id=offer.agent_id)
            if tasks:
                driver.launch(offer.id, tasks)
            else:
                driver.decline(offer.id, Filters(refuse_seconds=3600))
        if not self.pending:
            driver.suppress()

    def status_update(self, driver, status):
        self.emit("status", task_id=status.task_id, state=status.state.value,
                  reason=status.reason.value if status.reason else None, message=status.message,
                  agent_id=status.agent_id)

    def agent_lost(self, driver, agent_id):
        self.emit("agent_lost", agent_id=agent_id)

    def disconnected(self, driver):
        self.emit("disconnected")

    def error(self, driver, message):
        self.emit("error", message=message)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--master", required=True)
    parser.add_argument("--tasks", type=int, default=3)
    parser.add_argument("--out", required=True)
    parser.add_argument("--launch-dir", required=True)
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    emit = Recorder(args.out)
    scheduler = PartitionScheduler(emit, args.tasks, args.launch_dir)
    info = FrameworkInfo(user=getpass.getuser(), name="chaos-partition", capabilities=["PARTITION_AWARE"],
                         failover_timeout=60.0)
    driver = SchedulerDriver(scheduler, info, args.master, reactor=reactor)

    def give_up():
        emit("timeout")
        driver.stop_and_exit()

    reactor.callLater(args.timeout, give_up)
    driver.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
