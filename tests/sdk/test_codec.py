"""The wire codec (DESIGN §4): every message round-trips, bad bytes are one ProtocolError
naming the problem, and a framework written with plain ``msgpack`` speaks the same protocol."""

from __future__ import annotations

import typing
from typing import Any

import msgpack
import msgspec
import pytest
from hypothesis import HealthCheck as HypothesisHealthCheck
from hypothesis import given, settings
from hypothesis import strategies as st
from tepui.sdk.codec import DEFAULT_MAX_BYTES, Codec, ProtocolError, envelope
from tepui.sdk.protocol import agent as ag
from tepui.sdk.protocol import executor as ex
from tepui.sdk.protocol import scheduler as sc
from tepui.sdk.protocol.envelope import (
    PROTOCOL_VERSION,
    AgentExecutorInbound,
    AgentInbound,
    Envelope,
    ExecutorInbound,
    FrameworkInbound,
    MasterInbound,
)
from tepui.sdk.protocol.values import (
    DiskInfo,
    Persistence,
    VolumeMount,
    DemandShape,
    RoleExplanation,
    AgentInfo,
    CommandInfo,
    CommandURI,
    ContainerInfo,
    DockerInfo,
    ExecutorInfo,
    Filters,
    FrameworkInfo,
    HealthCheck,
    HTTPCheck,
    KillPolicy,
    MasterInfo,
    Offer,
    PortMapping,
    Range,
    ReconcileTask,
    Reservation,
    Resource,
    TaskGroupInfo,
    TaskInfo,
    TaskReason,
    TaskSource,
    TaskState,
    TaskStatus,
    TCPCheck,
    Volume,
)

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HypothesisHealthCheck.too_slow])

# --- realistic, fully populated building blocks ------------------------------------------------

RESOURCES = [
    Resource(name="cpus", scalar=1.5),
    Resource(name="mem", scalar=2048.0),
    Resource(
        name="cpus",
        scalar=0.25,
        role="eng",
        reservation=Reservation(type="DYNAMIC", principal="ops", labels={"ticket": "OPS-42"}),
    ),
    Resource(
        name="ports", type="RANGES", ranges=[Range(begin=31000, end=31009), Range(begin=31100, end=31100)]
    ),
    Resource(name="disks", type="SET", set=["nvme0", "nvme1"], role="eng"),
]

VOLUMES = [
    Resource(
        name="disk",
        scalar=4096.0,
        role="eng",
        reservation=Reservation(type="DYNAMIC", principal="ops"),
        disk=DiskInfo(persistence=Persistence(id="pg-data", principal="ops"),
                      volume=VolumeMount(container_path="data", mode="RO")),
    )
]

COMMAND = CommandInfo(
    value="./server --port $PORT0",
    arguments=["./server", "--port", "31000"],
    shell=False,
    environment={"PORT0": "31000", "JAVA_OPTS": "-Xmx512m", "ÜNÏCODE": "✓"},
    uris=[
        CommandURI(
            value="https://artifacts.example/server-1.2.tgz",
            executable=True,
            extract=False,
            cache=True,
            output_file="server.tgz",
        ),
        CommandURI(value="https://artifacts.example/config.yml"),
    ],
    user="nobody",
)

CONTAINER = ContainerInfo(
    type="DOCKER",
    docker=DockerInfo(
        image="registry.local/web:1.2.3",
        network="HOST",
        port_mappings=[PortMapping(host_port=31000, container_port=8080, protocol="udp")],
        privileged=True,
        parameters={"ulimit": "nofile=65536", "cap-add": "NET_ADMIN"},
        force_pull_image=True,
    ),
    volumes=[Volume(container_path="/data", host_path="/srv/data", mode="RO")],
    hostname="web-1",
)

HEALTH = HealthCheck(
    type="HTTP",
    command=CommandInfo(value="curl -fsS http://localhost:8080/health"),
    http=HTTPCheck(port=8080, path="/health", scheme="https", statuses=[200, 204]),
    tcp=TCPCheck(port=8080),
    delay_seconds=5.0,
    interval_seconds=2.5,
    timeout_seconds=1.5,
    consecutive_failures=5,
    grace_period_seconds=30.0,
)

KILL = KillPolicy(grace_period_seconds=12.5)

EXECUTOR = ExecutorInfo(
    executor_id="web.executor",
    type="DEFAULT",
    framework_id="fw-services",
    command=COMMAND,
    container=ContainerInfo(type="MESOS", volumes=[Volume(container_path="/tmp")]),
    resources=[Resource(name="cpus", scalar=0.1), Resource(name="mem", scalar=32.0)],
    name="default executor",
)

TASK = TaskInfo(
    name="web",
    task_id="web.7f3c",
    agent_id="agent-0001",
    resources=RESOURCES,
    command=COMMAND,
    executor=EXECUTOR,
    container=CONTAINER,
    health_check=HEALTH,
    kill_policy=KILL,
    data=b"\x00\x01opaque\xff\xfe",
    labels={"version": "1.2.3", "owner": "team-web"},
)

TASK_2 = TaskInfo(
    name="sidecar",
    task_id="sidecar.7f3c",
    agent_id="agent-0001",
    resources=[Resource(name="cpus", scalar=0.001)],
    command=CommandInfo(value="exec envoy"),
)

TASK_GROUP = TaskGroupInfo(tasks=[TASK, TASK_2])

STATUS = TaskStatus(
    task_id="web.7f3c",
    state=TaskState.RUNNING,
    message="health check passed",
    source=TaskSource.EXECUTOR,
    reason=TaskReason.TASK_HEALTH_CHECK_STATUS_UPDATED,
    data=b"\x89PNG",
    agent_id="agent-0001",
    executor_id="web.executor",
    timestamp=1_700_000_000.123456,
    uuid=bytes(range(16)),
    healthy=True,
    labels={"ip": "10.0.0.7"},
    exit_code=0,
)

FRAMEWORK = FrameworkInfo(
    user="svc",
    name="services",
    id="fw-services",
    failover_timeout=604800.0,
    checkpoint=True,
    roles=["eng", "eng/backend"],
    hostname="sched-1.example",
    principal="services",
    webui_url="http://sched-1.example:8080",
    capabilities=["MULTI_ROLE", "PARTITION_AWARE"],
    labels={"tier": "platform"},
)

MASTER = MasterInfo(
    id="master-1",
    address="tcp://10.0.0.1:5050",
    hostname="master-1.example",
    version="0.1.0",
    epoch=7,
    http_port=5080,
)

AGENT = AgentInfo(
    hostname="node-1.example",
    resources=RESOURCES,
    attributes={"rack": "r1", "zone": "a"},
    id="agent-0001",
    http_port=5051,
    address="10.0.0.2",
    http_tls=True,
    task_user="nobody",
)

OFFER = Offer(
    id="offer-99",
    framework_id="fw-services",
    agent_id="agent-0001",
    hostname="node-1.example",
    resources=RESOURCES,
    attributes={"rack": "r1"},
    executor_ids=["web.executor"],
    allocation_role="eng",
    address="10.0.0.7",
)

UUID = bytes(range(100, 116))

# One instance per message type, keyed by the class. The coverage tests below compare these
# keys with ``typing.get_args`` of each union, so a message added later without a sample fails.

OPERATIONS: dict[type, Any] = {
    sc.Launch: sc.Launch(task_infos=[TASK, TASK_2]),
    sc.LaunchGroup: sc.LaunchGroup(executor=EXECUTOR, task_group=TASK_GROUP),
    sc.Reserve: sc.Reserve(resources=VOLUMES, source=[Resource(name="disk", scalar=4096.0)]),
    sc.Unreserve: sc.Unreserve(resources=VOLUMES),
    sc.Create: sc.Create(volumes=VOLUMES),
    sc.Destroy: sc.Destroy(volumes=VOLUMES),
}

SCHEDULER_CALLS: dict[type, Any] = {
    sc.Subscribe: sc.Subscribe(
        framework_info=FRAMEWORK, suppressed_roles=["eng/backend"],
        demand=[DemandShape(resources=RESOURCES, count=3, role="eng")],
    ),
    sc.Teardown: sc.Teardown(framework_id="fw-services"),
    sc.Accept: sc.Accept(
        framework_id="fw-services",
        offer_ids=["offer-99", "offer-100"],
        operations=list(OPERATIONS.values()),
        filters=Filters(refuse_seconds=30.0),
    ),
    sc.Decline: sc.Decline(
        framework_id="fw-services", offer_ids=["offer-99"], filters=Filters(refuse_seconds=120.0)
    ),
    sc.Revive: sc.Revive(framework_id="fw-services", roles=["eng"]),
    sc.Suppress: sc.Suppress(framework_id="fw-services", roles=["eng/backend"]),
    sc.Kill: sc.Kill(framework_id="fw-services", task_id="web.7f3c", agent_id="agent-0001", kill_policy=KILL),
    sc.Shutdown: sc.Shutdown(framework_id="fw-services", executor_id="web.executor", agent_id="agent-0001"),
    sc.Acknowledge: sc.Acknowledge(
        framework_id="fw-services", agent_id="agent-0001", task_id="web.7f3c", uuid=UUID
    ),
    sc.Reconcile: sc.Reconcile(
        framework_id="fw-services",
        tasks=[ReconcileTask(task_id="web.7f3c", agent_id="agent-0001"), ReconcileTask(task_id="web.8")],
    ),
    sc.Message: sc.Message(
        framework_id="fw-services", agent_id="agent-0001", executor_id="web.executor", data=b"\x00hi"
    ),
    sc.UpdateFramework: sc.UpdateFramework(framework_info=FRAMEWORK, suppressed_roles=["eng"]),
    sc.DeclareDemand: sc.DeclareDemand(framework_id="fw-batch", demand=[DemandShape(resources=RESOURCES)]),
    sc.Explain: sc.Explain(framework_id="fw-batch"),
}

AGENT_TO_MASTER: dict[type, Any] = {
    ag.RegisterAgent: ag.RegisterAgent(agent_info=AGENT, version="0.1.0", boot_id="boot-1",
                                       previous_agent_id="agent-before-reboot"),
    ag.ReregisterAgent: ag.ReregisterAgent(
        agent_info=AGENT,
        version="0.1.0",
        tasks=[
            ag.TaskReport(framework_id="fw-services", task=TASK, state=TaskState.RUNNING),
            ag.TaskReport(framework_id="fw-services", task=TASK_2, state=TaskState.STAGING),
        ],
        frameworks=[FRAMEWORK],
        boot_id="boot-1",
    ),
    ag.StatusUpdate: ag.StatusUpdate(framework_id="fw-services", status=STATUS),
    ag.Pong: ag.Pong(seq=2**40, tasks=2, digest=2**32 - 1),
    ag.ExecutorToFramework: ag.ExecutorToFramework(
        framework_id="fw-services", executor_id="web.executor", agent_id="agent-0001", data=b"\xffdata"
    ),
    ag.UnregisterAgent: ag.UnregisterAgent(agent_id="agent-0001"),
    ag.ExecutorTerminated: ag.ExecutorTerminated(framework_id="fw-batch", executor_id="exec-1", status=137),
    ag.TaskAudit: ag.TaskAudit(seq=3, tasks=[ag.TaskReport(framework_id="fw-services", task=TASK,
                                                           state=TaskState.RUNNING)],
                               ended=[ag.TaskReport(framework_id="fw-batch", task=TASK, state=TaskState.FINISHED)]),
}

MASTER_TO_AGENT: dict[type, Any] = {
    ag.AgentRegistered: ag.AgentRegistered(
        agent_id="agent-0001", master_info=MASTER, ping_interval_seconds=15.0
    ),
    ag.AgentReregistered: ag.AgentReregistered(
        agent_id="agent-0001", master_info=MASTER, ping_interval_seconds=7.5
    ),
    ag.RunTask: ag.RunTask(framework_info=FRAMEWORK, task=TASK),
    ag.RunTaskGroup: ag.RunTaskGroup(framework_info=FRAMEWORK, executor=EXECUTOR, task_group=TASK_GROUP),
    ag.KillTask: ag.KillTask(framework_id="fw-services", task_id="web.7f3c", kill_policy=KILL),
    ag.StatusUpdateAck: ag.StatusUpdateAck(framework_id="fw-services", task_id="web.7f3c", uuid=UUID),
    ag.Ping: ag.Ping(seq=12, interval_seconds=2.0),
    ag.ShutdownFramework: ag.ShutdownFramework(framework_id="fw-services"),
    ag.ShutdownExecutor: ag.ShutdownExecutor(framework_id="fw-services", executor_id="web.executor"),
    ag.FrameworkToExecutor: ag.FrameworkToExecutor(
        framework_id="fw-services", executor_id="web.executor", data=b"\x01\x02"
    ),
    ag.ShutdownAgent: ag.ShutdownAgent(message="agent removed by operator"),
    ag.DestroyVolumes: ag.DestroyVolumes(volumes=VOLUMES),
    ag.ReconcileTasks: ag.ReconcileTasks(framework_id="fw-services", task_ids=["web.7f3c", "web.8a01"],
                                         framework_info=FRAMEWORK),
    ag.AuditTasks: ag.AuditTasks(seq=3, tasks={"fw-services": ["web.7f3c", "web.8a01"]}, frameworks=[FRAMEWORK]),
    ag.Error: ag.Error(message="master m2 is a standby: the leading master is m1 at 10.0.0.1:5050"),
}

SCHEDULER_EVENTS: dict[type, Any] = {
    sc.Subscribed: sc.Subscribed(
        framework_id="fw-services", heartbeat_interval_seconds=15.0, master_info=MASTER
    ),
    sc.Offers: sc.Offers(offers=[OFFER, OFFER]),
    sc.Rescind: sc.Rescind(offer_id="offer-99"),
    sc.Update: sc.Update(status=STATUS),
    sc.FrameworkMessage: sc.FrameworkMessage(
        agent_id="agent-0001", executor_id="web.executor", data=b"\x00\x00"
    ),
    sc.Failure: sc.Failure(agent_id="agent-0001", executor_id="web.executor", status=137),
    sc.Error: sc.Error(message="framework has been removed", call_id="c-7", call_type="DECLINE",
                       field="$.body.filters.refuse_seconds"),
    sc.Heartbeat: sc.Heartbeat(),
    sc.Explanation: sc.Explanation(roles=[RoleExplanation(role="eng", reason="FILTERED", message="all declined")]),
}

EXECUTOR_CALLS: dict[type, Any] = {
    ex.ExecutorSubscribe: ex.ExecutorSubscribe(
        framework_id="fw-services",
        executor_id="web.executor",
        unacknowledged_tasks=[TASK],
        unacknowledged_updates=[ex.UnacknowledgedUpdate(framework_id="fw-services", status=STATUS)],
        secret="Xq3v-executor-secret",
    ),
    ex.ExecutorUpdate: ex.ExecutorUpdate(status=STATUS),
    ex.ExecutorMessage: ex.ExecutorMessage(data=b"to the framework"),
    ex.ExecutorHeartbeat: ex.ExecutorHeartbeat(),
}

EXECUTOR_EVENTS: dict[type, Any] = {
    ex.ExecutorSubscribed: ex.ExecutorSubscribed(
        executor_info=EXECUTOR, framework_info=FRAMEWORK, agent_info=AGENT
    ),
    ex.LaunchTask: ex.LaunchTask(task=TASK),
    ex.LaunchTaskGroup: ex.LaunchTaskGroup(task_group=TASK_GROUP),
    ex.KillTaskEvent: ex.KillTaskEvent(task_id="web.7f3c", kill_policy=KILL),
    ex.Acknowledged: ex.Acknowledged(task_id="web.7f3c", uuid=UUID),
    ex.MessageToExecutor: ex.MessageToExecutor(data=b"from the framework"),
    ex.ExecutorError: ex.ExecutorError(message="executor registration timed out"),
    ex.ShutdownEvent: ex.ShutdownEvent(),
    ex.ExecutorHeartbeatEvent: ex.ExecutorHeartbeatEvent(),
}

# (union, samples, the codec the *sender* holds, the codec of the endpoint that receives it)
LINKS = {
    "SchedulerCall": (sc.SchedulerCall, SCHEDULER_CALLS, FrameworkInbound, MasterInbound),
    "AgentToMaster": (ag.AgentToMaster, AGENT_TO_MASTER, AgentInbound, MasterInbound),
    "MasterToAgent": (ag.MasterToAgent, MASTER_TO_AGENT, MasterInbound, AgentInbound),
    "SchedulerEvent": (sc.SchedulerEvent, SCHEDULER_EVENTS, MasterInbound, FrameworkInbound),
    "ExecutorCall": (ex.ExecutorCall, EXECUTOR_CALLS, ExecutorInbound, AgentExecutorInbound),
    "ExecutorEvent": (ex.ExecutorEvent, EXECUTOR_EVENTS, AgentExecutorInbound, ExecutorInbound),
}

ALL_SAMPLES: list[Any] = [m for _, samples, _, _ in LINKS.values() for m in samples.values()]


def _round_trip_cases() -> list[Any]:
    cases = []
    for link, (union, _samples, _sender, _receiver) in LINKS.items():
        for cls in typing.get_args(union):
            cases.append(pytest.param(link, cls, id=f"{link}.{cls.__name__}"))
    return cases


@pytest.mark.parametrize("link", list(LINKS))
def test_samples_cover_every_member_of_the_union(link: str) -> None:
    union, samples, _, _ = LINKS[link]
    members = set(typing.get_args(union))
    assert set(samples) == members, (
        f"{link}: missing samples for {sorted(c.__name__ for c in members - set(samples))}, "
        f"extra {sorted(c.__name__ for c in set(samples) - members)}"
    )
    for cls, sample in samples.items():
        assert type(sample) is cls


def test_accept_sample_carries_every_offer_operation() -> None:
    assert set(OPERATIONS) == set(typing.get_args(sc.Operation))
    accept = SCHEDULER_CALLS[sc.Accept]
    assert {type(op) for op in accept.operations} == set(typing.get_args(sc.Operation))


def test_endpoint_unions_are_what_the_links_say() -> None:
    assert set(typing.get_args(MasterInbound)) == set(typing.get_args(sc.SchedulerCall)) | set(
        typing.get_args(ag.AgentToMaster)
    )
    assert set(typing.get_args(AgentInbound)) == set(typing.get_args(ag.MasterToAgent))
    assert set(typing.get_args(FrameworkInbound)) == set(typing.get_args(sc.SchedulerEvent))
    assert set(typing.get_args(AgentExecutorInbound)) == set(typing.get_args(ex.ExecutorCall))
    assert set(typing.get_args(ExecutorInbound)) == set(typing.get_args(ex.ExecutorEvent))


def _is_default(info: msgspec.structs.FieldInfo, value: Any) -> bool:
    if info.default is not msgspec.NODEFAULT:
        return bool(value == info.default)
    if info.default_factory is not msgspec.NODEFAULT:
        return bool(value == info.default_factory())
    return False


def _walk(value: Any, seen: dict[type, set[str]], fields: dict[type, set[str]]) -> None:
    if isinstance(value, msgspec.Struct):
        cls = type(value)
        infos = msgspec.structs.fields(cls)
        fields.setdefault(cls, {f.name for f in infos})
        populated = seen.setdefault(cls, set())
        for info in infos:
            item = getattr(value, info.name)
            if not _is_default(info, item):
                populated.add(info.name)
            _walk(item, seen, fields)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _walk(item, seen, fields)
    elif isinstance(value, dict):
        for item in value.values():
            _walk(item, seen, fields)


def test_samples_populate_every_field_of_every_struct() -> None:
    """A round trip only proves something for the fields that are set: every field of every
    struct reachable from the samples must hold a non-default value in at least one sample."""
    seen: dict[type, set[str]] = {}
    fields: dict[type, set[str]] = {}
    for sample in ALL_SAMPLES:
        _walk(sample, seen, fields)
    unpopulated = {cls.__name__: sorted(fields[cls] - seen[cls]) for cls in fields if fields[cls] - seen[cls]}
    assert unpopulated == {}
    # every value type of the vocabulary is exercised somewhere
    for value_type in (Reservation, Range, CommandURI, PortMapping, DockerInfo, Volume, HTTPCheck, TCPCheck):
        assert value_type in fields


@pytest.mark.parametrize(("link", "cls"), _round_trip_cases())
def test_round_trip(link: str, cls: type) -> None:
    _union, samples, sender_body, receiver_body = LINKS[link]
    if cls not in samples:
        pytest.fail(f"no sample instance for {link} member {cls.__name__}: add one to the samples")
    body = samples[cls]
    original = envelope(body, 2**53 + 7, epoch=42, incarnation="inc-6f1b", call_id="call-1")
    data = Codec(sender_body).encode(original)
    decoded = Codec(receiver_body).decode(data)
    assert isinstance(decoded, Envelope)
    assert type(decoded.body) is cls
    assert decoded == original
    assert decoded.body == body
    assert (decoded.v, decoded.id, decoded.epoch, decoded.incarnation) == (
        PROTOCOL_VERSION,
        2**53 + 7,
        42,
        "inc-6f1b",
    )


def test_round_trip_with_envelope_defaults_and_memoryview() -> None:
    original = envelope(sc.Heartbeat(), 1)
    data = Codec(MasterInbound).encode(original)
    decoded = Codec(FrameworkInbound).decode(memoryview(data))
    assert decoded == original
    assert decoded.epoch == 0 and decoded.incarnation is None


def test_enum_fields_decode_to_enums() -> None:
    data = Codec(AgentInbound).encode(envelope(AGENT_TO_MASTER[ag.StatusUpdate], 1))
    status = Codec(MasterInbound).decode(data).body.status
    assert status.state is TaskState.RUNNING
    assert status.source is TaskSource.EXECUTOR
    assert status.reason is TaskReason.TASK_HEALTH_CHECK_STATUS_UPDATED


# --- malformed input ---------------------------------------------------------------------------

MASTER_CODEC = Codec(MasterInbound)


def _packed(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def _subscribe_dict(**framework_info: Any) -> dict[str, Any]:
    info = {"user": "svc", "name": "services"}
    info.update(framework_info)
    return {"v": 1, "id": 1, "body": {"type": "SUBSCRIBE", "framework_info": info}}


def _with_raw(obj: Any, raw: bytes) -> bytes:
    """Packs ``obj`` and splices ``raw`` in place of its single ``None`` (0xc0) value."""
    data = _packed(obj)
    assert data.count(b"\xc0") == 1
    return data.replace(b"\xc0", raw)


VALID = _packed(_subscribe_dict())
DEEP_ARRAYS = b"\x91" * 100_000 + b"\xc0"
DEEP_MAPS = b"\x81\xa1k" * 100_000 + b"\xc0"
FOUR_GIB = b"\xff\xff\xff\xff"


def _body_with_value_before_tag(raw: bytes) -> bytes:
    """A SUBSCRIBE whose ``framework_info`` comes *before* the ``type`` tag, so the decoder must
    skip it while it looks for the tag."""
    body = b"\x82" + _packed("framework_info") + raw + _packed("type") + _packed("SUBSCRIBE")
    return b"\x83" + _packed("v") + b"\x01" + _packed("id") + b"\x01" + _packed("body") + body


MALFORMED = [
    pytest.param(b"\xc1", "invalid opcode", id="invalid-opcode"),
    pytest.param(b"", "truncated", id="empty"),
    pytest.param(VALID[:-4], "truncated", id="truncated"),
    pytest.param(VALID[:1], "truncated", id="truncated-after-header"),
    pytest.param(VALID + b"\x00", "trailing characters", id="trailing-byte"),
    pytest.param(VALID + VALID, "trailing characters", id="two-messages-in-one-frame"),
    pytest.param(b"\x91" * 100_000, "Expected `object`, got `array`", id="deep-arrays-top-level"),
    pytest.param(b"\x81\xa1v" * 100_000, "$.v", id="deep-maps-top-level"),
    pytest.param(
        _with_raw(_subscribe_dict(labels={"team": None}), DEEP_ARRAYS),
        "$.body.framework_info.labels",
        id="deep-arrays-in-labels",
    ),
    pytest.param(
        _with_raw(_subscribe_dict(labels={"team": None}), DEEP_MAPS),
        "$.body.framework_info.labels",
        id="deep-maps-in-labels",
    ),
    pytest.param(
        _with_raw(
            {"v": 1, "id": 1, "body": {"type": "DECLINE", "framework_id": "f", "offer_ids": None}},
            DEEP_ARRAYS,
        ),
        "$.body.offer_ids[0]",
        id="deep-arrays-in-list",
    ),
    pytest.param(
        _with_raw(
            {"v": 1, "id": 1, "body": {"type": "TEARDOWN", "framework_id": "f"}, "x": None}, DEEP_ARRAYS
        ),
        "unknown field `x`",
        id="deep-arrays-in-unknown-field",
    ),
    # The value before the tag must be skipped; msgspec descends into it and the codec's
    # RecursionError guard turns that into a ProtocolError.
    pytest.param(_body_with_value_before_tag(DEEP_ARRAYS), "nested too deeply", id="deep-arrays-before-union-tag"),
    pytest.param(_body_with_value_before_tag(DEEP_MAPS), "nested too deeply", id="deep-maps-before-union-tag"),
    pytest.param(b"\xdb" + FOUR_GIB, "truncated", id="str32-4GiB-header"),
    pytest.param(b"\xc6" + FOUR_GIB, "truncated", id="bin32-4GiB-header"),
    pytest.param(b"\xdd" + FOUR_GIB, "Expected `object`, got `array`", id="array32-4GiB-header"),
    pytest.param(b"\xdf" + FOUR_GIB, "truncated", id="map32-4GiB-header"),
    pytest.param(
        _with_raw(
            {
                "v": 1,
                "id": 1,
                "body": {
                    "type": "MESSAGE",
                    "framework_id": "f",
                    "agent_id": "a",
                    "executor_id": "e",
                    "data": None,
                },
            },
            b"\xc6" + FOUR_GIB,
        ),
        "truncated",
        id="bin32-4GiB-header-in-data",
    ),
    pytest.param(
        _with_raw(
            {"v": 1, "id": 1, "body": {"type": "DECLINE", "framework_id": "f", "offer_ids": None}},
            b"\xdd" + FOUR_GIB,
        ),
        "truncated",
        id="array32-4GiB-header-in-list",
    ),
    pytest.param(
        _with_raw(_subscribe_dict(labels=None), b"\xdf" + FOUR_GIB),
        "truncated",
        id="map32-4GiB-header-in-labels",
    ),
    pytest.param(
        _with_raw(_subscribe_dict(labels=None), b"\xdb" + FOUR_GIB),
        "truncated",
        id="str32-4GiB-header-in-labels",
    ),
    pytest.param(
        _packed(_subscribe_dict(user=1000)),
        "Expected `str`, got `int` - at `$.body.framework_info.user`",
        id="wrong-field-type",
    ),
    pytest.param(
        _packed(_subscribe_dict(roles="eng")),
        "$.body.framework_info.roles",
        id="wrong-container-type",
    ),
    pytest.param(
        _packed(
            {
                "v": 1,
                "id": 1,
                "body": {
                    "type": "ACKNOWLEDGE",
                    "framework_id": "f",
                    "agent_id": "a",
                    "task_id": "t",
                    "uuid": "not-bytes",
                },
            }
        ),
        "$.body.uuid",
        id="str-where-bytes-expected",
    ),
    pytest.param(
        _packed({"v": 1, "id": 1, "body": {"type": "LAUNCH_ROCKET", "framework_id": "f"}}),
        "$.body.type",
        id="unknown-message-type",
    ),
    pytest.param(_packed({"v": 1, "id": 1, "body": {"framework_id": "f"}}), "type", id="missing-type-tag"),
    pytest.param(
        _packed({"v": 1, "id": 1, "body": {"type": "TEARDOWN", "framework_id": "f", "frameworkid": "typo"}}),
        "unknown field `frameworkid`",
        id="unknown-field-in-body",
    ),
    pytest.param(
        _packed({**_subscribe_dict(), "sender": "master-1"}),
        "unknown field `sender`",
        id="unknown-field-in-envelope",
    ),
    pytest.param(
        _packed(_subscribe_dict(failover_timeout_secs=10)),
        "unknown field `failover_timeout_secs`",
        id="unknown-field-nested",
    ),
    pytest.param(_packed({"v": 1, "id": 1}), "missing required field `body`", id="missing-body"),
    pytest.param(
        _packed({"v": 1, "id": 1, "body": {"type": "TEARDOWN"}}),
        "missing required field `framework_id`",
        id="missing-required-field",
    ),
    pytest.param(_packed({**_subscribe_dict(), "v": 2}), "$.v", id="protocol-version-2"),
    pytest.param(_packed({**_subscribe_dict(), "v": 0}), "$.v", id="protocol-version-0"),
    pytest.param(_packed({**_subscribe_dict(), "v": "1"}), "$.v", id="protocol-version-str"),
    pytest.param(
        _packed({"v": 1, "id": 1, "body": msgpack.ExtType(7, b"\x00")}), "$.body", id="ext-type-body"
    ),
    pytest.param(_packed(["SUBSCRIBE", 1]), "Expected `object`, got `array`", id="array-instead-of-map"),
]


@pytest.mark.parametrize(("data", "expected"), MALFORMED)
def test_malformed_bytes_raise_protocol_error_naming_the_problem(data: bytes, expected: str) -> None:
    with pytest.raises(ProtocolError) as info:
        MASTER_CODEC.decode(data)
    assert type(info.value) is ProtocolError
    assert expected in str(info.value)


_TEARDOWN = _packed({"v": 1, "id": 1, "body": {"type": "TEARDOWN", "framework_id": "fw"}})


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(_TEARDOWN.replace(b"\xa2fw", b"\xa2\xff\xfe"), id="in-a-field-value"),
        pytest.param(_TEARDOWN.replace(b"\xa2id", b"\xa2\xc3\x28"), id="in-a-map-key"),
        pytest.param(_TEARDOWN.replace(b"TEARDOWN", b"TEARDOW\xff"), id="in-the-type-tag"),
        pytest.param(
            _packed(_subscribe_dict(labels={"k": "v"})).replace(b"\xa1v", b"\xa1\x80"), id="in-labels"
        ),
    ],
)
def test_invalid_utf8_is_a_protocol_error(data: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        MASTER_CODEC.decode(data)
    assert type(info.value) is ProtocolError
    assert "utf-8" in str(info.value).lower()


def test_protocol_error_is_a_value_error_and_hides_the_msgspec_cause() -> None:
    with pytest.raises(ProtocolError) as info:
        MASTER_CODEC.decode(b"\xc1")
    assert isinstance(info.value, ValueError)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_wrong_version_names_both_versions() -> None:
    with pytest.raises(ProtocolError, match=r"version 2 at `\$\.v`.*speaks 1"):
        MASTER_CODEC.decode(_packed({**_subscribe_dict(), "v": 2}))


def _decline(**envelope_fields: Any) -> dict[str, Any]:
    body = {"type": "DECLINE", "framework_id": "f", "offer_ids": ["o1"]}
    return {"v": 1, "id": 1, "body": body, **envelope_fields}


def test_call_id_travels_in_the_envelope_and_is_left_off_when_absent() -> None:
    assert MASTER_CODEC.decode(_packed(_decline(call_id="d-1"))).call_id == "d-1"
    assert b"call_id" not in Codec(FrameworkInbound).encode(envelope(sc.Decline("f", ["o1"]), 1))


@pytest.mark.parametrize(("body", "field"), [
    ({"offer_ids": [7]}, "$.body.offer_ids[0]"),
    ({"filters": {"refuse_seconds": "soon"}}, "$.body.filters.refuse_seconds"),
    ({"colour": "red"}, "$.body.colour"),  # unknown field: the path ends at it, not its parent
    ({"framework_id": None}, "$.body.framework_id"),
])
def test_an_undecodable_call_still_names_its_call_id_type_and_field(body: dict[str, Any], field: str) -> None:
    message = _decline(call_id="d-2")
    message["body"] = {**message["body"], **body}
    with pytest.raises(ProtocolError) as info:
        MASTER_CODEC.decode(_packed(message))
    assert (info.value.call_id, info.value.call_type, info.value.field) == ("d-2", "DECLINE", field)


def test_a_missing_required_field_is_named_by_its_path() -> None:
    message = _decline()
    del message["body"]["framework_id"]
    with pytest.raises(ProtocolError) as info:
        MASTER_CODEC.decode(_packed(message))
    assert (info.value.call_id, info.value.field) == (None, "$.body.framework_id")


def test_a_call_id_over_128_characters_is_refused_and_not_echoed() -> None:
    with pytest.raises(ProtocolError, match=r"length <= 128 - at `\$\.call_id`") as info:
        MASTER_CODEC.decode(_packed(_decline(call_id="x" * 129)))
    assert (info.value.call_id, info.value.call_type, info.value.field) == (None, "DECLINE", "$.call_id")
    assert MASTER_CODEC.decode(_packed(_decline(call_id="x" * 128))).call_id == "x" * 128


def test_a_bad_envelope_of_a_batch_keeps_its_call_id() -> None:
    frame = msgpack.packb([_decline(call_id="ok"), {**_decline(call_id="bad"), "id": "one"}])
    good, bad = MASTER_CODEC.envelopes(frame)
    assert not isinstance(good, ProtocolError) and good.call_id == "ok"
    assert isinstance(bad, ProtocolError) and (bad.call_id, bad.field) == ("bad", "$.id")
    assert str(bad).startswith("envelope 1 of a batch of 2: ")


def test_unreadable_bytes_have_nothing_to_echo() -> None:
    with pytest.raises(ProtocolError) as info:
        MASTER_CODEC.decode(b"\x81\xa1")
    assert (info.value.call_id, info.value.call_type, info.value.field) == (None, None, None)


def test_message_over_max_bytes_is_refused_on_decode() -> None:
    data = Codec(FrameworkInbound).encode(envelope(SCHEDULER_CALLS[sc.Subscribe], 1))
    small = Codec(MasterInbound, max_bytes=len(data) - 1)
    with pytest.raises(ProtocolError, match=rf"{len(data)} bytes exceeds the {len(data) - 1}-byte limit"):
        small.decode(data)
    # exactly at the limit is fine
    assert Codec(MasterInbound, max_bytes=len(data)).decode(data).body == SCHEDULER_CALLS[sc.Subscribe]


def test_size_limit_is_checked_before_parsing() -> None:
    # garbage larger than the limit is refused for its size, not parsed
    with pytest.raises(ProtocolError, match="exceeds the 16-byte limit"):
        Codec(MasterInbound, max_bytes=16).decode(b"\xc1" * 17)


def test_message_over_max_bytes_is_refused_on_encode() -> None:
    body = SCHEDULER_CALLS[sc.Accept]
    with pytest.raises(ProtocolError, match=r"exceeds the 256-byte limit \(Accept\)"):
        Codec(FrameworkInbound, max_bytes=256).encode(envelope(body, 1))
    huge = sc.Message(framework_id="f", agent_id="a", executor_id="e", data=b"x" * (DEFAULT_MAX_BYTES + 1))
    with pytest.raises(ProtocolError, match="exceeds the"):
        Codec(FrameworkInbound).encode(envelope(huge, 1))


def test_offers_event_sent_to_the_master_is_refused() -> None:
    data = Codec(MasterInbound).encode(envelope(SCHEDULER_EVENTS[sc.Offers], 1))
    with pytest.raises(ProtocolError, match=r"Invalid value 'OFFERS' - at `\$\.body\.type`"):
        MASTER_CODEC.decode(data)


def _wrong_direction_cases() -> list[Any]:
    """Every sample sent to a master, agent or framework endpoint it is not meant for."""
    endpoints = {"master": MasterInbound, "agent": AgentInbound, "framework": FrameworkInbound}
    intended = {
        "SchedulerCall": "master",
        "AgentToMaster": "master",
        "MasterToAgent": "agent",
        "SchedulerEvent": "framework",
    }
    cases = []
    for link, target in intended.items():
        _union, samples, sender, _ = LINKS[link]
        for name, body_type in endpoints.items():
            if name == target:
                continue
            for cls, sample in samples.items():
                if cls in typing.get_args(body_type):
                    continue  # ERROR goes to agents and frameworks alike
                cases.append(pytest.param(sender, body_type, sample, id=f"{cls.__name__}-to-{name}"))
    return cases


@pytest.mark.parametrize(("sender", "receiver", "body"), _wrong_direction_cases())
def test_message_of_the_wrong_direction_is_refused(sender: Any, receiver: Any, body: Any) -> None:
    data = Codec(sender).encode(envelope(body, 1))
    with pytest.raises(ProtocolError, match=r"\$\.body"):
        Codec(receiver).decode(data)


# --- a framework written in another language ---------------------------------------------------


def test_foreign_subscribe_is_accepted() -> None:
    data = msgpack.packb(
        {
            "v": 1,
            "id": 1,
            "body": {
                "type": "SUBSCRIBE",
                "framework_info": {
                    "user": "spark",
                    "name": "spark-on-tepui",
                    "failover_timeout": 3600,  # an int where a float is declared
                    "roles": ["data"],
                    "capabilities": ["MULTI_ROLE"],
                    "labels": {"lang": "go"},
                },
            },
        }
    )
    env = MASTER_CODEC.decode(data)
    assert env.body == sc.Subscribe(
        framework_info=FrameworkInfo(
            user="spark",
            name="spark-on-tepui",
            failover_timeout=3600.0,
            roles=["data"],
            capabilities=["MULTI_ROLE"],
            labels={"lang": "go"},
        )
    )
    assert env.epoch == 0 and env.incarnation is None


def test_foreign_accept_with_launch_is_accepted() -> None:
    data = msgpack.packb(
        {
            "v": 1,
            "id": 17,
            "epoch": 3,
            "body": {
                "type": "ACCEPT",
                "framework_id": "fw-1",
                "offer_ids": ["o-1"],
                "filters": {"refuse_seconds": 10},
                "operations": [
                    {
                        "type": "LAUNCH",
                        "task_infos": [
                            {
                                "name": "job",
                                "task_id": "job.1",
                                "agent_id": "agent-1",
                                "resources": [
                                    {"name": "cpus", "type": "SCALAR", "scalar": 0.5},
                                    {"name": "mem", "scalar": 128},
                                    {
                                        "name": "ports",
                                        "type": "RANGES",
                                        "ranges": [{"begin": 31000, "end": 31001}],
                                    },
                                ],
                                "command": {
                                    "value": "echo hello",
                                    "environment": {"A": "1"},
                                    "uris": [{"value": "http://x/y.tgz", "cache": True}],
                                },
                                "data": b"\x00\x01",
                                "labels": {"k": "v"},
                            }
                        ],
                    }
                ],
            },
        }
    )
    env = MASTER_CODEC.decode(data)
    assert (env.id, env.epoch) == (17, 3)
    accept = env.body
    assert isinstance(accept, sc.Accept)
    assert accept.filters == Filters(refuse_seconds=10.0)
    (launch,) = accept.operations
    assert isinstance(launch, sc.Launch)
    (task,) = launch.task_infos
    assert task.resources == [
        Resource(name="cpus", scalar=0.5),
        Resource(name="mem", scalar=128.0),
        Resource(name="ports", type="RANGES", ranges=[Range(begin=31000, end=31001)]),
    ]
    assert task.command == CommandInfo(
        value="echo hello", environment={"A": "1"}, uris=[CommandURI(value="http://x/y.tgz", cache=True)]
    )
    assert task.data == b"\x00\x01"
    assert task.labels == {"k": "v"}


def test_foreign_acknowledge_with_uuid_bytes_is_accepted() -> None:
    uuid = bytes.fromhex("0f1e2d3c4b5a69788796a5b4c3d2e1f0")
    data = msgpack.packb(
        {
            "v": 1,
            "id": 2,
            "body": {
                "type": "ACKNOWLEDGE",
                "framework_id": "fw-1",
                "agent_id": "a-1",
                "task_id": "t-1",
                "uuid": uuid,
            },
        }
    )
    body = MASTER_CODEC.decode(data).body
    assert body == sc.Acknowledge(framework_id="fw-1", agent_id="a-1", task_id="t-1", uuid=uuid)


def test_foreign_client_reads_what_we_encode() -> None:
    sub = sc.Subscribe(framework_info=FrameworkInfo(user="svc", name="services"))
    plain = msgpack.unpackb(Codec(MasterInbound).encode(envelope(sub, 5, epoch=2)), raw=False)
    # defaults are omitted; keys are the field names; the tag is Mesos's spelling
    assert plain == {
        "v": 1,
        "id": 5,
        "epoch": 2,
        "body": {"type": "SUBSCRIBE", "framework_info": {"user": "svc", "name": "services", "roles": ["*"]}},
    }

    update = msgpack.unpackb(Codec(MasterInbound).encode(envelope(SCHEDULER_EVENTS[sc.Update], 6)), raw=False)
    assert update["body"]["type"] == "UPDATE"
    status = update["body"]["status"]
    assert status["state"] == "TASK_RUNNING"
    assert status["source"] == "SOURCE_EXECUTOR"
    assert status["reason"] == "REASON_TASK_HEALTH_CHECK_STATUS_UPDATED"
    assert status["uuid"] == bytes(range(16)) and isinstance(status["uuid"], bytes)

    offers = msgpack.unpackb(Codec(MasterInbound).encode(envelope(SCHEDULER_EVENTS[sc.Offers], 7)), raw=False)
    assert offers["body"]["type"] == "OFFERS"
    resources = offers["body"]["offers"][0]["resources"]
    assert resources[0] == {"name": "cpus", "scalar": 1.5}
    assert resources[3] == {
        "name": "ports",
        "type": "RANGES",
        "ranges": [{"begin": 31000, "end": 31009}, {"begin": 31100, "end": 31100}],
    }

    accept = msgpack.unpackb(
        Codec(FrameworkInbound).encode(envelope(SCHEDULER_CALLS[sc.Accept], 8)), raw=False
    )
    assert [op["type"] for op in accept["body"]["operations"]] == [
        "LAUNCH",
        "LAUNCH_GROUP",
        "RESERVE",
        "UNRESERVE",
        "CREATE",
        "DESTROY",
    ]


# --- fuzzing: the decoder returns an Envelope or raises ProtocolError, nothing else ------------

_KEYS = st.sampled_from(
    [
        "v",
        "id",
        "body",
        "epoch",
        "incarnation",
        "type",
        "framework_info",
        "framework_id",
        "user",
        "name",
        "offer_ids",
        "operations",
        "task_infos",
        "resources",
        "labels",
        "uuid",
        "data",
        "scalar",
        "ranges",
    ]
)
_TAGS = st.sampled_from(
    [t.__struct_config__.tag for t in typing.get_args(MasterInbound)] + ["OFFERS", "HEARTBEAT", "LAUNCH"]
)
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.binary(max_size=20),
    _TAGS,
    st.just(1),
)
_MSGPACK_OBJECTS = st.recursive(
    _SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(
            st.one_of(_KEYS, st.text(max_size=8), st.integers(-5, 5), st.binary(max_size=4)),
            children,
            max_size=6,
        ),
    ),
    max_leaves=20,
)





def _decode_or_protocol_error(data: bytes) -> None:
    try:
        result = MASTER_CODEC.decode(data)
    except ProtocolError:
        return
    assert isinstance(result, Envelope)
    assert result.v == PROTOCOL_VERSION
    assert type(result.body) in typing.get_args(MasterInbound)


@FUZZ
@given(st.binary(max_size=512))
def test_fuzz_random_bytes(data: bytes) -> None:
    _decode_or_protocol_error(data)


@FUZZ
@given(_MSGPACK_OBJECTS)
def test_fuzz_random_msgpack_objects(obj: Any) -> None:
    _decode_or_protocol_error(msgpack.packb(obj, use_bin_type=True))


@FUZZ
@given(
    st.fixed_dictionaries(
        {"v": st.one_of(st.just(1), _SCALARS), "id": st.one_of(st.integers(0, 2**64 - 1), _SCALARS)},
        optional={
            "epoch": _SCALARS,
            "incarnation": _SCALARS,
            "body": st.dictionaries(_KEYS, _MSGPACK_OBJECTS, max_size=5),
        },
    ),
    _TAGS,
)
def test_fuzz_envelope_shaped_objects(obj: dict[str, Any], tag: str) -> None:
    if isinstance(obj.get("body"), dict):
        obj["body"].setdefault("type", tag)
    _decode_or_protocol_error(msgpack.packb(obj, use_bin_type=True))


_VALID_ENCODINGS = [
    Codec(sender).encode(envelope(m, 1))
    for link, (_u, samples, sender, receiver) in LINKS.items()
    if receiver is MasterInbound
    for m in samples.values()
]


@FUZZ
@given(st.sampled_from(_VALID_ENCODINGS), st.data())
def test_fuzz_mutated_valid_messages(data: bytes, draw: st.DataObject) -> None:
    mutated = bytearray(data)
    for _ in range(draw.draw(st.integers(1, 4))):
        kind = draw.draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        pos = draw.draw(st.integers(0, max(len(mutated) - 1, 0)))
        if kind == "flip" and mutated:
            mutated[pos] = draw.draw(st.integers(0, 255))
        elif kind == "insert":
            mutated[pos:pos] = draw.draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete" and mutated:
            del mutated[pos : pos + draw.draw(st.integers(1, 8))]
        elif kind == "truncate":
            del mutated[pos:]
    _decode_or_protocol_error(bytes(mutated))


def test_a_decoding_error_quoting_a_huge_value_is_cut_and_says_how_long_it_was() -> None:
    """A 3 MB unknown ``type`` is quoted by the decoder; the ERROR sent back must stay small."""
    from tepui.sdk.codec import ERROR_TEXT_LIMIT, FIELD_LIMIT
    from tepui.sdk.protocol.envelope import MasterInbound

    huge = "X" * 3_000_000
    data = msgpack.packb({"v": 1, "id": 1, "epoch": 0, "call_id": "c-1", "body": {"type": huge}})
    [error] = Codec(MasterInbound).envelopes(data)
    assert isinstance(error, ProtocolError)
    assert len(str(error)) <= ERROR_TEXT_LIMIT + 40 and str(error).endswith("characters)")
    assert error.call_id == "c-1"
    assert error.call_type is None or len(error.call_type) <= FIELD_LIMIT + 40
