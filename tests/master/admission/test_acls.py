"""Authorization: the ACL file's parser (errors name the line and field), pure decisions, and
the master core on a fake clock refusing SUBSCRIBE, tasks, reservations and TEARDOWN exactly
as docs/security.md says (RELIABILITY scenario 36)."""

from __future__ import annotations

from typing import Any

import pytest

from tepui.master.admission.acls import PERMISSIVE
from tepui.master.admission.acls_file import LOCAL_CLUSTER_ACLS, AclError, parse_acls
from tepui.master.admission.gatekeeper import AdmissionCollector, ReplaceAcls
from tepui.master.core import ALLOCATE_NOW, MasterConfig, MasterCore
from tepui.master.events import Received, Send
from tepui.master.durability.registry import Persist
from tepui.sdk.effects import Log, ScheduleTimer, TimerFired
from tepui.sdk.protocol import agent as am
from tepui.sdk.protocol import scheduler as sm
from tepui.sdk.protocol.values import (
    AgentInfo,
    CommandInfo,
    ExecutorInfo,
    Filters,
    FrameworkInfo,
    Reservation,
    Resource,
    TaskGroupInfo,
    TaskInfo,
    TaskReason,
    TaskSource,
    TaskState,
    TaskStatus,
)
from tepui.sdk.resources import Resources

AGENT = b"agent"
FW = b"fw"
AGENT_RES = Resources.parse("cpus:4;mem:4096")
TASK_RES = Resources.of(cpus=1, mem=128)

RULES = """\
permissive: false
register_frameworks:
  - principals: [mallory]
    roles: ANY
    allow: false
  - principals: [analytics]
    roles: [analytics, "eng/%"]
run_tasks:
  - principals: [analytics]
    users: [alice]
  - principals: [ops]
    users: [root]
  - principals: [ops]
    users: ANY
reserve_resources:
  - principals: [ops]
    roles: ANY
teardown_frameworks:
  - principals: [ops]
    framework_principals: ANY
"""
OPS_REGISTERS = RULES.replace('    roles: [analytics, "eng/%"]\n',
                             '    roles: [analytics, "eng/%"]\n  - principals: [ops]\n    roles: ANY\n')


# --- helpers -------------------------------------------------------------------------------------


def make_core(acls_text: str | None = None, task_user: str | None = None) -> MasterCore:
    acls = parse_acls(acls_text, "acls.yaml") if acls_text is not None else PERMISSIVE
    core = MasterCore(MasterConfig(master_id="m", offer_timeout=None, acls=acls))
    core.start(0.0)
    info = AgentInfo(hostname="a1", resources=AGENT_RES.to_wire(), task_user=task_user)
    core.handle(Received(AGENT, am.RegisterAgent(info, "0.1")), 0.0)
    return core


def subscribe(core: MasterCore, principal: str | None, roles: tuple[str, ...] = ("*",), user: str = "u",
              peer: bytes = FW) -> list[Any]:
    info = FrameworkInfo(user=user, name="fw", roles=list(roles), principal=principal)
    return core.handle(Received(peer, sm.Subscribe(info)), 0.0)


def offer_of(core: MasterCore, now: float = 1.0, peer: bytes = FW) -> Any:
    effects = core.handle(TimerFired(ALLOCATE_NOW), now)
    [offer] = [o for e in effects if isinstance(e, Send) and e.peer == peer and isinstance(e.body, sm.Offers)
               for o in e.body.offers]
    return offer


def task(task_id: str, user: str | None = None) -> TaskInfo:
    return TaskInfo(name=task_id, task_id=task_id, agent_id="m-S0001", resources=TASK_RES.to_wire(),
                    command=CommandInfo(value="sleep 1", user=user))


def quiet(effects: list[Any]) -> list[Any]:
    return [e for e in effects if not isinstance(e, (Log, Persist))]


def unauthorized_update(task_id: str, message: str, reason: TaskReason = TaskReason.TASK_UNAUTHORIZED,
                        now: float = 1.0) -> Send:
    return Send(FW, sm.Update(TaskStatus(task_id=task_id, state=TaskState.ERROR, message=message,
                                         source=TaskSource.MASTER, reason=reason, agent_id="m-S0001",
                                         timestamp=now)))


def launch(core: MasterCore, tasks: list[TaskInfo], now: float = 1.0) -> list[Any]:
    offer = offer_of(core, now)
    return core.handle(Received(FW, sm.Accept("m-F0001", [offer.id], [sm.Launch(tasks)], Filters(0))), now)


# --- the file ------------------------------------------------------------------------------------


def test_a_full_file_parses_and_the_first_matching_rule_decides() -> None:
    acls = parse_acls(RULES, "acls.yaml")
    assert not acls.permissive
    assert not acls.decide("register_frameworks", "mallory", "analytics").allowed  # deny rule first
    assert acls.decide("register_frameworks", "analytics", "analytics").allowed
    assert acls.decide("register_frameworks", "analytics", "eng/backend").allowed  # eng/% covers it
    assert not acls.decide("register_frameworks", "analytics", "eng").allowed  # ...but not eng itself
    decision = acls.decide("register_frameworks", "analytics", "ads")
    assert not decision.allowed
    assert decision.why == "no register_frameworks rule in acls.yaml matches, and what no rule allows is denied"
    assert acls.decide("register_frameworks", "mallory", "x").why == \
        "the register_frameworks rule at acls.yaml line 3 denies it"
    # A framework without a principal matches only `principals: ANY`.
    assert not acls.decide("reserve_resources", None, "eng").allowed
    assert acls.decide("reserve_resources", "ops", "eng").allowed
    assert acls.decide("teardown_frameworks", "ops", None).allowed


def test_the_local_cluster_file_allows_everything_but_root() -> None:
    acls = parse_acls(LOCAL_CLUSTER_ACLS, "acls.yaml")
    for action, obj in [("register_frameworks", "eng"), ("run_tasks", "nobody"), ("reserve_resources", "eng"),
                        ("unreserve_resources", "eng"), ("create_volumes", "eng"), ("destroy_volumes", "eng"),
                        ("teardown_frameworks", None)]:
        assert acls.decide(action, None, obj).allowed, action
    assert not acls.decide("run_tasks", None, "root").allowed


def test_root_is_granted_only_by_a_rule_that_names_it() -> None:
    acls = parse_acls(RULES, "acls.yaml")
    assert acls.decide("run_tasks", "ops", "root").allowed  # `users: [root]`
    assert acls.decide("run_tasks", "ops", "bob").allowed
    # `users: ANY` and `permissive: true` never grant root.
    any_user = parse_acls("permissive: true\nrun_tasks:\n  - principals: ANY\n    users: ANY\n", "a.yaml")
    decision = any_user.decide("run_tasks", "ops", "root")
    assert not decision.allowed
    assert "names `users: [root]`" in decision.why
    assert not PERMISSIVE.decide("run_tasks", None, "root").allowed
    assert PERMISSIVE.decide("run_tasks", None, "nobody").allowed
    # A deny rule with `users: ANY` still denies root for those it names.
    deny = parse_acls("run_tasks:\n  - principals: [x]\n    users: ANY\n    allow: false\n"
                      "  - principals: ANY\n    users: [root]\n", "d.yaml")
    assert not deny.decide("run_tasks", "x", "root").allowed
    assert deny.decide("run_tasks", "y", "root").allowed


@pytest.mark.parametrize("text, expected", [
    ("permissive: [", "a.yaml is not valid YAML"),
    ("", "a.yaml is empty; write at least `permissive: false`"),
    ("- a\n", "a.yaml line 1: the ACL file must be a mapping"),
    ("permissive: false\nrun_task:\n  - principals: ANY\n", "a.yaml line 2: unknown key 'run_task'; expected"),
    ("permissive: maybe\n", "a.yaml line 1: permissive: expected true or false, got 'maybe'"),
    ("run_tasks: alice\n", "a.yaml line 1: run_tasks must be a list of rules"),
    ("run_tasks:\n  - principals: ANY\n", "a.yaml line 2: run_tasks[0] needs `users` (ANY or a list of names)"),
    ("run_tasks:\n  - principals: ANY\n    users: ANY\n    roles: [a]\n",
     "a.yaml line 4: run_tasks[0]: unknown field 'roles'; a run_tasks rule takes principals, users, allow"),
    ("run_tasks:\n  - principals: any\n    users: ANY\n",
     "a.yaml line 2: run_tasks[0].principals: expected ANY or a list of names like [a, b], got 'any'"),
    ("run_tasks:\n  - principals: [ANY]\n    users: ANY\n",
     "a.yaml line 2: run_tasks[0].principals: write `ANY` alone, not inside a list"),
    ("teardown_frameworks:\n  - principals: ANY\n    framework_principals: ANY\n    allow: no way\n",
     "a.yaml line 4: teardown_frameworks[0].allow: expected true or false, got 'no way'"),
    ("run_tasks: []\nrun_tasks: []\n", "a.yaml line 2: 'run_tasks' appears twice"),
])
def test_parse_errors_name_the_line_and_the_field(text: str, expected: str) -> None:
    with pytest.raises(AclError) as caught:
        parse_acls(text, "a.yaml")
    assert str(caught.value).startswith(expected), str(caught.value)


# --- register ------------------------------------------------------------------------------------


def test_subscribe_in_a_role_the_principal_may_not_use_is_refused_naming_both() -> None:
    core = make_core(RULES)
    effects = subscribe(core, "analytics", ("analytics", "ads"))
    assert quiet(effects) == [Send(FW, sm.Error(
        "SUBSCRIBE refused: principal 'analytics' may not register in role 'ads' (no register_frameworks rule "
        "in acls.yaml matches, and what no rule allows is denied). Subscribe in a role you are allowed, or ask "
        "the operator for a register_frameworks rule", call_type="SUBSCRIBE"))]
    assert core.frameworks == {}
    assert core.counters["unauthorized"] == 1
    assert core.unauthorized_by == {"register_frameworks analytics": 1}
    effects = subscribe(core, "analytics", ("analytics", "eng/web"))
    assert [type(e.body) for e in quiet(effects) if isinstance(e, Send)] == [sm.Subscribed]


def test_update_framework_into_a_forbidden_role_is_refused_and_changes_nothing() -> None:
    core = make_core(RULES)
    subscribe(core, "analytics", ("analytics",))
    info = core.frameworks["m-F0001"].info
    changed = FrameworkInfo(user="u", name="fw", roles=["ads"], principal="analytics", id="m-F0001")
    effects = core.handle(Received(FW, sm.UpdateFramework(changed)), 1.0)
    [sent] = [e.body for e in effects if isinstance(e, Send)]
    assert sent.message.startswith("UPDATE_FRAMEWORK refused: principal 'analytics' may not register in role 'ads'")
    assert core.frameworks["m-F0001"].info == info


def test_without_acls_every_principal_registers_anywhere() -> None:
    core = make_core()
    assert [type(e.body) for e in quiet(subscribe(core, None, ("x", "y/z"))) if isinstance(e, Send)] == [sm.Subscribed]


# --- run tasks -----------------------------------------------------------------------------------


def test_task_as_an_allowed_user_launches_and_a_forbidden_one_ends_task_unauthorized() -> None:
    core = make_core(RULES)
    subscribe(core, "analytics", ("analytics",))
    good, bad = task("good", user="alice"), task("bad", user="bob")
    effects = launch(core, [good, bad])
    message = ("task 'bad' asks to run as user 'bob', which principal 'analytics' may not use (no run_tasks rule "
               "in acls.yaml matches, and what no rule allows is denied); set command.user to a user you are "
               "allowed, or ask the operator for a run_tasks rule")
    assert quiet(effects) == [
        Send(AGENT, am.RunTask(core.frameworks["m-F0001"].info, good)),
        unauthorized_update("bad", message),
        ScheduleTimer(1.0, ALLOCATE_NOW),
    ]
    assert set(core.frameworks["m-F0001"].tasks) == {"good"}
    assert core.allocator.available("m-S0001") == AGENT_RES - TASK_RES  # the bad task's share came back
    assert (core.counters["tasks_unauthorized"], core.counters["unauthorized"]) == (1, 1)


def test_root_is_denied_by_default_and_allowed_only_by_a_rule_naming_it() -> None:
    core = make_core()  # no --acls
    subscribe(core, None)
    effects = launch(core, [task("r", user="root")])
    [update] = [e.body.status for e in effects if isinstance(e, Send) and isinstance(e.body, sm.Update)]
    assert (update.state, update.reason) == (TaskState.ERROR, TaskReason.TASK_UNAUTHORIZED)
    assert update.message.startswith("task 'r' asks to run as user 'root', which a framework without a principal "
                                     "may not use (root is never allowed unless a run_tasks rule")
    assert not any(isinstance(e, Send) and isinstance(e.body, am.RunTask) for e in effects)

    core = make_core(OPS_REGISTERS)
    subscribe(core, "ops", ("ops",))
    effects = launch(core, [task("r", user="root")])
    assert [type(e.body) for e in effects if isinstance(e, Send)] == [am.RunTask]


def test_a_task_without_a_user_is_judged_as_the_agents_task_user() -> None:
    # Tepui agents never run a task as FrameworkInfo.user: a task without command.user runs as the
    # agent's --task-user, which the agent reports. A framework "user: root" alone is harmless...
    core = make_core(task_user="nobody")
    subscribe(core, None, user="root")
    assert [type(e.body) for e in launch(core, [task("t")]) if isinstance(e, Send)] == [am.RunTask]
    # ...but an agent whose --task-user is root runs it as root: denied unless a rule names root.
    core = make_core(task_user="root")
    subscribe(core, None)
    effects = launch(core, [task("t")])
    [update] = [e.body.status for e in effects if isinstance(e, Send) and isinstance(e.body, sm.Update)]
    assert update.reason == TaskReason.TASK_UNAUTHORIZED
    assert update.message.startswith("task 't' would run (agent m-S0001's --task-user) as user 'root'")


def test_36_a_task_asking_for_root_fails_its_whole_group() -> None:
    core = make_core()
    subscribe(core, None)
    offer = offer_of(core)
    group = sm.LaunchGroup(ExecutorInfo(executor_id="pod", type="DEFAULT"),
                           TaskGroupInfo([task("web"), task("sidecar", user="root"), task("log")]))
    effects = core.handle(Received(FW, sm.Accept("m-F0001", [offer.id], [group], Filters(0))), 1.0)
    message = ("task group refused: task 'sidecar' asks to run as user 'root', which a framework without a "
               "principal may not use (root is never allowed unless a run_tasks rule in the built-in default "
               "ACLs (no --acls given) names `users: [root]` for this principal); set command.user to a user "
               "you are allowed, or ask the operator for a run_tasks rule")
    reason = TaskReason.TASK_GROUP_UNAUTHORIZED
    assert quiet(effects) == [unauthorized_update(t, message, reason) for t in ("web", "sidecar", "log")] + [
        ScheduleTimer(1.0, ALLOCATE_NOW)]
    assert core.frameworks["m-F0001"].tasks == {}  # nothing launched...
    assert core.allocator.available("m-S0001") == AGENT_RES  # ...and every resource recovered
    assert (core.counters["tasks_unauthorized"], core.counters["tasks_invalid"]) == (3, 0)


# --- reserve, volumes, teardown ------------------------------------------------------------------


def reserved(amount: float, role: str, principal: str) -> Resource:
    return Resource(name="cpus", scalar=amount, role=role, reservation=Reservation(type="DYNAMIC", principal=principal))


def test_reserve_needs_a_rule_for_the_role() -> None:
    core = make_core(OPS_REGISTERS)
    subscribe(core, "analytics", ("analytics",))
    offer = offer_of(core)
    call = sm.Accept("m-F0001", [offer.id], [sm.Reserve([reserved(1, "analytics", "analytics")])], Filters(0))
    effects = core.handle(Received(FW, call), 1.0)
    assert quiet(effects) == [
        Send(FW, sm.Error("RESERVE refused: principal 'analytics' may not reserve for role 'analytics' (no "
                          "reserve_resources rule in acls.yaml matches, and what no rule allows is denied); ask the "
                          "operator for a reserve_resources rule; the offer's resources were returned",
                          call_type="ACCEPT")),
        ScheduleTimer(1.0, ALLOCATE_NOW),
    ]
    assert core.agents["m-S0001"].total == AGENT_RES
    assert core.allocator.available("m-S0001") == AGENT_RES
    assert (core.counters["operations_unauthorized"], core.counters["unauthorized"]) == (1, 1)

    subscribe(core, "ops", ("ops",), peer=b"ops")
    offer = offer_of(core, 2.0, peer=b"ops")
    call = sm.Accept("m-F0002", [offer.id], [sm.Reserve([reserved(1, "ops", "ops")])], Filters(0))
    effects = core.handle(Received(b"ops", call), 2.0)
    assert not [e for e in effects if isinstance(e, Send) and isinstance(e.body, sm.Error)]
    assert core.counters["reservations_changed"] == 1


def test_teardown_needs_a_rule_and_a_refused_one_leaves_the_framework_running() -> None:
    core = make_core(OPS_REGISTERS)
    subscribe(core, "analytics", ("analytics",))
    effects = core.handle(Received(FW, sm.Teardown("m-F0001")), 1.0)
    assert quiet(effects) == [Send(FW, sm.Error(
        "TEARDOWN of framework m-F0001 refused: principal 'analytics' may not tear down frameworks of principal "
        "'analytics' (no teardown_frameworks rule in acls.yaml matches, and what no rule allows is denied); the "
        "framework keeps running. Ask the operator for a teardown_frameworks rule", call_type="TEARDOWN"))]
    assert "m-F0001" in core.frameworks
    subscribe(core, "ops", ("ops",), peer=b"ops")
    core.handle(Received(b"ops", sm.Teardown("m-F0002")), 1.0)
    assert "m-F0002" not in core.frameworks


def test_acls_reloaded_by_an_event_apply_to_the_next_call() -> None:
    core = make_core()
    subscribe(core, None)
    effects = core.handle(ReplaceAcls(parse_acls("permissive: false\n", "new.yaml")), 5.0)
    assert effects == [Log("info", "acls_loaded", {"source": "new.yaml", "permissive": False})]
    effects = core.handle(Received(FW, sm.Teardown("m-F0001")), 6.0)
    assert "no teardown_frameworks rule in new.yaml matches" in quiet(effects)[0].body.message


def test_refusals_are_exported_by_action_and_principal() -> None:
    core = make_core(RULES)
    subscribe(core, "analytics", ("ads",))
    subscribe(core, None, ("ads",))
    [_limited, refused] = list(AdmissionCollector(core).collect())
    assert sorted((s.labels["action"], s.labels["principal"], s.value) for s in refused.samples
                  if s.name.endswith("_total")) == [
        ("register_frameworks", "(none)", 1.0), ("register_frameworks", "analytics", 1.0)]
