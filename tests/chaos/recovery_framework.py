"""A framework for the agent-recovery tests (a subprocess, like any framework).

Launches the tasks given as ``--task ID=COMMAND`` (0.05 cpus, 16 MiB each; PARTITION_AWARE) —
with ``--executor``, inside one custom executor (examples/echo_executor.py), with ``--image``, in
Docker containers —
then keeps running — acknowledging every update — until SIGTERM. Prints one JSON object per
line: ``subscribed``, ``launch`` (per task), ``status`` (every update, with its uuid), and
``driver`` whenever the master epoch the driver follows or its count of stale-epoch messages
dropped changes (tests/chaos/test_epoch_fencing.py).
"""

import argparse
import getpass
import json
import os
import signal
import sys
import time

from tepui.sdk import install_reactor

reactor = install_reactor()  # before anything else touches Twisted's reactor

from tepui.sdk import (  # noqa: E402
    CommandInfo, ContainerInfo, DockerInfo, ExecutorInfo, Filters, FrameworkInfo, Resources, Scheduler, SchedulerDriver, TaskInfo,
)

ECHO_EXECUTOR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples", "echo_executor.py")

TASK = Resources.of(cpus=0.05, mem=16)


def emit(event, **fields):
    print(json.dumps({"event": event, "t": time.monotonic(), **fields}), flush=True)


class RecoveryScheduler(Scheduler):
    def __init__(self, tasks, executor=False, image=None):
        self.pending = list(tasks.items())
        self.container = ContainerInfo(type="DOCKER", docker=DockerInfo(image=image)) if image else None
        self.executor = None
        if executor:
            self.executor = ExecutorInfo(executor_id="echo", type="CUSTOM", name="echo executor",
                                         command=CommandInfo(value=f"{sys.executable} {os.path.abspath(ECHO_EXECUTOR)}"),
                                         resources=Resources.of(cpus=0.1, mem=128).to_wire())

    def subscribed(self, driver, framework_id, master_info):
        emit("subscribed", framework_id=framework_id, epoch=master_info.epoch)

    def offers(self, driver, offers):
        for offer in offers:
            room, tasks = Resources.from_wire(offer.resources), []
            while self.pending and room.contains(TASK):
                task_id, command = self.pending.pop(0)
                room = room - TASK
                if self.executor is not None:  # what to run travels in `data` (Mesos)
                    tasks.append(TaskInfo(name=task_id, task_id=task_id, agent_id=offer.agent_id,
                                          resources=TASK.to_wire(), executor=self.executor, data=command.encode()))
                else:
                    tasks.append(TaskInfo(name=task_id, task_id=task_id, agent_id=offer.agent_id,
                                          resources=TASK.to_wire(), command=CommandInfo(value=command),
                                          container=self.container))
                emit("launch", task_id=task_id, agent_id=offer.agent_id)
            if tasks:
                driver.launch(offer.id, tasks)
            else:
                driver.decline(offer.id, Filters(refuse_seconds=60))
        if not self.pending:
            driver.suppress()

    def status_update(self, driver, status):
        emit("status", task_id=status.task_id, state=status.state.value, message=status.message,
             exit_code=status.exit_code, reason=status.reason.value if status.reason else None,
             uuid=status.uuid.hex() if status.uuid else None, agent_id=status.agent_id)

    def error(self, driver, message):
        emit("error", message=message)


def report_epoch(driver, last=None):
    now = (driver.master_epoch, driver.stale_epoch_dropped)
    if now != last:
        emit("driver", epoch=now[0], stale_epoch_dropped=now[1])
    reactor.callLater(0.2, report_epoch, driver, now)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--master", required=True)
    parser.add_argument("--task", action="append", default=[], help="ID=COMMAND")
    parser.add_argument("--executor", action="store_true", help="run the tasks in one custom executor")
    parser.add_argument("--image", default=None, help="run the tasks in Docker containers of this image")
    args = parser.parse_args()
    tasks = dict(spec.split("=", 1) for spec in args.task)
    info = FrameworkInfo(user=getpass.getuser(), name="recovery", capabilities=["PARTITION_AWARE"],
                         failover_timeout=3600.0)
    driver = SchedulerDriver(RecoveryScheduler(tasks, args.executor, args.image), info, args.master, reactor=reactor)
    signal.signal(signal.SIGTERM, lambda *_: reactor.callFromThread(driver.stop_and_exit))
    reactor.callWhenRunning(report_epoch, driver)
    driver.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
