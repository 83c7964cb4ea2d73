"""The master's ``/frameworks/<name>/`` proxy follows an HA framework's leader (issue 19, item 4):
a new instance re-subscribing under the framework's id — the old leader SIGKILLed, its connection
not yet noticed as gone — takes the framework over, and its ``webui_url`` is where the proxy
relays from then on. The old instance's connection is forgotten, so what it still sends is
refused as from a stranger."""

from __future__ import annotations

from tepui.master.core import ALLOCATE_NOW
from tepui.master.durability.registry import Persist, framework_entry
from tepui.master.events import FailoverExpired, Received, Send
from tepui.master.http.framework_proxy import FrameworkApi, choose, framework_apis
from tepui.sdk.effects import CancelTimer, ScheduleTimer
from tepui.sdk.protocol import scheduler as sm
from tests.master.test_core import make_core, register_agent, sends, subscribe, without_logs

OLD, NEW = b"instance-a", b"instance-b"


def test_a_failover_from_another_instance_moves_the_proxy_to_its_api() -> None:
    core = make_core()
    register_agent(core)
    subscribe(core, peer=OLD, failover_timeout=604800.0, webui_url="http://10.0.0.1:5090")
    assert framework_apis(core) == [FrameworkApi("m-F0001", "fw", "http://10.0.0.1:5090", True)]

    effects = subscribe(core, now=5.0, peer=NEW, id="m-F0001", failover_timeout=604800.0,
                        webui_url="http://10.0.0.2:5090")

    assert without_logs(effects) == [CancelTimer(FailoverExpired("m-F0001")),
                                     Send(NEW, sm.Subscribed("m-F0001", 15.0, core.master_info)),
                                     ScheduleTimer(5.0, ALLOCATE_NOW)]
    # A new leading master recovers the new URL from the registry too.
    [persisted] = [effect for effect in effects if isinstance(effect, Persist)]
    assert persisted == framework_entry(core.frameworks["m-F0001"].info)
    assert core.frameworks["m-F0001"].info.webui_url == "http://10.0.0.2:5090"
    assert framework_apis(core) == [FrameworkApi("m-F0001", "fw", "http://10.0.0.2:5090", True)]
    assert choose(framework_apis(core), "fw") == [FrameworkApi("m-F0001", "fw", "http://10.0.0.2:5090", True)]
    assert core.frameworks["m-F0001"].peer == NEW
    # The old leader, still connected, is no longer the framework: its calls are refused.
    [refused] = sends(core.handle(Received(OLD, sm.Revive("m-F0001")), 6.0), OLD)
    assert isinstance(refused, sm.Error)
