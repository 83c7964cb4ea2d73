"""Validation of a decoded job spec: ranges, cross-field rules and the ceilings on a submission.

Why apart from :mod:`.spec`: the Structs say what a job *is* and are read by every part of the
framework; these rules say what a submission may *ask for*, and grow with every complaint a user
files. Pure: takes the decoded :class:`~.spec.JobSpec`, raises :class:`SpecError` whose
``field`` is the path to fix and whose message says what to write instead.

Why bounds everywhere (:data:`LIMITS`): a submission is untrusted input that the framework keeps
in memory and in its write-ahead store for the job's whole life. Every list, map and string has a
ceiling so that one hostile or mistaken document cannot blow the framework's memory.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from tepui.frameworks.batch.dag import CONDITIONS
from tepui.frameworks.batch.durations import DurationError, parse_duration
from tepui.sdk.spec_documents import SpecError
from tepui.frameworks.batch.spec_checks import check_constraint, check_env, check_labels

if TYPE_CHECKING:  # the Structs import this module to validate themselves
    from tepui.frameworks.batch.spec import Container, JobSpec, Retries, StageResources, StageSpec

__all__ = ["ACTIONS", "FAILURE_REASONS", "LIMITS", "PRIORITY_RANGE", "SpecError", "validate_job"]




#: Ceilings on a submission (see the module docstring for why).
LIMITS: Mapping[str, int] = {
    "document_bytes": 1 << 20,  # 1 MiB of YAML/JSON
    "stages": 100,
    "name_length": 63,  # a DNS label: stage names end up in task ids and hostnames
    "array": 100_000,  # per stage; Slurm's MaxArraySize default is 1001, AWS Batch's 10,000
    "tasks": 100_000,  # per job, summed over stages: one job's per-index state stays bounded
    "depends_on": 20,  # per stage, as AWS Batch's 20 job dependencies
    "env_vars": 256,
    "env_bytes": 64 * 1024,  # names + values; Nomad caps a dispatch payload at 16 KiB
    "command_bytes": 64 * 1024,  # below Linux's 128 KiB MAX_ARG_STRLEN for one argument
    "labels": 64,
    "label_value_length": 256,
    "uris": 64,
    "outputs": 64,
    "path_length": 1024,
    "constraints": 32,
    "failure_rules": 20,  # Kubernetes podFailurePolicy allows 20 rules
    "exit_codes": 255,
    "attempts": 100,
}

PRIORITY_RANGE = (-1000, 1000)

#: Failure reasons a retry rule may name (the core maps the agent's TaskReason onto them, see
#: docs/batch.md). ``agent_lost`` is not among them: a task lost with its agent is always retried
#: without spending an attempt, whatever the rules say.
FAILURE_REASONS: tuple[str, ...] = (
    "timeout", "memory_limit", "disk_limit", "launch_failed", "fetch_failed", "preempted", "killed",
)

#: What a matching rule does (Kubernetes podFailurePolicy's Count / Ignore / FailIndex / FailJob).
ACTIONS: tuple[str, ...] = ("count", "ignore", "fail_index", "fail_stage")


def _fail(field: str, message: str) -> None:
    raise SpecError(field, message)


_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")


def _check_name(field: str, name: str, what: str) -> None:
    if len(name) > LIMITS["name_length"]:
        _fail(field, f"{what} names are at most {LIMITS['name_length']} characters, got {len(name)}")
    if not _LABEL.match(name):
        _fail(field, f"{what} name {name!r} must be lowercase letters, digits and '-', starting and ending with a letter or digit")


def _duration(field: str, text: str | None, *, positive: bool = True) -> float | None:
    if text is None:
        return None
    try:
        seconds = parse_duration(text)
    except DurationError as exc:
        raise SpecError(field, str(exc)) from None
    if positive and seconds <= 0:
        _fail(field, f"must be longer than zero, got {text!r}")
    return seconds


def _at_most(field: str, count: int, limit_name: str, what: str) -> None:
    if count > LIMITS[limit_name]:
        _fail(field, f"at most {LIMITS[limit_name]} {what}, got {count}")


def validate_job(spec: JobSpec) -> None:
    """Range and cross-field rules that types alone cannot express (pure; raises SpecError)."""
    _check_name("name", spec.name, "job")
    if spec.user is not None and not spec.user.strip():
        _fail("user", "must not be empty: leave it out and the API fills in the caller")
    _check_name("queue", spec.queue, "queue")
    low, high = PRIORITY_RANGE
    if not low <= spec.priority <= high:
        _fail("priority", f"must be between {low} and {high} (higher runs first, 0 is the default), got {spec.priority}")
    _duration("deadline", spec.deadline)
    _duration("ttl_after_finished", spec.ttl_after_finished, positive=False)
    _guard(check_labels("labels", spec.labels, LIMITS))
    if not spec.stages:
        _fail("stages", "a job needs at least one stage")
    _at_most("stages", len(spec.stages), "stages", "stages per job")
    seen: dict[str, int] = {}
    for i, stage in enumerate(spec.stages):
        path = f"stages[{i}]"
        _check_name(f"{path}.name", stage.name, "stage")
        if stage.name in seen:
            _fail(f"{path}.name", f"stage {stage.name!r} is already stages[{seen[stage.name]}]: stage names are unique in a job")
        seen[stage.name] = i
        _validate_stage(path, stage)
    if spec.task_count > LIMITS["tasks"]:
        _fail("stages", f"the stages' arrays add up to {spec.task_count} tasks, more than the {LIMITS['tasks']} a job may hold: split the job")


def _guard(problem: tuple[str, str] | None) -> None:
    if problem is not None:
        _fail(*problem)


def _validate_stage(path: str, stage: StageSpec) -> None:
    if stage.command is not None and stage.args is not None:
        _fail(f"{path}.args", "give either command (run by a shell) or args (an argv), not both")
    if stage.command is None and stage.args is None and stage.container is None:
        _fail(f"{path}.command", "a stage needs a command, args or a container")
    if stage.command is not None:
        if not stage.command.strip():
            _fail(f"{path}.command", "must not be empty")
        if len(stage.command.encode()) > LIMITS["command_bytes"]:
            _fail(f"{path}.command", f"at most {LIMITS['command_bytes']} bytes: put a long script in uris and run it")
    if stage.args is not None:
        if not stage.args:
            _fail(f"{path}.args", "must not be empty: give at least the program to run")
        if sum(len(a.encode()) for a in stage.args) > LIMITS["command_bytes"]:
            _fail(f"{path}.args", f"at most {LIMITS['command_bytes']} bytes in all")
    if stage.container is not None:
        _validate_container(f"{path}.container", stage.container)
    _validate_resources(f"{path}.resources", stage.resources)
    _guard(check_env(f"{path}.env", stage.env, LIMITS))
    _at_most(f"{path}.uris", len(stage.uris), "uris", "uris per stage")
    for j, uri in enumerate(stage.uris):
        if not uri.strip():
            _fail(f"{path}.uris[{j}]", "must not be empty")
        if len(uri) > LIMITS["path_length"]:
            _fail(f"{path}.uris[{j}]", f"at most {LIMITS['path_length']} characters")
    _at_most(f"{path}.constraints", len(stage.constraints), "constraints", "constraints per stage")
    for j, constraint in enumerate(stage.constraints):
        problem = check_constraint(constraint.field, constraint.operator, constraint.value)
        if problem:
            _fail(f"{path}.constraints[{j}]", problem)
    _validate_array(path, stage)
    _duration(f"{path}.timeout", stage.timeout)
    _validate_retries(f"{path}.retries", stage.retries)
    _validate_outputs(f"{path}.outputs", stage.outputs)
    _at_most(f"{path}.depends_on", len(stage.depends_on), "depends_on", "dependencies per stage")
    for j, dep in enumerate(stage.depends_on):
        if dep.condition not in CONDITIONS:
            _fail(f"{path}.depends_on[{j}].condition", f"unknown condition {dep.condition!r} ({', '.join(CONDITIONS)})")
        if stage.gang and dep.condition == "n_to_n":
            _fail(
                f"{path}.depends_on[{j}].condition",
                "a gang stage launches all its tasks together, so it waits for its whole upstream: use all_succeeded",
            )


def _validate_container(path: str, container: Container) -> None:
    if container.type != "DOCKER":
        _fail(f"{path}.type", f"unknown container type {container.type!r} (DOCKER)")
    if not container.image.strip():
        _fail(f"{path}.image", "must name a Docker image, e.g. python:3.11-slim")
    if container.network not in ("BRIDGE", "HOST"):
        _fail(f"{path}.network", f"unknown network {container.network!r} (BRIDGE, HOST)")


def _validate_resources(path: str, resources: StageResources) -> None:
    for name in ("cpus", "mem", "disk", "gpus", "ports"):
        value = getattr(resources, name)
        if value < 0:
            _fail(f"{path}.{name}", f"must be >= 0, got {value}")
    if resources.cpus == 0 and resources.mem == 0:
        _fail(f"{path}.cpus", "a task needs some cpus or mem: set cpus (e.g. 0.1) or mem")
    if resources.ports > 64:
        _fail(f"{path}.ports", f"at most 64 host ports per task, got {resources.ports}")


def _validate_array(path: str, stage: StageSpec) -> None:
    if not 1 <= stage.array <= LIMITS["array"]:
        _fail(f"{path}.array", f"must be between 1 and {LIMITS['array']} tasks, got {stage.array}: split a larger array into stages or jobs")
    if stage.parallelism is not None and not 1 <= stage.parallelism <= stage.array:
        _fail(f"{path}.parallelism", f"must be between 1 and array ({stage.array}), got {stage.parallelism}; leave it out to run all at once")
    if stage.gang:
        if stage.array < 2:
            _fail(f"{path}.gang", f"a gang needs at least 2 tasks launched together: set array >= 2, got {stage.array}")
        if stage.effective_parallelism != stage.array:
            _fail(
                f"{path}.parallelism",
                f"a gang runs all {stage.array} tasks at once: leave parallelism out or set it to {stage.array}, got {stage.parallelism}",
            )


def _validate_retries(path: str, retries: Retries) -> None:
    if not 1 <= retries.attempts <= LIMITS["attempts"]:
        _fail(f"{path}.attempts", f"must be between 1 and {LIMITS['attempts']} (tries including the first; 1 = no retry), got {retries.attempts}")
    backoff = retries.backoff
    initial = _duration(f"{path}.backoff.initial", backoff.initial, positive=False)
    cap = _duration(f"{path}.backoff.max", backoff.max, positive=False)
    if not 1.0 <= backoff.factor <= 10.0:
        _fail(f"{path}.backoff.factor", f"must be between 1.0 and 10.0 (the delay never shrinks), got {backoff.factor}")
    if initial is not None and cap is not None and cap < initial:
        _fail(f"{path}.backoff.max", f"must be at least initial ({backoff.initial}), got {backoff.max}")
    _at_most(f"{path}.rules", len(retries.rules), "failure_rules", "rules")
    for j, rule in enumerate(retries.rules):
        rpath = f"{path}.rules[{j}]"
        if rule.action not in ACTIONS:
            _fail(f"{rpath}.action", f"unknown action {rule.action!r} ({', '.join(ACTIONS)})")
        if (rule.on_exit_codes is None) == (rule.on_reasons is None):
            _fail(rpath, "give exactly one of on_exit_codes and on_reasons")
        if rule.on_exit_codes is not None:
            codes = rule.on_exit_codes
            if not codes.values:
                _fail(f"{rpath}.on_exit_codes.values", "list at least one exit code")
            _at_most(f"{rpath}.on_exit_codes.values", len(codes.values), "exit_codes", "exit codes")
            for k, code in enumerate(codes.values):
                if not 0 <= code <= 255:
                    _fail(f"{rpath}.on_exit_codes.values[{k}]", f"exit codes are 0..255 (128+N for signal N), got {code}")
                if code == 0 and codes.operator == "in":
                    _fail(f"{rpath}.on_exit_codes.values[{k}]", "exit code 0 is success, never a failure: remove it")
        for k, reason in enumerate(rule.on_reasons or ()):
            if reason == "agent_lost":
                _fail(f"{rpath}.on_reasons[{k}]", "a task lost with its agent is always retried without spending an attempt: remove it")
            if reason not in FAILURE_REASONS:
                _fail(f"{rpath}.on_reasons[{k}]", f"unknown reason {reason!r} ({', '.join(FAILURE_REASONS)})")
        if rule.on_reasons is not None and not rule.on_reasons:
            _fail(f"{rpath}.on_reasons", f"list at least one reason ({', '.join(FAILURE_REASONS)})")


def _validate_outputs(path: str, outputs: Sequence[str]) -> None:
    _at_most(path, len(outputs), "outputs", "outputs per stage")
    seen: set[str] = set()
    for j, output in enumerate(outputs):
        field = f"{path}[{j}]"
        if not output.strip():
            _fail(field, "must not be empty")
        if len(output) > LIMITS["path_length"]:
            _fail(field, f"at most {LIMITS['path_length']} characters")
        if output.startswith("/") or output.startswith("~"):
            _fail(field, f"must be relative to the task's sandbox, got {output!r}: write e.g. out/part.txt")
        if "\x00" in output or "\\" in output:
            _fail(field, f"must be a plain POSIX path, got {output!r}")
        if ".." in output.split("/"):
            _fail(field, f"must stay inside the sandbox: '..' is not allowed, got {output!r}")
        norm = posixpath.normpath(output)
        if norm == ".":
            _fail(field, "names the whole sandbox: name a file or directory inside it")
        if norm in seen:
            _fail(field, f"{output!r} is listed twice")
        seen.add(norm)
