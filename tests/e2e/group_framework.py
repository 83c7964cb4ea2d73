"""Run by test_task_groups.py: launches pods and prints every status as a JSON line.

Pod "share": a writer puts a file in the shared volume, a reader waits for it and prints it.
Pod "fail": two long sleepers and one member that fails after a moment."""

import argparse
import json

from tepui.sdk import install_reactor

reactor = install_reactor()

from tepui.sdk import CommandInfo, FrameworkInfo, Resources, Scheduler, SchedulerDriver, TaskInfo  # noqa: E402

SHAPE = Resources.parse("cpus:0.1;mem:32")


def member(agent_id: str, task_id: str, command: str) -> TaskInfo:
    return TaskInfo(name=task_id, task_id=task_id, agent_id=agent_id, resources=SHAPE.to_wire(),
                    command=CommandInfo(value=command))


class Pods(Scheduler):
    def __init__(self) -> None:
        self.launched = False
        self.ended: set[str] = set()

    def status_update(self, driver, status):
        print(json.dumps({"task": status.task_id, "state": status.state.value, "message": status.message,
                          "reason": status.reason.value if status.reason else None}), flush=True)
        if status.state.is_terminal:
            self.ended.add(status.task_id)
        if self.ended >= {"writer", "reader", "sleeper-1", "sleeper-2", "breaker"}:
            driver.stop_and_exit()


class PodsTwoOffers(Pods):
    """Launches the second pod on the next offer."""

    def offers(self, driver, offers):
        for offer in offers:
            a = offer.agent_id
            if not self.launched:
                self.launched = True
                share = [member(a, "writer", "echo from-writer > shared/note"),
                         member(a, "reader", "for i in $(seq 50); do [ -f shared/note ] && cat shared/note && exit 0; "
                                             "sleep 0.1; done; exit 1")]
                driver.launch_group(offer.id, share, executor_id="pod-share")
            elif not getattr(self, "second", False):
                self.second = True
                fail = [member(a, "sleeper-1", "sleep 60"), member(a, "sleeper-2", "sleep 60"),
                        member(a, "breaker", "sleep 0.5; exit 2")]
                driver.launch_group(offer.id, fail, executor_id="pod-fail")
            else:
                driver.decline(offer.id)


parser = argparse.ArgumentParser()
parser.add_argument("--master", required=True)
args = parser.parse_args()
driver = SchedulerDriver(PodsTwoOffers(), FrameworkInfo(user="test", name="pods"), args.master, reactor=reactor)
reactor.callLater(40, driver.stop_and_exit)
driver.run()
