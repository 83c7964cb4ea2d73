"""Admission at the master's door: identity from the key, ACL checks and per-principal rate
limits — the :class:`Gatekeeper`, a component of :class:`tepui.master.core.MasterCore`.

Why one component apart from the core: deciding *whether* a call may happen is one idea, doing
it is another; the flows call in here with one line at each place a decision is needed
(SUBSCRIBE, UPDATE_FRAMEWORK, TEARDOWN, each LAUNCH / LAUNCH_GROUP, RESERVE / UNRESERVE /
CREATE / DESTROY, and every framework call for the rate limit). It owns what those decisions
keep — the ACLs in force, the token buckets, which principal registered each agent id, and the
counters by principal — and reads the peers and frameworks the master knows through the
mappings it is given (it never changes them). The ACL model itself is
:mod:`tepui.master.admission.acls`, the token buckets :mod:`tepui.master.admission.rate_limits`,
the identity rules :mod:`tepui.master.admission.identity`.

Mesos semantics: an unauthorized task ends TASK_ERROR with ``REASON_TASK_UNAUTHORIZED``; in a
task group every task ends TASK_ERROR with ``REASON_TASK_GROUP_UNAUTHORIZED`` and nothing is
launched; an unauthorized SUBSCRIBE is answered with an ERROR.
"""

from __future__ import annotations

import collections
import typing
from typing import TYPE_CHECKING, Any, Iterator, Mapping, MutableMapping, Protocol

from tepui.master.admission import identity
from tepui.master.admission.acls import REGISTER, RUN_TASKS, TEARDOWN, Acls
from tepui.master.events import MasterEffect, Received, ReplaceAcls, Send
from tepui.master.admission.rate_limits import RateLimit, RateLimiter
from tepui.master.admission.refusals import call_type
from tepui.sdk.effects import Log
from tepui.sdk.protocol import scheduler as sm
from tepui.sdk.protocol.values import ExecutorInfo, FrameworkInfo, TaskInfo

if TYPE_CHECKING:
    from tepui.master.records import AgentRecord, FrameworkRecord

__all__ = ["Gatekeeper", "AdmissionCollector", "LabelCounter", "ReplaceAcls", "task_user"]
FRAMEWORK_CALLS = typing.get_args(sm.SchedulerCall)
MAX_LABELS = 1000  # distinct principals counted by name in /metrics; the rest as "(other)"
MAX_KEY = 265  # a rate-limit key: "framework:" and an id (at most 255 characters), or a principal
_OPERATION_ACTIONS: dict[type, str] = {sm.Reserve: "reserve_resources", sm.Unreserve: "unreserve_resources",
                      sm.Create: "create_volumes", sm.Destroy: "destroy_volumes"}


class LabelCounter(collections.Counter[str]):
    """A counter by label with at most MAX_LABELS labels: a flood of fresh framework ids must
    not grow the master's memory or its /metrics without bound."""

    def count(self, label: str, n: int = 1) -> None:
        if label not in self and len(self) >= MAX_LABELS:
            label = "(other)"
        self[label] += n


def _who(principal: str | None) -> str:
    return f"principal {principal!r}" if principal else "a framework without a principal"


def task_user(task: TaskInfo, executor: ExecutorInfo | None = None) -> str | None:
    """The OS user a task asks to run as (Mesos: the command's user, else its executor's)."""
    executor = task.executor or executor
    for command in (task.command, executor.command if executor is not None else None):
        if command is not None and command.user:
            return command.user
    return None


class Gatekeeper:
    def __init__(self, acls: Acls, rate_limit: RateLimit | None, counters: MutableMapping[str, int],
                 peers: identity.Peers, frameworks: Mapping[str, FrameworkRecord]) -> None:
        self.acls = acls
        self.rate_limiter: RateLimiter | None = RateLimiter(rate_limit) if rate_limit is not None else None
        self.rate_limited_by = LabelCounter()  # limiter key → calls dropped
        self.unauthorized_by = LabelCounter()  # "action principal" → refusals
        self.agent_principals: dict[str, str] = {}  # agent id → the principal that registered it
        self._throttled: set[str] = set()  # keys over their limit right now (logged once per episode)
        self._counters = counters  # the master's, so that /metrics shows them
        self._peers = peers  # read only: the roster's
        self._frameworks = frameworks  # read only: the roster's

    def replace_acls(self, event: ReplaceAcls, out: list[MasterEffect]) -> None:
        self.acls = event.acls
        out.append(Log("info", "acls_loaded", {"source": event.acls.source,
                                               "permissive": event.acls.permissive}))

    # --- identity (master/admission/identity.py) ------------------------------------------

    def identity_checked(self, event: Received, out: list[MasterEffect]) -> Received | None:
        """The event to handle (its principal filled in from the key), or None if refused."""
        return identity.checked(event, self.agent_principals, self._peers, self._frameworks, self._counters, out)

    def bind_identity(self, event: Received) -> None:
        """After a handler ran: a newly registered agent id belongs to the key's principal."""
        identity.bind(event, self.agent_principals, self._peers)

    # --- rate limits ------------------------------------------------------------------------

    def rate_key(self, event: Received) -> str:
        """Mesos: limits are per principal; a framework without one is limited on its own."""
        known = self._peers.get(event.peer)
        if known and known[0] == "framework" and known[1] in self._frameworks:
            framework = self._frameworks[known[1]]
            return framework.info.principal or f"framework:{framework.framework_id}"
        if isinstance(event.body, sm.Subscribe):
            # Not validated yet (the limit comes first): a key over an id's length would let
            # fresh megabyte ids fill the limiter's 10,000 buckets; such a call is limited by peer.
            info = event.body.framework_info
            key = info.principal or (f"framework:{info.id}" if info.id else None)
            if key is not None and len(key) <= MAX_KEY:
                return key
        return f"peer:{event.peer.hex()[:16]}"

    def rate_limited(self, event: Received, now: float, out: list[MasterEffect]) -> bool:
        """True if the call is over its principal's allowance: answered with an ERROR, dropped."""
        if self.rate_limiter is None or not isinstance(event.body, FRAMEWORK_CALLS):
            return False
        key = self.rate_key(event)
        if self.rate_limiter.allow(key, now):
            self._throttled.discard(key)
            return False
        self._counters["rate_limited"] += 1
        self.rate_limited_by.count(key)
        call = call_type(event.body)
        if key not in self._throttled and len(self._throttled) < MAX_LABELS:
            self._throttled.add(key)
            out.append(Log("warning", "framework_rate_limited", {
                "key": key, "limit": str(self.rate_limiter.limit), "call": call}))
        out.append(Send(event.peer, sm.Error(
            f"rate limited: {key} sent more than {self.rate_limiter.limit} calls; this {call} was dropped, "
            f"not processed. Slow down (the next call is accepted in {self.rate_limiter.retry_after(key):.3f} s); "
            "the operator sets the limit with --framework-rate-limit")))
        return True

    # --- authorization ----------------------------------------------------------------------

    def _refused(self, action: str, principal: str | None, out: list[MasterEffect], **fields: Any) -> None:
        self._counters["unauthorized"] += 1
        self.unauthorized_by.count(f"{action} {principal or '(none)'}")
        out.append(Log("warning", "unauthorized", {"action": action, "principal": principal, **fields}))

    def may_register(self, peer: bytes, info: FrameworkInfo, call: str, out: list[MasterEffect]) -> bool:
        """Every role of the framework must be allowed for its principal (register_frameworks)."""
        for role in info.roles:
            decision = self.acls.decide(REGISTER, info.principal, role)
            if not decision.allowed:
                self._refused(REGISTER, info.principal, out, role=role)
                out.append(Send(peer, sm.Error(
                    f"{call} refused: {_who(info.principal)} may not register in role {role!r} "
                    f"({decision.why}). Subscribe in a role you are allowed, or ask the operator for a "
                    f"register_frameworks rule")))
                return False
        return True

    def may_teardown(self, peer: bytes, caller: str | None, framework: FrameworkRecord,
                      out: list[MasterEffect]) -> bool:
        decision = self.acls.decide(TEARDOWN, caller, framework.info.principal)
        if decision.allowed:
            return True
        self._refused(TEARDOWN, caller, out, framework_id=framework.framework_id)
        out.append(Send(peer, sm.Error(
            f"TEARDOWN of framework {framework.framework_id} refused: {_who(caller)} may not tear down "
            f"frameworks of {_who(framework.info.principal)} ({decision.why}); the framework keeps running. "
            "Ask the operator for a teardown_frameworks rule")))
        return False

    def task_unauthorized(self, framework: FrameworkRecord, agent: AgentRecord, task: TaskInfo,
                           executor: ExecutorInfo | None = None) -> str | None:
        """Why the task may not run as the user it would run as, or None. That user is the one
        it asks for, else the agent's default task user (the agent never uses
        FrameworkInfo.user); unknown for an agent that does not report it — then the agent's
        own user, which is never root by default (a root agent runs tasks as nobody)."""
        user = task_user(task, executor) or agent.task_user
        if user is None:
            return None
        principal = framework.info.principal
        decision = self.acls.decide(RUN_TASKS, principal, user)
        if decision.allowed:
            return None
        asked = "asks to run" if task_user(task, executor) else f"would run (agent {agent.agent_id}'s --task-user)"
        return (f"task {task.task_id!r} {asked} as user {user!r}, which {_who(principal)} may not use "
                f"({decision.why}); set command.user to a user you are allowed, or ask the operator for a "
                "run_tasks rule")

    def refuse_task(self, framework: FrameworkRecord, problem: str, out: list[MasterEffect]) -> None:
        self._counters["tasks_unauthorized"] += 1
        self._refused(RUN_TASKS, framework.info.principal, out, reason=problem)

    def group_unauthorized(self, framework: FrameworkRecord, agent: AgentRecord, tasks: list[TaskInfo],
                            executor: ExecutorInfo, out: list[MasterEffect]) -> str | None:
        """One unauthorized task fails its whole group (Mesos LAUNCH_GROUP is all or nothing)."""
        for task in tasks:
            problem = self.task_unauthorized(framework, agent, task, executor)
            if problem is not None:
                self._counters["tasks_unauthorized"] += len(tasks) - 1
                self.refuse_task(framework, problem, out)
                return problem
        return None

    def operation_unauthorized(self, operation: sm.Reserve | sm.Unreserve | sm.Create | sm.Destroy, framework: FrameworkRecord, role: str,
                                out: list[MasterEffect]) -> str | None:
        """RESERVE / UNRESERVE / CREATE / DESTROY for the offer's role (the only role they may
        name: see reservations.py and volumes.py)."""
        action = _OPERATION_ACTIONS[type(operation)]
        decision = self.acls.decide(action, framework.info.principal, role)
        if decision.allowed:
            return None
        self._counters["operations_unauthorized"] += 1
        self._refused(action, framework.info.principal, out, role=role)
        return (f"{type(operation).__name__.upper()} refused: {_who(framework.info.principal)} may not "
                f"{action.replace('_', ' ').replace(' resources', '')} for role {role!r} ({decision.why}); "
                f"ask the operator for a {action} rule")


class ByPrincipal(Protocol):
    """What :class:`AdmissionCollector` reads: the gatekeeper (or the core, which shows its)."""

    @property
    def rate_limited_by(self) -> LabelCounter: ...
    @property
    def unauthorized_by(self) -> LabelCounter: ...


class AdmissionCollector:
    """``/metrics`` by principal: ``tepui_master_rate_limited_by_principal{principal=...}`` and
    ``tepui_master_unauthorized_by_principal{action=...,principal=...}``."""

    def __init__(self, gatekeeper: ByPrincipal) -> None:
        self._gatekeeper = gatekeeper

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily

        limited = CounterMetricFamily("tepui_master_rate_limited_by_principal",
                                      "Framework calls dropped by the rate limit, by principal "
                                      "(framework:ID when the framework has none)", labels=["principal"])
        for key, value in sorted(self._gatekeeper.rate_limited_by.items()):
            limited.add_metric([key], value)
        yield limited
        refused = CounterMetricFamily("tepui_master_unauthorized_by_principal",
                                      "Calls and tasks refused by the ACLs, by action and principal",
                                      labels=["action", "principal"])
        for key, value in sorted(self._gatekeeper.unauthorized_by.items()):
            action, _, principal = key.partition(" ")
            refused.add_metric([action, principal], value)
        yield refused
