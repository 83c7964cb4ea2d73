"""App spec parsing: valid YAML and JSON specs, Marathon defaults, and each invalid class
refused with the exact field named."""

from __future__ import annotations

import json

import pytest

from tepui.frameworks.services.constraints import Constraint
from tepui.frameworks.services.spec import AppSpec, SpecError, app_from_data, parse_app
from tepui.sdk import Resources

FULL_YAML = """
id: /shop/cart
command: python3 -m http.server $PORT0
cpus: 0.25
mem: 64
instances: 5
ports:
  - name: http
env: {MODE: prod}
labels: {team: travel, env: prod}
uris: [https://example.com/app.tgz]
health_checks:
  - protocol: HTTP
    path: /health
    port_index: 0
    grace_period_seconds: 30
    interval_seconds: 5
    timeout_seconds: 2
readiness_check:
  path: /ready
constraints:
  - [hostname, UNIQUE]
  - [rack, MAX_PER, 2]
  - [zone, GROUP_BY]
upgrade_strategy:
  minimum_health_capacity: 0.6
  maximum_over_capacity: 0.2
  progress_deadline_seconds: 120
  auto_rollback: true
backoff: {backoff_seconds: 2}
unreachable_strategy: {inactive_after_seconds: 60, expunge_after_seconds: 600}
kill_grace_period_seconds: 10
"""


def test_full_yaml_spec() -> None:
    spec = parse_app(FULL_YAML, "yaml")
    assert spec.id == "/shop/cart"
    assert spec.instances == 5
    assert spec.ports[0].name == "http" and spec.ports[0].port == 0
    assert spec.env == {"MODE": "prod"}
    assert spec.labels["team"] == "travel"
    assert spec.health_checks[0].path == "/health"
    assert spec.health_checks[0].max_consecutive_failures == 3
    assert len(spec.health_checks) == 1
    assert spec.readiness_check is not None and spec.readiness_check.http_status_codes_for_ready == [200]
    assert spec.constraints == [
        Constraint("hostname", "UNIQUE"),
        Constraint("rack", "MAX_PER", "2"),  # YAML integer kept as text, like Marathon
        Constraint("zone", "GROUP_BY"),
    ]
    assert spec.upgrade_strategy.minimum_health_capacity == 0.6
    assert spec.upgrade_strategy.auto_rollback is True
    assert spec.backoff.backoff_seconds == 2.0 and spec.backoff.backoff_factor == 1.15
    assert spec.unreachable_strategy.expunge_after_seconds == 600
    assert spec.kill_grace_period_seconds == 10


def test_json_spec_detected_and_round_trips() -> None:
    data = {
        "id": "/web",
        "container": {"image": "nginx:1.25", "port_mappings": [{"container_port": 80}]},
        "health_checks": [{"protocol": "TCP"}],
        "constraints": [["rack", "LIKE", "r[0-9]+"]],
    }
    spec = parse_app(json.dumps(data))
    assert spec.container is not None and spec.container.port_mappings[0].host_port == 0
    assert spec.port_count == 1
    assert parse_app(json.dumps(data), "json") == spec
    assert app_from_data(spec.to_data()) == spec
    assert app_from_data(json.loads(json.dumps(spec.to_data()))) == spec


def test_marathon_defaults() -> None:
    spec = parse_app("id: /a\ncommand: sleep 1000\n")
    assert (spec.cpus, spec.mem, spec.disk, spec.gpus, spec.instances) == (1.0, 128.0, 0.0, 0, 1)
    assert spec.upgrade_strategy.minimum_health_capacity == 1.0
    assert spec.upgrade_strategy.maximum_over_capacity == 1.0
    assert spec.upgrade_strategy.progress_deadline_seconds == 600
    assert spec.upgrade_strategy.auto_rollback is False
    assert (spec.backoff.backoff_seconds, spec.backoff.backoff_factor, spec.backoff.max_launch_delay_seconds) == (
        1.0, 1.15, 300.0,
    )
    assert (spec.unreachable_strategy.inactive_after_seconds, spec.unreachable_strategy.expunge_after_seconds) == (0, 0)
    assert spec.kill_selection == "YOUNGEST_FIRST"
    assert spec.kill_grace_period_seconds is None
    check = parse_app("id: /a\ncommand: x\nports: [{}]\nhealth_checks: [{}]\n").health_checks[0]
    assert check.protocol == "HTTP" and check.effective_path == "/" and check.effective_port_index == 0
    assert (check.grace_period_seconds, check.interval_seconds, check.timeout_seconds, check.max_consecutive_failures) == (
        300, 60, 20, 3,
    )


def test_task_resources() -> None:
    spec = parse_app("id: /a\ncommand: x\ncpus: 0.5\nmem: 256\ndisk: 10\ngpus: 1\n")
    assert spec.task_resources() == Resources.parse("cpus:0.5;mem:256;disk:10;gpus:1")
    assert parse_app("id: /a\ncommand: x\n").task_resources() == Resources.of(cpus=1, mem=128)


def test_args_and_instances_zero() -> None:
    spec = parse_app('{"id": "/a/b.c/d-e", "args": ["sleep", "1"], "instances": 0}')
    assert spec.args == ["sleep", "1"] and spec.instances == 0


def error(text: str) -> SpecError:
    with pytest.raises(SpecError) as info:
        parse_app(text)
    return info.value


BASE = "id: /a\ncommand: run\n"


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        # unknown fields, at any depth, with a snake_case hint for Marathon names
        (BASE + "intances: 3\n", "intances", "unknown field"),
        (BASE + "healthChecks: []\n", "healthChecks", "did you mean health_checks?"),
        ("id: /a\ncmd: run\n", "cmd", "did you mean command?"),
        (BASE + "ports: [{}]\nhealth_checks: [{protocol: HTTP, pth: /x}]\n", "health_checks[0].pth", "unknown field"),
        (BASE + "upgrade_strategy: {minimumHealthCapacity: 0.5}\n", "upgrade_strategy.minimumHealthCapacity",
         "did you mean minimum_health_capacity?"),
        # types and required fields
        ("command: run\n", "id", "required field is missing"),
        (BASE + "instances: three\n", "instances", "expected int, got str"),
        (BASE + "labels: {enabled: yes}\n", "labels.enabled", "expected str, got bool"),
        (BASE + "labels: {1: one}\n", "labels", "keys expected str, got int"),
        ("id: /a\ncontainer: {image: x, parameters: {cpu: 2}}\n", "container.parameters.cpu", "expected str, got int"),
        # ranges
        (BASE + "instances: -1\n", "instances", "must be >= 0, got -1"),
        (BASE + "mem: -5\n", "mem", "must be >= 0, got -5.0"),
        (BASE + "cpus: 0\nmem: 0\n", "cpus", "needs some cpus or mem"),
        (BASE + "upgrade_strategy: {minimum_health_capacity: 1.5}\n", "upgrade_strategy.minimum_health_capacity",
         "must be between 0 and 1, got 1.5"),
        (BASE + "backoff: {backoff_factor: 0.5}\n", "backoff.backoff_factor", "must be >= 1.0"),
        (BASE + "unreachable_strategy: {inactive_after_seconds: 60, expunge_after_seconds: 30}\n",
         "unreachable_strategy.expunge_after_seconds", "must be >= inactive_after_seconds"),
        (BASE + "kill_selection: RANDOM\n", "kill_selection", "unknown value 'RANDOM'"),
        # command / container
        ("id: /a\n", "command", "needs a command, args or a container"),
        ("id: /a\ncommand: x\nargs: [y]\n", "args", "not both"),
        ("id: /a\ncontainer: {image: ''}\n", "container.image", "must name a Docker image"),
        ("id: /a\ncontainer: {image: x, port_mappings: [{container_port: 70000}]}\n",
         "container.port_mappings[0].container_port", "must be between 1 and 65535, got 70000"),
        # constraints
        (BASE + "constraints: [[hostname, UNIQ]]\n", "constraints[0]",
         "unknown operator 'UNIQ' (UNIQUE, CLUSTER, GROUP_BY, MAX_PER, LIKE, UNLIKE, IS)"),
        (BASE + "constraints: [[hostname, UNIQUE], [rack, MAX_PER]]\n", "constraints[1]", "MAX_PER needs a count"),
        (BASE + "constraints: [[hostname]]\n", "constraints[0]", "expected array of at least length 2, got 1"),
        (BASE + "constraints: [[rack, LIKE, 'r[']]\n", "constraints[0]", "invalid regular expression"),
        # ids
        ("id: shop/cart\ncommand: x\n", "id", "must be an absolute path"),
        ("id: /shop/../cart\ncommand: x\n", "id", "'..' segments are not allowed"),
        ("id: /shop//cart\ncommand: x\n", "id", "empty"),
        ("id: /Shop\ncommand: x\n", "id", "segment 'Shop' must be lowercase"),
        ("id: /shop/cart_1\ncommand: x\n", "id", "segment 'cart_1'"),
        ("id: /shop/\ncommand: x\n", "id", "must not end with '/'"),
        ("id: /\ncommand: x\n", "id", "root group"),
        # health checks
        (BASE + "health_checks: [{protocol: HTTP}]\n", "health_checks[0].port_index", "the app has 0 port(s)"),
        (BASE + "health_checks: [{protocol: GRPC}]\n", "health_checks[0].protocol", "unknown protocol 'GRPC'"),
        (BASE + "health_checks: [{protocol: COMMAND}]\n", "health_checks[0].command", "needs a command"),
        (BASE + "health_checks: [{protocol: COMMAND, command: x, port: 80}]\n", "health_checks[0].port",
         "only HTTP, HTTPS and TCP"),
        (BASE + "health_checks: [{protocol: TCP, port: 80, timeout_seconds: 60}]\n",
         "health_checks[0].timeout_seconds", "must be less than interval_seconds (60.0), got 60.0"),
        (BASE + "health_checks: [{protocol: TCP, port: 80, max_consecutive_failures: -1}]\n",
         "health_checks[0].max_consecutive_failures", "must be >= 0"),
        (BASE + "ports: [{}]\nhealth_checks: [{}, {path: health}]\n", "health_checks[1].path", "must start with '/'"),
        (BASE + "ports: [{}]\nhealth_checks: [{}, {}]\n", "health_checks[1]", "one health check per app"),
        (BASE + "ports: [{port: 8080}, {port: 8080}]\n", "ports[1].port", "listed twice"),
        (BASE + "readiness_check: {}\n", "readiness_check.port_index", "the app has 0 port(s)"),
        # documents
        ("- just\n- a list\n", "(document)", "must be a mapping"),
        ("", "(document)", "got an empty document"),
        ("{bad json", "(document)", "invalid JSON"),
        ("id: [unclosed\n", "(document)", "invalid YAML"),
    ],
)
def test_invalid_specs_name_the_field(text: str, field: str, message: str) -> None:
    err = error(text)
    assert err.field == field, str(err)
    assert message in err.message, str(err)
    assert str(err) == f"{field}: {err.message}"


def test_negative_instances_message_is_exact() -> None:
    assert str(error(BASE + "instances: -1\n")) == "instances: must be >= 0, got -1"


def test_specs_are_frozen_values() -> None:
    spec = parse_app(BASE)
    assert isinstance(spec, AppSpec)
    with pytest.raises(AttributeError):
        spec.instances = 3  # type: ignore[misc]
