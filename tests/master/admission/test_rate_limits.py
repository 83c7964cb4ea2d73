"""Per-principal rate limits: the token bucket on a fake clock, the bounded limiter, and the
master core throttling a flooding framework while another's calls all go through
(RELIABILITY scenario 37)."""

from __future__ import annotations

from typing import Any

import pytest

from tepui.master.admission.gatekeeper import AdmissionCollector
from tepui.master.core import MasterConfig, MasterCore
from tepui.master.events import Received, Send
from tepui.master.admission.rate_limits import DEFAULT_RATE_LIMIT, RateLimit, RateLimiter, TokenBucket, parse_rate_limit
from tepui.sdk.effects import Log
from tepui.sdk.protocol import agent as am
from tepui.sdk.protocol import scheduler as sm
from tepui.sdk.protocol.values import AgentInfo, FrameworkInfo
from tepui.sdk.resources import Resources

LIMIT = RateLimit(rate=10.0, burst=10.0)


def make_core(limit: RateLimit | None = LIMIT) -> MasterCore:
    core = MasterCore(MasterConfig(master_id="m", offer_timeout=None, framework_rate_limit=limit))
    core.start(0.0)
    info = AgentInfo(hostname="a1", resources=Resources.parse("cpus:4;mem:4096").to_wire())
    core.handle(Received(b"agent", am.RegisterAgent(info, "0.1")), 0.0)
    return core


def subscribe(core: MasterCore, peer: bytes, principal: str | None, now: float = 0.0) -> str:
    info = FrameworkInfo(user="u", name=peer.decode(), principal=principal)
    core.handle(Received(peer, sm.Subscribe(info)), now)
    return core.peers[peer][1]


def replies(effects: list[Any], peer: bytes) -> list[Any]:
    return [e.body for e in effects if isinstance(e, Send) and e.peer == peer]


# --- the pieces ----------------------------------------------------------------------------------


def test_parse_rate_limit() -> None:
    assert parse_rate_limit("1000/s") == DEFAULT_RATE_LIMIT == RateLimit(1000.0, 5000.0)
    assert parse_rate_limit("600/m") == RateLimit(10.0, 50.0)
    assert parse_rate_limit("5/s", burst=1) == RateLimit(5.0, 1.0)
    assert parse_rate_limit("unlimited") is None
    with pytest.raises(ValueError, match="write CALLS/UNIT like 1000/s or 600/m, or 'unlimited'"):
        parse_rate_limit("fast")
    with pytest.raises(ValueError, match="must be above zero"):
        parse_rate_limit("0/s")
    assert str(RateLimit(10.0, 20.0)) == "10/s (burst 20)"


def test_token_bucket_spends_its_burst_then_refills_at_the_rate() -> None:
    bucket = TokenBucket(tokens=LIMIT.burst, updated=0.0)
    assert [bucket.take(LIMIT, 0.0) for _ in range(11)] == [True] * 10 + [False]
    assert bucket.wait(LIMIT) == pytest.approx(0.1)
    assert not bucket.take(LIMIT, 0.05)
    assert bucket.take(LIMIT, 0.1)  # one token per 0.1 s
    assert not bucket.take(LIMIT, 0.1)
    assert [bucket.take(LIMIT, 100.0) for _ in range(11)] == [True] * 10 + [False]  # never above the burst
    assert not bucket.take(LIMIT, 50.0)  # a clock stepping back mints nothing


def test_limiter_keeps_separate_buckets_and_a_bounded_number_of_them() -> None:
    limiter = RateLimiter(RateLimit(1.0, 1.0), max_keys=3)
    assert limiter.allow("a", 0.0) and not limiter.allow("a", 0.0)
    assert limiter.allow("b", 0.0)  # a's flood costs b nothing
    for key in ("c", "d", "e"):
        limiter.allow(key, 0.0)
    assert len(limiter) == 3  # least recently used forgotten first
    assert limiter.retry_after("e") == pytest.approx(1.0)
    assert limiter.retry_after("never-seen") == 0.0


# --- the core ------------------------------------------------------------------------------------


def test_37_a_framework_sending_10x_its_allowance_is_throttled_while_another_is_unaffected() -> None:
    core = make_core()
    flood_id = subscribe(core, b"flood", "flood")
    calm_id = subscribe(core, b"calm", "calm")
    answered = {b"flood": 0, b"calm": 0}
    refused = {b"flood": 0, b"calm": 0}
    # 10 s: the flooder sends 100 calls/s (10x its 10/s), the other 5 calls/s, interleaved.
    for tick in range(1, 1001):
        now = tick / 100.0
        calls = [(b"flood", flood_id)] + ([(b"calm", calm_id)] if tick % 20 == 0 else [])
        for peer, framework_id in calls:
            for body in replies(core.handle(Received(peer, sm.Explain(framework_id)), now), peer):
                if isinstance(body, sm.Explanation):
                    answered[peer] += 1
                else:
                    assert isinstance(body, sm.Error) and body.message.startswith(
                        "rate limited: flood sent more than 10/s (burst 10) calls; this EXPLAIN was dropped, "
                        "not processed. Slow down (the next call is accepted in ")
                    refused[peer] += 1
    assert answered[b"calm"] == 50 and refused[b"calm"] == 0
    # The flooder gets its burst plus 10/s, no more: every other call was dropped unprocessed.
    assert answered[b"flood"] + refused[b"flood"] == 1000
    assert 100 <= answered[b"flood"] <= 111
    assert core.counters["rate_limited"] == refused[b"flood"]
    assert core.rate_limited_by == {"flood": refused[b"flood"]}
    [limited, _refused] = list(AdmissionCollector(core).collect())
    assert [(s.labels, s.value) for s in limited.samples if s.name.endswith("_total")] == [
        ({"principal": "flood"}, float(refused[b"flood"]))]


def test_a_dropped_call_gets_exactly_an_error_and_the_first_one_a_log() -> None:
    core = make_core(RateLimit(1.0, 1.0))
    framework_id = subscribe(core, b"f", "p")  # the SUBSCRIBE took the one token
    effects = core.handle(Received(b"f", sm.Teardown(framework_id), call_id="t-1"), 0.5)
    error = sm.Error("rate limited: p sent more than 1/s (burst 1) calls; this TEARDOWN was dropped, not processed. "
                     "Slow down (the next call is accepted in 0.500 s); the operator sets the limit with "
                     "--framework-rate-limit", call_id="t-1", call_type="TEARDOWN")
    assert effects == [Log("warning", "framework_rate_limited", {"key": "p", "limit": "1/s (burst 1)", "call": "TEARDOWN"}),
                       Send(b"f", error)]
    assert framework_id in core.frameworks  # not processed
    assert [type(e) for e in core.handle(Received(b"f", sm.Teardown(framework_id)), 0.6)] == [Send]  # logged once
    core.handle(Received(b"f", sm.Teardown(framework_id)), 2.0)
    assert framework_id not in core.frameworks


def test_frameworks_without_a_principal_are_limited_each_on_its_own_and_a_principal_is_shared() -> None:
    core = make_core(RateLimit(1.0, 2.0))
    a, b = subscribe(core, b"a", None), subscribe(core, b"b", None)
    for _ in range(3):  # (its first SUBSCRIBE, with no id yet, counted against its connection)
        core.handle(Received(b"a", sm.Explain(a)), 0.0)
    assert core.rate_limited_by == {f"framework:{a}": 1}
    assert not any(isinstance(x, sm.Error) for x in replies(core.handle(Received(b"b", sm.Explain(b)), 0.0), b"b"))
    # Two frameworks of one principal share its allowance (Mesos: limits are per principal).
    core = make_core(RateLimit(1.0, 2.0))
    subscribe(core, b"x", "shared")
    subscribe(core, b"y", "shared")  # the burst of 2 is spent
    effects = core.handle(Received(b"y", sm.Explain(core.peers[b"y"][1])), 0.0)
    assert isinstance(replies(effects, b"y")[0], sm.Error)


def test_agents_are_never_rate_limited_and_unlimited_means_unlimited() -> None:
    core = make_core(RateLimit(1.0, 1.0))
    for seq in range(20):
        effects = core.handle(Received(b"agent", am.Pong(seq)), 0.0)
        assert not any(isinstance(e, Send) and isinstance(e.body, sm.Error) for e in effects)
    core = make_core(None)
    framework_id = subscribe(core, b"f", "p")
    for _ in range(100):
        assert isinstance(replies(core.handle(Received(b"f", sm.Explain(framework_id)), 0.0), b"f")[0],
                          sm.Explanation)
    assert core.counters["rate_limited"] == 0
