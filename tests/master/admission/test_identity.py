"""Identity from the key (scenario 35; master/admission/identity.py): the master core, given the
credential of the CURVE key each message was authenticated with, refuses and counts peers that
claim to be someone else. Without a credential (``--insecure``) nothing is checked."""

from __future__ import annotations

from typing import Any

from tepui.master.events import Credential, Received
from tepui.sdk.protocol import agent as am
from tepui.sdk.protocol import scheduler as sm
from tepui.sdk.protocol.values import AgentInfo, FrameworkInfo

from tests.master.test_core import AGENT_RES, make_core, sends

AGENT_A = Credential("agent-a", "agent", "agent-a")
AGENT_B = Credential("agent-b", "agent", "agent-b")
AGENT_A_ROTATED = Credential("agent-a-2", "agent", "agent-a")  # a new key, the same principal
ETL = Credential("etl", "framework", "etl", ("batch",))
LOCAL = Credential("local", "client", "local", ("*",))


def info(agent_id: str | None = None, hostname: str = "a1") -> AgentInfo:
    return AgentInfo(hostname=hostname, resources=AGENT_RES.to_wire(), id=agent_id)


def received(peer: bytes, body: Any, credential: Credential | None) -> Received:
    return Received(peer, body, identity=credential.name if credential else None, credential=credential)


def register(core: Any, peer: bytes, credential: Credential | None, now: float = 0.0) -> str:
    effects = core.handle(received(peer, am.RegisterAgent(info(), "0.1.0"), credential), now)
    [registered] = sends(effects, peer)
    assert isinstance(registered, am.AgentRegistered)
    return str(registered.agent_id)


def test_35_an_authenticated_agent_claiming_another_agents_id_is_rejected_and_counted() -> None:
    core = make_core()
    agent_id = register(core, b"peer-a", AGENT_A)
    effects = core.handle(received(b"peer-b", am.ReregisterAgent(info(agent_id, "evil"), "0.1.0"), AGENT_B), 1.0)
    assert not sends(effects)  # no AgentReregistered: the id stays with agent-a's connection
    assert core.agents[agent_id].peer == b"peer-a" and core.agents[agent_id].hostname == "a1"
    assert core.counters["identity_mismatch"] == 1
    # Claiming it as a rebooted predecessor (which would make the master forget it) is refused too.
    effects = core.handle(received(b"peer-b", am.RegisterAgent(info(), "0.1.0", previous_agent_id=agent_id),
                                   AGENT_B), 2.0)
    assert not sends(effects) and agent_id in core.agents
    assert core.counters["identity_mismatch"] == 2


def test_35_the_same_principal_with_a_rotated_key_keeps_its_agent() -> None:
    core = make_core()
    agent_id = register(core, b"peer-a", AGENT_A)
    effects = core.handle(received(b"peer-a2", am.ReregisterAgent(info(agent_id), "0.1.0"), AGENT_A_ROTATED), 1.0)
    assert [type(m) for m in sends(effects, b"peer-a2")] == [am.AgentReregistered]
    assert core.counters["identity_mismatch"] == 0


def test_35_a_routing_id_taken_over_by_another_key_gets_nothing_through() -> None:
    core = make_core()
    register(core, b"peer-a", AGENT_A)
    before = dict(core.agents)
    effects = core.handle(received(b"peer-a", am.UnregisterAgent(next(iter(before))), AGENT_B), 1.0)
    assert core.agents.keys() == before.keys() and not sends(effects)
    assert core.counters["identity_mismatch"] == 1


def test_a_framework_key_cannot_register_an_agent_and_an_agent_key_cannot_subscribe() -> None:
    core = make_core()
    effects = core.handle(received(b"fw", am.RegisterAgent(info(), "0.1.0"), ETL), 0.0)
    [refused] = sends(effects, b"fw")  # a framework's connection reads ERRORs: it hears why (issue 15)
    assert refused == sm.Error("REGISTER_AGENT refused: key 'etl' is a framework key; only agent keys may send "
                               "agent messages", call_type="REGISTER_AGENT") and not core.agents
    effects = core.handle(received(b"ag", sm.Subscribe(FrameworkInfo(user="u", name="x")), AGENT_A), 0.0)
    [error] = sends(effects, b"ag")
    assert isinstance(error, sm.Error) and "agent key" in error.message and not core.frameworks
    assert core.counters["identity_mismatch"] == 2


def test_a_frameworks_principal_is_bound_to_its_key() -> None:
    core = make_core()
    # No principal given: the key's is filled in.
    effects = core.handle(received(b"fw", sm.Subscribe(FrameworkInfo(user="u", name="etl", roles=["batch"])), ETL), 0.0)
    [subscribed] = sends(effects, b"fw")
    assert isinstance(subscribed, sm.Subscribed)
    assert core.frameworks[subscribed.framework_id].info.principal == "etl"
    # Another principal than the key's: refused.
    effects = core.handle(received(b"fw2", sm.Subscribe(FrameworkInfo(user="u", name="x", principal="admin",
                                                                      roles=["batch"])), ETL), 1.0)
    [error] = sends(effects, b"fw2")
    assert isinstance(error, sm.Error) and "does not match the key's principal" in error.message
    # A role the key does not list: refused.
    effects = core.handle(received(b"fw3", sm.Subscribe(FrameworkInfo(user="u", name="x", roles=["prod"])), ETL), 2.0)
    [error] = sends(effects, b"fw3")
    assert isinstance(error, sm.Error) and "only in roles batch" in error.message
    # A client key with role * may subscribe anywhere.
    effects = core.handle(received(b"cli", sm.Subscribe(FrameworkInfo(user="u", name="run", roles=["prod"])), LOCAL), 3.0)
    assert isinstance(sends(effects, b"cli")[0], sm.Subscribed)
    assert core.counters["identity_mismatch"] == 2


def test_another_key_on_a_frameworks_connection_cannot_act_for_it() -> None:
    core = make_core()
    effects = core.handle(received(b"fw", sm.Subscribe(FrameworkInfo(user="u", name="etl", roles=["batch"])), ETL), 0.0)
    framework_id = sends(effects, b"fw")[0].framework_id
    effects = core.handle(received(b"fw", sm.Teardown(framework_id), LOCAL), 1.0)
    assert framework_id in core.frameworks
    assert isinstance(sends(effects, b"fw")[0], sm.Error)


def test_insecure_mode_checks_nothing() -> None:
    core = make_core()
    agent_id = register(core, b"peer-a", None)
    effects = core.handle(received(b"peer-b", am.ReregisterAgent(info(agent_id), "0.1.0"), None), 1.0)
    assert [type(m) for m in sends(effects, b"peer-b")] == [am.AgentReregistered]
    assert core.counters["identity_mismatch"] == 0
