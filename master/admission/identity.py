"""Identity from the key (DESIGN §4, §7; RELIABILITY scenario 35): what an authenticated peer
may claim to be. Pure functions over what they are given — the peers and frameworks the master
knows and the agent-id bindings the :class:`~tepui.master.admission.gatekeeper.Gatekeeper` owns
— called before a message's handler runs (:func:`checked`) and after it (:func:`bind`).

* An **agent** key may only send agent messages, and an agent id belongs to the principal that
  registered it (an agent key's principal is its name unless issued with ``--principal``, so a
  rotated key keeps its agent). Claiming an id — or a ``previous_agent_id`` — bound to another
  principal is refused and counted (``identity_mismatch``).
* A **framework** (or **client**) key may only send scheduler calls. Its principal is the key's:
  a SUBSCRIBE without one gets it filled in, one naming another is refused; the key's roles (if
  it lists any other than ``*``) bound the roles it may subscribe in.
* A message from a connection the core knows as someone else's (a routing id taken over by
  another key) is refused the same way.

Without a credential (``--insecure``) every check is skipped: there is nothing to check against.
The binding of agent ids to principals lives in memory; after a master restart the first
principal to re-register an id binds it again (agents re-register within seconds).
"""

from __future__ import annotations

import typing
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Mapping, MutableMapping

import msgspec

from tepui.master.events import Credential, Received, Send
from tepui.master.admission.refusals import call_type
from tepui.sdk.effects import Log
from tepui.sdk.protocol import agent as am
from tepui.sdk.protocol import scheduler as sm

if TYPE_CHECKING:
    from tepui.master.records import FrameworkRecord

Peers = Mapping[bytes, "tuple[str, str]"]  # peer → ("agent"|"framework", id)
AGENT_MESSAGES = typing.get_args(am.AgentToMaster)
SCHEDULER_CALLS = typing.get_args(sm.SchedulerCall)
FRAMEWORK_KINDS = ("framework", "client")
MAX_BINDINGS = 100_000  # agent ids remembered (oldest forgotten first)


def checked(event: Received, bindings: Mapping[str, str], peers: Peers,
            frameworks: Mapping[str, FrameworkRecord], counters: MutableMapping[str, int],
            out: list[Any]) -> Received | None:
    """The event to handle (possibly with the principal filled in), or None if refused."""
    credential = event.credential
    if credential is None:
        return event
    body = event.body
    if isinstance(body, AGENT_MESSAGES):
        problem = _agent_problem(bindings, peers, event.peer, credential, body)
    elif isinstance(body, SCHEDULER_CALLS):
        problem, body = _framework_problem(peers, frameworks, event.peer, credential, body)
    else:  # pragma: no cover - the codec admits nothing else
        problem = "an unknown message type"
    if problem is None:
        return event if body is event.body else replace(event, body=body)
    counters["identity_mismatch"] += 1
    out.append(Log("warning", "identity_mismatch", {
        "key": credential.name, "kind": credential.kind, "principal": credential.principal,
        "message": type(event.body).__name__, "problem": problem}))
    if isinstance(event.body, SCHEDULER_CALLS) or credential.kind in FRAMEWORK_KINDS:
        # A framework key's connection reads scheduler events, so it hears the refusal even of
        # an agent message (an agent key's could not decode an ERROR: it is only logged).
        out.append(Send(event.peer, sm.Error(f"{call_type(event.body)} refused: {problem}")))
    return None


def bind(event: Received, bindings: dict[str, str], peers: Peers) -> None:
    """After a handler ran: a newly registered agent id belongs to the key's principal."""
    credential = event.credential
    if credential is None or not isinstance(event.body, (am.RegisterAgent, am.ReregisterAgent)):
        return
    known = peers.get(event.peer)
    if known is None or known[0] != "agent":
        return
    if known[1] not in bindings:
        if len(bindings) >= MAX_BINDINGS:
            bindings.pop(next(iter(bindings)))
        bindings[known[1]] = credential.principal


def _agent_problem(bindings: Mapping[str, str], peers: Peers, peer: bytes, credential: Credential,
                   body: Any) -> str | None:
    if credential.kind != "agent":
        return f"key {credential.name!r} is a {credential.kind} key; only agent keys may send agent messages"
    claimed: list[str] = []
    if isinstance(body, am.ReregisterAgent) and body.agent_info.id:
        claimed.append(body.agent_info.id)
    if isinstance(body, am.RegisterAgent) and body.previous_agent_id:
        claimed.append(body.previous_agent_id)
    known = peers.get(peer)
    if known is not None and known[0] == "agent":
        claimed.append(known[1])
    elif known is not None and known[0] == "framework":
        return f"this connection belongs to framework {known[1]}, not to agent key {credential.name!r}"
    for agent_id in claimed:
        owner = bindings.get(agent_id)
        if owner is not None and owner != credential.principal:
            return (f"agent {agent_id} is registered under principal {owner!r}; key {credential.name!r} "
                    f"(principal {credential.principal!r}) may not speak for it")
    return None


def _framework_problem(peers: Peers, frameworks: Mapping[str, FrameworkRecord], peer: bytes,
                       credential: Credential, body: Any) -> tuple[str | None, Any]:
    if credential.kind not in FRAMEWORK_KINDS:
        return (f"key {credential.name!r} is an {credential.kind} key; frameworks need a framework or client "
                "key (`tepui certs issue --framework NAME`)"), body
    known = peers.get(peer)
    if known is not None and known[0] == "agent":
        return f"this connection belongs to agent {known[1]}", body
    if known is not None and known[0] == "framework":
        framework = frameworks.get(known[1])
        owner = framework.info.principal if framework is not None else None
        if owner is not None and owner != credential.principal:
            return f"this connection belongs to a framework of principal {owner!r}", body
    if isinstance(body, (sm.Subscribe, sm.UpdateFramework)):
        info = body.framework_info
        if info.principal is None:
            body = msgspec.structs.replace(body, framework_info=msgspec.structs.replace(
                info, principal=credential.principal))
            info = body.framework_info
        elif info.principal != credential.principal:
            return (f"principal {info.principal!r} does not match the key's principal {credential.principal!r} "
                    "(leave FrameworkInfo.principal empty to use the key's)"), body
        allowed = credential.roles
        if allowed and "*" not in allowed:
            outside = [role for role in (info.roles or ["*"]) if role not in allowed]
            if outside:
                return (f"key {credential.name!r} may subscribe only in roles {', '.join(allowed)}, "
                        f"not {', '.join(outside)}"), body
    return None, body
