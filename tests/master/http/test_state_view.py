"""The master's /state-summary (pure: a function of the core's state)."""

from __future__ import annotations

import msgspec

from tepui.master.events import Received
from tepui.master.http.api import json_response
from tepui.master.http.state_view import render_state, render_state_summary
from tepui.sdk.protocol import agent as am
from tepui.sdk.protocol.values import TaskState, TaskStatus
from tests.master.test_core import AGENT, launched, make_core, register_agent


class _Request:
    def setResponseCode(self, code: int) -> None:  # noqa: N802 (Twisted's name)
        self.code = code

    def setHeader(self, name: bytes, value: bytes) -> None:  # noqa: N802
        pass


def test_state_summary_counts_tasks_by_state_per_agent_and_framework_without_listing_them() -> None:
    core = make_core()
    launched(core)
    register_agent(core, peer=b"agent-2", hostname="a2")
    core.handle(Received(AGENT, am.StatusUpdate("m-F0001", TaskStatus(
        task_id="t1", state=TaskState.RUNNING, agent_id="m-S0001", uuid=b"u1"))), 2.0)
    summary = render_state_summary(core, 3.0)
    [one, two] = summary["slaves"]
    assert (one["id"], one["TASK_RUNNING"], one["TASK_STAGING"], one["framework_ids"]) == ("m-S0001", 1, 0, ["m-F0001"])
    assert (two["hostname"], two["TASK_RUNNING"], two["framework_ids"]) == ("a2", 0, [])
    assert one["used_resources"] == render_state(core, 3.0)["slaves"][0]["used_resources"]
    [framework] = summary["frameworks"]
    assert (framework["id"], framework["TASK_RUNNING"], framework["slave_ids"]) == ("m-F0001", 1, ["m-S0001"])
    assert "tasks" not in framework and "tasks" not in one
    # It is served as JSON like /state (msgspec's encoder).
    document = msgspec.json.decode(json_response(_Request(), 200, summary))
    assert document["frameworks"][0]["TASK_RUNNING"] == 1
