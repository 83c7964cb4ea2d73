"""The agent's I/O shell: a DEALER to the master, the process launcher, timers."""

from __future__ import annotations

import logging
import os
import shutil
import time
import uuid
from typing import TYPE_CHECKING, Any

from twisted.internet import defer

from tepui.agent.core import AgentCore
from tepui.agent.health_checks import health_probes
from tepui.agent.events import (
    ExecutorReceived,
    RemoveVolumes,
    Exit,
    SendToExecutor,
    HealthCheckResult,
    RunHealthCheck,
    FetchFailed,
    FetchSucceeded,
    FetchURIs,
    LaunchContainer,
    LaunchProcess,
    MasterChanged,
    MasterReconnected,
    Received,
    SendToMaster,
    Shutdown,
    SignalProcess,
    Start,
    TaskExited,
    TaskLaunchFailed,
    TaskSpawned,
)
from tepui.agent.containerizers.cgroups import Cgroups, Limits
from tepui.agent.checkpointing.checkpoint import Checkpoint, Recovered
from tepui.agent.checkpointing.checkpoint_store import CheckpointStore
from tepui.agent.custom_executors.executors import EXECUTOR_PREFIX
from tepui.agent.checkpointing.recovery import AdoptContainer, AdoptProcess
from tepui.agent.containerizers.docker_containerizer import ContainerExit, DockerContainerizer, LaunchError
from tepui.agent.fetching.fetcher import Fetcher
from tepui.agent.containerizers.processes import ProcessExit, ProcessLauncher, TaskUser, resolve_user
from tepui.sdk.codec import Codec, ProtocolError, envelope
from tepui.sdk.effects import TimerFired
from tepui.sdk.protocol.envelope import AgentExecutorInbound, AgentInbound
from tepui.sdk.shell import TimerBook, TimersAndLogs
from tepui.sdk.keys import ClientKeys
from tepui.sdk.dealer import DealerEndpoint
from tepui.sdk.router import RouterEndpoint
from tepui.sdk.zookeeper import is_zk

if TYPE_CHECKING:
    from tepui.sdk.master_follower import MasterTarget

log = logging.getLogger("tepui.agent")


class AgentShell:
    """``master`` is the master's ``tcp://HOST:PORT``, or ``zk://h1:p1,h2:p2/path`` (HA masters):
    the agent then follows the serving leader (:mod:`tepui.sdk.master_follower`), registers only
    once one serves, and on every change moves its connection and re-registers at once."""

    def __init__(self, reactor: Any, core: AgentCore, master: str, cgroups: Cgroups | None = None,
                 pids_limit: int | None = None, docker: DockerContainerizer | None = None,
                 fetcher: Fetcher | None = None, store: CheckpointStore | None = None,
                 curve: ClientKeys | None = None) -> None:
        self.reactor = reactor
        self.store = store or CheckpointStore(core.config.work_dir)
        self.pids_limit = pids_limit
        self.docker = docker
        self.docker_problem: str | None = None  # why the engine cannot be used, when it cannot
        self.fetcher = fetcher or Fetcher(reactor, os.path.join(core.config.work_dir, "fetcher-cache"))
        self.core = core
        self.codec: Codec[Any] = Codec(AgentInbound)
        # Ordered by process start (the master fences off older ones), unique by the suffix.
        self.incarnation = f"{time.time_ns():020d}-{uuid.uuid4().hex[:12]}"
        self.timers = TimerBook(reactor, lambda key: self.handle(TimerFired(key)))
        self.timers_and_logs = TimersAndLogs(self.timers, log)
        self.launcher = ProcessLauncher(reactor, cgroups)
        self.malformed = 0
        self._msg_id = 0
        self._exited: defer.Deferred[None] = defer.Deferred()
        self._reactor_stopping = False
        self._draining = False
        self.master = master
        self.curve = curve
        self.following = is_zk(master)
        self.follower: Any = None  # a LeaderFollower while following a zk:// master
        self._started = False
        self._leader_known = False
        self.endpoint = DealerEndpoint(reactor, None if self.following else master, self._on_message,
                                       on_reconnect=lambda: self.handle(MasterReconnected()), curve=curve)
        self.executor_codec: Codec[Any] = Codec(AgentExecutorInbound)
        self.executor_socket: RouterEndpoint | None = None
        if core.config.executor_endpoint:
            path = core.config.executor_endpoint[len("ipc://"):]
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if os.path.exists(path):
                os.unlink(path)  # a socket file left by an earlier agent process
            self.executor_socket = RouterEndpoint(reactor, core.config.executor_endpoint, self._on_executor_payload)
            # Not 0700, deliberately: custom executors run as the task user (often not the agent's),
            # and connecting to a Unix socket needs write permission on it. This link is local and
            # not CURVE-protected; what guards it is the agent core, which accepts SUBSCRIBE only
            # for an executor it launched and has not seen exit, with the secret it gave that
            # executor in its environment, and binds it to that connection (docs/security.md).
            os.chmod(path, 0o777)

    def recover(self, recovered: Recovered | None) -> None:
        """Before ``start``: takes back the tasks of an earlier agent process (adopting their
        supervisors and containers), then removes task cgroups and containers nobody owns."""
        if recovered is not None:
            self._perform(self.core.recover(recovered, self.reactor.seconds()))
        if self.launcher.cgroups is not None:
            removed = self.launcher.cgroups.sweep(list(self.launcher.groups.values()))
            if removed:
                log.warning("event=stray_cgroups_removed count=%d reason=\"tasks no checkpoint accounts for\"", removed)
        if self.docker is not None and self.core.agent_id is not None:
            swept = self.docker.sweep(self.core.agent_id)
            swept.addErrback(lambda f: log.warning("event=orphan_container_sweep_failed error=%r", str(f.value)))

    def follow(self) -> None:
        """With a ``zk://`` master: connects to ZooKeeper and follows the serving master (raises
        ``ZkUnavailable`` naming the servers when none answers). ``run_agent`` calls it before
        the reactor runs, so that an unreachable ensemble stops the agent with that message."""
        if self.following and self.follower is None:
            from tepui.sdk.master_follower import follow_master

            self.follower = follow_master(self.reactor, self.master, self.curve, self._master_changed)

    def _master_changed(self, target: MasterTarget) -> None:
        """ZooKeeper names the serving master: move there; register if the agent has started
        (the first leader), re-register at once on a change (``MasterChanged``)."""
        self.endpoint.retarget(target.connect, target.server_key)
        first, self._leader_known = not self._leader_known, True
        if not self._started:
            return  # start() registers
        if first:
            self.handle(Start())
        else:
            self.handle(MasterChanged(target.info.id, target.info.epoch))

    def _stop_following(self) -> None:
        if self.follower is not None:
            self.follower.close()
            self.follower = None

    def start(self) -> None:
        self._started = True
        self.follow()
        if self.following and not self._leader_known:
            log.info("event=waiting_for_master zk=%s hint=\"the agent registers once a master serves\"", self.master)
        else:
            self.handle(Start())
        if self.docker is not None:
            self.docker.available().addCallback(self._docker_checked)

    def _docker_checked(self, problem: str | None) -> None:
        self.docker_problem = problem
        if problem:
            log.warning("event=docker_unavailable reason=%r hint=\"Docker tasks will fail until the engine answers\"",
                        problem)

    def handle(self, event: Any) -> None:
        self._perform(self.core.handle(event, self.reactor.seconds()))

    def drain(self) -> defer.Deferred[None]:
        """SIGUSR1 (Mesos): ends every task (TERM, then KILL after its grace), waits for their
        final updates to be acknowledged, unregisters, then stops the reactor. Waits at most
        the longest grace period plus a little."""
        if not self._draining:
            self._draining = True
            self.handle(Shutdown())
            # A backstop only: the core's own stop deadline (grace + 3 s) normally ends the wait.
            grace = max([t.kill_grace for t in self.core.tasks.values()] + [0.0]) + 5.0
            timeout = self.reactor.callLater(grace, self._finish)
            self._exited.addBoth(lambda _: timeout.cancel() if timeout.active() else None)
        return self._exited

    def on_reactor_stop(self) -> defer.Deferred[None] | None:
        """The reactor is stopping (SIGTERM, Ctrl-C, or the end of a drain). Unless a drain
        is under way, the agent process goes and its tasks stay (Mesos: an agent that exits,
        e.g. for an upgrade, leaves its executors and tasks running): their supervisors and
        containers carry on, the checkpoint holds the rest, and the next agent started on the
        same work dir takes them back."""
        self._reactor_stopping = True
        if self._draining or self.core.stopping:
            return self._exited
        self.timers.cancel_all()
        self._stop_following()
        self.endpoint.close()
        if self.executor_socket is not None:
            self.executor_socket.close()
        if self.launcher.cgroups is not None:
            self.launcher.cgroups.release()  # removed only if no task's cgroup is left in it
        running = len(self.core.tasks)
        log.info("event=agent_exiting tasks_left_running=%d hint=\"start the agent again on %s to take them back; "
                 "send SIGUSR1 instead of SIGTERM to stop them with the agent\"", running, self.core.config.work_dir)
        return None

    def _finish(self) -> None:
        self.launcher.destroy_all()
        if self.docker is not None:
            for key in self.docker.running():
                self.docker.signal(key, "KILL")
        if not self._exited.called:
            self._exited.callback(None)
        self.timers.cancel_all()
        self._stop_following()
        self.endpoint.close()
        if self.executor_socket is not None:
            self.executor_socket.close()
        if self.launcher.cgroups is not None:
            self.launcher.cgroups.release()
        if not self._reactor_stopping:  # the master told us to shut down
            self._reactor_stopping = True
            self.reactor.stop()

    def _on_executor_payload(self, peer: bytes, payload: bytes) -> None:
        for env in self.executor_codec.envelopes(payload):  # one, or a batch (tepui.sdk.batch)
            if isinstance(env, ProtocolError):
                log.warning("event=malformed_executor_message error=%r", str(env))
                continue
            self.handle(ExecutorReceived(peer, env.body))

    def _on_message(self, payload: bytes) -> None:
        for env in self.codec.envelopes(payload):  # one, or a batch (tepui.sdk.batch)
            if isinstance(env, ProtocolError):
                self.malformed += 1
                log.warning("event=malformed_message error=%r", str(env))
                continue
            self.handle(Received(env.body, env.epoch))

    def _perform(self, effects: list[Any]) -> None:
        for effect in effects:
            if isinstance(effect, Checkpoint):
                self._checkpoint(effect)
            elif isinstance(effect, SendToMaster):
                self._msg_id += 1
                self.endpoint.send(self.codec.encode(envelope(
                    effect.body, self._msg_id, self.core.master_epoch, self.incarnation)))
            elif isinstance(effect, LaunchProcess):
                self.endpoint.flush()  # TASK_STARTING leaves before the spawn's milliseconds
                self._launch(effect)
            elif isinstance(effect, LaunchContainer):
                self.endpoint.flush()
                self._launch_container(effect)
            elif isinstance(effect, AdoptProcess):
                self._adopt_process(effect)
            elif isinstance(effect, AdoptContainer):
                self._adopt_container(effect)
            elif isinstance(effect, FetchURIs):
                self._fetch(effect)
            elif isinstance(effect, RunHealthCheck):
                self._probe(effect)
            elif isinstance(effect, RemoveVolumes):
                for path in effect.paths:
                    shutil.rmtree(path, ignore_errors=True)
            elif isinstance(effect, SendToExecutor):
                if self.executor_socket is not None:
                    self._msg_id += 1
                    self.executor_socket.send(effect.peer, self.executor_codec.encode(
                        envelope(effect.body, self._msg_id, incarnation=self.incarnation)))
            elif isinstance(effect, SignalProcess):
                key = (effect.framework_id, effect.task_id)
                if self.docker is not None and key in self.docker.running():
                    self.docker.signal(key, effect.signal)
                else:
                    self.launcher.signal(key, effect.signal)
            elif isinstance(effect, Exit):
                self.reactor.callLater(0, self._finish)
            elif not self.timers_and_logs.perform(effect):  # pragma: no cover
                log.error("event=unknown_effect effect=%r", effect)

    def _launch(self, effect: LaunchProcess) -> None:
        """Starts the process; the core hears TaskSpawned, then (never before) TaskExited, each
        on a later reactor turn, since we are inside the effects of one ``handle``."""
        fid, tid = effect.framework_id, effect.task_id
        reported = False
        early_exit: TaskExited | None = None  # a very fast command ended before we reported its start

        def on_exit(result: ProcessExit) -> None:
            nonlocal early_exit
            event = TaskExited(fid, tid, result.exit_code, result.signal, oom_killed=result.oom_kills > 0,
                               message=result.message)
            if reported:
                self.reactor.callLater(0, self.handle, event)
            else:
                early_exit = event

        def report_spawned(pid: int) -> None:
            nonlocal reported
            self.handle(TaskSpawned(fid, tid, pid))
            reported = True
            if early_exit is not None:
                self.handle(early_exit)

        try:
            user = resolve_user(effect.user) if effect.user else None
            limits = Limits(cpus=effect.cpus, mem_mib=effect.mem_mib, pids=self.pids_limit)
            if effect.shared is not None:
                _link_shared(effect.shared, effect.sandbox, user)
            for directory, path in effect.volumes:
                _link_volume(directory, effect.sandbox, path, user)
            envelope = None
            if effect.envelope is not None:
                group_id, cpus, mem = effect.envelope
                envelope = (group_id, Limits(cpus=cpus, mem_mib=mem, pids=self.pids_limit))
            pid = self.launcher.launch((fid, tid), effect.sandbox, effect.command, effect.environment, on_exit,
                                       limits, user, envelope, run_dir=self.store.run_dir(fid, tid))
        except LookupError as exc:  # an unknown user: the task's own problem, no stack trace
            self.reactor.callLater(0, self.handle, TaskLaunchFailed(fid, tid, str(exc)))
            return
        except Exception as exc:  # whatever went wrong, the task fails visibly, never hangs in STARTING
            log.exception("event=launch_failed task_id=%s", tid)
            detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            message = f"could not start the task in {effect.sandbox}: {detail}"
            self.reactor.callLater(0, self.handle, TaskLaunchFailed(fid, tid, message))
            return
        self.reactor.callLater(0, report_spawned, pid)


    def _checkpoint(self, effect: Checkpoint) -> None:
        """Write-ahead: nothing in this batch happens unless it is recorded. A disk that refuses
        ends the agent at once, without touching its tasks: the next agent process recovers
        them from the last good checkpoint (stopping through the reactor would kill them)."""
        try:
            self.store.write(effect)
        except OSError as exc:
            log.critical("event=checkpoint_write_failed error=%r hint=\"the agent exits without stopping its tasks; "
                         "fix the disk under %s and start it again: it recovers them\"", str(exc), self.store.root)
            logging.shutdown()
            os._exit(1)

    def _adopt_process(self, effect: AdoptProcess) -> None:
        fid, tid = effect.framework_id, effect.task_id
        run_dir = self.store.run_dir(fid, tid)
        group = None
        if self.launcher.cgroups is not None:
            group = self.launcher.cgroups.adopt(fid, tid, effect.group)

        def on_exit(result: ProcessExit) -> None:
            self.handle(TaskExited(fid, tid, result.exit_code, result.signal, oom_killed=result.oom_kills > 0,
                                   message=result.message))

        pid = self.store.supervisor_pid(fid, tid)
        alive = self.launcher.adopt((fid, tid), pid, run_dir, on_exit, group)
        what = "executor" if tid.startswith(EXECUTOR_PREFIX) else "task"
        log.info("event=%s_adopted task_id=%s framework_id=%s pid=%s running=%s", what, tid, fid, pid, alive)

    def _adopt_container(self, effect: AdoptContainer) -> None:
        fid, tid = effect.framework_id, effect.task_id

        def on_exit(result: ContainerExit) -> None:
            self.handle(TaskExited(fid, tid, result.exit_code, result.signal, oom_killed=result.oom_killed,
                                   message=result.message))

        if self.docker is None:
            self.reactor.callLater(0, on_exit, ContainerExit(None, None, False, "the agent restarted without its "
                                                             "Docker containerizer; the container was not adopted"))
            return
        self.docker.adopt((fid, tid), effect.sandbox, on_exit)

    def _launch_container(self, effect: LaunchContainer) -> None:
        fid, tid = effect.framework_id, effect.task_id
        if self.docker is None or self.docker_problem:
            reason = self.docker_problem or "this agent has no Docker containerizer"
            self.reactor.callLater(0, self.handle, TaskLaunchFailed(fid, tid, f"cannot start the container: {reason}"))
            return

        def on_exit(result: ContainerExit) -> None:
            self.handle(TaskExited(fid, tid, result.exit_code, result.signal, oom_killed=result.oom_killed,
                                   message=result.message))

        def failed(failure: Any) -> None:
            message = failure.value.message if failure.check(LaunchError) else str(failure.value)
            self.handle(TaskLaunchFailed(fid, tid, message))

        launched = self.docker.launch((fid, tid), effect.sandbox, effect.task, fid, self.core.agent_id or "",
                                      effect.environment, on_exit)
        launched.addCallbacks(lambda cid: self.handle(TaskSpawned(fid, tid, 0, container_id=cid)), failed)

    def _fetch(self, effect: FetchURIs) -> None:
        fid, tid = effect.framework_id, effect.task_id
        try:
            user = resolve_user(effect.user) if effect.user else None
        except LookupError as exc:  # the launch would fail the same way: say it now
            self.reactor.callLater(0, self.handle, FetchFailed(fid, tid, f"cannot fetch the task's URIs: {exc}"))
            return
        os.makedirs(effect.sandbox, exist_ok=True)
        fetched = self.fetcher.fetch(effect.uris, effect.sandbox, user)
        fetched.addCallbacks(lambda _: self.handle(FetchSucceeded(fid, tid)),
                             lambda failure: self.handle(FetchFailed(fid, tid, str(failure.value))))


    def _probe(self, effect: RunHealthCheck) -> None:
        fid, tid = effect.framework_id, effect.task_id
        try:
            user = resolve_user(effect.user) if effect.user else None
        except LookupError:
            user = None
        probed = health_probes.probe(self.reactor, effect.check, effect.sandbox, effect.environment, user)
        probed.addCallback(lambda result: self.handle(HealthCheckResult(fid, tid, result[0], result[1])))


def _link_shared(shared: str, sandbox: str, user: TaskUser | None) -> None:
    """A task group's shared volume: one directory, linked into every member's sandbox."""
    os.makedirs(shared, exist_ok=True)
    if user is not None and os.geteuid() == 0:
        os.chown(shared, user.uid, user.gid)
    _link_in_sandbox(sandbox, "shared", shared, user)


def _link_volume(directory: str, sandbox: str, path: str, user: TaskUser | None) -> None:
    """A persistent volume: a directory outside the sandbox that outlives the task, seen by
    the task at ``path`` inside its sandbox (a symlink; Docker tasks get a bind mount)."""
    os.makedirs(directory, exist_ok=True)
    if user is not None and os.geteuid() == 0:
        os.chown(directory, user.uid, user.gid)
    _link_in_sandbox(sandbox, path, directory, user)


def _link_in_sandbox(sandbox: str, path: str, target: str, user: TaskUser | None) -> None:
    """Makes ``<sandbox>/<path>`` a link to ``target`` (unless something is there), creating the
    directories on the way as the task's user's. Step by step from an open directory and never
    through a link: the sandbox may already be that user's (the fetcher wrote in it as the user),
    and the agent, often root, must not be led out of it by a link a process of theirs put there."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise OSError(f"{path!r} cannot name a place inside the sandbox")
    chown = user is not None and os.geteuid() == 0
    os.makedirs(sandbox, exist_ok=True)  # before the launch, when nothing was fetched
    fd = os.open(sandbox, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        for part in parts[:-1]:
            try:
                os.mkdir(part, 0o755, dir_fd=fd)
                if chown:
                    assert user is not None
                    os.chown(part, user.uid, user.gid, dir_fd=fd, follow_symlinks=False)
            except FileExistsError:
                pass
            inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = inner
        try:
            os.symlink(target, parts[-1], dir_fd=fd)
        except FileExistsError:
            pass
    finally:
        os.close(fd)


def default_work_dir() -> str:
    return os.path.join(os.environ.get("TMPDIR", "/tmp"), "tepui-agent")
