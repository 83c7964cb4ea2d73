"""Scenario 32, fuzzed (issue 6): bytes and adversarial messages through the master's decoder
and its pure core, as the shell runs them. Nothing but ProtocolError may leave the decoder,
nothing at all may leave ``handle``, and afterwards the allocator's books balance and the core
still registers a newcomer agent and subscribes a newcomer framework.

Examples here: 2,000 raw byte strings + 3,000 sessions of 1-8 generated messages (with the
agent's file, 10,000 in CI). ``bench/fuzz.py`` runs the same harness for 100,000+ messages.
The regression tests at the end pin what fuzzing found.
"""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tepui.master.events import Received, Send
from tepui.sdk.protocol import agent as am
from tepui.sdk.protocol.values import AgentInfo, Resource
from tests.fuzz_harness import MasterTarget, Tally, run_session

RAW_EXAMPLES = 2000
SESSION_EXAMPLES = 3000
FAST = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)


def _fail(tally: Tally) -> None:
    crash = tally.crashes[0]
    raise AssertionError(f"{crash.where} crashed on {crash.message}\n{crash.error}")


@settings(max_examples=RAW_EXAMPLES, **FAST)
@given(data=st.binary(max_size=400), peer=st.integers(0, 4))
def test_raw_bytes_never_escape_as_anything_but_protocol_error(data: bytes, peer: int) -> None:
    target = MasterTarget.shared()
    crash = target.feed(data, peer)
    assert crash is None, crash.error


@settings(max_examples=SESSION_EXAMPLES, **FAST)
@given(seed=st.integers(0, 2**64 - 1), messages=st.integers(1, 8))
def test_adversarial_sessions_leave_the_master_consistent_and_serving(seed: int, messages: int) -> None:
    tally = Tally()
    run_session(MasterTarget, random.Random(seed), messages, tally)
    if tally.crashes:
        _fail(tally)


# --- regressions found by fuzzing ---------------------------------------------------------------


def test_a_registration_with_resources_that_do_not_parse_is_refused_not_raised() -> None:
    """Found by the fuzzer: ``InvalidResources`` escaped ``handle`` from ``_admit_agent``."""
    target = MasterTarget()
    for body in (am.RegisterAgent(AgentInfo(hostname="h", resources=[Resource(name="mem", type="MESOS")]), "0.1.0"),
                 am.ReregisterAgent(AgentInfo(hostname="h", id="m-S0001",
                                              resources=[Resource(name="cpus", scalar=1e308)]), "0.1.0")):
        effects = target.core.handle(Received(b"bad-agent", body, 1), 1.0)
        [refusal] = [e.body for e in effects if isinstance(e, Send)]
        assert isinstance(refusal, am.ShutdownAgent) and "registration refused" in refusal.message
    assert target.core.counters["agents_refused_invalid"] == 2
    assert set(target.core.agents) == {"m-S0001"}
    target.invariants()


def test_a_reregistration_under_an_id_that_is_not_one_is_refused() -> None:
    target = MasterTarget()
    info = AgentInfo(hostname="h", id="../etc", resources=[Resource(name="cpus", scalar=1.0)])
    effects = target.core.handle(Received(b"bad-agent", am.ReregisterAgent(info, "0.1.0"), 1), 1.0)
    assert [type(e.body) for e in effects if isinstance(e, Send)] == [am.ShutdownAgent]
    assert "../etc" not in target.core.agents
