"""From an app spec and an offer to a task: ``fit`` (or why not) and ``task_info``."""

from __future__ import annotations

from typing import Any

import pytest

from tepui.frameworks.services.spec import app_from_data
from tepui.frameworks.services.tasks import NEVER_KILL, Fit, fit, health_check, offer_room, task_info
from tepui.sdk import (
    CommandInfo, CommandURI, ContainerInfo, DockerInfo, HealthCheck, KillPolicy, Offer, Resources, TaskInfo,
)
from tepui.sdk.protocol.values import HTTPCheck, PortMapping, TCPCheck
from tests.frameworks.test_core import offer, spec


def fit_on(app: Any, o: Offer, placed: list[Any] | None = None) -> Fit | str:
    return fit(app, o, offer_room(o), placed or [])


# --- fit: resources ------------------------------------------------------------------------


def test_fit_takes_the_task_resources_and_no_ports_when_none_are_declared() -> None:
    chosen = fit_on(spec(cpus=1.5, mem=256), offer("o1"))
    assert chosen == Fit((), Resources.of(cpus=1.5, mem=256))


@pytest.mark.parametrize("fields,resources,reason", [
    ({"cpus": 8.0}, "cpus:4;mem:4096", "insufficient cpus: needs 8, offer has 4"),
    ({"mem": 8192.0}, "cpus:4;mem:4096", "insufficient mem: needs 8192, offer has 4096"),
    ({"cpus": 8.0, "mem": 8192.0}, "cpus:4;mem:4096",
     "insufficient cpus: needs 8, offer has 4; insufficient mem: needs 8192, offer has 4096"),
    ({"cpus": 0.25}, "cpus:0.1;mem:4096", "insufficient cpus: needs 0.25, offer has 0.1"),
    ({"disk": 100.0}, "cpus:4;mem:4096", "insufficient disk: needs 100, offer has 0"),
    ({"gpus": 1}, "cpus:4;mem:4096", "insufficient gpus: needs 1, offer has 0"),
])
def test_fit_says_which_resource_is_short(fields: dict[str, Any], resources: str, reason: str) -> None:
    assert fit_on(spec(**fields), offer("o1", resources=resources)) == reason


def test_fit_uses_only_unreserved_resources() -> None:
    o = offer("o1", resources="cpus(eng):8;cpus:0.25;mem:4096")
    assert offer_room(o) == Resources.parse("cpus:0.25;mem:4096")
    assert fit_on(spec(cpus=1.0), o) == "insufficient cpus: needs 1, offer has 0.25"


def test_fit_within_what_is_left_of_the_offer() -> None:
    o = offer("o1", resources="cpus:1;mem:4096;ports:[31000-31100]")
    app = spec(cpus=0.5, ports=[{"port": 0}])
    room = offer_room(o)
    first = fit(app, o, room, [])
    assert isinstance(first, Fit) and first.ports == (31000,)
    room = room - first.take
    second = fit(app, o, room, [])
    assert isinstance(second, Fit) and second.ports == (31001,)
    assert fit(app, o, room - second.take, []) == "insufficient cpus: needs 0.5, offer has 0"


# --- fit: ports and constraints --------------------------------------------------------------


def test_fit_picks_the_lowest_free_ports_around_fixed_ones() -> None:
    o = offer("o1", resources="cpus:4;mem:4096;ports:[31000-31002,32000-32000]")
    assert fit_on(spec(ports=[{"port": 0}, {"port": 0}]), o).ports == (31000, 31001)
    assert fit_on(spec(ports=[{"port": 0}, {"port": 31000}]), o).ports == (31001, 31000)
    assert fit_on(spec(ports=[{"port": 32000}, {"port": 0}]), o).ports == (32000, 31000)
    chosen = fit_on(spec(ports=[{"port": 0}, {"port": 0}, {"port": 0}, {"port": 0}]), o)
    assert chosen.ports == (31000, 31001, 31002, 32000)
    assert chosen.take == Resources.parse("cpus:0.5;mem:128;ports:[31000-31002,32000-32000]")


def test_fit_fixed_port_not_free() -> None:
    assert fit_on(spec(ports=[{"port": 8080}]), offer("o1")) == "port 8080 is not free on this agent"
    assert fit_on(spec(ports=[{"port": 0}, {"port": 8080}]), offer("o1")) == "port 8080 is not free on this agent"


def test_fit_not_enough_ports() -> None:
    o = offer("o1", resources="cpus:4;mem:4096;ports:[31000-31000]")
    assert fit_on(spec(ports=[{"port": 0}, {"port": 0}]), o) == "insufficient ports: needs 2, offer has 1"
    assert fit_on(spec(ports=[{"port": 0}]), offer("o1", resources="cpus:4;mem:4096")) == \
        "insufficient ports: needs 1, offer has 0"


def test_fit_checks_constraints_against_the_placed_instances() -> None:
    app = spec(constraints=[["rack", "MAX_PER", "1"]])
    o = offer("o1", host="h1", attributes={"rack": "r1"})
    assert isinstance(fit_on(app, o), Fit)
    assert fit_on(app, o, [("h2", {"rack": "r1"})]) == "constraint rack MAX_PER 1: rack=r1 already runs 1 instance(s)"
    assert fit_on(app, offer("o2", host="h3")) == "constraint rack MAX_PER 1: h3 has no attribute rack"
    # Resources are judged before constraints: the sentence names what is really missing.
    assert fit_on(spec(cpus=8.0, constraints=[["rack", "IS", "r9"]]), o) == "insufficient cpus: needs 8, offer has 4"


# --- task_info -------------------------------------------------------------------------------


def test_task_info_of_a_process_app_in_full() -> None:
    app = spec(id="/shop/cart", command="./cart --port $PORT0", instances=2, env={"MODE": "prod", "HOST": "ignored"},
               labels={"team": "shop"}, uris=["https://example.com/cart.tgz"], kill_grace_period_seconds=20.0,
               ports=[{"port": 0}, {"port": 0}],
               health_checks=[{"protocol": "HTTPS", "path": "/ping", "port_index": 1, "interval_seconds": 15.0,
                               "timeout_seconds": 3.0, "grace_period_seconds": 60.0, "max_consecutive_failures": 0}])
    o = offer("o1", agent="a7", host="node7")
    chosen = fit_on(app, o)
    assert chosen.ports == (31000, 31001)
    task = task_info(app, "v1", "shop_cart.id9", o, chosen)
    assert task == TaskInfo(
        name="shop.cart", task_id="shop_cart.id9", agent_id="a7", resources=chosen.take.to_wire(),
        command=CommandInfo(value="./cart --port $PORT0", shell=True, uris=[CommandURI(value="https://example.com/cart.tgz",
                                                                                      extract=True)],
                            environment={"MODE": "prod", "HOST": "node7", "TEPUI_APP_ID": "/shop/cart",
                                         "TEPUI_APP_VERSION": "v1", "TEPUI_TASK_ID": "shop_cart.id9",
                                         "PORT0": "31000", "PORT1": "31001", "PORT": "31000",
                                         "PORTS": "31000,31001"}),
        health_check=HealthCheck(type="HTTP", http=HTTPCheck(port=31001, path="/ping", scheme="https"),
                                 delay_seconds=0.0, interval_seconds=15.0, timeout_seconds=3.0,
                                 consecutive_failures=NEVER_KILL, grace_period_seconds=60.0),
        kill_policy=KillPolicy(grace_period_seconds=20.0),
        labels={"team": "shop", "tepui.services/app": "/shop/cart", "tepui.services/version": "v1"},
    )


def test_args_run_without_a_shell_and_command_with_one() -> None:
    o = offer("o1")
    with_args = app_from_data({"id": "/web", "args": ["/bin/serve", "--port", "80"], "cpus": 0.5})
    command = task_info(with_args, "v1", "t1", o, fit_on(with_args, o)).command
    assert (command.value, command.arguments, command.shell) == (None, ["/bin/serve", "--port", "80"], False)
    with_command = spec(command="serve --port 80")
    command = task_info(with_command, "v1", "t1", o, fit_on(with_command, o)).command
    assert (command.value, command.arguments, command.shell) == ("serve --port 80", [], True)
    assert command.environment["HOST"] == "h1" and "PORT" not in command.environment


def test_labels_of_the_app_cannot_hide_the_services_labels() -> None:
    app = spec(labels={"tepui.services/app": "/other", "env": "prod"})
    task = task_info(app, "v3", "t1", offer("o1"), fit_on(app, offer("o1")))
    assert task.labels == {"tepui.services/app": "/web", "env": "prod", "tepui.services/version": "v3"}


def test_bridge_container_maps_container_ports_to_offer_ports() -> None:
    app = app_from_data({
        "id": "/shop/cart", "cpus": 1.0, "mem": 256.0,
        "container": {"image": "nginx:1.25", "port_mappings": [{"container_port": 80},
                                                               {"container_port": 443, "host_port": 31050,
                                                                "protocol": "tcp"}],
                      "parameters": {"ulimit": "nofile=1024"}},
        "health_checks": [{"protocol": "TCP", "port_index": 1, "interval_seconds": 10.0, "timeout_seconds": 2.0}],
    })
    o = offer("o1")
    chosen = fit_on(app, o)
    assert chosen.ports == (31000, 31050)
    task = task_info(app, "v1", "t1", o, chosen)
    assert task.container == ContainerInfo(type="DOCKER", docker=DockerInfo(
        image="nginx:1.25", network="BRIDGE", parameters={"ulimit": "nofile=1024"},
        port_mappings=[PortMapping(host_port=31000, container_port=80), PortMapping(host_port=31050, container_port=443)]))
    assert task.command == CommandInfo(value=None, shell=False, environment={
        "TEPUI_APP_ID": "/shop/cart", "TEPUI_APP_VERSION": "v1", "TEPUI_TASK_ID": "t1", "HOST": "h1",
        "PORT0": "31000", "PORT1": "31050", "PORT": "31000", "PORTS": "31000,31050"})
    # The health check probes the host port of mapping 1.
    assert task.health_check.tcp == TCPCheck(port=31050)
    assert Resources.from_wire(task.resources) == Resources.parse(
        "cpus:1;mem:256;ports:[31000-31000,31050-31050]")
    # A fixed host port that the offer does not have.
    assert fit_on(app, offer("o2", resources="cpus:4;mem:4096;ports:[31000-31010]")) == \
        "port 31050 is not free on this agent"


def test_host_network_container_uses_the_app_ports() -> None:
    app = app_from_data({"id": "/web", "container": {"image": "web:1", "network": "HOST"}, "ports": [{"port": 0}],
                         "command": "serve"})
    o = offer("o1")
    task = task_info(app, "v1", "t1", o, fit_on(app, o))
    assert task.container.docker.network == "HOST" and task.container.docker.port_mappings == []
    assert task.command.environment["PORT0"] == "31000"
    assert task.command.value == "serve"


def test_health_check_mapping() -> None:
    assert health_check(spec(), []) is None
    command = spec(health_checks=[{"protocol": "COMMAND", "command": "curl -f localhost:$PORT0",
                                   "interval_seconds": 30.0, "timeout_seconds": 5.0}])
    assert health_check(command, []) == HealthCheck(
        type="COMMAND", command=CommandInfo(value="curl -f localhost:$PORT0"), delay_seconds=0.0,
        interval_seconds=30.0, timeout_seconds=5.0, consecutive_failures=3, grace_period_seconds=300.0)
    fixed = spec(health_checks=[{"protocol": "HTTP", "port": 9000}])
    assert health_check(fixed, []).http == HTTPCheck(port=9000, path="/", scheme="http")
    default_index = spec(ports=[{"port": 0}, {"port": 0}], health_checks=[{}])
    assert health_check(default_index, [31005, 31006]).http == HTTPCheck(port=31005, path="/", scheme="http")
    tcp = spec(ports=[{"port": 0}], health_checks=[{"protocol": "TCP"}])
    assert health_check(tcp, [31000]).tcp == TCPCheck(port=31000)
