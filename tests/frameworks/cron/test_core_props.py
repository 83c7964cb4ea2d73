"""The cron core under random interleavings (hypothesis) of ticks, clock steps forward and
back, submits answered, lost, failed or refused, batch job ends, commands (suspend, resume,
trigger, apply of a new job template) and crashes at every point — before the store commit,
between the commit and the submit, after the submit before its answer — each followed by a
restart from the store (harness: :mod:`.cron_sim`).

At the end the framework is restarted once more and driven until nothing is in flight. Then
every fire of the window (after the schedule's creation, up to its high-water mark) is exactly
one of: one job created in the batch framework, covered by one MISSED record (with its reason),
or FAILED because the batch framework refused the submit; and no job id was ever submitted with
two different specs."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from tepui.frameworks.cron.definition import build

from tests.frameworks.cron.cron_sim import JOB, Sim, schedule

STEPS = st.lists(st.tuples(
    st.sampled_from(["tick", "tick", "tick", "back", "deliver", "lost", "unreachable", "refused", "end",
                     "crash_before_write", "crash_after_write", "restart", "suspend", "resume", "trigger", "apply"]),
    st.sampled_from([1.0, 2.0, 5.0, 15.0, 45.0, 61.0, 200.0, 1500.0]),
    st.integers(0, 7)), min_size=5, max_size=60)

POLICIES = st.fixed_dictionaries({
    "concurrency": st.sampled_from(["Allow", "Forbid", "Replace"]),
    "catch_up": st.sampled_from(["none", "latest", "all"]),
    "catch_up_limit": st.sampled_from([2, 100]),
    "starting_deadline": st.sampled_from([None, 30.0, 120.0]),
})


def play(sim: Sim, step: tuple[str, float, int], now: float, templates: list[dict[str, Any]]) -> tuple[Sim, float]:
    op, dt, pick = step
    if op == "tick":
        now += dt
        sim.tick(now)
    elif op == "back":
        now = max(now - dt, 0.0)
        sim.tick(now)
    elif op == "deliver":
        sim.deliver(now)
    elif op == "lost":  # the jobs are created, the answers lost with the process
        sim.deliver(now, answer=False)
        sim = sim.restarted(now)
    elif op == "unreachable":
        sim.deliver(now, fail=("connection refused", True))
    elif op == "refused":
        sim.deliver(now, fail=("400 INVALID_SPEC", False))
    elif op == "end":
        following = sim.core.following()
        if following:
            sim.ended(following[pick % len(following)], ["SUCCEEDED", "FAILED", "CANCELLED"][pick % 3], now)
    elif op == "crash_before_write":
        now += dt
        sim.tick(now, commit=False)
        sim = sim.restarted(now)
    elif op == "crash_after_write":
        now += dt
        sim.tick(now, execute=False)
        sim = sim.restarted(now)
    elif op == "restart":
        sim.pending = []  # submits not yet executed die with the process
        sim = sim.restarted(now)
    elif op in ("suspend", "resume", "trigger"):
        sim.command(op, "r", now)
    elif op == "apply":
        spec = sim.core.schedules["r"].record.spec  # the same timeline, another job template
        sim.command("apply", build({**spec, "job": templates[pick % len(templates)]}), now)
    return sim, now


@settings(max_examples=300, deadline=None)
@given(STEPS, POLICIES, st.sampled_from([20.0, 60.0]))
def test_every_fire_is_submitted_once_or_missed_with_a_reason(steps: list[tuple[str, float, int]],
                                                               policy: dict[str, Any], every: float) -> None:
    templates = [JOB, {**JOB, "name": "v2"}, {**JOB, "name": "v3"}]
    sim = Sim()
    created_at = now = 10.0
    sim.command("create", schedule(every=every, **policy), now)
    for step in steps:
        sim, now = play(sim, step, now, templates)
    # the end: a last restart, resume, and every fire in flight driven to its answer
    sim.pending = []
    sim = sim.restarted(now)
    sim.command("resume", "r", now)
    for _ in range(3):
        now += 1.0
        sim.tick(now)
        sim.deliver(now)
    assert [f.key for f in sim.core.schedules["r"].fires.values() if f.state == "INTENDED"] == []
    high_water = sim.schedule_record().checked_through

    specs: dict[str, set[bytes]] = defaultdict(set)
    for key, spec in sim.submits:
        specs[key].add(msgspec.json.encode(spec))
    assert {k: v for k, v in specs.items() if len(v) > 1} == {}, "a job id submitted with two specs"
    assert all(n == 1 for n in sim.created.values())

    timeline = sim.core.schedules["r"].definition.timeline  # the same timeline throughout
    window = [d.at for d in timeline.fires_between(created_at, high_water, 10**6)]
    missed_ranges = {(f.key, f.scheduled_at, f.through, f.count, f.reason) for f in sim.journal if f.state == "MISSED"}
    refused = {f.key for f in sim.journal if f.state == "FAILED" and f.reason.startswith("submit refused")}
    covered: dict[float, list[str]] = defaultdict(list)
    for key, first, through, count, reason in missed_ranges:
        assert reason, key
        inside = [at for at in window if first <= at <= (through if through is not None else first)]
        assert len(inside) == count, (key, first, through, count)
        for at in inside:
            covered[at].append("missed")
    for at in window:
        key = f"r-{int(at)}"
        if key in sim.created:
            covered[at].append("created")
        if key in refused:
            covered[at].append("refused")
    assert {at: covered[at] for at in window if len(covered[at]) != 1} == {}
    scheduled = {k for k in sim.created if "manual" not in k}
    assert scheduled <= {f"r-{int(at)}" for at in window}
