"""Inputs, outputs and configuration of the simulator's pure core (:mod:`tepui.sim.core`).

One core holds every simulated agent, so events and effects name the agent by its ``index``
(0-based; agent ``index`` is called ``sim-{index + 1:05d}``). Timers, logs and the message
types themselves are the ones the real agent uses (:mod:`tepui.sdk.effects`,
:mod:`tepui.sdk.protocol.agent`): the master cannot tell a simulated agent from a real one on
the wire, only by the absence of processes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from tepui.sdk.effects import CancelTimer, Log, ScheduleTimer, TimerFired
from tepui.sdk.protocol.agent import AgentToMaster, MasterToAgent
from tepui.sdk.protocol.values import TaskInfo
from tepui.sdk.resources import Resources

__all__ = [
    "SimConfig", "Start", "Received", "Stop", "MasterChanged", "SendToMaster", "CloseAgent", "ScheduleTimer", "CancelTimer",
    "Log", "TimerFired", "DURATION_LABEL", "task_duration", "expand_template", "parse_attributes", "check_template",
    "Register", "RetryUpdate", "FinishTask", "StopDeadline", "MasterCheck", "SimTimer", "SimEvent", "SimEffect",
]

DURATION_LABEL = "tepui.sim/duration"
DEFAULT_RESOURCES = "cpus:8;mem:32768;disk:100000;ports:[31000-32000]"


@dataclass(frozen=True)
class SimConfig:
    """What every simulated agent offers and how patiently it talks to the master. The
    defaults follow the real agent's (:class:`tepui.agent.core.AgentConfig`) except the
    registration backoff, which starts at 2 s: a master registering thousands of agents at
    once answers late, and every early retry is one more message in its queue."""

    agents: int
    resources: Resources
    attributes: str = ""  # a template: ``rack:r{i%10};zone:z{i%3}`` (see expand_template)
    hostname_prefix: str = "sim-"
    version: str = "0.1.0-sim"
    registration_backoff: float = 2.0
    max_registration_backoff: float = 30.0
    update_retry_initial: float = 10.0  # Mesos: 10 s doubling ...
    update_retry_max: float = 600.0  # ... to 10 min
    master_silence_limit: float | None = None  # None: 5 × the ping interval the master announces
    completed_limit: int = 100  # ended task ids remembered per agent, to refuse duplicates
    stop_grace: float = 5.0  # SHUTDOWN_AGENT: how long an agent waits for its final acks

    def hostname(self, index: int) -> str:
        return f"{self.hostname_prefix}{index + 1:05d}"


# --- events -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Start:
    """Agent ``index`` connects: it registers (the shell starts agents in waves)."""

    index: int


@dataclass(frozen=True, slots=True)
class Received:
    """A decoded message from the master on agent ``index``'s connection."""

    index: int
    body: MasterToAgent
    epoch: int = 0


@dataclass(frozen=True, slots=True)
class Stop:
    """The simulator is stopping; with ``unregister``, every registered agent says goodbye
    (UNREGISTER_AGENT) so the master drops it at once instead of after its ping timeout."""

    unregister: bool = False


@dataclass(frozen=True, slots=True)
class MasterChanged:
    """ZooKeeper names another serving master (``tepui sim --master zk://...``): every agent
    still running counts itself unregistered and waits for its turn to re-register (the shell
    moves the agents' connections and sends each a ``Start`` in waves, as at start); their
    pending registration retries are cancelled, so none goes out before its wave."""

    leader: str
    epoch: int


# --- timer keys -------------------------------------------------------------------------------
# Frozen values, matched by type (a dispatch table in the core), not tuples matched by position.


@dataclass(frozen=True, slots=True)
class Register:
    """Agent ``index`` registers again unless it got an answer (doubling backoff)."""

    index: int


@dataclass(frozen=True, slots=True)
class RetryUpdate:
    """Agent ``index`` sends the task's unacknowledged status update again."""

    index: int
    framework_id: str
    task_id: str


@dataclass(frozen=True, slots=True)
class FinishTask:
    """The simulated task's duration is over: it ends TASK_FINISHED."""

    index: int
    framework_id: str
    task_id: str


@dataclass(frozen=True, slots=True)
class StopDeadline:
    """Agent ``index`` stops waiting for its final acknowledgements and closes."""

    index: int


@dataclass(frozen=True, slots=True)
class MasterCheck:
    """One sweep over all agents for a silent master."""


SimTimer = Register | RetryUpdate | FinishTask | StopDeadline | MasterCheck


# --- effects ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendToMaster:
    index: int
    body: AgentToMaster


@dataclass(frozen=True, slots=True)
class CloseAgent:
    """Agent ``index`` is done (SHUTDOWN_AGENT): close its connection."""

    index: int


SimEvent = Start | Received | Stop | MasterChanged | TimerFired
SimEffect = SendToMaster | CloseAgent | ScheduleTimer | CancelTimer | Log


# --- helpers ----------------------------------------------------------------------------------

_SLEEP = re.compile(r"(?:^|[\s;&|(])sleep\s+(\d+(?:\.\d*)?|\.\d+)(?:\s|;|&|\||\)|$)")
_PLACEHOLDER = re.compile(r"\{i(?:\s*(%|//)\s*(\d+))?(?::([^{}]*))?\}")


def task_duration(task: TaskInfo) -> float | None:
    """How long a simulated task "runs": the ``tepui.sim/duration`` label (seconds), else the
    N of a ``sleep N`` in its command, else 0 (it finishes right after TASK_RUNNING). None
    when the label is not a number: the task fails, as a real command would fail to start."""
    label = task.labels.get(DURATION_LABEL)
    if label is not None:
        try:
            value = float(label)
        except ValueError:
            return None
        return value if value > 0 and value == value else 0.0  # NaN and negatives: at once
    command = task.command
    if command is None:
        return 0.0
    text = (command.value or "") if command.shell else " ".join([command.value or "", *command.arguments])
    match = _SLEEP.search(text)
    return float(match.group(1)) if match else 0.0


def expand_template(template: str, i: int) -> str:
    """``{i}``, ``{i%N}``, ``{i//N}``, each with an optional format spec (``{i:05d}``), are
    replaced by the agent's number ``i`` (1-based, as in its hostname), so that
    ``rack:r{i%10};zone:z{i%3}`` spreads agents over 10 racks and 3 zones."""

    def replace(match: re.Match[str]) -> str:
        op, operand, spec = match.group(1), match.group(2), match.group(3) or ""
        value = i
        if op == "%":
            value = i % int(operand) if int(operand) else i
        elif op == "//":
            value = i // int(operand) if int(operand) else i
        return format(value, spec)

    return _PLACEHOLDER.sub(replace, template)


def parse_attributes(text: str) -> dict[str, str]:
    """``rack:r1;zone:a`` → ``{"rack": "r1", "zone": "a"}`` (the agent's ``--attributes`` syntax)."""
    attributes: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        name, sep, value = part.partition(":")
        if not sep or not name.strip():
            raise ValueError(f"bad attribute {part!r}: expected NAME:VALUE, e.g. rack:r{{i%10}}")
        attributes[name.strip()] = value.strip()
    return attributes


def check_template(template: str) -> None:
    """Raises ValueError naming the problem (a bad format spec, a stray brace)."""
    expanded = expand_template(template, 1)
    if "{" in expanded or "}" in expanded:
        raise ValueError(f"attribute template {template!r}: only {{i}}, {{i%N}} and {{i//N}} (with an optional "
                         "format spec, e.g. {i:03d}) are replaced")
    parse_attributes(expanded)
