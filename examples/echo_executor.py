#!/usr/bin/env python3
"""Echo executor, a custom executor: runs each task's script (its `data`, or `command.value`) with `sh -c` (many tasks per
executor), reports TASK_RUNNING then TASK_FINISHED / TASK_FAILED with the exit code, kills on
request, echoes framework messages back as `echo: <data>`. An agent starts it for tasks with
executor=ExecutorInfo(executor_id="echo", command=CommandInfo(value="python3 echo_executor.py"))."""

import logging
import os
import signal

from tepui.sdk import install_reactor

reactor = install_reactor()  # before anything else touches Twisted's reactor

from tepui.sdk import Executor, ExecutorDriver, TaskState  # noqa: E402
from twisted.internet import protocol  # noqa: E402


class TaskProcess(protocol.ProcessProtocol):
    def __init__(self, driver, task_id, running):
        self.driver, self.task_id, self.running, self.killed = driver, task_id, running, False

    def kill(self, sig):
        self.killed = True
        if self.transport.pid:  # the command runs in its own session: signal its whole group
            try:
                os.killpg(self.transport.pid, sig)
            except ProcessLookupError:  # not in its own session yet
                os.kill(self.transport.pid, sig)

    def processEnded(self, reason):
        del self.running[self.task_id]
        code, sig = reason.value.exitCode, reason.value.signal
        state = TaskState.KILLED if self.killed else TaskState.FINISHED if code == 0 else TaskState.FAILED
        how = f"exit code {code}" if code is not None else f"killed by signal {sig}"
        self.driver.send_status_update(self.task_id, state, how, exit_code=code)


class EchoExecutor(Executor):
    def __init__(self):
        self.running = {}  # task id → TaskProcess

    def launch_task(self, driver, task):
        # Mesos: a task with an executor carries no command; what to run travels in `data`.
        script = task.command.value if task.command and task.command.value else (task.data or b"").decode()
        if not script:
            driver.send_status_update(task.task_id, TaskState.FAILED, "echo executor: no command in data")
            return
        proc = self.running[task.task_id] = TaskProcess(driver, task.task_id, self.running)
        env = {**os.environ, **(task.command.environment if task.command else {})}
        reactor.spawnProcess(proc, "setsid", ["setsid", "sh", "-c", script], env=env,
                             childFDs={0: "w", 1: 1, 2: 2})  # output goes to the sandbox's files
        proc.transport.closeStdin()
        driver.send_status_update(task.task_id, TaskState.RUNNING)

    def launch_task_group(self, driver, tasks):
        for task in tasks:
            self.launch_task(driver, task)

    def kill_task(self, driver, task_id, kill_policy):
        if (proc := self.running.get(task_id)) is not None:
            proc.kill(signal.SIGTERM)
            grace = getattr(kill_policy, "grace_period_seconds", None)
            grace = 3.0 if grace is None else grace
            reactor.callLater(grace, lambda: proc.kill(signal.SIGKILL) if task_id in self.running else None)

    def framework_message(self, driver, data):
        driver.send_framework_message(b"echo: " + data)

    def shutdown(self, driver):
        for task_id in list(self.running):
            self.kill_task(driver, task_id, None)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    ExecutorDriver(EchoExecutor(), reactor=reactor).run()
