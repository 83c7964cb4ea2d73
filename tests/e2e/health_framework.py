"""Run by test_health_checks.py: launches an HTTP server task with an HTTP health check and a
`sleep` task whose command check always fails; prints every status as a JSON line."""

import argparse
import json
import time

from tepui.sdk import install_reactor

reactor = install_reactor()

from tepui.sdk import (  # noqa: E402
    CommandInfo, FrameworkInfo, HealthCheck, Resources, Scheduler, SchedulerDriver, TaskInfo,
)
from tepui.sdk.protocol.values import HTTPCheck  # noqa: E402

START = time.monotonic()


class Checked(Scheduler):
    def __init__(self) -> None:
        self.launched = False
        self.done: set[str] = set()
        self.healthy_seen = False

    def offers(self, driver, offers):
        for offer in offers:
            port = Resources.from_wire(offer.resources).ranges("ports")[0][0]
            if self.launched:
                driver.decline(offer.id)
                continue
            self.launched = True
            web = TaskInfo(
                name="web", task_id="web", agent_id=offer.agent_id,
                resources=Resources.parse(f"cpus:0.2;mem:64;ports:[{port}-{port}]").to_wire(),
                command=CommandInfo(value=f"exec python3 -m http.server {port} --bind 127.0.0.1 --directory /"),
                health_check=HealthCheck(type="HTTP", http=HTTPCheck(port=port, path="/"), delay_seconds=0.3,
                                         interval_seconds=0.3, timeout_seconds=1, consecutive_failures=3,
                                         grace_period_seconds=10))
            sick = TaskInfo(
                name="sick", task_id="sick", agent_id=offer.agent_id, resources=Resources.parse("cpus:0.1;mem:32").to_wire(),
                command=CommandInfo(value="sleep 60"),
                health_check=HealthCheck(type="COMMAND", command=CommandInfo(value="exit 1"), delay_seconds=0.2,
                                         interval_seconds=0.3, timeout_seconds=2, consecutive_failures=2,
                                         grace_period_seconds=0))
            driver.launch(offer.id, [web, sick])

    def status_update(self, driver, status):
        print(json.dumps({"t": round(time.monotonic() - START, 2), "task": status.task_id, "state": status.state.value,
                          "healthy": status.healthy, "reason": status.reason.value if status.reason else None,
                          "message": status.message}), flush=True)
        if status.task_id == "web" and status.healthy:
            self.healthy_seen = True
            driver.kill("web")
        if status.state.is_terminal:
            self.done.add(status.task_id)
        if self.done == {"web", "sick"}:
            driver.stop_and_exit()


parser = argparse.ArgumentParser()
parser.add_argument("--master", required=True)
args = parser.parse_args()
driver = SchedulerDriver(Checked(), FrameworkInfo(user="test", name="checked"), args.master, reactor=reactor)
reactor.callLater(40, driver.stop_and_exit)
driver.run()
