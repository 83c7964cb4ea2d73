"""Run by test_operator_api.py: declares an impossible demand, asks the master why it gets no
offers, then declares a shape that fits and waits for an offer. Prints JSON lines."""

import argparse
import json

from tepui.sdk import install_reactor

reactor = install_reactor()

from tepui.sdk import FrameworkInfo, Resources, Scheduler, SchedulerDriver  # noqa: E402


def say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


class Demanding(Scheduler):
    def __init__(self) -> None:
        self.offers_seen = 0
        self.phase = "impossible"

    def subscribed(self, driver, framework_id, master_info):
        reactor.callLater(1.5, driver.explain)

    def offers(self, driver, offers):
        if self.phase == "impossible":
            self.offers_seen += len(offers)
            driver.decline([o.id for o in offers])
        else:
            say(event="offer_after_fitting_demand", agent=offers[0].agent_id)
            driver.decline([o.id for o in offers])
            driver.stop_and_exit()

    def explanation(self, driver, roles):
        for role in roles:
            say(event="explanation", role=role.role, reason=role.reason)
        say(event="offers_before_fitting_demand", count=self.offers_seen)
        self.phase = "fits"
        driver.declare_demand([(Resources.parse("cpus:0.5;mem:64"), 2)])

    def error(self, driver, message):
        say(event="error", message=message)
        driver.stop_and_exit()


parser = argparse.ArgumentParser()
parser.add_argument("--master", required=True)
args = parser.parse_args()
# Declared with the subscription, so that not even the first cycle offers anything.
driver = SchedulerDriver(Demanding(), FrameworkInfo(user="test", name="demanding"), args.master, reactor=reactor,
                         demand=[Resources.parse("cpus:10000;mem:32")])
reactor.callLater(30, driver.stop_and_exit)
driver.run()
