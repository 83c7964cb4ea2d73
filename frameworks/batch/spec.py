"""The batch framework's job spec: what a data team writes in ``job.yaml`` (or JSON).

Why msgspec Structs with ``forbid_unknown_fields`` (as :mod:`tepui.frameworks.services.spec`): a
typo (``paralelism: 4``) must be refused with the field's name, never silently ignored so that the
job runs with the default. Decoding checks types; :func:`load_job` then checks ranges, cross-field
rules and the DAG (:mod:`.dag`), and every failure is a :class:`SpecError` whose ``field`` is the
exact path (``stages[1].retries.attempts``) and whose message says what to write instead, so the
REST API can answer 422 naming it and the CLI can print it verbatim.

Every list, map and string has a ceiling (:data:`LIMITS`, checked in :mod:`.validation`), and
YAML aliases are refused outright (a "billion laughs" document is a few hundred bytes), so one
hostile submission cannot blow the framework's memory.

Defaults follow the prior art a data team brings (Slurm, Kubernetes Jobs, AWS Batch, Argo;
``/work/shared/reference/BATCH_CRON_NOTES.md``); each is noted on its field and tabled in
docs/batch.md, "Job spec".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import msgspec
import yaml

from tepui.frameworks.batch.artifacts import check_inputs
from tepui.frameworks.batch.dag import DagError, Edge, check_dag, stage_order, upstream_indices
from tepui.frameworks.batch.durations import parse_duration
from tepui.frameworks.batch.spec_checks import translate
from tepui.frameworks.batch.validation import ACTIONS, FAILURE_REASONS, LIMITS, PRIORITY_RANGE, SpecError, validate_job
from tepui.sdk import Resources
from tepui.sdk.spec_documents import decode_spec

__all__ = [
    "ACTIONS",
    "FAILURE_REASONS",
    "LIMITS",
    "PRIORITY_RANGE",
    "Backoff",
    "Constraint",
    "Container",
    "Dependency",
    "ExitCodes",
    "FailureRule",
    "JobSpec",
    "StageResources",
    "Retries",
    "SpecError",
    "StageSpec",
    "load_job",
    "parse_job",
]


class _Spec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True, kw_only=True):
    """Base of every spec Struct: immutable, strict about field names, compact when encoded.
    Sequences are tuples, so a spec the core shares between thousands of task records cannot be
    changed under them by accident; maps stay dicts (msgspec has no frozen mapping) and are
    read-only by convention. Subclasses repeat ``frozen=True``: msgspec inherits it, type
    checkers (PEP 681) do not."""


class Constraint(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, array_like=True, omit_defaults=True
):
    """``[field, operator, value?]``, the services framework's (Marathon's) placement syntax and
    operators. Frameworks import only the SDK, so this is the same shape declared again; the
    evaluation lives in :mod:`tepui.frameworks.services.constraints` until it moves to the SDK."""

    field: str
    operator: str
    value: str | None = None


class Container(_Spec, frozen=True):
    """A Docker container, as the services spec's (``port_mappings`` left out: a batch task's
    host ports are ``resources.ports``). The stage's ``command``/``args`` run inside it; with
    neither, the image's entrypoint runs."""

    image: str
    type: str = "DOCKER"
    network: str = "BRIDGE"  # BRIDGE | HOST; HOST for MPI-style gangs that talk by host address
    force_pull_image: bool = False
    privileged: bool = False
    parameters: dict[str, str] = {}


class StageResources(_Spec, frozen=True):
    """One task's resources. cpus 1 and mem 128 MB are the services framework's (Marathon's)
    defaults; Slurm also gives one CPU per task by default. ``ports`` is a count of host ports
    taken from the offer (``$PORT0``...), as services' ``port: 0``."""

    cpus: float = 1.0
    mem: float = 128.0
    disk: float = 0.0
    gpus: int = 0
    ports: int = 0

    def scalars(self) -> Resources:
        """The scalar resources of one task (zeros left out); ports are picked per offer."""
        return Resources.of(cpus=self.cpus, mem=self.mem, disk=self.disk, gpus=float(self.gpus))


class Backoff(_Spec, frozen=True):
    """Delay before retry *k* (from 0): ``min(initial * factor**k, max)``. Defaults are Kubernetes
    Jobs' pod backoff: 10 s, doubling, capped at 6 min."""

    initial: str = "PT10S"
    factor: float = 2.0
    max: str = "PT6M"

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (0 for the first retry)."""
        initial, cap = parse_duration(self.initial), parse_duration(self.max)
        if self.factor == 1.0 or initial == 0:
            return min(initial, cap)
        # cap the exponent: factor <= 10, so 10**64 still fits a float and a 100th retry cannot overflow
        return min(initial * self.factor ** min(retry, 64), cap)


class ExitCodes(_Spec, frozen=True, kw_only=True):
    """Kubernetes ``onExitCodes``: the rule matches when the exit code is ``in`` (or ``not_in``)
    ``values``. Exit code 0 is never a failure, so ``in`` may not list it."""

    operator: Literal["in", "not_in"] = "in"
    values: tuple[int, ...]


class FailureRule(_Spec, frozen=True):
    """One rule of ``retries.rules`` (Kubernetes podFailurePolicy rule). Exactly one of
    ``on_exit_codes`` and ``on_reasons``. The first matching rule decides; a failure no rule
    matches counts against ``attempts``."""

    action: str
    on_exit_codes: ExitCodes | None = None
    on_reasons: tuple[str, ...] | None = None

    def matches(self, exit_code: int | None, reason: str | None) -> bool:
        if self.on_exit_codes is not None:
            if exit_code is None:
                return False
            inside = exit_code in self.on_exit_codes.values
            return inside if self.on_exit_codes.operator == "in" else not inside
        return reason is not None and reason in (self.on_reasons or ())


class Retries(_Spec, frozen=True):
    """How a failed task index is retried. ``attempts`` counts every try *including the first*
    (AWS Batch's ``attempts``; Argo's ``limit`` and Kubernetes' ``backoffLimit`` count retries,
    a classic off-by-one). Default 1, no retry, as Slurm and AWS Batch: Kubernetes' 6 retries
    hide real bugs, and infrastructure failures (agent loss) are retried free anyway. The budget
    is per index (Kubernetes ``backoffLimitPerIndex``): one bad shard cannot use up the others'."""

    attempts: int = 1
    backoff: Backoff = Backoff()
    rules: tuple[FailureRule, ...] = ()

    def classify(self, exit_code: int | None, reason: str | None) -> str:
        """What the core does with a failed attempt: ``count`` (spend an attempt, retry if any
        are left), ``ignore`` (retry without spending one), ``fail_index`` (this index fails now)
        or ``fail_stage`` (the whole stage fails now). ``agent_lost`` is always ``ignore``."""
        if reason == "agent_lost":
            return "ignore"
        for rule in self.rules:
            if rule.matches(exit_code, reason):
                return rule.action
        return "count"


class Dependency(_Spec, frozen=True):
    """One ``depends_on`` entry; a bare stage name is read as ``{stage: NAME}``. The default
    ``all_succeeded`` is Slurm's ``afterok`` (what a pipeline means; Slurm's own default
    ``afterany`` would run a reduce over a failed map)."""

    stage: str
    condition: str = "all_succeeded"


class StageSpec(_Spec, frozen=True):
    """One stage: ``array`` tasks of the same command, index ``i`` in ``TEPUI_TASK_INDEX``."""

    name: str
    command: str | None = None
    args: tuple[str, ...] | None = None
    container: Container | None = None
    resources: StageResources = StageResources()
    env: dict[str, str] = {}
    uris: tuple[str, ...] = ()
    constraints: tuple[Constraint, ...] = ()
    array: int = 1
    parallelism: int | None = None  # None: all at once (Kubernetes' parallelism default is 1)
    timeout: str | None = None  # per attempt (AWS Batch attemptDurationSeconds); None: none
    retries: Retries = Retries()
    gang: bool = False
    outputs: tuple[str, ...] = ()
    depends_on: tuple[Dependency, ...] = ()

    @property
    def effective_parallelism(self) -> int:
        """How many of its tasks may run at once."""
        return self.array if self.parallelism is None else self.parallelism

    @property
    def timeout_seconds(self) -> float | None:
        return None if self.timeout is None else parse_duration(self.timeout)

    @property
    def edges(self) -> tuple[Edge, ...]:
        return tuple((d.stage, d.condition) for d in self.depends_on)


class JobSpec(_Spec, frozen=True, kw_only=True):
    """One job: a DAG of stages plus how it is queued, bounded in time and kept."""

    name: str
    user: str | None = None  # filled in by the API from the caller's identity
    queue: str = "default"
    priority: int = 0  # higher runs first within a queue; -1000..1000
    deadline: str | None = None  # from submission; Kubernetes activeDeadlineSeconds
    suspend: bool = False
    ttl_after_finished: str | None = "P30D"  # None keeps the record forever
    labels: dict[str, str] = {}
    stages: tuple[StageSpec, ...]

    @property
    def deadline_seconds(self) -> float | None:
        return None if self.deadline is None else parse_duration(self.deadline)

    @property
    def ttl_seconds(self) -> float | None:
        return None if self.ttl_after_finished is None else parse_duration(self.ttl_after_finished)

    @property
    def task_count(self) -> int:
        return sum(s.array for s in self.stages)

    def stage(self, name: str) -> StageSpec:
        """The stage called ``name`` (KeyError when there is none)."""
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(name)

    def stage_order(self) -> tuple[str, ...]:
        """Stage names in topological order (upstreams first, ties in declaration order)."""
        return stage_order([s.name for s in self.stages], [s.edges for s in self.stages])

    def downstream(self, name: str) -> tuple[str, ...]:
        """Stages that depend on ``name``, in declaration order."""
        return tuple(s.name for s in self.stages if any(d.stage == name for d in s.depends_on))

    def upstream_indices(self, name: str, index: int) -> dict[str, range]:
        """For task ``index`` of stage ``name``: each upstream stage and the indices it waits for
        (only ``index`` under ``n_to_n``, the whole array otherwise)."""
        arrays = {s.name: s.array for s in self.stages}
        return upstream_indices(self.stage(name).edges, arrays, index)

    def task_env(self, name: str, index: int) -> dict[str, str]:
        """The environment of task ``index`` of stage ``name``: the stage's ``env`` plus the
        framework's ``TEPUI_*`` variables (the spec refuses those names, so nothing is
        overridden). ``TEPUI_TASK_INDEX`` is 0-based, as AWS Batch's array index and Kubernetes'
        ``JOB_COMPLETION_INDEX``; ``TEPUI_TASK_COUNT`` is the array size (Slurm's
        ``SLURM_ARRAY_TASK_COUNT``), so a task can compute its shard without being told."""
        stage = self.stage(name)
        return {
            **stage.env,
            "TEPUI_JOB": self.name,
            "TEPUI_STAGE": stage.name,
            "TEPUI_TASK_INDEX": str(index),
            "TEPUI_TASK_COUNT": str(stage.array),
        }

    def to_data(self) -> dict[str, Any]:
        """The spec as plain data (what :func:`load_job` reads back), for the store."""
        data: dict[str, Any] = msgspec.to_builtins(self)
        return data


# --- parsing ---------------------------------------------------------------------------------


class _NoAliasLoader(yaml.SafeLoader):
    """SafeLoader that refuses anchors' aliases: ``*a`` repeated nests a few bytes into billions
    of nodes when the result is walked (the "billion laughs"). Job specs never need them."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, "YAML aliases (*name) are not accepted in job specs: write the value out", event.start_mark
            )
        return super().compose_node(parent, index)


def parse_job(text: str | bytes, fmt: Literal["yaml", "json"] | None = None) -> JobSpec:
    """Parses and validates a job spec. ``fmt=None`` reads JSON when the text starts with ``{``
    and YAML otherwise. Raises :class:`SpecError` naming the field."""
    if len(text) > LIMITS["document_bytes"]:
        raise SpecError("(document)", f"is {len(text)} bytes, more than the {LIMITS['document_bytes']} allowed")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SpecError("(document)", f"is not UTF-8 (byte {exc.start}): save the file as UTF-8") from None
    return load_job(decode_spec(text, fmt, _NoAliasLoader))


def load_job(data: object) -> JobSpec:
    """Validates already-decoded data (a REST body, a stored record) into a :class:`JobSpec`."""
    if not isinstance(data, Mapping):
        got = "an empty document" if data is None else type(data).__name__
        raise SpecError("(document)", f"a job spec must be a mapping of fields, got {got}")
    data = _normalize(data)
    try:
        spec = msgspec.convert(data, JobSpec)
    except msgspec.ValidationError as exc:
        field, message = translate(str(exc), data)
        raise SpecError(field, message) from None
    try:
        validate_job(spec)
        check_dag([s.name for s in spec.stages], [s.array for s in spec.stages], [s.edges for s in spec.stages])
        check_inputs(spec)  # how many upstream outputs one task fetches (artifacts.MAX_INPUTS)
    except DagError as exc:
        raise SpecError(exc.field, exc.message) from None
    return spec


def _normalize(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """Shorthands: ``depends_on: [map]`` means ``[{stage: map}]``; ``[rack, MAX_PER, 2]`` keeps
    its count as text, as the services spec does."""
    stages = data.get("stages")
    if not isinstance(stages, list):
        return data
    fixed = []
    for stage in stages:
        if isinstance(stage, Mapping):
            stage = dict(stage)
            deps = stage.get("depends_on")
            if isinstance(deps, list):
                stage["depends_on"] = [{"stage": d} if isinstance(d, str) else d for d in deps]
            cons = stage.get("constraints")
            if isinstance(cons, list):
                stage["constraints"] = [
                    [*c[:2], str(c[2])] if isinstance(c, list) and len(c) == 3 and type(c[2]) in (int, float) else c
                    for c in cons
                ]
        fixed.append(stage)
    return {**data, "stages": fixed}


