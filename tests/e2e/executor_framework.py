"""Run by test_custom_executor.py: runs 5 tasks in one custom executor (examples/echo_executor.py)
and exchanges framework messages with it both ways. Prints JSON lines."""

import argparse
import json
import os
import sys

from tepui.sdk import install_reactor

reactor = install_reactor()

from tepui.sdk import (  # noqa: E402
    CommandInfo, ExecutorInfo, FrameworkInfo, Resources, Scheduler, SchedulerDriver, TaskInfo,
)

EXECUTOR = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "echo_executor.py")
SHAPE = Resources.parse("cpus:0.1;mem:32")


def say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


class UsesExecutor(Scheduler):
    def __init__(self, command: str) -> None:
        self.command = command
        self.launched = False
        self.finished: set[str] = set()
        self.echoes: list[str] = []
        self.agent_id = ""

    def offers(self, driver, offers):
        for offer in offers:
            if self.launched:
                driver.decline(offer.id)
                continue
            self.launched, self.agent_id = True, offer.agent_id
            executor = ExecutorInfo(executor_id="echo", type="CUSTOM", name="echo executor",
                                    command=CommandInfo(value=self.command),
                                    resources=SHAPE.to_wire())
            tasks = [TaskInfo(name=f"t{i}", task_id=f"t{i}", agent_id=offer.agent_id, resources=SHAPE.to_wire(),
                              executor=executor, data=f"echo task {i}".encode()) for i in range(5)]
            driver.launch(offer.id, tasks)

    def status_update(self, driver, status):
        say(event="status", task=status.task_id, state=status.state.value, source=status.source.value
            if status.source else None, executor=status.executor_id, message=status.message)
        if status.state.value == "TASK_RUNNING" and status.task_id == "t0":
            driver.send_framework_message(self.agent_id, "echo", b"ping")
        if status.state.value == "TASK_FINISHED":
            self.finished.add(status.task_id)
        self.maybe_done(driver)

    def framework_message(self, driver, agent_id, executor_id, data):
        say(event="message", executor=executor_id, data=data.decode())
        self.echoes.append(data.decode())
        self.maybe_done(driver)

    def maybe_done(self, driver):
        if len(self.finished) == 5 and self.echoes:
            driver.stop_and_exit()

    def error(self, driver, message):
        say(event="error", message=message)
        driver.stop_and_exit()


parser = argparse.ArgumentParser()
parser.add_argument("--master", required=True)
parser.add_argument("--executor-command", default=f"{sys.executable} {os.path.abspath(EXECUTOR)}",
                    help="The executor's shell command (default: examples/echo_executor.py)")
args = parser.parse_args()
driver = SchedulerDriver(UsesExecutor(args.executor_command), FrameworkInfo(user="test", name="uses-executor"), args.master,
                         reactor=reactor)
reactor.callLater(45, driver.stop_and_exit)
driver.run()
