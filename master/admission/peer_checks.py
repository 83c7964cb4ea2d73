"""Checks of what an agent says about itself when it registers (Mesos
``validation::master::message::registerSlave``): found missing by fuzzing, where a registration
with resources that do not parse raised ``InvalidResources`` out of ``MasterCore.handle``.

A refused agent gets ``ShutdownAgent`` with the reason (as Mesos sends ``ShutdownMessage``): it
cannot work with a master that does not understand its resources, and its log says why.
"""

from __future__ import annotations

from typing import Any, MutableMapping

from tepui.master.events import Send
from tepui.master.admission.ids import validate_id
from tepui.sdk.effects import Log
from tepui.sdk.protocol import agent as am
from tepui.sdk.protocol.values import AgentInfo
from tepui.sdk.resources import InvalidResources, Resources


def agent_info_problem(info: AgentInfo, reregistering: bool) -> str | None:
    try:
        Resources.from_wire(info.resources)
    except InvalidResources as exc:
        return f"its resources are invalid: {exc}"
    if reregistering:
        problem = validate_id("agent_info.id", info.id or "")
        if problem:
            return problem
    if not info.hostname or len(info.hostname) > 255 or any(ord(c) < 32 for c in info.hostname):
        return f"agent_info.hostname {info.hostname[:80]!r} must be 1 to 255 characters without control characters"
    return None


def agent_refused(peer: bytes, info: AgentInfo, reregistering: bool, counters: MutableMapping[str, int],
                  out: list[Any]) -> bool:
    """True (with the effects that say so) when this registration must be refused."""
    problem = agent_info_problem(info, reregistering)
    if problem is None:
        return False
    counters["agents_refused_invalid"] += 1
    out.append(Log("warning", "agent_registration_refused", {"hostname": info.hostname[:80], "reason": problem}))
    out.append(Send(peer, am.ShutdownAgent(f"registration refused by the master: {problem}; fix the agent's "
                                           "--resources (or what it detected) and restart it")))
    return True
