"""Run by test_persistent_volumes.py: reserves disk for its role, makes it a persistent volume,
runs a task that writes into it, then a second task (on the volume's next offer) that reads it,
then destroys the volume. Prints JSON lines."""

import argparse
import json

from tepui.sdk import install_reactor

reactor = install_reactor()

from tepui.sdk import CommandInfo, FrameworkInfo, Resources, Scheduler, SchedulerDriver, TaskInfo  # noqa: E402
from tepui.sdk.protocol import scheduler as sm  # noqa: E402
from tepui.sdk.protocol.values import (  # noqa: E402
    DiskInfo, Filters, Persistence, Reservation, Resource, VolumeMount,
)

ROLE, PRINCIPAL = "db", "db-team"
RESERVED = Resource(name="disk", scalar=64, role=ROLE, reservation=Reservation(type="DYNAMIC", principal=PRINCIPAL))
VOLUME = Resource(name="disk", scalar=64, role=ROLE, reservation=Reservation(type="DYNAMIC", principal=PRINCIPAL),
                  disk=DiskInfo(persistence=Persistence(id="pgdata", principal=PRINCIPAL),
                                volume=VolumeMount(container_path="data")))


def say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


class VolumeUser(Scheduler):
    def __init__(self) -> None:
        self.step = "create"

    def offers(self, driver, offers):
        for offer in offers:
            held = Resources.from_wire(offer.resources)
            has_volume = any(key.volume == "pgdata" for key in held.volumes())
            # The task's cpus and mem come from the offer's unreserved resources.
            plain = [Resource(name="cpus", scalar=0.1), Resource(name="mem", scalar=32)]
            if self.step == "create" and not has_volume:
                writer = TaskInfo(name="writer", task_id="writer", agent_id=offer.agent_id, resources=plain + [VOLUME],
                                  command=CommandInfo(value="echo kept-across-tasks > data/file && ls -la data"))
                driver.accept([offer.id], [sm.Reserve([RESERVED]), sm.Create([VOLUME]), sm.Launch([writer])],
                              Filters(refuse_seconds=0))
                self.step = "writing"
            elif self.step == "read" and has_volume:
                reader = TaskInfo(name="reader", task_id="reader", agent_id=offer.agent_id, resources=plain + [VOLUME],
                                  command=CommandInfo(value="cat data/file"))
                driver.launch(offer.id, [reader], Filters(refuse_seconds=0))
                self.step = "reading"
            elif self.step == "destroy" and has_volume:
                driver.accept([offer.id], [sm.Destroy([VOLUME]), sm.Unreserve([RESERVED])], Filters(refuse_seconds=0))
                say(event="destroyed")
                self.step = "done"
                reactor.callLater(0.5, driver.stop_and_exit)
            else:
                driver.decline(offer.id, Filters(refuse_seconds=0.2))

    def status_update(self, driver, status):
        say(event="status", task=status.task_id, state=status.state.value, message=status.message)
        if status.task_id == "writer" and status.state.value == "TASK_FINISHED":
            self.step = "read"
            driver.revive()
        elif status.task_id == "reader" and status.state.is_terminal:
            self.step = "destroy"
            driver.revive()
        elif status.state.is_terminal and status.state.value != "TASK_FINISHED":
            driver.stop_and_exit()

    def error(self, driver, message):
        say(event="error", message=message)
        driver.stop_and_exit()


parser = argparse.ArgumentParser()
parser.add_argument("--master", required=True)
args = parser.parse_args()
framework = FrameworkInfo(user="test", name="volumes", roles=[ROLE], principal=PRINCIPAL)
driver = SchedulerDriver(VolumeUser(), framework, args.master, reactor=reactor)
reactor.callLater(40, driver.stop_and_exit)
driver.run()
