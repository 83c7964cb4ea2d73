"""The pure cores load no I/O (issue 16, "purity enforced"): each module below is imported in a
fresh interpreter, which must not have loaded Twisted, ZeroMQ, sqlite3, sockets or
subprocesses. Purity was a convention: ``tepui.sdk/__init__`` imported the driver, the store and
the keys, so ``import tepui.offers.allocator`` loaded all five (now lazy, PEP 562).

A module that needs one of these is a shell: put it with the shells (and out of this list), or
move the I/O out of it. Shells are listed in docs/architecture.md beside the pure modules."""

from __future__ import annotations

import subprocess
import sys

import pytest

FORBIDDEN = ("twisted", "zmq", "sqlite3", "socket", "subprocess")

PURE = [
    # the wire kernel every core uses
    "tepui.sdk.protocol.values", "tepui.sdk.protocol.scheduler", "tepui.sdk.protocol.agent",
    "tepui.sdk.protocol.executor", "tepui.sdk.protocol.envelope", "tepui.sdk.codec", "tepui.sdk.spec_documents", "tepui.sdk.framework_effects", "tepui.sdk.http_modes", "tepui.sdk.batch",
    "tepui.sdk.effects", "tepui.sdk.resources", "tepui.sdk.relay_tokens", "tepui.sdk.api_refusals",
    "tepui.sdk.standby",
    "tepui.sdk.zk_ops",
    # the allocator
    "tepui.offers.allocator", "tepui.offers.sorter", "tepui.offers.quota", "tepui.offers.explain",
    "tepui.offers.roles", "tepui.offers.holdings", "tepui.offers.frameworks", "tepui.offers.filters",
    "tepui.offers.shares",
    # the master's core and its parts
    "tepui.master.core", "tepui.master.offering.offer_cycle", "tepui.master.durability.durable", "tepui.master.failures.partitions",
    "tepui.master.failures.task_audit", "tepui.master.tasks.pending_acks", "tepui.master.admission.gatekeeper", "tepui.master.admission.identity",
    "tepui.master.admission.acls", "tepui.master.admission.rate_limits", "tepui.master.admission.refusals", "tepui.master.offering.accept_salvage",
    "tepui.master.admission.framework_checks", "tepui.master.admission.peer_checks", "tepui.master.admission.task_checks",
    "tepui.master.admission.validation", "tepui.master.offering.reservations", "tepui.master.offering.volumes", "tepui.master.records",
    "tepui.master.durability.registry", "tepui.master.http.state_view", "tepui.master.events",
    "tepui.master.config", "tepui.master.members.roster", "tepui.master.offering.pool", "tepui.master.offering.offer_book",
    "tepui.master.tasks.task_ends", "tepui.master.members.departures", "tepui.master.failures.audit_flow", "tepui.master.failures.failure_detection",
    "tepui.master.failures.readoption", "tepui.master.members.agent_membership", "tepui.master.members.framework_calls",
    "tepui.master.tasks.task_calls", "tepui.master.admission.ids",
    # the agent's core and its parts
    "tepui.agent.core", "tepui.agent.updates.status_updates", "tepui.agent.custom_executors.executors", "tepui.agent.custom_executors.groups",
    "tepui.agent.lifecycle.stopping", "tepui.agent.checkpointing.recovery", "tepui.agent.link.reconcile", "tepui.agent.health_checks.health",
    "tepui.agent.tasks", "tepui.agent.frameworks", "tepui.agent.link.registration", "tepui.agent.checkpointing.journal",
    "tepui.agent.updates.reporting", "tepui.agent.lifecycle.task_ends", "tepui.agent.health_checks.task_health", "tepui.agent.custom_executors.executor_flows",
    "tepui.agent.lifecycle.launching", "tepui.agent.link.master_link",
    "tepui.agent.fetching.fetch_rules", "tepui.agent.events", "tepui.agent.checkpointing.checkpoint",
    # what the agent and the master are started with; `tepui up`'s restart policy and HA port plan
    "tepui.agent.options", "tepui.master.options", "tepui.cli.supervision", "tepui.cli.ha_ports",
    # the simulator's core, the services framework's core
    "tepui.sim.core", "tepui.sim.events", "tepui.sim.agents",
    "tepui.frameworks.services.core", "tepui.frameworks.services.deployment", "tepui.frameworks.services.tasks",
    "tepui.frameworks.services.spec", "tepui.frameworks.services.constraints", "tepui.frameworks.services.effects",
    "tepui.frameworks.services.state", "tepui.frameworks.services.views", "tepui.frameworks.services.why",
    # the batch framework's job spec
    "tepui.frameworks.batch.spec", "tepui.frameworks.batch.dag", "tepui.frameworks.batch.durations",
    "tepui.frameworks.batch.validation", "tepui.frameworks.batch.spec_checks",
    # the batch framework's queues and fairness
    "tepui.frameworks.batch.queues", "tepui.frameworks.batch.queue_values", "tepui.frameworks.batch.fair_share",
    # the batch framework's per-job state machine and its records
    "tepui.frameworks.batch.job_run", "tepui.frameworks.batch.stage_run", "tepui.frameworks.batch.job_replay",
    "tepui.frameworks.batch.run_outcomes", "tepui.frameworks.batch.records", "tepui.frameworks.batch.task_ends",
    "tepui.frameworks.batch.gangs",
    # the batch client's values (the client itself does HTTP)
    "tepui.frameworks.batch.client_values",
    "tepui.frameworks.batch.offer_fit", "tepui.frameworks.batch.queue_why", "tepui.frameworks.batch.queue_groups",
    # the cron framework's core: fires written ahead, decided once, submitted as batch jobs
    "tepui.frameworks.cron.core", "tepui.frameworks.cron.commands", "tepui.frameworks.cron.effects",
    "tepui.frameworks.cron.records", "tepui.frameworks.cron.loading", "tepui.frameworks.cron.catch_up",
    "tepui.frameworks.cron.definition", "tepui.frameworks.cron.views",
    # the batch framework's core: jobs into queues, offers into launches, updates into decisions
    "tepui.frameworks.batch.core", "tepui.frameworks.batch.commands", "tepui.frameworks.batch.effects",
    "tepui.frameworks.batch.ledger", "tepui.frameworks.batch.tasks", "tepui.frameworks.batch.loading",
    # the batch framework's artifacts between stages
    "tepui.frameworks.batch.artifacts",
    # the batch API's read-only values and filters
    "tepui.frameworks.batch.views",
    # the cron framework's schedule spec and fire computation
    "tepui.frameworks.cron.spec", "tepui.frameworks.cron.fires", "tepui.frameworks.cron.expressions",
    "tepui.frameworks.cron.intervals", "tepui.frameworks.cron.wallclock",
]

PROBE = """
import importlib, sys
importlib.import_module(sys.argv[1])
print(" ".join(name for name in sys.argv[2:] if name in sys.modules))
"""


@pytest.mark.parametrize("module", PURE)
def test_a_pure_module_loads_no_io(module: str) -> None:
    done = subprocess.run([sys.executable, "-c", PROBE, module, *FORBIDDEN], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    loaded = done.stdout.split()
    assert loaded == [], f"importing {module} loaded {', '.join(loaded)}: find who imports it with " \
                         f"`python -X importtime -c 'import {module}' 2>&1 | grep -E '{'|'.join(loaded)}'`"


def test_the_public_sdk_still_offers_every_name_it_lists() -> None:
    import tepui.sdk as sdk

    for name in sdk.__all__:
        assert getattr(sdk, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        getattr(sdk, "Nope")
