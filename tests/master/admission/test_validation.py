"""Scenario 31, field by field (issue 6 "Validation"): every bad task spec ends TASK_ERROR with a
reason naming the field, never reaches an agent, and gives its resources back; the same spec
made valid launches. Host-path volumes need --allow-host-volumes."""

from __future__ import annotations

import math
from typing import Any

import pytest

from tepui.master.core import MasterCore
from tepui.master.events import Received
from tepui.master.admission.task_checks import spec_problem
from tepui.master.admission.validation import validate_task
from tepui.sdk.protocol import scheduler as sm
from tepui.sdk.protocol.values import (
    CommandInfo,
    CommandURI,
    ContainerInfo,
    DockerInfo,
    ExecutorInfo,
    HealthCheck,
    KillPolicy,
    PortMapping,
    Resource,
    TaskGroupInfo,
    TaskInfo,
    TaskReason,
    TaskState,
    Volume,
)
from tepui.sdk.resources import Resources
from tests.master.test_core import AGENT, AGENT_RES, FW, make_core, offer_cycle, register_agent, sends, subscribe

RES = Resources.of(cpus=1, mem=128).to_wire()


def spec(task_id: str = "t", **kw: Any) -> TaskInfo:
    fields: dict[str, Any] = {"name": task_id, "task_id": task_id, "agent_id": "m-S0001", "resources": RES,
                              "command": CommandInfo(value="true")}
    fields.update(kw)
    return TaskInfo(**fields)


def docker(image: str = "busybox:1", **kw: Any) -> ContainerInfo:
    volumes = kw.pop("volumes", [])
    return ContainerInfo(type="DOCKER", docker=DockerInfo(image=image, **kw), volumes=volumes)


# (case id, task, a phrase the reason must contain)
BAD: list[tuple[str, TaskInfo, str]] = [
    ("empty-id", spec(""), "must not be empty"),
    ("dotdot-id", spec(".."), "not allowed"),
    ("slash-id", spec("a/b"), "'/'"),
    ("control-id", spec("a\x07b"), "control characters"),
    ("long-id", spec("x" * 300), "300 characters"),
    ("zero-resources", spec(resources=Resources.of(cpus=0, mem=0).to_wire()), "no resources"),
    ("zero-cpus-and-mem", spec(resources=[Resource(name="cpus", scalar=0.0), Resource(name="disk", scalar=5.0)]),
     "greater than zero"),
    ("negative-resources", spec(resources=[Resource(name="cpus", scalar=-1.0)]), "invalid resources"),
    ("nan-resources", spec(resources=[Resource(name="mem", scalar=math.nan)]), "invalid resources"),
    ("more-than-offered", spec(resources=Resources.of(cpus=64, mem=1).to_wire()), "missing"),
    ("negative-grace", spec(kill_policy=KillPolicy(-1.0)), "grace_period_seconds"),
    ("infinite-grace", spec(kill_policy=KillPolicy(math.inf)), "grace_period_seconds"),
    ("nan-grace", spec(kill_policy=KillPolicy(math.nan)), "grace_period_seconds"),
    ("grace-over-a-day", spec(kill_policy=KillPolicy(86401.0)), "from 0 to 86400"),
    ("c1-control-id", spec("a\x9bb"), "control characters"),
    ("control-name", spec(name="web\nevil"), "name must not contain control"),
    ("long-name", spec(name="n" * 2000), "name is 2000 characters"),
    ("empty-label-key", spec(labels={"": "v"}), "label key"),
    ("nul-label", spec(labels={"k": "a\0b"}), "label 'k'"),
    ("too-many-labels", spec(labels={f"k{i}": "v" for i in range(200)}), "200 labels"),
    ("env-name", spec(command=CommandInfo(value="true", environment={"A=B": "x"})), "environment variable name"),
    ("env-nul", spec(command=CommandInfo(value="true", environment={"A": "x\0y"})), "environment variable A"),
    ("nul-command", spec(command=CommandInfo(value="echo \0")), "command.value"),
    ("nul-argument", spec(command=CommandInfo(shell=False, arguments=["ls", "a\0"])), "command.arguments[1]"),
    ("bad-user", spec(command=CommandInfo(value="true", user="a b")), "command.user"),
    ("uri-scheme", spec(command=CommandInfo(value="true", uris=[CommandURI("ftp://x/y")])), "command.uris[0]"),
    ("uri-empty", spec(command=CommandInfo(value="true", uris=[CommandURI("")])), "command.uris[0].value"),
    ("uri-output", spec(command=CommandInfo(value="true", uris=[CommandURI("https://x/y", output_file="../z")])),
     "output_file"),
    ("uri-output-absolute", spec(command=CommandInfo(value="true", uris=[CommandURI("https://x/y", output_file="/z")])),
     "output_file"),
    ("uri-output-empty-part", spec(command=CommandInfo(value="true", uris=[CommandURI("https://x/y",
                                                                                      output_file="map//z")])),
     "output_file"),
    ("container-type", spec(container=ContainerInfo(type="LXC")), "container.type"),
    ("docker-no-image", spec(container=ContainerInfo(type="DOCKER")), "container.docker.image"),
    ("docker-bad-image", spec(container=docker("bad image")), "not a valid image"),
    ("docker-network", spec(container=docker(network="OVERLAY")), "container.docker.network"),
    ("docker-port", spec(container=docker(port_mappings=[PortMapping(0, 80)])), "port_mappings[0]"),
    ("docker-protocol", spec(container=docker(port_mappings=[PortMapping(31000, 80, "icmp")])), "protocol"),
    ("hostname", spec(container=ContainerInfo(hostname="-bad-")), "container.hostname"),
    ("volume-dotdot", spec(container=docker(volumes=[Volume("../x", "data")])), "container_path"),
    ("volume-mode", spec(container=docker(volumes=[Volume("data", "data", "RWX")])), ".mode"),
    ("host-volume-absolute", spec(container=docker(volumes=[Volume("/etc", "/etc")])), "--allow-host-volumes"),
    ("host-volume-escape", spec(container=docker(volumes=[Volume("data", "../../x")])), "--allow-host-volumes"),
    ("executor-id", spec(command=None, executor=ExecutorInfo(executor_id="a/b", command=CommandInfo("x"))),
     "executor.executor_id"),
    ("health-interval", spec(health_check=HealthCheck(type="TCP", interval_seconds=0.0)), "interval_seconds"),
    ("health-nan", spec(health_check=HealthCheck(type="TCP", delay_seconds=math.nan)), "delay_seconds"),
    ("health-failures", spec(health_check=HealthCheck(type="TCP", consecutive_failures=0)), "consecutive_failures"),
]


def _accept(core: MasterCore, tasks: list[TaskInfo], now: float = 1.0) -> list[Any]:
    [offers] = offer_cycle(core, now)
    return core.handle(Received(FW, sm.Accept("m-F0001", [offers.offers[0].id], [sm.Launch(tasks)])), now)


@pytest.mark.parametrize(("info", "phrase"), [pytest.param(t, p, id=name) for name, t, p in BAD])
def test_31_a_bad_spec_ends_task_error_naming_the_field_and_returns_the_resources(info: TaskInfo,
                                                                                 phrase: str) -> None:
    core = make_core()
    register_agent(core)
    subscribe(core)
    effects = _accept(core, [info])
    [update] = [b.status for b in sends(effects, FW) if isinstance(b, sm.Update)]
    assert (update.state, update.reason) == (TaskState.ERROR, TaskReason.TASK_INVALID)
    assert phrase in (update.message or ""), update.message
    assert sends(effects, AGENT) == []
    assert core.allocator.available("m-S0001") == AGENT_RES


def test_valid_specs_with_every_field_set_launch() -> None:
    good = [
        spec("plain", labels={"team": "web"}, command=CommandInfo(
            value="./run", environment={"JAVA_OPTS": "-Xmx1g", "_x.y-z": ""},
            uris=[CommandURI("https://example.invalid/a.tgz", output_file="a.tgz"), CommandURI("/srv/file"),
                  CommandURI("https://example.invalid/out.txt", output_file="map/3/out.txt")])),
        spec("box", command=CommandInfo(value="true"), container=docker(
            "registry.local:5000/team/web@sha256:abc", network="BRIDGE",
            port_mappings=[PortMapping(31000, 8080, "udp")], volumes=[Volume("data", "data", "RO")])),
        spec("checked", health_check=HealthCheck(type="COMMAND", command=CommandInfo(value="true"))),
    ]
    for info in good:
        assert spec_problem(info) is None, info.task_id
    core = make_core()
    register_agent(core)
    subscribe(core)
    effects = _accept(core, good[:1])
    assert [type(b).__name__ for b in sends(effects, AGENT)] == ["RunTask"]


def test_host_volumes_are_allowed_by_the_master_flag() -> None:
    info = spec(container=docker(volumes=[Volume("/etc", "/etc", "RO")]))
    available = Resources.of(cpus=4, mem=4096)
    assert "--allow-host-volumes" in (validate_task(info, "m-S0001", available, set()) or "")
    assert validate_task(info, "m-S0001", available, set(), allow_host_volumes=True) is None
    core = make_core(allow_host_volumes=True)
    register_agent(core)
    subscribe(core)
    assert [type(b).__name__ for b in sends(_accept(core, [info]), AGENT)] == ["RunTask"]


def test_one_bad_task_in_a_group_fails_the_whole_group_with_the_reason() -> None:
    core = make_core()
    register_agent(core)
    subscribe(core)
    [offers] = offer_cycle(core, 1.0)
    group = sm.LaunchGroup(ExecutorInfo(executor_id="e", type="DEFAULT"),
                           TaskGroupInfo(tasks=[spec("ok"), spec("bad", labels={"": "x"})]))
    effects = core.handle(Received(FW, sm.Accept("m-F0001", [offers.offers[0].id], [group])), 1.0)
    updates = [b.status for b in sends(effects, FW) if isinstance(b, sm.Update)]
    assert [(u.task_id, u.state) for u in updates] == [("ok", TaskState.ERROR), ("bad", TaskState.ERROR)]
    assert all("label key" in (u.message or "") for u in updates)
    assert sends(effects, AGENT) == []
