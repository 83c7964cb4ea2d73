"""The master's proxy to agents' sandbox files: finding the task, and relaying (or explaining
why it cannot) — with a fake HTTP client, no sockets."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet import defer, task
from twisted.internet.error import ConnectionRefusedError
from twisted.python.failure import Failure
from twisted.web._newclient import ResponseDone
from twisted.web.http_headers import Headers
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from tepui.master.core import MasterConfig, MasterCore
from tepui.master.http.files_proxy import ANSWER_TIMEOUT, Located, TasksEndpoint
from tepui.master.records import AgentRecord, FrameworkRecord, TaskRecord
from tepui.master.http.state_view import agent_url, find_tasks, render_state
from tepui.sdk.protocol.values import CommandInfo, FrameworkInfo, TaskInfo, TaskState
from tepui.sdk.resources import Resources

# --- finding tasks ------------------------------------------------------------------------------


def _task(fid: str, tid: str, state: TaskState, agent: str = "S1") -> TaskRecord:
    info = TaskInfo(name=tid, task_id=tid, agent_id=agent, resources=[], command=CommandInfo(value="true"))
    return TaskRecord(fid, agent, info, Resources.of(cpus=1), "*", state=state)


def _framework(fid: str) -> FrameworkRecord:
    return FrameworkRecord(fid, FrameworkInfo(user="u", name=fid, id=fid), None, 0.0)


def _core() -> MasterCore:
    core = MasterCore(MasterConfig(master_id="m"))
    f1, f2, gone = _framework("F1"), _framework("F2"), _framework("F0")
    f1.tasks["live"] = _task("F1", "live", TaskState.RUNNING)
    f1.completed.append(_task("F1", "done", TaskState.FAILED))
    f1.completed.append(_task("F1", "done", TaskState.FINISHED, agent="S2"))  # relaunched: the latest wins
    f2.tasks["same"] = _task("F2", "same", TaskState.RUNNING)
    f1.completed.append(_task("F1", "same", TaskState.FINISHED))
    gone.completed.append(_task("F0", "old", TaskState.KILLED))
    core.frameworks.update({"F1": f1, "F2": f2})
    core.completed_frameworks.append(gone)
    return core


def test_find_tasks_active_completed_and_of_completed_frameworks() -> None:
    core = _core()
    assert [(t.framework_id, t.state) for t in find_tasks(core, "live")] == [("F1", TaskState.RUNNING)]
    assert [(t.agent_id, t.state) for t in find_tasks(core, "done")] == [("S2", TaskState.FINISHED)]
    assert [t.framework_id for t in find_tasks(core, "old")] == ["F0"]
    assert find_tasks(core, "nope") == []


def test_find_tasks_across_frameworks_and_disambiguated() -> None:
    core = _core()
    assert sorted(t.framework_id for t in find_tasks(core, "same")) == ["F1", "F2"]
    assert [t.framework_id for t in find_tasks(core, "same", "F2")] == ["F2"]
    assert find_tasks(core, "live", "F2") == []


def test_agent_url_and_state() -> None:
    agent = AgentRecord("S1", b"p", "a1", Resources.of(cpus=1), {}, "0.1.0", 0.0, 0.0, http_port=5051)
    assert agent_url(agent) == "http://127.0.0.1:5051"
    agent.address = "fd00::7"
    assert agent_url(agent) == "http://[fd00::7]:5051"
    agent.address = "10.0.0.7"
    assert agent_url(agent) == "http://10.0.0.7:5051"
    core = MasterCore(MasterConfig(master_id="m"))
    core.agents["S1"] = agent
    slave = render_state(core, 0.0)["slaves"][0]
    assert slave["http_port"] == 5051 and slave["url"] == "http://10.0.0.7:5051"
    agent.http_port = None
    assert agent_url(agent) is None
    assert render_state(core, 0.0)["slaves"][0]["url"] is None


# --- the proxy ----------------------------------------------------------------------------------


class FakeResponse:
    def __init__(self, code: int, body: bytes) -> None:
        self.code, self.body, self.phrase = code, body, b"whatever"
        self.headers = Headers({b"content-type": [b"application/json"]})

    def deliverBody(self, protocol: Any) -> None:
        protocol.makeConnection(None)
        protocol.dataReceived(self.body)
        protocol.connectionLost(Failure(ResponseDone()))


class FakeHttp:
    def __init__(self) -> None:
        self.urls: list[str] = []
        self.answers: list[defer.Deferred[Any]] = []

    def request(self, method: bytes, url: bytes, headers: Any = None) -> defer.Deferred[Any]:
        self.urls.append(url.decode())
        d: defer.Deferred[Any] = defer.Deferred()
        self.answers.append(d)
        return d


RUNNING = Located("F1", "t1", "TASK_RUNNING", "S1", "a1", "http://127.0.0.1:5051")


def proxy(located: list[Located], endpoint: str, **args: str) -> tuple[Any, DummyRequest, FakeHttp, task.Clock]:
    clock, http = task.Clock(), FakeHttp()
    calls: list[tuple[str, str | None]] = []

    def locate(task_id: str, framework_id: str | None) -> list[Located]:
        calls.append((task_id, framework_id))
        return [m for m in located if framework_id is None or m.framework_id == framework_id]

    root = TasksEndpoint(clock, locate, http)
    segments = endpoint.strip("/").split("/")[1:]  # after /tasks
    request = DummyRequest([s.encode() for s in segments])
    request.path = endpoint.encode()
    for key, value in args.items():
        request.addArg(key.encode(), value.encode())
    resource = root.getChildWithDefault(request.postpath.pop(0), request)
    return resource.render(request), request, http, clock


def body(request: DummyRequest, rendered: Any = None) -> Any:
    raw = rendered if isinstance(rendered, bytes) else b"".join(request.written)
    return json.loads(raw)


def test_relays_the_agents_answer_with_its_code() -> None:
    rendered, request, http, _ = proxy([RUNNING], "/tasks/t1/files/read", path="stdout", offset="5", length="9")
    assert rendered == NOT_DONE_YET
    assert http.urls == ["http://127.0.0.1:5051/files/read?framework_id=F1&task_id=t1&path=stdout&offset=5&length=9"]
    http.answers[0].callback(FakeResponse(200, b'{"data":"hello","offset":5}'))
    assert request.finished and request.responseCode == 200
    assert body(request) == {"data": "hello", "offset": 5}
    assert request.responseHeaders.getRawHeaders(b"x-tepui-task-state") == [b"TASK_RUNNING"]
    assert request.responseHeaders.getRawHeaders(b"x-tepui-framework-id") == [b"F1"]


def test_agent_refusals_pass_through_unchanged() -> None:
    _, request, http, _ = proxy([RUNNING], "/tasks/t1/files/browse", path="../..", offset="ignored")
    assert http.urls == ["http://127.0.0.1:5051/files/browse?framework_id=F1&task_id=t1&path=..%2F.."]
    http.answers[0].callback(FakeResponse(400, b'{"error":"no ..","reason":"BAD_PATH"}'))
    assert request.responseCode == 400 and body(request)["reason"] == "BAD_PATH"


def test_unknown_task_is_404() -> None:
    rendered, request, http, _ = proxy([], "/tasks/nope/files/read", path="stdout")
    assert request.responseCode == 404 and body(request, rendered)["reason"] == "UNKNOWN_TASK"
    assert "'nope'" in body(request, rendered)["error"] and http.urls == []


def test_ambiguous_task_is_409_with_candidates_then_framework_id_chooses() -> None:
    other = Located("F2", "t1", "TASK_FINISHED", "S2", "a2", "http://127.0.0.1:5052")
    rendered, request, _, _ = proxy([RUNNING, other], "/tasks/t1/files/read", path="stdout")
    document = body(request, rendered)
    assert request.responseCode == 409 and document["reason"] == "AMBIGUOUS_TASK"
    assert [c["framework_id"] for c in document["candidates"]] == ["F1", "F2"]
    assert "framework_id" in document["error"]
    _, _, http, _ = proxy([RUNNING, other], "/tasks/t1/files/read", path="stdout", framework_id="F2")
    assert http.urls[0].startswith("http://127.0.0.1:5052/files/read?framework_id=F2&task_id=t1")


def test_agent_gone_or_without_files_api_is_502() -> None:
    gone = Located("F1", "t1", "TASK_FINISHED", "S9", None, None)
    rendered, request, _, _ = proxy([gone], "/tasks/t1/files/read", path="stdout")
    assert request.responseCode == 502 and body(request, rendered)["reason"] == "AGENT_GONE"
    old = Located("F1", "t1", "TASK_FINISHED", "S1", "a1", None)
    rendered, request, _, _ = proxy([old], "/tasks/t1/files/read", path="stdout")
    assert request.responseCode == 502 and body(request, rendered)["reason"] == "AGENT_NO_FILES_API"


def test_agent_not_answering_is_502_naming_it() -> None:
    _, request, http, _ = proxy([RUNNING], "/tasks/t1/files/read", path="stdout")
    http.answers[0].errback(ConnectionRefusedError())
    document = body(request)
    assert request.responseCode == 502 and document["reason"] == "AGENT_UNREACHABLE"
    assert "S1" in document["error"] and "http://127.0.0.1:5051" in document["error"]


def test_agent_answering_too_slowly_is_502() -> None:
    _, request, _, clock = proxy([RUNNING], "/tasks/t1/files/read", path="stdout")
    clock.advance(ANSWER_TIMEOUT + 1)
    assert request.responseCode == 502 and "no answer within" in body(request)["error"]


def test_a_client_that_leaves_cancels_the_agent_request() -> None:
    _, request, http, _ = proxy([RUNNING], "/tasks/t1/files/read", path="stdout")
    assert not http.answers[0].called
    request.processingFailed(Failure(ConnectionRefusedError()))  # the client connection is lost
    assert http.answers[0].called and request.written == []  # cancelled, nothing written


def test_bad_endpoints_are_404_json() -> None:
    for endpoint in ("/tasks/t1", "/tasks/t1/files", "/tasks/t1/files/write", "/tasks/t1/other/read"):
        rendered, request, _, _ = proxy([RUNNING], endpoint)
        assert request.responseCode == 404 and body(request, rendered)["reason"] == "NO_SUCH_ENDPOINT"


def test_agent_files_names_a_registered_agents_files_api_for_a_forgotten_task() -> None:
    from tepui.master.http.state_view import agent_files

    core = MasterCore(MasterConfig(master_id="m"))
    core.agents["S1"] = AgentRecord("S1", b"p", "a1", Resources.of(cpus=1), {}, "0.1.0", 0.0, 0.0, http_port=5051)
    assert agent_files(core, "S1") == ("a1", "http://127.0.0.1:5051")
    assert agent_files(core, "S9") is None
    clock, http = task.Clock(), FakeHttp()
    root = TasksEndpoint(clock, lambda task_id, fid: [], http, agent=lambda agent_id: agent_files(core, agent_id))
    request = DummyRequest([b"files", b"download"])
    request.path = b"/tasks/old.map.0.1/files/download"
    for key, value in {"framework_id": "F1", "agent_id": "S1", "path": "out/count.txt"}.items():
        request.addArg(key.encode(), value.encode())
    assert root.getChildWithDefault(b"old.map.0.1", request).render(request) == NOT_DONE_YET
    assert http.urls == ["http://127.0.0.1:5051/files/download?framework_id=F1&task_id=old.map.0.1&path=out%2Fcount.txt"]
    assert request.responseHeaders.getRawHeaders(b"x-tepui-task-state") == [b"TASK_UNKNOWN"]
