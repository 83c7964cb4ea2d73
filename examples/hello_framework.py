#!/usr/bin/env python3
"""Hello, Tepui: a complete framework. Runs N tasks of `echo hello $i` and exits 0 printing
`N tasks finished` once every one of them has finished. The driver finds the cluster's
address and CURVE keys in the client configuration `tepui up` writes.

    python examples/hello_framework.py --master 127.0.0.1:5050 --tasks 10
"""

import argparse
import getpass
import sys

from tepui.sdk import install_reactor

reactor = install_reactor()  # before anything else touches Twisted's reactor

from tepui.sdk import (  # noqa: E402
    CommandInfo, Filters, FrameworkInfo, Resources, Scheduler, SchedulerDriver, TaskInfo, TaskState,
)

TASK = Resources.of(cpus=0.1, mem=32)


class HelloScheduler(Scheduler):
    def __init__(self, total: int) -> None:
        self.total, self.launched, self.finished, self.failed = total, 0, 0, 0

    def offers(self, driver, offers):
        for offer in offers:
            room, tasks = Resources.from_wire(offer.resources), []
            while self.launched < self.total and room.contains(TASK):
                i, self.launched, room = self.launched, self.launched + 1, room - TASK
                tasks.append(TaskInfo(
                    name=f"hello-{i}", task_id=f"hello-{i}", agent_id=offer.agent_id,
                    resources=TASK.to_wire(), command=CommandInfo(value=f"echo hello {i}"),
                ))
            if tasks:
                driver.launch(offer.id, tasks)
            else:
                driver.decline(offer.id, Filters(refuse_seconds=60))
        if self.launched == self.total:
            driver.suppress()  # nothing left to launch: stop receiving offers

    def status_update(self, driver, status):
        detail = f" ({status.message})" if status.message else ""
        print(f"{status.task_id}: {status.state.value}{detail}", flush=True)
        if status.state == TaskState.FINISHED:
            self.finished += 1
        elif status.state.is_terminal:
            self.failed += 1
        if self.finished + self.failed == self.total:
            print(f"{self.finished} tasks finished" + (f", {self.failed} failed" if self.failed else ""))
            driver.stop_and_exit()

    def error(self, driver, message):
        # Not the end of the framework (a DECLINE that crossed a RESCIND is refused as a matter
        # of course), unless its SUBSCRIBE was refused: then nothing would ever come.
        print(f"error from master ({message.call_type}): {message}", file=sys.stderr)
        if message.call_type == "SUBSCRIBE":
            driver.stop_and_exit()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--master", default=None,
                        help="master HOST:PORT (default: the client configuration `tepui up` writes, with its keys)")
    parser.add_argument("--tasks", type=int, default=5, help="how many tasks to run")
    args = parser.parse_args()
    scheduler = HelloScheduler(args.tasks)
    framework = FrameworkInfo(user=getpass.getuser(), name="hello")
    SchedulerDriver(scheduler, framework, args.master, reactor=reactor).run()
    return 0 if scheduler.finished == args.tasks else 1


if __name__ == "__main__":
    sys.exit(main())
