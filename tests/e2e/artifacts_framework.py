"""A tiny SDK framework for the e2e artifacts test (run as a subprocess, like any framework).

Runs the two-stage job ``up -> down`` as the batch framework would carry its artifacts: task
``up`` writes ``out.txt`` and ``sub/part.txt`` in its sandbox and ends; then task ``down`` is
launched on ANOTHER agent with the URIs of ``frameworks/batch/artifacts.input_uris`` (the
master's files proxy; a task files token minted from the cluster token with
``task_files_credential``, as the batch framework's core does) and checks that it finds
``up/0/out.txt`` and ``up/0/sub/part.txt`` with the same contents, which it also prints.

Prints one JSON object per line: ``subscribed``, ``launch`` (task, agent), ``status`` (every
update), and finally ``done``. Exits 0 when ``down`` finished, 1 otherwise, 2 on its own timeout.
"""

import argparse
import getpass
import json
import sys
import time

from tepui.sdk import install_reactor

reactor = install_reactor()  # before anything else touches Twisted's reactor

from tepui.frameworks.batch.artifacts import Producer, input_uris, task_files_credential  # noqa: E402
from tepui.frameworks.batch.spec import load_job  # noqa: E402
from tepui.sdk import (  # noqa: E402
    CommandInfo, Filters, FrameworkInfo, Resources, Scheduler, SchedulerDriver, TaskInfo, TaskState,
)
from tepui.sdk.http_security import load_token  # noqa: E402

TASK = Resources.of(cpus=0.1, mem=32)
CONTENT = "hello artifact 42"
CHECK = (f'test "$(cat up/0/out.txt)" = "{CONTENT}" && test "$(cat up/0/sub/part.txt)" = nested '
         "&& cat up/0/out.txt up/0/sub/part.txt")
SPEC = load_job({"name": "e2e", "stages": [
    {"name": "up", "command": f"printf '{CONTENT}\\n' > out.txt && mkdir sub && echo nested > sub/part.txt",
     "outputs": ["out.txt", "sub/part.txt"]},
    {"name": "down", "command": CHECK, "depends_on": ["up"]},
]})


def emit(event, **fields):
    print(json.dumps({"event": event, "t": time.monotonic(), **fields}), flush=True)


class ArtifactsScheduler(Scheduler):
    def __init__(self, master_http, token):
        self.master_http, self.token = master_http, token
        self.framework_id = None
        self.pending = ["up"]
        self.producers = {}  # (stage, index) -> Producer of its succeeded attempt
        self.up_agent = None
        self.final = {}

    def subscribed(self, driver, framework_id, master_info):
        self.framework_id = framework_id
        emit("subscribed", framework_id=framework_id)

    def offers(self, driver, offers):
        for offer in offers:
            stage = self.pending[0] if self.pending else None
            if stage == "down" and offer.agent_id == self.up_agent:
                stage = None  # another agent: no shared filesystem between the two sandboxes
            if stage is None or not Resources.from_wire(offer.resources).contains(TASK):
                driver.decline(offer.id, Filters(refuse_seconds=1))
                continue
            self.pending.pop(0)
            task_id = f"e2e-1.{stage}.0.1"
            uris = input_uris(SPEC, stage, 0, lambda s, i: self.producers.get((s, i)), self.master_http,
                              credential=task_files_credential(self.token))
            command = CommandInfo(value=SPEC.stage(stage).command, uris=list(uris),
                                  environment=SPEC.task_env(stage, 0))
            emit("launch", task_id=task_id, agent_id=offer.agent_id, hostname=offer.hostname,
                 uris=[{"output_file": u.output_file, "cache": u.cache, "extract": u.extract} for u in uris])
            driver.launch(offer.id, [TaskInfo(name=task_id, task_id=task_id, agent_id=offer.agent_id,
                                              resources=TASK.to_wire(), command=command)])

    def status_update(self, driver, status):
        emit("status", task_id=status.task_id, state=status.state.value, message=status.message,
             agent_id=status.agent_id, exit_code=status.exit_code)
        if not status.state.is_terminal:
            return
        stage = status.task_id.split(".")[1]
        self.final[stage] = status.state
        if stage == "up" and status.state == TaskState.FINISHED:
            self.producers[("up", 0)] = Producer(status.task_id, status.agent_id, self.framework_id)
            self.up_agent = status.agent_id
            self.pending.append("down")
            driver.revive()
        elif stage == "up" or stage == "down":
            emit("done", states={k: v.value for k, v in self.final.items()})
            driver.stop_and_exit()

    def error(self, driver, message):
        emit("error", message=message)
        driver.stop_and_exit()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--master", required=True)
    parser.add_argument("--master-http", required=True)
    parser.add_argument("--token-file", required=True)
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()
    scheduler = ArtifactsScheduler(args.master_http, load_token(args.token_file))
    driver = SchedulerDriver(scheduler, FrameworkInfo(user=getpass.getuser(), name="e2e-artifacts"), args.master,
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
    return 0 if scheduler.final.get("down") == TaskState.FINISHED else 1


if __name__ == "__main__":
    sys.exit(main())
