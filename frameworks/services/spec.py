"""The services framework's app spec: what an operator writes in ``app.yaml`` (or JSON).

Why msgspec Structs with ``forbid_unknown_fields``: a typo (``intances: 5``) must be refused
with the field's name, never silently ignored so that the app runs with the default. Decoding
checks types; :func:`parse_app` then checks ranges and cross-field rules, and every failure is a
:class:`SpecError` whose ``field`` is the exact path (``health_checks[0].timeout_seconds``) so the
REST API can answer 422 naming it and the CLI can print it verbatim.

Field names are snake_case only. Marathon's camelCase (``healthChecks``, ``cmd``,
``taskKillGracePeriodSeconds``) is *not* accepted: one spelling per setting keeps specs
greppable and diffs readable. A camelCase or Marathon name is refused with a hint giving the
Tepui name, so porting a Marathon app is a matter of following the error messages.

Defaults follow Marathon (``AppDefinition.scala``, ``HealthCheck``, ``ReadinessCheck``,
``UpgradeStrategy.scala``, ``UnreachableStrategy.scala`` at commit 90619da7; summarised in
``/work/shared/reference/PRIOR_ART.md``). Where Marathon has nothing (deployment progress
deadline, auto-rollback) the defaults follow Nomad's ``update`` block and Kubernetes'
``progressDeadlineSeconds``. Each default is noted on its field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

import msgspec

from tepui.frameworks.services.constraints import Constraint, ConstraintError, validate_constraint
from tepui.sdk import Resources
from tepui.sdk.spec_documents import SpecError, decode_spec, field_error

__all__ = [
    "AppSpec",
    "Backoff",
    "Container",
    "HealthCheck",
    "PortDefinition",
    "PortMapping",
    "ReadinessCheck",
    "SpecError",
    "UnreachableStrategy",
    "UpgradeStrategy",
    "app_from_data",
    "parse_app",
]



class _Spec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True, kw_only=True):
    """Base of every spec Struct: immutable, strict about field names, compact when encoded.
    Subclasses repeat ``frozen=True``: msgspec inherits it, type checkers (PEP 681) do not."""


class PortDefinition(_Spec, frozen=True):
    """A host port of a process app (Marathon ``portDefinitions``). ``port: 0`` asks for any
    port from the offer; Marathon's API adds one such port when none are given, Tepui does not:
    an app gets the ports it lists."""

    port: int = 0
    name: str | None = None
    protocol: str = "tcp"
    labels: dict[str, str] = {}


class PortMapping(_Spec, frozen=True):
    """A container port published on the host (Docker ``BRIDGE`` networking).
    ``host_port: 0`` (Marathon's default) takes any port from the offer."""

    container_port: int
    host_port: int = 0
    protocol: str = "tcp"
    name: str | None = None


class Container(_Spec, frozen=True):
    """A Docker container. Only ``DOCKER`` for now (Marathon also has ``MESOS``/UCR)."""

    image: str
    type: str = "DOCKER"
    network: str = "BRIDGE"  # BRIDGE | HOST (Marathon's Docker default is HOST; Tepui's
    # DockerInfo defaults to BRIDGE, and port mappings only make sense with BRIDGE)
    port_mappings: list[PortMapping] = []
    force_pull_image: bool = False
    privileged: bool = False
    parameters: dict[str, str] = {}


HEALTH_PROTOCOLS = ("HTTP", "HTTPS", "TCP", "COMMAND")


class HealthCheck(_Spec, frozen=True):
    """Marathon ``healthChecks[]`` entry. Defaults are Marathon's: protocol HTTP, path ``/``,
    grace 300 s, interval 60 s, timeout 20 s, 3 consecutive failures (0 = never kill).
    HTTP/HTTPS/TCP probe ``port`` or the app's port number ``port_index`` (0 when neither is
    given); COMMAND runs ``command`` in the task's sandbox."""

    protocol: str = "HTTP"
    path: str | None = None
    port_index: int | None = None
    port: int | None = None
    command: str | None = None
    grace_period_seconds: float = 300.0
    interval_seconds: float = 60.0
    timeout_seconds: float = 20.0
    max_consecutive_failures: int = 3
    ignore_http1xx: bool = False

    @property
    def effective_path(self) -> str:
        return self.path or "/"

    @property
    def effective_port_index(self) -> int | None:
        """The port index probed, or ``None`` for a fixed ``port`` or a COMMAND check."""
        if self.protocol == "COMMAND" or self.port is not None:
            return None
        return self.port_index if self.port_index is not None else 0


class ReadinessCheck(_Spec, frozen=True):
    """Marathon ``readinessChecks`` (at most one per app there, hence a single value here).
    Gates a rolling upgrade: a new instance counts only once this returns a ready status.
    Defaults are Marathon's: interval 30 s, timeout 10 s, ready on ``[200]``."""

    name: str = "readiness"
    protocol: str = "HTTP"
    path: str = "/"
    port_index: int = 0
    interval_seconds: float = 30.0
    timeout_seconds: float = 10.0
    http_status_codes_for_ready: list[int] = msgspec.field(default_factory=lambda: [200])
    preserve_last_response: bool = False


class UpgradeStrategy(_Spec, frozen=True):
    """How a deployment replaces instances.

    ``minimum_health_capacity`` and ``maximum_over_capacity`` are Marathon's (both default 1.0:
    start all new instances before stopping old ones). ``progress_deadline_seconds`` (600, as
    Nomad's ``progress_deadline`` and Kubernetes' ``progressDeadlineSeconds``) fails a
    deployment that makes no progress for that long — Marathon has none (marathon#517).
    ``auto_rollback`` (false, as Nomad's ``auto_revert``) restores the previous version when a
    deployment fails."""

    minimum_health_capacity: float = 1.0
    maximum_over_capacity: float = 1.0
    progress_deadline_seconds: float = 600.0
    auto_rollback: bool = False


class Backoff(_Spec, frozen=True):
    """Launch backoff after failures (Marathon's ``backoffSeconds`` 1, ``backoffFactor`` 1.15,
    ``maxLaunchDelaySeconds`` 300): the delay grows on FAILED/FINISHED, not on KILLED."""

    backoff_seconds: float = 1.0
    backoff_factor: float = 1.15
    max_launch_delay_seconds: float = 300.0


class UnreachableStrategy(_Spec, frozen=True):
    """What to do with TASK_UNREACHABLE instances: replace after ``inactive_after_seconds``,
    forget after ``expunge_after_seconds``. Defaults 0/0 are Marathon's *code* defaults since
    PR #5523 (its docs still say 300/600): replace at once, and kill the old instance if its
    agent comes back."""

    inactive_after_seconds: float = 0.0
    expunge_after_seconds: float = 0.0


KILL_SELECTIONS = ("YOUNGEST_FIRST", "OLDEST_FIRST")


class AppSpec(_Spec, frozen=True):
    """One long-running app. Marathon defaults: cpus 1.0, mem 128 MB, disk 0, gpus 0,
    instances 1, kill_selection YOUNGEST_FIRST (``AppDefinition`` companion object).
    ``kill_grace_period_seconds`` unset means the agent's default (Marathon's
    ``taskKillGracePeriodSeconds`` has no default either)."""

    id: str
    command: str | None = None
    args: list[str] | None = None
    container: Container | None = None
    cpus: float = 1.0
    mem: float = 128.0
    disk: float = 0.0
    gpus: int = 0
    instances: int = 1
    ports: list[PortDefinition] = []
    env: dict[str, str] = {}
    labels: dict[str, str] = {}
    uris: list[str] = []
    health_checks: list[HealthCheck] = []
    readiness_check: ReadinessCheck | None = None
    constraints: list[Constraint] = []
    upgrade_strategy: UpgradeStrategy = UpgradeStrategy()
    backoff: Backoff = Backoff()
    unreachable_strategy: UnreachableStrategy = UnreachableStrategy()
    kill_grace_period_seconds: float | None = None
    kill_selection: str = "YOUNGEST_FIRST"

    def task_resources(self) -> Resources:
        """The scalar resources of one task (cpus, mem, disk, gpus; zeros left out).
        Ports are not included: the launcher picks them from each offer's ranges
        (:attr:`port_count` of them, fixed ones where ``port``/``host_port`` is not 0)."""
        return Resources.of(cpus=self.cpus, mem=self.mem, disk=self.disk, gpus=float(self.gpus))

    @property
    def port_count(self) -> int:
        """Host ports each task needs: the container's port mappings under BRIDGE networking,
        else the app's ``ports``."""
        if self.container is not None and self.container.network == "BRIDGE":
            return len(self.container.port_mappings)
        return len(self.ports)

    def to_data(self) -> dict[str, Any]:
        """The spec as plain data (what :func:`app_from_data` reads back), for the store."""
        data: dict[str, Any] = msgspec.to_builtins(self)
        return data


# --- parsing ---------------------------------------------------------------------------------

#: Marathon names that do not simply snake_case into the Tepui name.
_MARATHON_NAMES = {
    "cmd": "command",
    "readinessChecks": "readiness_check (a single check)",
    "portDefinitions": "ports",
    "taskKillGracePeriodSeconds": "kill_grace_period_seconds",
    "backoffSeconds": "backoff.backoff_seconds",
    "backoffFactor": "backoff.backoff_factor",
    "maxLaunchDelaySeconds": "backoff.max_launch_delay_seconds",
    "fetch": "uris",
}

_SEGMENT = re.compile(r"^(([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])\.)*([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])$")


def parse_app(text: str, fmt: Literal["yaml", "json"] | None = None) -> AppSpec:
    """Parses and validates an app spec. ``fmt=None`` reads JSON when the text starts with
    ``{`` and YAML otherwise. Raises :class:`SpecError` naming the field."""
    return app_from_data(decode_spec(text, fmt))


def app_from_data(data: object) -> AppSpec:
    """Validates already-decoded data (a REST body, a stored version) into an :class:`AppSpec`."""
    if not isinstance(data, Mapping):
        got = "an empty document" if data is None else type(data).__name__
        raise SpecError("(document)", f"an app spec must be a mapping of fields, got {got}")
    data = _normalize_constraint_values(data)
    try:
        spec = msgspec.convert(data, AppSpec)
    except msgspec.ValidationError as exc:
        raise SpecError(*field_error(str(exc), data, _hint)) from None
    _validate(spec)
    return spec


def _normalize_constraint_values(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """``[rack, MAX_PER, 2]`` in YAML has an integer value; Marathon's arrays hold strings."""
    raw = data.get("constraints")
    if not isinstance(raw, list):
        return data
    fixed = [
        [*item[:2], str(item[2])]
        if isinstance(item, list) and len(item) == 3 and type(item[2]) in (int, float)
        else item
        for item in raw
    ]
    return {**data, "constraints": fixed}






def _hint(name: str) -> str:
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()
    suggestion = _MARATHON_NAMES.get(name) or (snake if snake != name else None)
    if suggestion is None:
        return ": check the spelling against the app spec reference"
    return f": did you mean {suggestion}? (Tepui app specs use snake_case, not Marathon's camelCase)"


def _fail(field: str, message: str) -> None:
    raise SpecError(field, message)


def _validate(spec: AppSpec) -> None:
    """Range and cross-field rules that types alone cannot express (pure; raises SpecError)."""
    _validate_id(spec.id)
    if spec.command is not None and spec.args is not None:
        _fail("args", "give either command (run by a shell) or args (an argv), not both")
    if spec.command is None and spec.args is None and spec.container is None:
        _fail("command", "an app needs a command, args or a container")
    if spec.command is not None and not spec.command.strip():
        _fail("command", "must not be empty")
    if spec.args is not None and not spec.args:
        _fail("args", "must not be empty: give at least the program to run")
    for name in ("cpus", "mem", "disk", "gpus"):
        value = getattr(spec, name)
        if value < 0:
            _fail(name, f"must be >= 0, got {value}")
    if spec.cpus == 0 and spec.mem == 0:
        _fail("cpus", "a task needs some cpus or mem: set cpus (e.g. 0.1) or mem")
    if spec.instances < 0:
        _fail("instances", f"must be >= 0, got {spec.instances}")
    if spec.container is not None:
        _validate_container(spec.container)
        if spec.container.network == "BRIDGE" and spec.ports:
            _fail("ports", "a BRIDGE container publishes ports through container.port_mappings")
    for i, port in enumerate(spec.ports):
        _check_port(f"ports[{i}].port", port.port, allow_zero=True)
        _check_protocol(f"ports[{i}].protocol", port.protocol)
    _no_repeated_ports("ports", "port", [p.port for p in spec.ports])
    if spec.container is not None:
        _no_repeated_ports("container.port_mappings", "host_port", [m.host_port for m in spec.container.port_mappings])
    for key in spec.env:
        if not key or "=" in key:
            _fail(f"env.{key}", "environment variable names must be non-empty and contain no '='")
    for key in spec.labels:
        if not key.strip():
            _fail("labels", "label names must not be empty")
    for i, uri in enumerate(spec.uris):
        if not uri.strip():
            _fail(f"uris[{i}]", "must not be empty")
    for i, check in enumerate(spec.health_checks):
        _validate_health_check(f"health_checks[{i}]", check, spec.port_count)
    if len(spec.health_checks) > 1:
        # Marathon runs several; Tepui's agent runs one check per task (Mesos' TaskInfo has one).
        _fail("health_checks[1]", "one health check per app: the agent runs one check per task")
    if spec.readiness_check is not None:
        _validate_readiness(spec.readiness_check, spec.port_count)
    for i, constraint in enumerate(spec.constraints):
        try:
            validate_constraint(constraint)
        except ConstraintError as exc:
            _fail(f"constraints[{i}]", str(exc))
    _validate_strategies(spec)
    if spec.kill_grace_period_seconds is not None and spec.kill_grace_period_seconds < 0:
        _fail("kill_grace_period_seconds", f"must be >= 0, got {spec.kill_grace_period_seconds}")
    if spec.kill_selection not in KILL_SELECTIONS:
        _fail("kill_selection", f"unknown value {spec.kill_selection!r} ({', '.join(KILL_SELECTIONS)})")


def _validate_id(app_id: str) -> None:
    if not app_id.startswith("/"):
        _fail("id", f"must be an absolute path such as /shop/cart, got {app_id!r}")
    if app_id == "/":
        _fail("id", "the root group / is not an app: name it, e.g. /shop/cart")
    if app_id.endswith("/"):
        _fail("id", f"must not end with '/', got {app_id!r}")
    for segment in app_id[1:].split("/"):
        if segment in ("", ".", ".."):
            _fail("id", f"empty, '.' and '..' segments are not allowed, got {app_id!r}")
        if not _SEGMENT.match(segment):
            _fail(
                "id",
                f"segment {segment!r} must be lowercase letters, digits, '-' and '.', starting and "
                "ending with a letter or digit",
            )


def _validate_container(container: Container) -> None:
    if container.type != "DOCKER":
        _fail("container.type", f"unknown container type {container.type!r} (DOCKER)")
    if not container.image.strip():
        _fail("container.image", "must name a Docker image, e.g. nginx:1.25")
    if container.network not in ("BRIDGE", "HOST"):
        _fail("container.network", f"unknown network {container.network!r} (BRIDGE, HOST)")
    if container.network == "HOST" and container.port_mappings:
        _fail("container.port_mappings", "HOST networking has no port mappings: use ports instead")
    for i, mapping in enumerate(container.port_mappings):
        path = f"container.port_mappings[{i}]"
        _check_port(f"{path}.container_port", mapping.container_port, allow_zero=False)
        _check_port(f"{path}.host_port", mapping.host_port, allow_zero=True)
        _check_protocol(f"{path}.protocol", mapping.protocol)


def _no_repeated_ports(path: str, name: str, ports: list[int]) -> None:
    seen: set[int] = set()
    for i, port in enumerate(ports):
        if port and port in seen:
            _fail(f"{path}[{i}].{name}", f"port {port} is listed twice; a host port can be taken once")
        seen.add(port)


def _check_port(field: str, port: int, *, allow_zero: bool) -> None:
    low = 0 if allow_zero else 1
    if not low <= port <= 65535:
        zero = " (0 = any port from the offer)" if allow_zero else ""
        _fail(field, f"must be between {low} and 65535{zero}, got {port}")


def _check_protocol(field: str, protocol: str) -> None:
    if protocol not in ("tcp", "udp"):
        _fail(field, f"unknown protocol {protocol!r} (tcp, udp)")


def _validate_health_check(path: str, check: HealthCheck, port_count: int) -> None:
    if check.protocol not in HEALTH_PROTOCOLS:
        _fail(f"{path}.protocol", f"unknown protocol {check.protocol!r} ({', '.join(HEALTH_PROTOCOLS)})")
    if check.protocol == "COMMAND":
        if not (check.command or "").strip():
            _fail(f"{path}.command", "a COMMAND health check needs a command, e.g. curl -f localhost:$PORT0")
        for name in ("port", "port_index", "path"):
            if getattr(check, name) is not None:
                _fail(f"{path}.{name}", "only HTTP, HTTPS and TCP health checks take it")
    else:
        if check.command is not None:
            _fail(f"{path}.command", f"only COMMAND health checks take a command, not {check.protocol}")
        if check.path is not None and check.protocol == "TCP":
            _fail(f"{path}.path", "TCP health checks take no path")
        if check.path is not None and not check.path.startswith("/"):
            _fail(f"{path}.path", f"must start with '/', got {check.path!r}")
        if check.port is not None and check.port_index is not None:
            _fail(f"{path}.port", "give either port or port_index, not both")
        if check.port is not None:
            _check_port(f"{path}.port", check.port, allow_zero=False)
        else:
            index = check.effective_port_index or 0
            if not 0 <= index < port_count:
                _fail(
                    f"{path}.port_index",
                    f"the app has {port_count} port(s), so port_index {index} does not exist: "
                    "declare ports (or container.port_mappings), or set port",
                )
    if check.grace_period_seconds < 0:
        _fail(f"{path}.grace_period_seconds", f"must be >= 0, got {check.grace_period_seconds}")
    if check.interval_seconds <= 0:
        _fail(f"{path}.interval_seconds", f"must be > 0, got {check.interval_seconds}")
    if check.timeout_seconds <= 0:
        _fail(f"{path}.timeout_seconds", f"must be > 0, got {check.timeout_seconds}")
    if check.timeout_seconds >= check.interval_seconds:
        _fail(
            f"{path}.timeout_seconds",
            f"must be less than interval_seconds ({check.interval_seconds}), got {check.timeout_seconds}",
        )
    if check.max_consecutive_failures < 0:
        _fail(f"{path}.max_consecutive_failures", f"must be >= 0 (0 = never kill), got {check.max_consecutive_failures}")


def _validate_readiness(check: ReadinessCheck, port_count: int) -> None:
    path = "readiness_check"
    if check.protocol not in ("HTTP", "HTTPS"):
        _fail(f"{path}.protocol", f"unknown protocol {check.protocol!r} (HTTP, HTTPS)")
    if not check.path.startswith("/"):
        _fail(f"{path}.path", f"must start with '/', got {check.path!r}")
    if not 0 <= check.port_index < port_count:
        _fail(f"{path}.port_index", f"the app has {port_count} port(s), so port_index {check.port_index} does not exist")
    if check.interval_seconds <= 0:
        _fail(f"{path}.interval_seconds", f"must be > 0, got {check.interval_seconds}")
    if check.timeout_seconds <= 0 or check.timeout_seconds >= check.interval_seconds:
        _fail(f"{path}.timeout_seconds", f"must be > 0 and less than interval_seconds, got {check.timeout_seconds}")
    if not check.http_status_codes_for_ready:
        _fail(f"{path}.http_status_codes_for_ready", "must list at least one status, e.g. [200]")
    for i, code in enumerate(check.http_status_codes_for_ready):
        if not 100 <= code <= 599:
            _fail(f"{path}.http_status_codes_for_ready[{i}]", f"must be an HTTP status 100..599, got {code}")


def _validate_strategies(spec: AppSpec) -> None:
    upgrade = spec.upgrade_strategy
    for name in ("minimum_health_capacity", "maximum_over_capacity"):
        value = getattr(upgrade, name)
        if not 0.0 <= value <= 1.0:
            _fail(f"upgrade_strategy.{name}", f"must be between 0 and 1, got {value}")
    if upgrade.progress_deadline_seconds <= 0:
        _fail("upgrade_strategy.progress_deadline_seconds", f"must be > 0, got {upgrade.progress_deadline_seconds}")
    backoff = spec.backoff
    if backoff.backoff_seconds < 0:
        _fail("backoff.backoff_seconds", f"must be >= 0, got {backoff.backoff_seconds}")
    if backoff.backoff_factor < 1.0:
        _fail("backoff.backoff_factor", f"must be >= 1.0 (the delay never shrinks), got {backoff.backoff_factor}")
    if backoff.max_launch_delay_seconds < backoff.backoff_seconds:
        _fail(
            "backoff.max_launch_delay_seconds",
            f"must be >= backoff_seconds ({backoff.backoff_seconds}), got {backoff.max_launch_delay_seconds}",
        )
    unreachable = spec.unreachable_strategy
    if unreachable.inactive_after_seconds < 0:
        _fail("unreachable_strategy.inactive_after_seconds", f"must be >= 0, got {unreachable.inactive_after_seconds}")
    if unreachable.expunge_after_seconds < unreachable.inactive_after_seconds:
        _fail(
            "unreachable_strategy.expunge_after_seconds",
            f"must be >= inactive_after_seconds ({unreachable.inactive_after_seconds}), "
            f"got {unreachable.expunge_after_seconds}",
        )
