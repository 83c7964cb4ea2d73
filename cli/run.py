"""``tepui run [--cpus X --mem Y] -- CMD ...``: one task through a minimal framework.

Prints each state change (on stderr), then the task's stdout and stderr, and exits with the
task's exit code, so it composes in scripts like the command itself would. Exit codes of its own follow ``docker run``: 125 when Tepui itself
failed (no master, invalid task, a task no agent can ever hold), 128 + the signal when
interrupted (130 for Ctrl-C, 143 for SIGTERM).
"""

from __future__ import annotations

import getpass
import os
import shlex
import signal
import sys
import uuid
from typing import Any

import click

EXIT_TEPUI_ERROR = 125


class OneTask:
    """The whole framework: launch once on the first offer that fits, report, exit."""

    def __init__(self, argv: list[str], cpus: float, mem: float, name: str, env: dict[str, str],
                 subscribe_timeout: float, reactor: Any, echo: Any, user: str | None = None,
                 image: str | None = None, uris: list[str] | None = None) -> None:
        from tepui.sdk import CommandInfo, CommandURI, ContainerInfo, DockerInfo, Resources, Scheduler

        self.resources = Resources.of(cpus=cpus, mem=mem)
        self.task_id = f"{name}-{uuid.uuid4().hex[:8]}"
        value = argv[0] if len(argv) == 1 else shlex.join(argv)
        self.command = CommandInfo(value=value, environment=env, user=user,
                                   uris=[CommandURI(value=uri) for uri in uris or []])
        self.container = ContainerInfo(type="DOCKER", docker=DockerInfo(image=image)) if image else None
        self.reactor, self.echo = reactor, echo
        self.exit_code: int | None = None
        self.launched = False
        self.sandbox: str | None = None
        self.show_output = True
        self.subscribe_timeout = subscribe_timeout
        self.waiting_notice: Any = None
        outer = self

        class _Scheduler(Scheduler):
            def subscribed(self, driver: Any, framework_id: str, master_info: Any) -> None:
                outer._on_subscribed(driver, framework_id)

            def offers(self, driver: Any, offers: list[Any]) -> None:
                outer._on_offers(driver, offers)

            def status_update(self, driver: Any, status: Any) -> None:
                outer._on_status(driver, status)

            def explanation(self, driver: Any, roles: list[Any]) -> None:
                outer._on_explanation(driver, roles)

            def error(self, driver: Any, message: Any) -> None:
                # Only a refused SUBSCRIBE ends the run (nothing would ever come); any other
                # refusal is told and the run goes on (a DECLINE that crossed a RESCIND is
                # refused as a matter of course; a refused launch ends the task, reported).
                if message.call_type == "SUBSCRIBE":
                    outer._fail(driver, f"the master refused the subscription: {message}")
                else:
                    outer.echo(f"the master refused a {message.call_type or 'call'}: {message}")

        self.scheduler = _Scheduler()

    def _on_subscribed(self, driver: Any, framework_id: str) -> None:
        self.echo(f"subscribed as framework {framework_id}; waiting for an offer with {self.resources}")
        # No offer soon: ask the master why, rather than waiting in silence.
        self.waiting_notice = self.reactor.callLater(3, driver.explain)

    def _on_explanation(self, driver: Any, roles: list[Any]) -> None:
        if self.launched:
            return
        for role in roles:
            if role.reason == "DEMAND_NEVER_FITS":
                self._fail(driver, f"no agent can ever run this task: {role.message}. "
                                   "Ask for less with --cpus/--mem, or add a larger agent.")
                return
            self.echo(f"still waiting for an offer: {role.message}")
        self.waiting_notice = self.reactor.callLater(10, driver.explain)

    def _on_offers(self, driver: Any, offers: list[Any]) -> None:
        from tepui.sdk import Filters, Resources, TaskInfo

        for offer in offers:
            if not self.launched and Resources.from_wire(offer.resources).contains(self.resources):
                self.launched = True
                if self.waiting_notice is not None and self.waiting_notice.active():
                    self.waiting_notice.cancel()
                task = TaskInfo(name=self.task_id, task_id=self.task_id, agent_id=offer.agent_id,
                                resources=self.resources.to_wire(), command=self.command, container=self.container)
                driver.launch(offer.id, [task])
                driver.suppress()
                self.echo(f"{self.task_id}: launching on {offer.hostname} ({offer.agent_id})")
            else:
                driver.decline(offer.id, Filters(refuse_seconds=3600))

    def _on_status(self, driver: Any, status: Any) -> None:
        detail = f": {status.message}" if status.message else ""
        self.echo(f"{status.task_id}: {status.state.value}{detail}")
        self.sandbox = status.labels.get("tepui.sandbox", self.sandbox)
        if status.task_id != self.task_id or not status.state.is_terminal:
            return
        self._show_output()
        from tepui.sdk import TaskState

        if status.state == TaskState.FINISHED:
            self.exit_code = 0
        elif status.exit_code is not None:
            self.exit_code = status.exit_code
        else:
            self.exit_code = EXIT_TEPUI_ERROR if status.state == TaskState.ERROR else 1
        driver.stop_and_exit()

    def _show_output(self) -> None:
        """Like ``docker run``: the task's stdout and stderr, when its sandbox is on this machine
        (always so with ``tepui up``). A remote agent's files come with the sandbox API."""
        if not self.show_output or not self.sandbox or not os.path.isdir(self.sandbox):
            return
        for name, stream in (("stdout", sys.stdout), ("stderr", sys.stderr)):
            try:
                with open(os.path.join(self.sandbox, name), errors="replace") as f:
                    text = f.read()
            except OSError:
                continue
            if text:
                stream.write(text if text.endswith("\n") else text + "\n")
                stream.flush()

    def _fail(self, driver: Any, message: str) -> None:
        self.echo(f"Error: {message}", err=True)
        self.exit_code = EXIT_TEPUI_ERROR
        driver.stop_and_exit()

    def check_subscribed(self, driver: Any, master: str) -> None:
        if driver.connected:
            return
        problem = driver.handshake_problem
        if problem == "key_refused":
            self._fail(driver, f"the master at {master} refused this client's key (unknown or revoked). Run "
                               "`tepui up` again for a local cluster, or get a key with `tepui certs issue`.")
        elif problem == "mechanism_mismatch":
            self._fail(driver, f"the master at {master} and this client disagree about encryption: give the "
                               "client the cluster's keys ($TEPUI_CONFIG, written by `tepui up`), or the master "
                               "runs --insecure and the client has keys (unset $TEPUI_CONFIG).")
        elif problem == "handshake_aborted":
            # The master was there and ended the CURVE handshake: the client expects another master
            # key. Asking whether a cluster runs would send the user looking in the wrong place.
            from tepui.sdk.config import default_config_path

            self._fail(driver, f"the master at {master} ended the handshake: the master's key in the client "
                               f"configuration ({default_config_path()}, from $TEPUI_CONFIG or "
                               "~/.config/tepui/config.yaml) is probably stale, after `tepui certs rotate-master "
                               "--finish` or a new key store. Run `tepui up` again for a local cluster (it rewrites "
                               "the configuration), or re-copy the client configuration from the cluster.")
        else:
            self._fail(driver, f"no answer from a master at {master} within {self.subscribe_timeout:g} s. "
                               "Is a cluster running? Start one with `tepui up`, or pass --master HOST:PORT."
                               + (f" (handshake: {problem})" if problem else ""))


@click.command("run", context_settings={"ignore_unknown_options": True})
@click.option("--master", default=None,
              show_default="$TEPUI_MASTER, else the client configuration of `tepui up`, else 127.0.0.1:5050",
              help="Master HOST:PORT.")
@click.option("--cpus", default=0.1, show_default=True, type=float, help="CPUs for the task.")
@click.option("--mem", default=32.0, show_default=True, type=float, help="Memory for the task, MiB.")
@click.option("--name", default="run", show_default=True, help="Prefix of the task id.")
@click.option("--env", "-e", multiple=True, help="NAME=VALUE for the task's environment (repeatable).")
@click.option("--timeout", default=10.0, show_default=True, help="Seconds to wait for the master to answer.")
@click.option("--quiet-output", is_flag=True, help="Do not print the task's stdout/stderr at the end.")
@click.option("--user", default=None, help="Run the task as this user (the agent must allow it).")
@click.option("--image", default=None, help="Run in a Docker container from this (local) image.")
@click.option("--uri", "uris", multiple=True, help="Fetch into the sandbox first (http(s)://, file://; archives are extracted).")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run_command(master: str | None, cpus: float, mem: float, name: str, env: tuple[str, ...], timeout: float,
                quiet_output: bool, user: str | None, image: str | None, uris: tuple[str, ...],
                command: tuple[str, ...]) -> None:
    """Run one command as a task and exit with its exit code.

    \b
    tepui run -- sh -c 'echo hello; exit 3'
    """
    from tepui.sdk.runtime import install_reactor

    environment = {}
    for item in env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not NAME=VALUE", param_hint="--env")
        environment[key] = value
    if cpus <= 0 and mem <= 0:
        raise click.BadParameter("give the task some --cpus or --mem")
    reactor = install_reactor()
    from tepui.sdk import FrameworkInfo, SchedulerDriver
    from tepui.sdk.config import ConfigError

    def echo(text: str, err: bool = True) -> None:
        # Tepui's own lines go to stderr, so stdout carries only the task's output (as with
        # `docker run`): `tepui run -- cat data > copy` works.
        click.echo(text, err=err)

    job = OneTask(list(command), cpus, mem, name, environment, timeout, reactor, echo, user, image, list(uris))
    job.show_output = not quiet_output
    try:
        # Declaring the task's shape keeps offers from agents where it cannot fit away.
        driver = SchedulerDriver(job.scheduler, FrameworkInfo(user=getpass.getuser(), name=f"tepui-run:{name}"),
                                 master, reactor=reactor, demand=[job.resources])
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--master") from None
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None

    def interrupted(signum: int, _frame: Any) -> None:
        name = signal.Signals(signum).name
        echo(f"{name}: tearing the framework down (its task is killed)", err=True)
        job.exit_code = 128 + signum  # 130 for Ctrl-C, 143 for SIGTERM
        reactor.callFromThread(driver.stop_and_exit)

    def install_handlers() -> None:
        signal.signal(signal.SIGINT, interrupted)
        signal.signal(signal.SIGTERM, interrupted)

    reactor.callWhenRunning(install_handlers)
    reactor.callLater(timeout, job.check_subscribed, driver, driver.master_address.removeprefix("tcp://"))
    driver.run()
    sys.exit(job.exit_code if job.exit_code is not None else EXIT_TEPUI_ERROR)
