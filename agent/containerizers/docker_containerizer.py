"""The Docker containerizer: a task with ``container.type == "DOCKER"`` runs as a container.

Mesos semantics, adapted to an engine without a registry (DESIGN §8):

- The image must exist locally (built, loaded or imported). Nothing is pulled unless the task sets
  ``force_pull_image``; then a pull is tried with a short timeout, and if it fails the local image
  is used when there is one (so the flag is ignored where no registry answers), else the launch
  fails with a sentence naming the image.
- ``shell=True`` with a value runs ``/bin/sh -c VALUE`` *as the entrypoint* (the image's own
  entrypoint is replaced, as Mesos does: MESOS-1770). ``shell=False`` passes the argv
  (``arguments``, with ``value`` replacing ``arguments[0]`` when both are set — the same argv the
  process launcher builds) as the container's command, so the image's entrypoint stays and gets
  them as its arguments. No command, or an empty one, runs the image's default.
- The sandbox is bind-mounted at ``/mnt/mesos/sandbox``; ``MESOS_SANDBOX`` (and ``TEPUI_SANDBOX``)
  point there inside the container. The image's working directory is kept.
- Limits: ``cpus`` → a CFS quota (``nano_cpus``) plus cpu shares of 1024 per cpu (Mesos: the
  weight under contention), ``mem`` MiB → a memory limit with memory+swap equal to it, so the
  limit is a limit and not a hint to start swapping.
- Host ports of BRIDGE port mappings must lie in the task's ``ports`` resources (Mesos: "Port [X]
  not included in resources"): a task only binds host ports it was offered.
- ``privileged`` is refused unless the agent allows it; ``parameters`` (raw ``docker run`` flags)
  are refused: each one is a way around the rules above.
- ``CommandInfo.user`` is not applied: inside a container the image decides the user (a name
  must exist in the image's /etc/passwd, which the agent cannot know).

Signals. Every container runs Docker's init (tini) as pid 1, with ``TINI_KILL_PROCESS_GROUP=1``:
without it a ``sleep`` or ``sh`` that is pid 1 ignores TERM (the kernel drops signals that pid 1
has no handler for), and with it TERM reaches the task's whole process group, like the process
launcher's ``killpg``. tini exits with 128+N when its child died of signal N, so a container our
TERM (KILL) ended exits 143 (137) and :class:`ContainerExit` says ``signal=15`` (``9``).
A consequence: when the command cannot be executed at all, the container still starts and tini
exits 127 with the reason on the sandbox's stderr.

Threads. Each Docker SDK call runs off the reactor thread. Short calls (image check, create,
start, kill, ping) run in the reactor's thread pool with ``deferToThreadPool`` and a timeout.
A container's lifetime is watched by two daemon threads of its own rather than by pool threads:
``wait()`` blocks for as long as the task runs, and a pool of ten threads held by ten long tasks
would starve every other call. One thread follows the container's log stream and writes stdout
and stderr (demultiplexed) into ``<sandbox>/stdout`` and ``<sandbox>/stderr`` as the task writes
them, so the sandbox files API shows a service's output while it runs (Mesos does the same);
the other blocks in ``wait()``, then lets the follower drain, reads ``State.ExitCode`` and
``State.OOMKilled``, removes the container (never ``auto_remove``: the exit facts and the logs
must be read first) and hands the result to the reactor with ``callFromThread``. If the log
stream broke, the files are rewritten from the engine's full log before removal. Both threads
use their own HTTP client (a blocked stream must not hold a connection the short calls need) and
mostly sleep in ``recv``; the cost is two threads per running container, fine at agent scale.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import docker
import docker.errors
import requests
from docker.types import LogConfig, Mount
from docker.utils import parse_repository_tag
from twisted.internet import defer, threads
from twisted.python.failure import Failure

from tepui.agent.containerizers.docker_spec import (  # noqa: F401  (re-exported: the containerizer's vocabulary)
    DEFAULT_DOCKER_HOST,
    LABEL_AGENT_ID,
    LABEL_FRAMEWORK_ID,
    LABEL_TASK_ID,
    LOG_DRAIN_SECONDS,
    SANDBOX_MOUNT,
    SIGNALS,
    ContainerExit,
    ContainerSpec,
    LaunchError,
    container_name,
    container_spec,
)
from tepui.agent.containerizers.processes import open_output
from tepui.sdk.protocol.values import TaskInfo

log = logging.getLogger("tepui.agent.docker")



@dataclass
class _Container:
    key: tuple[str, str]
    name: str
    sandbox: str
    mem_bytes: int | None
    on_exit: Callable[[ContainerExit], None]
    id: str | None = None
    sent: set[str] = field(default_factory=set)  # signals we sent ("TERM", "KILL")
    pending: list[str] = field(default_factory=list)  # signals asked for before the container ran


class DockerContainerizer:
    def __init__(self, reactor: Any, docker_host: str | None = None, *, allow_privileged: bool = False,
                 call_timeout: float = 60.0, pull_timeout: float = 20.0) -> None:
        self._reactor = reactor
        self.docker_host = docker_host or os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST
        self.allow_privileged = allow_privileged
        self._call_timeout = call_timeout
        self._pull_timeout = pull_timeout
        self._lock = threading.Lock()
        self._client: docker.APIClient | None = None
        self._containers: dict[tuple[str, str], _Container] = {}

    # -- public ------------------------------------------------------------------------------------

    def available(self) -> defer.Deferred[str | None]:
        """None if the engine answers, else a sentence why not."""
        return self._in_pool(self._probe)

    def launch(self, key: tuple[str, str], sandbox: str, task: TaskInfo, framework_id: str, agent_id: str,
               environment: dict[str, str], on_exit: Callable[[ContainerExit], None]) -> defer.Deferred[str]:
        """Fires with the container id once it runs, or errbacks with :class:`LaunchError`;
        never synchronously. ``on_exit`` is called exactly once, on the reactor thread, if and
        only if the Deferred fired with an id, and always on a later turn than that."""
        result: defer.Deferred[str] = defer.Deferred()
        try:
            if key in self._containers:
                raise LaunchError(f"task {key[1]} of framework {key[0]} already has a container")
            spec = container_spec(task, sandbox, framework_id, agent_id, environment,
                                  allow_privileged=self.allow_privileged)
        except LaunchError as exc:
            self._reactor.callLater(0, result.errback, Failure(exc))
            return result
        record = _Container(key, spec.name, os.path.abspath(sandbox), spec.mem_bytes, on_exit)
        self._containers[key] = record

        def started(container_id: str) -> str:
            record.id = container_id
            log.info("event=container_started task_id=%s container=%s id=%s", key[1], spec.name, container_id[:12])
            threading.Thread(target=self._watch, args=(record,), name=f"tepui-docker-wait-{spec.name}",
                             daemon=True).start()
            for name in record.pending:
                self._kill(record, name)
            record.pending.clear()
            return container_id

        def failed(failure: Failure) -> Failure:
            self._containers.pop(key, None)
            if not failure.check(LaunchError):
                failure = Failure(LaunchError(f"could not start container {spec.name}: {_describe(failure.value)}"))
            log.warning("event=container_launch_failed task_id=%s error=%r", key[1], failure.value.message)
            return failure

        work = self._in_pool(self._create_and_start, spec, record.sandbox)
        work.addCallbacks(started, failed)
        work.chainDeferred(result)
        return result

    def adopt(self, key: tuple[str, str], sandbox: str, on_exit: Callable[[ContainerExit], None]) -> None:
        """Takes back the container an earlier agent process started for this task, found by
        its labels: watches it again (its log is followed from now on), or, if it ended while
        the agent was away, reports its real exit code. ``on_exit`` is called exactly once,
        on a later reactor turn."""
        record = _Container(key, container_name(*key), os.path.abspath(sandbox), None, on_exit)
        self._containers[key] = record

        def found(container: dict[str, Any] | None) -> None:
            if container is None:
                self._ended(record, None, False, f"container {record.name} is gone: the engine no longer has it "
                                                 "(removed while the agent was away)")
                return
            record.id = container["Id"]
            limit = (container.get("HostConfig") or {}).get("Memory")
            record.mem_bytes = int(limit) if limit else None
            log.info("event=container_adopted task_id=%s container=%s running=%s", key[1], record.name,
                     (container.get("State") or {}).get("Running"))
            threading.Thread(target=self._watch, args=(record, int(time.time())),
                             name=f"tepui-docker-wait-{record.name}", daemon=True).start()
            for name in record.pending:
                self._kill(record, name)
            record.pending.clear()

        def failed(failure: Failure) -> None:
            self._ended(record, None, False, f"could not find container {record.name}: {_describe(failure.value)}")

        self._in_pool(self._find, key).addCallbacks(found, failed)

    def sweep(self, agent_id: str) -> defer.Deferred[int]:
        """Kills and removes this agent's containers that no task accounts for (Mesos
        ``--docker_kill_orphans``); fires with how many."""
        keep = {record.name for record in self._containers.values()}
        return self._in_pool(self._sweep, agent_id, keep)

    def signal(self, key: tuple[str, str], name: str) -> None:
        """``docker kill --signal`` (TERM or KILL) off the reactor thread; unknown keys are ignored."""
        if name not in SIGNALS:
            raise ValueError(f"signal must be TERM or KILL, not {name!r}")
        record = self._containers.get(key)
        if record is None:
            return
        record.sent.add(name)
        if record.id is None:
            record.pending.append(name)  # still launching: sent as soon as it runs
        else:
            self._kill(record, name)

    def running(self) -> list[tuple[str, str]]:
        """Keys of containers launching or running, whose ``on_exit`` has not been called yet."""
        return list(self._containers)

    # -- reactor side ------------------------------------------------------------------------------

    def _in_pool(self, fn: Callable[..., Any], *args: Any) -> defer.Deferred[Any]:
        return threads.deferToThreadPool(self._reactor, self._reactor.getThreadPool(), fn, *args)

    def _kill(self, record: _Container, name: str) -> None:
        assert record.id is not None
        log.info("event=container_signal task_id=%s container=%s signal=%s", record.key[1], record.name, name)
        work = self._in_pool(self._kill_in_thread, record.id, name)
        work.addErrback(lambda f: log.warning("event=container_signal_failed container=%s signal=%s error=%r",
                                              record.name, name, _describe(f.value)))

    def _ended(self, record: _Container, code: int | None, oom: bool, message: str | None) -> None:
        if self._containers.get(record.key) is record:
            del self._containers[record.key]
        sig = None
        if not oom:
            for name, number in SIGNALS.items():
                if name in record.sent and code == 128 + number:
                    sig = number
        if oom and message is None:
            limit = f" of {record.mem_bytes // (1024 * 1024)} MiB" if record.mem_bytes else ""
            message = f"container ran out of memory (limit{limit}) and was killed"
        result = ContainerExit(code, sig, oom, message)
        log.info("event=container_exited task_id=%s container=%s exit_code=%s signal=%s oom_killed=%s",
                 record.key[1], record.name, code, sig, oom)
        try:
            record.on_exit(result)
        except Exception:  # a bug in the caller must not kill the reactor
            log.exception("event=on_exit_failed task_id=%s", record.key[1])

    # -- pool threads ------------------------------------------------------------------------------

    def _api(self) -> docker.APIClient:
        """The shared client of short calls (created on first use, in a thread: it asks the
        engine for its API version)."""
        with self._lock:
            if self._client is None:
                try:
                    self._client = _client(self.docker_host, "auto", self._call_timeout)
                except Exception as exc:
                    raise LaunchError(self._engine_down(exc)) from exc
            return self._client

    def _engine_down(self, exc: BaseException) -> str:
        return (f"the Docker engine at {self.docker_host} does not answer ({_describe(exc)}); "
                "start dockerd or point the agent at a running engine")

    def _probe(self) -> str | None:
        try:
            probe = _client(self.docker_host, "auto", 5.0)
            try:
                probe.ping()
            finally:
                probe.close()
        except Exception as exc:
            return self._engine_down(exc)
        return None

    def _create_and_start(self, spec: ContainerSpec, sandbox: str) -> str:
        api = self._api()
        try:
            self._ensure_image(api, spec)
            os.makedirs(sandbox, exist_ok=True)
            host_config = api.create_host_config(
                init=True,
                nano_cpus=spec.nano_cpus,
                cpu_shares=spec.cpu_shares,
                mem_limit=spec.mem_bytes,
                memswap_limit=spec.mem_bytes,
                network_mode=spec.network_mode,
                port_bindings=spec.port_bindings or None,
                mounts=[Mount(target, source, type="bind", read_only=ro) for source, target, ro in spec.mounts],
                privileged=spec.privileged,
                log_config=LogConfig(type="json-file"),  # the engine's default may not be readable
            )
            ports = [(int(p.split("/")[0]), p.split("/")[1]) for p in spec.port_bindings]
            try:
                created = api.create_container(
                    spec.image, command=spec.command, entrypoint=spec.entrypoint, name=spec.name,
                    environment=spec.environment, labels=spec.labels, hostname=spec.hostname,
                    ports=ports or None, host_config=host_config, use_config_proxy=False,
                )
            except docker.errors.APIError as exc:
                if exc.status_code == 409:
                    raise LaunchError(f"a container named {spec.name} already exists (left by an earlier run of "
                                      "this task?); refusing to start a second copy") from exc
                raise LaunchError(f"the engine refused to create the container: {_describe(exc)}") from exc
            container_id: str = created["Id"]
            try:
                api.start(container_id)
            except Exception as exc:
                _remove_quietly(api, container_id)
                raise LaunchError(f"container {spec.name} could not start: {_describe(exc)}") from exc
            return container_id
        except LaunchError:
            raise
        except (docker.errors.APIError, docker.errors.DockerException) as exc:
            raise LaunchError(f"the engine refused to run image {spec.image}: {_describe(exc)}") from exc
        except Exception as exc:
            if _is_connection_problem(exc):
                raise LaunchError(self._engine_down(exc)) from exc
            raise

    def _ensure_image(self, api: docker.APIClient, spec: ContainerSpec) -> None:
        pull_error: str | None = None
        if spec.force_pull:
            repository, tag = parse_repository_tag(spec.image)
            puller = _client(self.docker_host, api.api_version, self._pull_timeout)
            try:
                # A failure in the middle of the progress stream does not raise: the check below
                # finds the image missing then.
                puller.pull(repository, tag=tag or "latest")
            except Exception as exc:
                pull_error = _describe(exc)
                log.warning("event=image_pull_failed image=%s error=%r", spec.image, pull_error)
            finally:
                puller.close()
        try:
            api.inspect_image(spec.image)
        except docker.errors.ImageNotFound as exc:
            if spec.force_pull:
                raise LaunchError(f"image {spec.image} not found locally and the pull failed "
                                  f"({pull_error or 'see the engine log'}); build or load it locally") from exc
            raise LaunchError(f"image {spec.image} not found locally; build or load it "
                              "(images are not pulled unless force_pull_image is set)") from exc

    def _find(self, key: tuple[str, str]) -> dict[str, Any] | None:
        api = self._api()
        found = api.containers(all=True, filters={"label": [f"{LABEL_FRAMEWORK_ID}={key[0]}", f"{LABEL_TASK_ID}={key[1]}"]})
        if not found:
            return None
        try:
            return dict(api.inspect_container(found[0]["Id"]))
        except docker.errors.NotFound:
            return None

    def _sweep(self, agent_id: str, keep: set[str]) -> int:
        api = self._api()
        removed = 0
        for container in api.containers(all=True, filters={"label": [f"{LABEL_AGENT_ID}={agent_id}"]}):
            names = {name.lstrip("/") for name in container.get("Names") or []}
            if names & keep:
                continue
            log.warning("event=orphan_container_removed container=%s", ",".join(sorted(names)))
            _remove_quietly(api, container["Id"])
            removed += 1
        return removed

    def _kill_in_thread(self, container_id: str, name: str) -> None:
        try:
            self._api().kill(container_id, signal=f"SIG{name}")
        except docker.errors.APIError as exc:
            if exc.status_code in (404, 409):  # already gone or no longer running: nothing to end
                return
            raise

    # -- the watcher threads of one container ----------------------------------------------------------

    def _watch(self, record: _Container, logs_since: int | None = None) -> None:
        assert record.id is not None
        container_id = record.id
        code: int | None = None
        oom = False
        message: str | None = None
        follower: _LogFollower | None = None
        try:
            api = self._api()  # created by the launch already: no engine call here
            follower = _LogFollower(self.docker_host, api.api_version, container_id, record.sandbox, record.name,
                                    logs_since)
            follower.start()
            waiter = _client(self.docker_host, api.api_version, None)
            try:
                status = self._wait(waiter, container_id, record.name)
            finally:
                waiter.close()
            if status is None:
                message = f"container {record.name} disappeared from the engine before it was seen to exit"
            else:
                code = status
                follower.finish(LOG_DRAIN_SECONDS)
                try:
                    state = api.inspect_container(container_id).get("State", {})
                    code = int(state.get("ExitCode", code))
                    oom = bool(state.get("OOMKilled", False))
                    if state.get("Error"):
                        message = f"the engine reports: {state['Error']}"
                except Exception as exc:
                    log.warning("event=container_inspect_failed container=%s error=%r", record.name, _describe(exc))
                if not follower.complete:
                    follower.recopy()
                _remove_quietly(api, container_id)
        except Exception as exc:  # never leave the agent without an answer
            log.exception("event=container_watch_failed container=%s", record.name)
            message = f"lost track of container {record.name}: {_describe(exc)}"
        finally:
            if follower is not None:
                follower.stop()
        self._reactor.callFromThread(self._ended, record, code, oom, message)

    def _wait(self, waiter: docker.APIClient, container_id: str, name: str) -> int | None:
        """The exit status, or None if the container is gone. Retries while the engine is away
        (a restarting dockerd), with a capped backoff: the task's fate is unknown until it answers."""
        delay = 0.5
        while True:
            try:
                return int(waiter.wait(container_id)["StatusCode"])
            except docker.errors.NotFound:
                return None
            except Exception as exc:
                log.warning("event=container_wait_failed container=%s error=%r retry_in=%s", name, _describe(exc), delay)
                time.sleep(delay)
                delay = min(delay * 2, 30.0)


class _LogFollower:
    """Copies a container's log stream into the sandbox files as it comes (own thread, own client).

    The engine's stream is multiplexed: 8-byte headers (stream id 1 = stdout, 2 = stderr; a
    big-endian length), then the payload (Docker Engine API, "Attach to a container": stream format).
    """

    def __init__(self, host: str, version: str, container_id: str, sandbox: str, name: str,
                 since: int | None = None) -> None:
        self._host, self._version, self._id, self._name = host, version, container_id, name
        self._since = since  # an adopted container: what it wrote before is in the files already
        self._paths = (os.path.join(sandbox, "stdout"), os.path.join(sandbox, "stderr"))
        self._starts = tuple(_size(p) for p in self._paths)  # what was there before (fetcher output, ...)
        self._write_lock = threading.Lock()
        self._abandoned = False
        self.complete = False  # the stream reached its end after the container stopped
        self._thread = threading.Thread(target=self._run, name=f"tepui-docker-logs-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def finish(self, timeout: float) -> None:
        """After the container exited: give the stream ``timeout`` seconds to reach its end."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("event=log_stream_stuck container=%s", self._name)
            self.stop()

    def stop(self) -> None:
        """From here on the follower writes nothing more (it ends when the container is removed)."""
        with self._write_lock:
            self._abandoned = True

    def recopy(self) -> None:
        """Rewrites both files from the engine's full log (when the live stream broke). Own client:
        the SDK's log stream leaves its connection without a timeout."""
        self.stop()
        try:
            api = _client(self._host, self._version, None)
        except Exception as exc:
            log.warning("event=log_copy_failed container=%s error=%r", self._name, _describe(exc))
            return
        try:
            self._recopy(api)
        finally:
            api.close()

    def _recopy(self, api: docker.APIClient) -> None:
        for (path, start), which in zip(zip(self._paths, self._starts), ("stdout", "stderr")):
            try:
                with open_output(path) as out:  # never through a link the container put there
                    out.truncate(start)
                    chunks: Iterable[bytes] = api.logs(self._id, stdout=which == "stdout", stderr=which == "stderr",
                                                       stream=True, follow=False)
                    for chunk in chunks:
                        out.write(chunk)
            except Exception as exc:
                log.warning("event=log_copy_failed container=%s stream=%s error=%r", self._name, which, _describe(exc))

    def _run(self) -> None:
        try:
            client = _client(self._host, self._version, None)
        except Exception as exc:
            log.warning("event=log_stream_failed container=%s error=%r", self._name, _describe(exc))
            return
        try:
            # Never through a link the container (root inside, the sandbox mounted) put there.
            with open_output(self._paths[0]) as out, open_output(self._paths[1]) as err:
                url = f"{client.base_url}/v{self._version}/containers/{self._id}/logs"
                params = {"stdout": 1, "stderr": 1, "follow": 1}
                if self._since is not None:
                    params["since"] = self._since
                response = client.get(url, params=params, stream=True, timeout=None)
                if response.status_code != 200:
                    raise RuntimeError(f"logs answered HTTP {response.status_code}: {response.text[:200]}")
                files = {1: out, 2: err}
                while True:
                    header = _read_exact(response.raw, 8)
                    if not header:
                        break
                    if len(header) < 8:
                        raise RuntimeError("log stream ended inside a frame header")
                    stream_id, length = struct.unpack(">BxxxL", header)
                    data = _read_exact(response.raw, length)
                    if len(data) < length:
                        raise RuntimeError("log stream ended inside a frame")
                    with self._write_lock:
                        if self._abandoned:
                            return
                        target = files.get(stream_id, err)
                        target.write(data)
                        target.flush()
                with self._write_lock:
                    self.complete = not self._abandoned
        except Exception as exc:
            log.warning("event=log_stream_failed container=%s error=%r", self._name, _describe(exc))
        finally:
            client.close()


# --- helpers ---------------------------------------------------------------------------------------


def _client(host: str, version: str, timeout: float | None) -> docker.APIClient:
    """A client for exactly ``host``: no environment variables, no proxies from
    ``~/.docker/config.json`` (``use_config_proxy=False`` at create), no ``*_PROXY`` or netrc."""
    api = docker.APIClient(base_url=host, version=version, timeout=timeout, max_pool_size=32)
    api.trust_env = False
    return api


def _remove_quietly(api: docker.APIClient, container_id: str) -> None:
    try:
        api.remove_container(container_id, v=True, force=True)
    except docker.errors.NotFound:
        pass
    except Exception as exc:
        log.warning("event=container_remove_failed id=%s error=%r", container_id[:12], _describe(exc))


def _read_exact(raw: Any, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = raw.read(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _causes(exc: BaseException) -> Iterable[BaseException]:
    """``exc`` and everything nested in it (requests wraps the socket's error in several layers)."""
    seen: set[int] = set()
    todo: list[Any] = [exc]
    while todo:
        item = todo.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        todo.extend(item.args)
        todo.extend([item.__cause__, item.__context__])


def _is_connection_problem(exc: BaseException) -> bool:
    return any(isinstance(e, (requests.exceptions.ConnectionError, ConnectionError, FileNotFoundError))
               for e in _causes(exc))


def _describe(exc: BaseException) -> str:
    """A short reason instead of a nest of wrapped exceptions."""
    if isinstance(exc, LaunchError):
        return exc.message
    if isinstance(exc, docker.errors.APIError):
        return str(exc.explanation or exc)
    for cause in _causes(exc):
        if isinstance(cause, FileNotFoundError):
            return "no engine socket there"
        if isinstance(cause, PermissionError):
            return "permission denied on the engine socket"
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, TimeoutError) or "timed out" in str(cause).lower():
            return "timed out"
    return str(exc) or type(exc).__name__
