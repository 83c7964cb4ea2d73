"""Checks of a task's specification beyond ids and resources (issue 6 "Validation"): name,
labels, environment, command, URIs, volumes, container and executor.

Why at the master: a bad spec caught here ends TASK_ERROR with a sentence that names the field
and says what to do, before any agent spends a fetch or a container start on it, and before a
NUL byte or a ``..`` reaches a path, an ``execve`` or a Docker mount. The agent keeps its own
checks (defence in depth); these are the ones a framework author should meet first.

Each function returns ``None`` or one sentence; :func:`spec_problem` runs them all in order.
"""

from __future__ import annotations

import math
import re
import urllib.parse

from tepui.master.admission.ids import validate_id
from tepui.sdk.protocol.values import CommandInfo, ContainerInfo, TaskInfo, Volume

MAX_NAME = 1024
MAX_LABELS = 128
MAX_LABEL_KEY = 255
MAX_LABEL_VALUE = 4096
MAX_ENV = 1024
MAX_ENV_VALUE = 128 * 1024
MAX_URIS = 128
MAX_URI = 8192
MAX_ARGUMENTS = 4096
URI_SCHEMES = ("http", "https", "file")
CONTAINER_TYPES = ("MESOS", "DOCKER")
NETWORKS = ("BRIDGE", "HOST", "NONE")
PROTOCOLS = ("tcp", "udp", "sctp")
VOLUME_MODES = ("RW", "RO")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*\Z")
_HOSTNAME = re.compile(r"(?=.{1,253}\Z)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\Z")
_IMAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@+-]{0,511}\Z")
HOST_VOLUME_HINT = "host paths outside the sandbox are refused unless the master runs with --allow-host-volumes"


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _control(text: str) -> bool:
    return _CONTROL.search(text) is not None


def name_problem(task: TaskInfo) -> str | None:
    if len(task.name) > MAX_NAME:
        return f"task {task.task_id!r}: name is {len(task.name)} characters long; the limit is {MAX_NAME}"
    if _control(task.name):
        return f"task {task.task_id!r}: name must not contain control characters"
    return None


def labels_problem(owner: str, labels: dict[str, str]) -> str | None:
    if len(labels) > MAX_LABELS:
        return f"{owner}: {len(labels)} labels; the limit is {MAX_LABELS}"
    for key, value in labels.items():
        if not key or len(key) > MAX_LABEL_KEY or _control(key):
            return (f"{owner}: label key {key[:40]!r} must be 1 to {MAX_LABEL_KEY} characters without "
                    "control characters")
        if len(value) > MAX_LABEL_VALUE or "\0" in value:
            return f"{owner}: label {key!r} must be at most {MAX_LABEL_VALUE} characters without NUL bytes"
    return None


def environment_problem(owner: str, environment: dict[str, str]) -> str | None:
    if len(environment) > MAX_ENV:
        return f"{owner}: {len(environment)} environment variables; the limit is {MAX_ENV}"
    for name, value in environment.items():
        if not _ENV_NAME.match(name):
            return (f"{owner}: environment variable name {name[:40]!r} must start with a letter or '_' and hold "
                    "only letters, digits, '_', '.' or '-'")
        if "\0" in value or len(value) > MAX_ENV_VALUE:
            return f"{owner}: environment variable {name} must be at most {MAX_ENV_VALUE} characters without NUL bytes"
    return None


def uri_problem(owner: str, index: int, value: str, output_file: str | None) -> str | None:
    field = f"{owner}: command.uris[{index}]"
    if not value or len(value) > MAX_URI or _control(value):
        return f"{field}.value must be 1 to {MAX_URI} characters without control characters or spaces"
    if not value.startswith("/"):
        scheme = urllib.parse.urlsplit(value).scheme.lower()
        if scheme not in URI_SCHEMES:
            return (f"{field}.value {value[:80]!r} has scheme {scheme or 'none'!r}; use http, https, file or an "
                    "absolute path")
    if output_file is not None:
        # A relative path of file names is allowed (the fetcher creates its directories): the
        # batch framework's upstream outputs land at STAGE/INDEX/PATH (agent fetch_rules' rule).
        if (output_file.startswith("/") or _control(output_file)
                or any(part in ("", ".", "..") for part in output_file.split("/"))):
            return (f"{field}.output_file {output_file!r} must be a file name or a relative path of them "
                    "(no leading '/', no empty, '.' or '..' part)")
    return None


def command_problem(owner: str, command: CommandInfo) -> str | None:
    if command.value is not None and "\0" in command.value:
        return f"{owner}: command.value must not contain NUL bytes"
    if len(command.arguments) > MAX_ARGUMENTS:
        return f"{owner}: {len(command.arguments)} command.arguments; the limit is {MAX_ARGUMENTS}"
    for i, argument in enumerate(command.arguments):
        if "\0" in argument:
            return f"{owner}: command.arguments[{i}] must not contain NUL bytes"
    if command.user is not None and (not command.user or _control(command.user) or "/" in command.user
                                     or " " in command.user):
        return f"{owner}: command.user {command.user!r} is not a valid user name"
    problem = environment_problem(owner, command.environment)
    if problem:
        return problem
    if len(command.uris) > MAX_URIS:
        return f"{owner}: {len(command.uris)} command.uris; the limit is {MAX_URIS}"
    for i, uri in enumerate(command.uris):
        problem = uri_problem(owner, i, uri.value, uri.output_file)
        if problem:
            return problem
    return None


def _dotdot(path: str) -> bool:
    return ".." in path.split("/")


def volume_problem(owner: str, index: int, volume: Volume, allow_host_volumes: bool) -> str | None:
    field = f"{owner}: container.volumes[{index}]"
    if not volume.container_path or _control(volume.container_path) or _dotdot(volume.container_path):
        return f"{field}.container_path {volume.container_path!r} must be a non-empty path without '..'"
    if (volume.mode or "RW").upper() not in VOLUME_MODES:
        return f"{field}.mode {volume.mode!r} must be RW or RO"
    host = volume.host_path
    if host is not None:
        if not host or _control(host):
            return f"{field}.host_path {host!r} must be a non-empty path without control characters"
        if (host.startswith("/") or _dotdot(host)) and not allow_host_volumes:
            return f"{field}.host_path {host!r} leaves the task's sandbox: {HOST_VOLUME_HINT}"
    return None


def container_problem(owner: str, container: ContainerInfo, allow_host_volumes: bool) -> str | None:
    if container.type not in CONTAINER_TYPES:
        return f"{owner}: container.type {container.type!r} must be one of {', '.join(CONTAINER_TYPES)}"
    if container.hostname is not None and not _HOSTNAME.match(container.hostname):
        return f"{owner}: container.hostname {container.hostname[:80]!r} is not a valid host name"
    docker = container.docker
    if container.type == "DOCKER":
        if docker is None or not docker.image:
            return f"{owner}: a DOCKER container needs container.docker.image"
    if docker is not None:
        if not _IMAGE.match(docker.image):
            return f"{owner}: container.docker.image {docker.image[:80]!r} is not a valid image reference"
        if docker.network.upper() not in NETWORKS:
            return f"{owner}: container.docker.network {docker.network!r} must be one of {', '.join(NETWORKS)}"
        for i, mapping in enumerate(docker.port_mappings):
            if not (0 < mapping.host_port < 65536 and 0 < mapping.container_port < 65536):
                return f"{owner}: container.docker.port_mappings[{i}] ports must be between 1 and 65535"
            if (mapping.protocol or "tcp").lower() not in PROTOCOLS:
                return f"{owner}: container.docker.port_mappings[{i}].protocol must be one of {', '.join(PROTOCOLS)}"
        for key, value in docker.parameters.items():
            if not key or _control(key) or "\0" in value:
                return f"{owner}: container.docker.parameters {key[:40]!r} must be a non-empty name without control characters"
    for i, volume in enumerate(container.volumes):
        problem = volume_problem(owner, i, volume, allow_host_volumes)
        if problem:
            return problem
    return None


def spec_problem(task: TaskInfo, allow_host_volumes: bool = False) -> str | None:
    """The first problem of the task's specification, or None."""
    owner = f"task {task.task_id!r}"
    problem = name_problem(task) or labels_problem(owner, task.labels)
    if problem:
        return problem
    if task.command is not None:
        problem = command_problem(owner, task.command)
    if problem is None and task.container is not None:
        problem = container_problem(owner, task.container, allow_host_volumes)
    if problem is None and task.executor is not None:
        executor = task.executor
        problem = validate_id("executor.executor_id", executor.executor_id)
        if problem is None and executor.command is not None:
            problem = command_problem(f"{owner} executor", executor.command)
        if problem is None and executor.container is not None:
            problem = container_problem(f"{owner} executor", executor.container, allow_host_volumes)
    if problem is None and task.health_check is not None:
        problem = health_check_problem(owner, task)
    return problem


def health_check_problem(owner: str, task: TaskInfo) -> str | None:
    check = task.health_check
    assert check is not None
    for name in ("delay_seconds", "grace_period_seconds", "interval_seconds", "timeout_seconds"):
        value = getattr(check, name)
        positive = name in ("interval_seconds", "timeout_seconds")
        if not math.isfinite(value) or value < 0 or (positive and value == 0):
            return f"{owner}: health_check.{name} must be a finite number {'> 0' if positive else '>= 0'}"
    if check.consecutive_failures < 1:
        return f"{owner}: health_check.consecutive_failures must be >= 1"
    if check.command is not None:
        return command_problem(f"{owner} health_check", check.command)
    return None
