"""Run by bench/container_start.py: launches N tasks one after another (each after the previous
one is RUNNING and killed) and prints, per task, seconds from ACCEPT sent to TASK_RUNNING seen."""

import argparse
import json
import time

from tepui.sdk import install_reactor

reactor = install_reactor()

from tepui.sdk import (  # noqa: E402
    CommandInfo, ContainerInfo, DockerInfo, Filters, FrameworkInfo, Resources, Scheduler, SchedulerDriver, TaskInfo,
)

TASK = Resources.parse("cpus:0.1;mem:64")


class Starter(Scheduler):
    def __init__(self, count: int, image: str | None) -> None:
        self.count, self.image = count, image
        self.sent: dict[str, float] = {}
        self.latencies: list[float] = []
        self.waiting = False
        self.next = 0

    def offers(self, driver, offers):
        for offer in offers:
            if self.waiting or self.next >= self.count or not Resources.from_wire(offer.resources).contains(TASK):
                driver.decline(offer.id, Filters(refuse_seconds=0.1))
                continue
            task_id = f"start-{self.next}"
            self.next += 1
            container = ContainerInfo(type="DOCKER", docker=DockerInfo(image=self.image)) if self.image else None
            task = TaskInfo(name=task_id, task_id=task_id, agent_id=offer.agent_id, resources=TASK.to_wire(),
                            command=CommandInfo(value="sleep 30"), container=container)
            self.waiting = True
            self.sent[task_id] = time.perf_counter()
            driver.launch(offer.id, [task], Filters(refuse_seconds=0.1))

    def status_update(self, driver, status):
        if status.state.value == "TASK_RUNNING" and status.task_id in self.sent:
            self.latencies.append(time.perf_counter() - self.sent.pop(status.task_id))
            driver.kill(status.task_id, grace_period=0)
        elif status.state.is_terminal:
            self.waiting = False
            if status.state.value not in ("TASK_KILLED",):
                print(json.dumps({"error": f"{status.task_id} {status.state.value}: {status.message}"}), flush=True)
            if len(self.latencies) >= self.count or status.state.value != "TASK_KILLED":
                print(json.dumps({"latencies": self.latencies}), flush=True)
                driver.stop_and_exit()
            else:
                driver.revive()


parser = argparse.ArgumentParser()
parser.add_argument("--master", required=True)
parser.add_argument("--count", type=int, default=20)
parser.add_argument("--image", default=None)
args = parser.parse_args()
driver = SchedulerDriver(Starter(args.count, args.image), FrameworkInfo(user="bench", name="starter"), args.master,
                         reactor=reactor)
reactor.callLater(300, driver.stop_and_exit)
driver.run()
