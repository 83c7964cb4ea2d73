"""The services core on a fake clock: every event's exact effects.

``now`` is a plain float; ids come from a counter (``id1``, ``id2``, ...), so task ids are
``web.id2`` and so on and every effect can be compared exactly. :class:`Sim` also plays the
shell's store: it commits each batch's :class:`Persist` as JSON, so a test can restart the
framework from what it really wrote (and checks the write-ahead rule on every batch).

The harness (``Sim``, ``offer``, ``status``, ``spec``) is imported by the other services tests.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

import msgspec
import pytest

from tepui.frameworks.services import commands, views
from tepui.frameworks.services.core import ServicesCore, make_version
from tepui.frameworks.services.effects import (
    Decline, Demand, Effect, Kill, Launch, Persist, Publish, Reconcile,
)
from tepui.frameworks.services.records import AppRecord, DeploymentRecord, InstanceRecord, VersionRecord
from tepui.frameworks.services.spec import AppSpec, app_from_data
from tepui.frameworks.services.state import NS_FRAMEWORK, ServiceState
from tepui.sdk import HealthCheck, Offer, Resources, TaskInfo, TaskState, TaskStatus
from tepui.sdk.protocol.values import HTTPCheck

OFFER_RESOURCES = "cpus:4;mem:4096;ports:[31000-31100]"
ROOM = Resources.of(cpus=0.5, mem=128)  # one task of the default test app

# --- harness -------------------------------------------------------------------------------


def spec(**fields: Any) -> AppSpec:
    """A valid app spec: ``/web`` running ``serve`` with 0.5 cpus and 128 MB unless overridden."""
    data: dict[str, Any] = {"id": "/web", "command": "serve", "cpus": 0.5, "mem": 128.0}
    data.update(fields)
    return app_from_data(data)


def offer(offer_id: str, agent: str = "a1", host: str = "h1", resources: str = OFFER_RESOURCES,
          attributes: dict[str, str] | None = None, address: str | None = None) -> Offer:
    return Offer(id=offer_id, framework_id="fw", agent_id=agent, hostname=host,
                 resources=Resources.parse(resources).to_wire(), attributes=attributes or {}, address=address)


def status(task_id: str, state: TaskState, healthy: bool | None = None, agent: str | None = "a1",
           message: str | None = None) -> TaskStatus:
    return TaskStatus(task_id=task_id, state=state, healthy=healthy, agent_id=agent, message=message)


def only(effects: Iterable[Effect], kind: type) -> list[Any]:
    return [e for e in effects if isinstance(e, kind)]


def published(effects: Iterable[Effect], kind: str) -> list[dict[str, Any]]:
    return [e.data for e in effects if isinstance(e, Publish) and e.kind == kind]


def put_keys(effect: Effect) -> list[tuple[str, str]]:
    assert isinstance(effect, Persist)
    return [(ns, key) for ns, key, _ in effect.puts]


def launched_ids(effects: Iterable[Effect]) -> list[str]:
    return [t.task_id for launch in only(effects, Launch) for t in launch.tasks]


def killed_ids(effects: Iterable[Effect]) -> list[str]:
    return [k.task_id for k in only(effects, Kill)]


class Sim:
    """A core, a counter for ids, and the store its Persist effects write to."""

    def __init__(self, state: ServiceState | None = None, ids: itertools.count | None = None) -> None:
        self.ids = ids or itertools.count(1)
        self.core = ServicesCore(state or ServiceState(), new_id=lambda: f"id{next(self.ids)}")
        self.store: dict[tuple[str, str], bytes] = {}
        self.batches: list[list[Effect]] = []

    # Every batch passes through here: the write-ahead rule, then the store commit.
    def batch(self, effects: list[Effect]) -> list[Effect]:
        persists = only(effects, Persist)
        assert len(persists) <= 1, effects
        if persists:
            assert effects[0] is persists[0], "a batch's Persist comes first"
            persist = persists[0]
            for ns, key, value in persist.puts:
                self.store[(ns, key)] = msgspec.json.encode(value)
            for ns, key in persist.deletes:
                self.store.pop((ns, key), None)
        self.batches.append(effects)
        return effects

    @property
    def state(self) -> ServiceState:
        return self.core.state

    def subscribe(self, now: float, framework_id: str = "fw") -> list[Effect]:
        return self.batch(self.core.subscribed(framework_id, now))

    def offers(self, now: float, *offers: Offer) -> list[Effect]:
        return self.batch(self.core.offers(list(offers), now))

    def update(self, now: float, task_id: str, state: TaskState, healthy: bool | None = None,
               agent: str | None = "a1", message: str | None = None) -> list[Effect]:
        return self.batch(self.core.status_update(status(task_id, state, healthy, agent, message), now))

    def tick(self, now: float) -> list[Effect]:
        return self.batch(self.core.tick(now))

    def deploy(self, app: AppSpec, now: float, force: bool = False) -> tuple[dict[str, Any], list[Effect]]:
        answer, effects = commands.deploy(self.core, app, now, force)
        return answer, self.batch(effects)

    def command(self, name: str, *args: Any, **kwargs: Any) -> tuple[dict[str, Any], list[Effect]]:
        answer, effects = getattr(commands, name)(self.core, *args, **kwargs)
        return answer, self.batch(effects)

    def restarted(self) -> Sim:
        """A new framework process loading what this one stored (a JSON round trip)."""
        types = ServiceState.record_types()
        loaded: dict[str, list[Any]] = {ns: [] for ns in types}
        framework_id = None
        for (ns, _key), raw in sorted(self.store.items()):
            if ns == NS_FRAMEWORK:
                framework_id = msgspec.json.decode(raw, type=str)
            else:
                loaded[ns].append(msgspec.json.decode(raw, type=types[ns]))
        state = ServiceState.load(framework_id, loaded["apps"], loaded["versions"], loaded["instances"],
                                  loaded["deployments"])
        fresh = Sim(state, self.ids)
        fresh.store = dict(self.store)
        return fresh

    # --- reads ---
    def live(self, app: str = "/web") -> list[InstanceRecord]:
        return sorted(self.state.instances_of(app), key=lambda i: (i.launched_at, i.id))

    def healthy_serving(self, app: str = "/web") -> int:
        return sum(1 for i in self.state.instances_of(app) if not i.killing and self.core.healthy(i))

    def deployment(self, deployment_id: str) -> DeploymentRecord:
        return self.state.deployments[deployment_id]

    def run_all(self, now: float, healthy: bool | None = None, app: str = "/web") -> None:
        """Every staging instance of ``app`` reports RUNNING."""
        for i in self.live(app):
            if i.state == TaskState.STAGING.value and not i.killing:
                self.update(now, i.id, TaskState.RUNNING, healthy, agent=i.agent_id)

    def confirm_kills(self, now: float, app: str = "/web") -> None:
        """Every instance being killed reports KILLED."""
        for i in self.live(app):
            if i.killing:
                self.update(now, i.id, TaskState.KILLED, agent=i.agent_id)


def running_app(sim: Sim, app: AppSpec, now: float, healthy: bool | None = None) -> str:
    """Deploys ``app`` and brings every instance to RUNNING on one big offer; the version."""
    answer, _ = sim.deploy(app, now)
    sim.offers(now + 1, offer(f"o-{now}", resources="cpus:64;mem:65536;ports:[31000-32000]"))
    sim.run_all(now + 2, healthy)
    assert sim.state.running_deployment(app.id) is None
    return str(answer["version"])


# --- deploy, launch, suppress ----------------------------------------------------------------

WEB = dict(instances=3, ports=[{"port": 0}], labels={"env": "prod"},
           health_checks=[{"protocol": "HTTP", "path": "/health", "interval_seconds": 10.0,
                           "timeout_seconds": 5.0, "grace_period_seconds": 30.0}])


def test_subscribed_without_apps_remembers_the_framework_id_and_declares_no_demand() -> None:
    sim = Sim()
    assert sim.subscribe(0.0) == [Persist((("framework", "id", "fw"),), ()), Demand((), revive=False)]
    # The same id again is not written again; the demand is declared again (the master may
    # have forgotten it).
    assert sim.subscribe(1.0) == [Demand((), revive=False)]


def test_deploy_new_app_persists_first_then_revives_with_the_demand() -> None:
    sim = Sim()
    sim.subscribe(0.0)
    app = spec(**WEB)
    answer, effects = sim.deploy(app, 1.0)
    v = make_version(1.0, [])
    assert v == "1970-01-01T00:00:01.000Z"
    assert answer == {"app": "/web", "version": v, "deployment": "id1", "created": True}
    deployment = DeploymentRecord(id="id1", app="/web", kind="deploy", version=v, config_version=v,
                                  from_version=None, instances=3, started_at=1.0, deadline_at=601.0)
    assert effects == [
        Persist((("versions", f"/web@{v}", VersionRecord(app="/web", version=v, config_version=v, created_at=1.0,
                                                           reason="deploy", spec=app.to_data())),
                 ("apps", "/web", AppRecord(id="/web", version=v, config_version=v, versions=[v], created_at=1.0)),
                 ("deployments", "id1", deployment)), ()),
        Publish("app_changed", {"app": "/web", "version": v, "instances": 3}),
        Publish("deployment_step", deployment.view()),
        Demand(((ROOM, 3),), revive=True),
    ]
    assert sim.core.pending == {"/web": 3}


def test_offer_launches_all_instances_persisted_before_the_launch_then_suppresses() -> None:
    sim = Sim()
    sim.subscribe(0.0)
    answer, _ = sim.deploy(spec(**WEB), 1.0)
    v = answer["version"]
    effects = sim.offers(2.0, offer("o1", address="10.0.0.1"))
    assert [type(e) for e in effects] == [Persist, Launch, Demand]
    persist, launch, demand = effects
    ids = ["web.id2", "web.id3", "web.id4"]
    # Write-ahead: the instances are in the batch's Persist, which precedes the Launch.
    assert persist == Persist(tuple(
        ("instances", task_id, InstanceRecord(id=task_id, app="/web", version=v, config_version=v, agent_id="a1",
                                              hostname="h1", host="10.0.0.1", ports=[port], launched_at=2.0))
        for task_id, port in zip(ids, (31000, 31001, 31002))), ())
    assert launch.offer_id == "o1"
    assert [t.task_id for t in launch.tasks] == ids
    for task, port in zip(launch.tasks, (31000, 31001, 31002)):
        assert isinstance(task, TaskInfo)
        assert task.agent_id == "a1" and task.name == "web"
        env = task.command.environment
        assert env == {"TEPUI_APP_ID": "/web", "TEPUI_APP_VERSION": v, "TEPUI_TASK_ID": task.task_id,
                       "HOST": "h1", "PORT0": str(port), "PORT": str(port), "PORTS": str(port)}
        assert task.command.value == "serve" and task.command.shell is True
        assert task.labels == {"env": "prod", "tepui.services/app": "/web", "tepui.services/version": v}
        assert task.health_check == HealthCheck(
            type="HTTP", http=HTTPCheck(port=port, path="/health", scheme="http"), delay_seconds=0.0,
            interval_seconds=10.0, timeout_seconds=5.0, consecutive_failures=3, grace_period_seconds=30.0)
        assert Resources.from_wire(task.resources) == ROOM + Resources.parse(f"ports:[{port}-{port}]")
    # Nothing waits any more: an empty demand (suppress).
    assert demand == Demand((), revive=False)
    assert sim.core.pending == {"/web": 0}
    # A further offer is declined for the long idle filter, and nothing is declared again.
    assert sim.offers(3.0, offer("o2")) == [Decline(("o2",), 120.0)]


def test_offer_too_small_for_any_task_is_declined_with_the_short_filter_while_waiting() -> None:
    sim = Sim()
    sim.deploy(spec(instances=2, cpus=2.0), 1.0)
    effects = sim.offers(2.0, offer("o1", resources="cpus:3;mem:4096"), offer("o2", resources="cpus:1;mem:4096"))
    assert launched_ids(effects) == ["web.id2"]
    assert effects[1:] == [Launch("o1", effects[1].tasks), Decline(("o2",), 5.0),
                           Demand(((Resources.of(cpus=2.0, mem=128), 1),), revive=False)]
    assert sim.core.pending == {"/web": 1}


def test_running_and_healthy_updates_finish_the_deployment_with_counts_in_events() -> None:
    sim = Sim()
    answer, _ = sim.deploy(spec(**WEB), 1.0)
    sim.offers(2.0, offer("o1"))
    ids = ["web.id2", "web.id3", "web.id4"]
    # RUNNING inside the grace period, health not known yet: running, not healthy.
    effects = sim.update(3.0, ids[0], TaskState.RUNNING)
    assert [type(e) for e in effects] == [Persist, Publish, Publish]
    assert put_keys(effects[0]) == [("instances", ids[0]), ("deployments", "id1")]
    assert effects[1] == Publish("status_update", {
        "app": "/web", "task_id": ids[0], "version": answer["version"], "state": "TASK_RUNNING",
        "healthy": None, "agent_id": "a1", "message": None, "app_healthy": 0, "app_running": 1})
    assert effects[2].kind == "deployment_step"
    assert effects[2].data["progress"] == {"new_healthy": 0, "new_running": 1, "old_running": 0, "target": 3}
    assert sim.state.instances[ids[0]].running_at == 3.0

    for n, task_id in enumerate(ids, start=1):
        effects = sim.update(3.0 + n, task_id, TaskState.RUNNING, healthy=True)
        assert published(effects, "status_update")[0]["app_healthy"] == n
        assert published(effects, "health_changed") == [{
            "app": "/web", "task_id": task_id, "version": answer["version"], "healthy": True,
            "app_healthy": n, "app_running": n}]
        if n < 3:
            step = published(effects, "deployment_step")
            assert [s["progress"]["new_healthy"] for s in step] == [n]
            # Progress moves the deadline on.
            assert step[0]["deadline_at"] == 3.0 + n + 600.0
            assert published(effects, "deployment_finished") == []
    finished = published(effects, "deployment_finished")
    assert len(finished) == 1
    assert finished[0]["status"] == "SUCCEEDED" and finished[0]["finished_at"] == 6.0
    assert finished[0]["message"] == f"3 of 3 instances of version {answer['version']} healthy"
    assert sim.deployment("id1").status == "SUCCEEDED"
    assert ("deployments", "id1") in put_keys(effects[0])
    assert sim.state.running_deployment("/web") is None
    # An unchanged health report changes nothing but the record's persisted state.
    again = sim.update(7.0, ids[0], TaskState.RUNNING, healthy=True)
    assert published(again, "health_changed") == [] and published(again, "deployment_finished") == []


def test_unhealthy_report_is_published_and_not_counted() -> None:
    sim = Sim()
    running_app(sim, spec(**WEB), 1.0, healthy=True)
    effects = sim.update(10.0, "web.id2", TaskState.RUNNING, healthy=False)
    assert published(effects, "health_changed")[0]["healthy"] is False
    assert published(effects, "health_changed")[0]["app_healthy"] == 2
    assert only(effects, Kill) == []  # the agent kills it after max_consecutive_failures, not us


# --- failures and launch backoff --------------------------------------------------------------

BACKOFF = dict(instances=1, backoff={"backoff_seconds": 10.0, "backoff_factor": 2.0, "max_launch_delay_seconds": 100.0})


def test_failed_task_is_replaced_after_the_growing_backoff_and_health_resets_it() -> None:
    sim = Sim()
    app = spec(**BACKOFF)
    sim.deploy(app, 1.0)
    assert launched_ids(sim.offers(1.0, offer("o1"))) == ["web.id2"]
    sim.update(2.0, "web.id2", TaskState.RUNNING)

    # First failure: replacement pending, but the app waits backoff_seconds (10 s).
    effects = sim.update(5.0, "web.id2", TaskState.FAILED, message="exit 1")
    assert effects[0] == Persist((), (("instances", "web.id2"),))
    assert published(effects, "status_update")[0]["app_running"] == 0
    assert sim.core.pending == {"/web": 1}
    assert only(effects, Demand) == []  # still suppressed: nothing may launch before 15
    assert sim.core.last_failure["/web"] == {"task_id": "web.id2", "state": "TASK_FAILED", "message": "exit 1",
                                             "at": 5.0}
    assert sim.offers(6.0, offer("o2")) == [Decline(("o2",), 5.0)]
    assert sim.tick(14.9) == []
    # The delay is over: the demand is declared again (revive), and an offer launches.
    assert sim.tick(15.0) == [Demand(((ROOM, 1),), revive=True)]
    assert launched_ids(sim.offers(15.0, offer("o3"))) == ["web.id3"]

    # Second failure (it never came up): the delay doubles to 20 s.
    sim.update(16.0, "web.id3", TaskState.FAILED)
    assert sim.offers(35.9, offer("o4")) == [Decline(("o4",), 5.0)]
    assert sim.tick(35.9) == []
    assert sim.tick(36.0) == [Demand(((ROOM, 1),), revive=True)]
    assert launched_ids(sim.offers(36.0, offer("o5"))) == ["web.id4"]

    # Running (healthy: the app has no health checks) resets the backoff: the next failure
    # waits 10 s again, not 40 s.
    sim.update(37.0, "web.id4", TaskState.RUNNING)
    sim.update(40.0, "web.id4", TaskState.FINISHED)
    assert sim.core.backoff("/web").remaining(40.0) == 10.0
    assert sim.offers(49.0, offer("o6")) == [Decline(("o6",), 5.0)]
    sim.tick(50.0)
    assert launched_ids(sim.offers(50.0, offer("o7"))) == ["web.id5"]


def test_killed_by_request_is_no_failure() -> None:
    sim = Sim()
    running_app(sim, spec(**{**BACKOFF, "instances": 2}), 1.0)
    sim.command("scale", "/web", 1, 10.0)
    [victim] = [i.id for i in sim.live() if i.killing]
    sim.update(11.0, victim, TaskState.KILLED)
    assert sim.core.backoff("/web").failures == 0
    assert "/web" not in sim.core.last_failure


def test_health_check_failure_resets_only_after_healthy() -> None:
    """With health checks, RUNNING alone is no success: the backoff resets when healthy."""
    sim = Sim()
    sim.deploy(spec(**BACKOFF, ports=[{"port": 0}], health_checks=[{"interval_seconds": 10.0, "timeout_seconds": 5.0}]), 1.0)
    sim.offers(1.0, offer("o1"))
    sim.update(2.0, "web.id2", TaskState.FAILED)
    sim.tick(12.0)
    sim.offers(12.0, offer("o2"))
    sim.update(13.0, "web.id3", TaskState.RUNNING)
    assert sim.core.backoff("/web").failures == 1
    sim.update(14.0, "web.id3", TaskState.RUNNING, healthy=True)
    assert sim.core.backoff("/web").failures == 0


# --- rolling upgrade --------------------------------------------------------------------------


def test_rolling_upgrade_keeps_the_health_floor_and_never_exceeds_capacity() -> None:
    sim = Sim()
    strategy = {"minimum_health_capacity": 0.6, "maximum_over_capacity": 0.0}
    v1 = running_app(sim, spec(instances=5, upgrade_strategy=strategy), 1.0)
    old_config = sim.state.apps["/web"].config_version
    assert sim.healthy_serving() == 5

    def check() -> None:
        live = [i for i in sim.live() if not i.killing]
        assert sim.healthy_serving() >= 3, [(i.id, i.state, i.killing) for i in sim.live()]
        assert len(live) <= 5  # maximum_over_capacity 0: never more than 5 meant to run

    first_batch = len(sim.batches)
    answer, effects = sim.deploy(spec(instances=5, command="serve --v2", upgrade_strategy=strategy), 10.0)
    v2 = answer["version"]
    # min_healthy 3: the two oldest are killed at once and two new ones wait for offers.
    assert killed_ids(effects) == ["web.id2", "web.id3"]
    assert only(effects, Demand) == [Demand(((ROOM, 2),), revive=True)]
    check()

    now, offers = 10.0, itertools.count()
    for _ in range(10):
        if sim.state.running_deployment("/web") is None:
            break
        now += 1
        sim.offers(now, offer(f"o{next(offers)}"))
        check()
        now += 1
        for i in sim.live():
            if i.killing:
                sim.update(now, i.id, TaskState.KILLED)
                check()
        now += 1
        for i in sim.live():
            if i.state == TaskState.STAGING.value:
                sim.update(now, i.id, TaskState.RUNNING)
                check()
    deployment = sim.deployment(answer["deployment"])
    assert deployment.status == "SUCCEEDED"
    assert deployment.new_healthy == 5 and deployment.old_running == 0
    # The event stream never reported fewer than 3 healthy either.
    events = [e for batch in sim.batches[first_batch:] for e in published(batch, "status_update")]
    assert events and min(e["app_healthy"] for e in events) >= 3
    steps = [e for batch in sim.batches[first_batch:] for e in published(batch, "deployment_step")]
    assert [s["progress"]["new_healthy"] for s in steps] == sorted(s["progress"]["new_healthy"] for s in steps)
    live = sim.live()
    assert len(live) == 5
    assert all(i.version == v2 and i.config_version == v2 != old_config and not i.killing for i in live)
    assert v1 != v2
    assert sim.core.counts("/web") == {"app_healthy": 5, "app_running": 5}
    # The versions of the old instances stay listed in the app's history.
    assert sim.state.apps["/web"].versions == [v1, v2]


def test_readiness_gates_the_upgrade_and_probes_are_started() -> None:
    from tepui.frameworks.services.effects import Probe, StopProbe

    sim = Sim()
    ready = {"path": "/ready", "interval_seconds": 5.0, "timeout_seconds": 1.0}
    app = spec(instances=1, ports=[{"port": 0}], readiness_check=ready)
    sim.deploy(app, 1.0)
    sim.offers(1.0, offer("o1", address="10.0.0.9"))
    effects = sim.update(2.0, "web.id2", TaskState.RUNNING)
    assert only(effects, Probe) == [Probe("web.id2", "http://10.0.0.9:31000/ready", 5.0, 1.0, (200,))]
    assert sim.deployment("id1").status == "RUNNING"
    assert sim.batch(sim.core.readiness("web.id2", False, 3.0)) == []
    effects = sim.batch(sim.core.readiness("web.id2", True, 4.0))
    assert effects[1] == StopProbe("web.id2")
    assert published(effects, "readiness_changed")[0]["ready"] is True
    assert sim.deployment("id1").status == "SUCCEEDED"
    # A result for a task that is gone stops its probe.
    assert sim.core.readiness("nope", True, 5.0) == [StopProbe("nope")]


# --- progress deadline and automatic rollback ----------------------------------------------------

ROLLBACK_STRATEGY = {"progress_deadline_seconds": 60.0, "auto_rollback": True}


def test_progress_deadline_with_auto_rollback_returns_to_the_old_version() -> None:
    sim = Sim()
    old_spec = spec(instances=2)
    v1 = running_app(sim, old_spec, 1.0)
    old_config = sim.state.apps["/web"].config_version
    old_ids = [i.id for i in sim.live()]
    answer, _ = sim.deploy(spec(instances=2, command="serve --broken", upgrade_strategy=ROLLBACK_STRATEGY), 10.0)
    failed_id = answer["deployment"]
    assert sim.deployment(failed_id).deadline_at == 70.0
    new_ids = launched_ids(sim.offers(11.0, offer("o9")))
    assert len(new_ids) == 2
    sim.update(12.0, new_ids[0], TaskState.FAILED, message="exit 3")  # replaced after backoff
    assert sim.tick(69.9) == [Demand(((ROOM, 1),), revive=True)]  # the backoff (1 s) is long over
    assert sim.deployment(failed_id).status == "RUNNING"

    effects = sim.tick(70.0)
    failed = sim.deployment(failed_id)
    assert failed.status == "FAILED" and failed.finished_at == 70.0
    assert failed.rollback is not None
    rollback = sim.deployment(failed.rollback)
    assert rollback.kind == "rollback" and rollback.status == "RUNNING" and rollback.from_version == answer["version"]
    assert failed.message.startswith("no progress for 60 s (upgrade_strategy.progress_deadline_seconds): "
                                     f"0 of 2 instances of version {answer['version']} healthy and ready")
    assert f"last failure: {new_ids[0]} TASK_FAILED (exit 3)" in failed.message
    assert failed.message.endswith(f"rolled back to version {v1} (deployment {failed.rollback})")
    # The event stream hears of the failure with the rollback it triggered.
    [finished] = published(effects, "deployment_finished")
    assert finished == failed.view()
    # The app is back on the old spec and config version (a new version string, made now).
    app = sim.state.apps["/web"]
    assert app.config_version == old_config
    assert app.version not in (v1, answer["version"])
    assert sim.state.current_spec("/web") == old_spec
    assert sim.state.versions[("/web", app.version)].reason == f"automatic rollback of {answer['version']}"
    # New instances are killed, old ones untouched.
    new_live = [i.id for i in sim.live() if i.id not in old_ids]
    assert sorted(killed_ids(effects)) == sorted(new_live)
    assert all(not sim.state.instances[i].killing for i in old_ids)
    assert sim.core.pending["/web"] == 0
    sim.confirm_kills(71.0)
    assert sim.deployment(rollback.id).status == "SUCCEEDED"
    assert [i.id for i in sim.live()] == old_ids
    # A rollback deployment does not roll back itself.
    assert rollback.auto_rollback is False


def test_progress_deadline_without_auto_rollback_fails_and_keeps_converging() -> None:
    sim = Sim()
    running_app(sim, spec(instances=1), 1.0)
    answer, _ = sim.deploy(spec(instances=1, command="serve --v2",
                                upgrade_strategy={"progress_deadline_seconds": 30.0}), 10.0)
    sim.offers(11.0, offer("o1"))
    effects = sim.tick(40.0)
    failed = sim.deployment(answer["deployment"])
    assert failed.status == "FAILED" and failed.rollback is None
    assert published(effects, "deployment_finished") == [failed.view()]
    assert sim.state.apps["/web"].version == answer["version"]  # the target stays
    assert killed_ids(effects) == []


# --- scale, restart, rollback, cancel, remove -----------------------------------------------------


def test_scale_keeps_the_config_version_and_replaces_nothing() -> None:
    sim = Sim()
    v1 = running_app(sim, spec(instances=2), 1.0)
    config = sim.state.apps["/web"].config_version
    answer, effects = sim.command("scale", "/web", 4, 10.0)
    app = sim.state.apps["/web"]
    assert answer == {"app": "/web", "version": app.version, "deployment": answer["deployment"]}
    assert app.version != v1 and app.config_version == config
    assert sim.deployment(answer["deployment"]).kind == "scale"
    assert sim.state.versions[("/web", app.version)].reason == "scale to 4"
    assert killed_ids(effects) == []
    assert only(effects, Demand) == [Demand(((ROOM, 2),), revive=True)]
    sim.offers(11.0, offer("o1"))
    sim.run_all(12.0)
    assert sim.deployment(answer["deployment"]).status == "SUCCEEDED"
    assert len(sim.live()) == 4 and {i.config_version for i in sim.live()} == {config}
    # Scale down: the youngest are killed (ties on the launch time broken by id).
    _, effects = sim.command("scale", "/web", 1, 20.0)
    assert killed_ids(effects) == ["web.id6", "web.id5", "web.id3"]
    assert only(effects, Kill)[0] == Kill("web.id6", "a1", None)
    assert sim.state.apps["/web"].config_version == config


def test_restart_replaces_every_instance() -> None:
    sim = Sim()
    running_app(sim, spec(instances=2, kill_grace_period_seconds=3.0), 1.0)
    old = sim.state.apps["/web"]
    old_ids = [i.id for i in sim.live()]
    answer, effects = sim.command("restart", "/web", 10.0)
    app = sim.state.apps["/web"]
    assert app.config_version == app.version == answer["version"] != old.config_version
    assert sim.state.current_spec("/web") == sim.state.spec("/web", old.version)
    # Default strategy (1.0/1.0): the new set first, no kill yet.
    assert killed_ids(effects) == []
    assert sim.core.pending["/web"] == 2
    sim.offers(11.0, offer("o1"))
    effects_before = len(sim.batches)
    sim.run_all(12.0)
    kills = [k for b in sim.batches[effects_before:] for k in only(b, Kill)]
    assert sorted(k.task_id for k in kills) == sorted(old_ids)
    assert all(k.grace_seconds == 3.0 for k in kills)
    sim.confirm_kills(13.0)
    assert sim.deployment(answer["deployment"]).status == "SUCCEEDED"
    assert all(i.config_version == app.config_version for i in sim.live()) and len(sim.live()) == 2
    assert not set(old_ids) & {i.id for i in sim.live()}


def test_rollback_to_an_earlier_version_restores_its_config() -> None:
    sim = Sim()
    v1 = running_app(sim, spec(instances=1), 1.0)
    c1 = sim.state.apps["/web"].config_version
    sim.deploy(spec(instances=1, command="serve --v2"), 10.0)
    sim.offers(11.0, offer("o1"))
    sim.run_all(12.0)
    sim.confirm_kills(13.0)
    assert sim.state.running_deployment("/web") is None
    answer, effects = sim.command("rollback", "/web", v1, 20.0)
    app = sim.state.apps["/web"]
    assert app.config_version == c1 and app.version == answer["version"]
    assert sim.state.current_spec("/web") == spec(instances=1)
    deployment = sim.deployment(answer["deployment"])
    assert deployment.kind == "rollback" and deployment.auto_rollback is False
    assert sim.state.versions[("/web", app.version)].reason == f"rollback to {v1}"
    # Rolling back a scale: the previous version by default, with the same config (no replacement).
    sim.offers(21.0, offer("o1"))
    sim.run_all(22.0)
    sim.confirm_kills(23.0)
    sim.command("scale", "/web", 2, 30.0)
    _, effects = sim.command("rollback", "/web", None, 31.0, force=True)
    assert sim.state.apps["/web"].config_version == c1
    assert sim.state.current_spec("/web").instances == 1
    assert killed_ids(effects) == []  # the scale's new instance was never launched


def test_cancel_without_force_rolls_back() -> None:
    sim = Sim()
    old_spec = spec(instances=2)
    v1 = running_app(sim, old_spec, 1.0)
    old_ids = [i.id for i in sim.live()]
    c1 = sim.state.apps["/web"].config_version
    answer, _ = sim.deploy(spec(instances=2, command="serve --v2"), 10.0)
    new_ids = launched_ids(sim.offers(11.0, offer("o1")))
    reply, effects = sim.command("cancel", answer["deployment"], False, 12.0)
    cancelled = sim.deployment(answer["deployment"])
    assert reply == {"deployment": answer["deployment"], "rollback": cancelled.rollback}
    assert cancelled.status == "CANCELLED" and cancelled.rollback is not None
    assert published(effects, "deployment_finished")[0]["rollback"] == cancelled.rollback
    assert sim.state.apps["/web"].config_version == c1
    assert sim.state.current_spec("/web") == old_spec
    assert sorted(killed_ids(effects)) == sorted(new_ids)
    assert v1 != sim.state.apps["/web"].version
    sim.confirm_kills(13.0)
    assert sim.deployment(cancelled.rollback).status == "SUCCEEDED"
    assert [i.id for i in sim.live()] == old_ids


def test_cancel_with_force_keeps_the_target() -> None:
    sim = Sim()
    running_app(sim, spec(instances=2), 1.0)
    answer, _ = sim.deploy(spec(instances=2, command="serve --v2"), 10.0)
    reply, effects = sim.command("cancel", answer["deployment"], True, 12.0)
    assert reply == {"deployment": answer["deployment"], "rollback": None}
    assert sim.deployment(answer["deployment"]).status == "CANCELLED"
    assert sim.state.apps["/web"].version == answer["version"]
    assert killed_ids(effects) == []
    assert sim.core.pending["/web"] == 2  # self-healing keeps converging to the target
    sim.offers(13.0, offer("o1"))
    sim.run_all(14.0)
    sim.confirm_kills(15.0)
    assert {i.version for i in sim.live()} == {answer["version"]} and len(sim.live()) == 2
    assert sim.state.running_deployment("/web") is None


def test_remove_kills_every_instance_then_forgets_the_app() -> None:
    sim = Sim()
    running_app(sim, spec(instances=2), 1.0)
    ids = [i.id for i in sim.live()]
    answer, effects = sim.command("remove", "/web", 10.0)
    deployment_id = answer["deployment"]
    assert answer == {"app": "/web", "deployment": deployment_id}
    assert [type(e) for e in effects] == [Persist, Publish, Kill, Kill]
    assert effects[1] == Publish("deployment_step", sim.deployment(deployment_id).view())
    assert killed_ids(effects) == ids
    assert sim.state.apps["/web"].removing
    # Removing again answers the same deployment, and does nothing.
    assert sim.command("remove", "/web", 10.5) == ({"app": "/web", "deployment": deployment_id}, [])
    effects = sim.update(11.0, ids[0], TaskState.KILLED)
    assert "/web" in sim.state.apps and published(effects, "app_removed") == []
    effects = sim.update(12.0, ids[1], TaskState.KILLED)
    assert published(effects, "app_removed") == [{"app": "/web"}]
    assert published(effects, "deployment_finished")[0]["status"] == "SUCCEEDED"
    assert "/web" not in sim.state.apps and not any(a == "/web" for a, _ in sim.state.versions)
    assert ("apps", "/web") in effects[0].deletes
    assert sim.deployment(deployment_id).status == "SUCCEEDED"
    assert "/web" not in sim.core.pending
    # The removal deletes the versions from the store too; the history stays.
    assert not any(ns in ("apps", "versions", "instances") for ns, _ in sim.store)
    assert ("deployments", deployment_id) in sim.store
    # A removed app's task reporting again is killed.
    assert sim.update(13.0, ids[0], TaskState.RUNNING) == [Kill(ids[0], "a1", None)]


def test_remove_of_an_app_without_instances_is_immediate() -> None:
    sim = Sim()
    sim.deploy(spec(instances=1), 1.0)
    answer, effects = sim.command("remove", "/web", 2.0)
    assert published(effects, "app_removed") == [{"app": "/web"}]
    assert [d["status"] for d in published(effects, "deployment_finished")] == ["CANCELLED", "SUCCEEDED"]
    assert only(effects, Demand) == [Demand((), revive=False)]
    assert "/web" not in sim.state.apps


# --- placement constraints ------------------------------------------------------------------


def test_unique_hostname_places_one_per_agent_and_keeps_the_third_waiting() -> None:
    sim = Sim()
    sim.deploy(spec(instances=3, constraints=[["hostname", "UNIQUE"]]), 1.0)
    effects = sim.offers(2.0, offer("o1", "a1", "h1"), offer("o2", "a2", "h2"))
    assert [(launch.offer_id, [t.agent_id for t in launch.tasks]) for launch in only(effects, Launch)] == [
        ("o1", ["a1"]), ("o2", ["a2"])]
    assert sim.core.pending == {"/web": 1}
    assert only(effects, Demand) == [Demand(((ROOM, 1),), revive=False)]
    why = views.why(sim.core, "/web", 2.0)
    assert why["waiting"] == 1 and why["offers_seen"] == 2
    assert why["reasons"] == {"constraint hostname UNIQUE: h1 already runs an instance": 1,
                              "constraint hostname UNIQUE: h2 already runs an instance": 1}
    assert "1 instance(s) wait: 2 offer(s) from 2 agent(s) were refused" in why["summary"]
    # The next round refuses both agents again; a third agent takes the last instance.
    effects = sim.offers(3.0, offer("o3", "a1", "h1"), offer("o4", "a2", "h2"), offer("o5", "a3", "h3"))
    assert [launch.offer_id for launch in only(effects, Launch)] == ["o5"]
    assert only(effects, Decline) == [Decline(("o3", "o4"), 120.0)]
    assert views.why(sim.core, "/web", 3.0)["reasons"]["constraint hostname UNIQUE: h1 already runs an instance"] == 2
    assert {i.hostname for i in sim.live()} == {"h1", "h2", "h3"}


# --- unreachable agents ---------------------------------------------------------------------


def test_unreachable_with_zero_timeouts_is_replaced_and_expunged_at_once() -> None:
    sim = Sim()
    running_app(sim, spec(instances=2), 1.0)
    effects = sim.update(10.0, "web.id2", TaskState.UNREACHABLE)
    assert effects[0] == Persist((), (("instances", "web.id2"),))
    assert published(effects, "instance_expunged") == [{"app": "/web", "task_id": "web.id2", "app_healthy": 1,
                                                        "app_running": 1}]
    assert only(effects, Demand) == [Demand(((ROOM, 1),), revive=True)]
    assert "web.id2" not in sim.state.instances
    assert launched_ids(sim.offers(11.0, offer("o1", "a2", "h2"))) == ["web.id4"]
    # Its agent comes back: the task is no longer known and is killed.
    assert sim.update(12.0, "web.id2", TaskState.RUNNING) == [Kill("web.id2", "a1", None)]


def test_unreachable_is_replaced_after_inactive_and_the_surplus_killed_when_it_returns() -> None:
    sim = Sim()
    running_app(sim, spec(instances=2, unreachable_strategy={"inactive_after_seconds": 10.0,
                                                             "expunge_after_seconds": 100.0}), 1.0)
    effects = sim.update(10.0, "web.id2", TaskState.UNREACHABLE)
    assert published(effects, "instance_expunged") == []
    assert sim.state.instances["web.id2"].unreachable_since == 10.0
    assert sim.core.pending["/web"] == 0 and only(effects, Demand) == []
    # A repeated UNREACHABLE does not restart the clock.
    sim.update(15.0, "web.id2", TaskState.UNREACHABLE)
    assert sim.state.instances["web.id2"].unreachable_since == 10.0
    assert sim.tick(19.9) == []
    assert sim.tick(20.0) == [Demand(((ROOM, 1),), revive=True)]
    assert launched_ids(sim.offers(21.0, offer("o1", "a2", "h2"))) == ["web.id4"]
    sim.update(22.0, "web.id4", TaskState.RUNNING, agent="a2")
    # The agent returns before the expunge: one instance too many, the youngest is killed.
    effects = sim.update(30.0, "web.id2", TaskState.RUNNING)
    assert killed_ids(effects) == ["web.id4"]
    assert only(effects, Kill) == [Kill("web.id4", "a2", None)]
    assert sim.state.instances["web.id2"].unreachable_since is None
    sim.confirm_kills(31.0)
    assert [i.id for i in sim.live()] == ["web.id2", "web.id3"]


def test_unreachable_is_expunged_after_expunge_seconds() -> None:
    sim = Sim()
    running_app(sim, spec(instances=1, unreachable_strategy={"inactive_after_seconds": 10.0,
                                                             "expunge_after_seconds": 100.0}), 1.0)
    sim.update(10.0, "web.id2", TaskState.UNREACHABLE)
    sim.tick(20.0)
    sim.offers(21.0, offer("o1", "a2", "h2"))
    effects = sim.tick(110.0)
    assert effects[0] == Persist((), (("instances", "web.id2"),))
    assert published(effects, "instance_expunged")[0]["task_id"] == "web.id2"
    assert sim.update(111.0, "web.id2", TaskState.RUNNING) == [Kill("web.id2", "a1", None)]


# --- unknown tasks, timers ------------------------------------------------------------------


@pytest.mark.parametrize("state", [TaskState.STAGING, TaskState.STARTING, TaskState.RUNNING, TaskState.KILLING])
def test_unknown_task_that_is_alive_is_killed(state: TaskState) -> None:
    sim = Sim()
    assert sim.update(1.0, "ghost.1", state, agent="a9") == [Kill("ghost.1", "a9", None)]


@pytest.mark.parametrize("state", [TaskState.FINISHED, TaskState.FAILED, TaskState.KILLED, TaskState.LOST,
                                   TaskState.GONE, TaskState.UNREACHABLE])
def test_unknown_task_that_ended_or_is_unreachable_changes_nothing(state: TaskState) -> None:
    sim = Sim()
    sim.deploy(spec(instances=1), 1.0)
    assert sim.update(2.0, "ghost.1", state) == []


def test_unconfirmed_kill_is_repeated_and_a_stuck_launch_is_killed() -> None:
    sim = Sim()
    running_app(sim, spec(instances=2), 1.0)
    _, effects = sim.command("scale", "/web", 1, 10.0)
    assert killed_ids(effects) == ["web.id3"]
    assert sim.tick(39.9) == []
    effects = sim.tick(40.0)
    assert effects == [Persist((("instances", "web.id3", sim.state.instances["web.id3"]),), ()),
                       Kill("web.id3", "a1", None)]
    assert sim.state.instances["web.id3"].kill_asked_at == 40.0

    sim2 = Sim()
    sim2.deploy(spec(instances=1), 0.0)
    sim2.offers(0.0, offer("o1"))
    assert sim2.tick(299.0) == []
    effects = sim2.tick(300.0)
    assert killed_ids(effects) == ["web.id2"]
    assert sim2.state.instances["web.id2"].message == "not running 300 s after its launch"
    # An instance being killed no longer counts: its replacement is declared at once.
    assert only(effects, Demand) == [Demand(((ROOM, 1),), revive=True)]


# --- restart of the framework -----------------------------------------------------------------


def test_restart_from_the_store_reconciles_and_launches_no_duplicates() -> None:
    sim = Sim()
    sim.subscribe(0.0)
    sim.deploy(spec(instances=3), 1.0)
    ids = launched_ids(sim.offers(2.0, offer("o1", "a1", "h1", resources="cpus:1;mem:4096"),
                                  offer("o2", "a2", "h2")))
    assert len(ids) == 3
    sim.update(3.0, ids[0], TaskState.RUNNING)
    before = {i.id: i for i in sim.state.instances.values()}

    fresh = sim.restarted()
    assert fresh.state.framework_id == "fw"
    assert fresh.state.instances == before
    assert fresh.state.apps == sim.state.apps
    assert fresh.state.deployments == sim.state.deployments
    assert fresh.state.current_spec("/web") == spec(instances=3)
    effects = fresh.subscribe(10.0)
    assert effects == [Reconcile(tuple(sorted((i.id, i.agent_id) for i in before.values()))),
                       Demand((), revive=False)]
    assert effects[0].tasks == (("web.id2", "a1"), ("web.id3", "a1"), ("web.id4", "a2"))
    # Still staging: nothing to start, offers are declined.
    assert fresh.core.pending == {"/web": 0}
    assert fresh.offers(11.0, offer("o3")) == [Decline(("o3",), 120.0)]
    fresh.run_all(12.0)
    assert fresh.deployment("id1").status == "SUCCEEDED"
    assert len(fresh.live()) == 3


def test_restart_repeats_kills_and_resumes_a_rolling_upgrade() -> None:
    sim = Sim()
    strategy = {"minimum_health_capacity": 0.5, "maximum_over_capacity": 0.0}
    running_app(sim, spec(instances=2, upgrade_strategy=strategy), 1.0)
    answer, effects = sim.deploy(spec(instances=2, command="serve --v2", upgrade_strategy=strategy), 10.0)
    assert killed_ids(effects) == ["web.id2"]
    sim.offers(11.0, offer("o1"))  # web.id5 launched, then the framework stops

    fresh = sim.restarted()
    effects = fresh.subscribe(20.0)
    # The store has no framework id (this one never subscribed), so the batch writes it, and
    # the repeated kill's time.
    assert put_keys(effects[0]) == [("framework", "id"), ("instances", "web.id2")]
    assert effects[1] == Reconcile((("web.id2", "a1"), ("web.id3", "a1"), ("web.id5", "a1")))
    assert killed_ids(effects) == ["web.id2"]  # asked again: the answer may have been lost
    assert launched_ids(effects) == [] and fresh.core.pending == {"/web": 0}
    # The master answers the reconciliation; the upgrade goes on from where it was.
    fresh.update(21.0, "web.id2", TaskState.KILLED)
    fresh.update(21.0, "web.id5", TaskState.RUNNING)
    assert killed_ids(fresh.batches[-1]) == ["web.id3"]
    fresh.confirm_kills(22.0)
    fresh.offers(23.0, offer("o2"))
    fresh.run_all(24.0)
    assert fresh.deployment(answer["deployment"]).status == "SUCCEEDED"
    assert {i.version for i in fresh.live()} == {answer["version"]}
    assert len(fresh.live()) == 2


def test_a_crash_between_persist_and_launch_is_replaced_after_reconciliation() -> None:
    """The instance is stored but its launch was never sent: the master answers LOST (or DROPPED)."""
    sim = Sim()
    sim.deploy(spec(instances=1), 1.0)
    sim.offers(2.0, offer("o1"))
    fresh = sim.restarted()
    fresh.subscribe(5.0)
    effects = fresh.update(6.0, "web.id2", TaskState.DROPPED, message="unknown task")
    assert effects[0] == Persist((), (("instances", "web.id2"),))
    assert fresh.core.pending == {"/web": 1}


# --- versions, several apps ---------------------------------------------------------------------


def test_make_version_is_unique_increasing_and_survives_a_clock_behind() -> None:
    assert make_version(1.0, []) == "1970-01-01T00:00:01.000Z"
    assert make_version(1.0, ["1970-01-01T00:00:01.000Z"]) == "1970-01-01T00:00:01.001Z"
    assert make_version(5.0, ["1970-01-01T00:00:01.000Z"]) == "1970-01-01T00:00:05.000Z"
    # A clock a day behind the newest version (skew, a restart on another host): the next
    # version follows the newest at once, without stepping through the day a millisecond at a time.
    newest = make_version(86400.0 + 1000.0, [])
    assert make_version(1000.0, [newest]) == "1970-01-02T00:16:40.001Z"


def test_old_versions_no_instance_uses_are_forgotten() -> None:
    from tepui.frameworks.services.core import MAX_VERSIONS

    sim = Sim()
    v1 = running_app(sim, spec(instances=1), 1.0)
    for k in range(MAX_VERSIONS + 5):
        sim.command("scale", "/web", 1, 10.0 + k, force=True)
    app = sim.state.apps["/web"]
    assert len(app.versions) == MAX_VERSIONS
    assert app.versions[0] == v1  # web.id2 still runs it
    forgotten = [make_version(10.0 + k, []) for k in range(6)]
    assert not set(forgotten) & set(app.versions)
    assert all(("/web", v) not in sim.state.versions for v in forgotten)
    assert all(("versions", f"/web@{v}") not in sim.store for v in forgotten)
    assert ("versions", f"/web@{v1}") in sim.store
    assert len([k for k in sim.store if k[0] == "versions"]) == MAX_VERSIONS
    # The deployment history keeps the last ten finished deployments of the app, in memory and store.
    from tepui.frameworks.services.state import FINISHED_KEPT

    kept = sorted(sim.state.deployments.values(), key=lambda d: d.started_at)
    assert len(kept) == FINISHED_KEPT and all(d.status == "SUCCEEDED" for d in kept)
    assert kept[-1].started_at == 10.0 + MAX_VERSIONS + 4
    assert sorted(k for ns, k in sim.store if ns == "deployments") == sorted(d.id for d in kept)


def test_two_apps_share_offers_and_the_demand() -> None:
    sim = Sim()
    sim.deploy(spec(id="/b", instances=1, cpus=1.0), 1.0)
    _, effects = sim.deploy(spec(id="/a", instances=2), 1.0)
    # Both shapes, in app order; no revive: the first app's demand revived already.
    assert effects[-1] == Demand(((ROOM, 2), (Resources.of(cpus=1.0, mem=128), 1)), revive=False)
    effects = sim.offers(2.0, offer("o1", resources="cpus:1.5;mem:4096"), offer("o2", "a2", "h2"))
    # Apps are served in id order: /a takes o1 (both instances), /b does not fit what is left.
    assert [(launch.offer_id, [t.task_id for t in launch.tasks]) for launch in only(effects, Launch)] == [
        ("o1", ["a.id3", "a.id4"]), ("o2", ["b.id5"])]
    assert effects[-1] == Demand((), revive=False)
    assert views.why(sim.core, "/b", 2.0)["reasons"] == {"insufficient cpus: needs 1, offer has 0.5": 1}
