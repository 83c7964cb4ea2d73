"""The workload framework of bench/chaos.py: an ordinary SDK framework (a subprocess, like any
framework) that runs ``--tasks`` work items through chaos and keeps a durable record of it.

Work items: item *i* is released at ``i / tasks × --launch-window`` seconds after the first
subscription; about ``--long-share`` of them are long (``sleep`` of 4 s up to ``--long-max``),
the rest short (``sleep`` 0.1–0.9 s). Every attempt of an item is a task with a NEW id,
``w<item>-<attempt>`` (never reused), 0.1 cpus and 16 MiB, whose command first appends its
task id to ``--starts`` (so the bench counts real process starts per id independently of
anything the cluster says), then execs ``sleep``.

The framework is PARTITION_AWARE with a failover timeout of an hour. It

* records every launch (fsynced *before* the ACCEPT leaves), every status it receives, every
  kill, reconcile and relaunch, as JSON lines in ``--out``, each with a ``time.monotonic()``
  ``t`` (comparable with the bench's clock: same host);
* relaunches an item under a new id when its current attempt ends TASK_LOST, TASK_DROPPED,
  TASK_GONE, TASK_GONE_BY_OPERATOR, TASK_FAILED with a reason other than the command's own
  failure (``REASON_COMMAND_EXECUTOR_FAILED``), TASK_KILLED after the framework itself killed
  it (launch timeout, below), or TASK_UNKNOWN (a reconciliation answer: the master does not know
  it) when no agent ever reported anything about the attempt (its launch was lost), judging an
  attempt by its first terminal report (a reconciliation answer repeats the state with reason
  RECONCILIATION). An UNREACHABLE attempt is waited for (it comes back RUNNING when its agent
  returns);
* reconciles explicitly (task id + agent id) every unfinished attempt after each
  re-subscription, every 5 s each attempt no agent has reported on yet (from 5 s after its
  launch), and every 20 s each unfinished attempt that has been silent that long; an attempt the master still reports STAGING 10 s after its launch, with nothing
  heard from an agent, is killed (again every 5 s until it ends): the agent answers
  TASK_DROPPED for a RUN_TASK it never received (Marathon's task_launch_timeout does the same);
* ignores offers it has already seen (a duplicated OFFERS message), revives while it has work
  to place and no offers arrive, suppresses when it has none;
* relies on the SDK driver to re-subscribe (with its framework id) after a master restart.

Highly available (``bench/chaos.py --masters 3``): with ``--zk`` it runs as one of several
instances with one leader, as the issue asks of frameworks. Each joins the election under
``<path>/frameworks/chaos/leader`` (``tepui.sdk.leadership.Contender``); the elected one reads
the shared record ``--out`` back — its framework id, every launch, status, kill and reconcile
in order, replayed through the same rules, so it decides exactly what the dead leader would
have — writes a ``leading`` record, subscribes with that framework id (within the hour of
failover timeout the master hands it the framework and its tasks), reconciles everything and
publishes its epoch. Only the leader writes the record; a standby only waits. The record is
the framework's durable state, the way a Marathon keeps its state in ZooKeeper: every launch
is on disk before its ACCEPT leaves and every status before its acknowledgement, so what a
killed leader had not written was never acted on by anyone — an unacknowledged status comes
again, an unsent launch is relaunched after its reconciliation says TASK_UNKNOWN. A leader
that loses its ZooKeeper session exits 1 at once.

On SIGUSR1 (the bench: "chaos is over") it waits until every item has finished and every
attempt has a terminal state, or ``--settle`` seconds, then reconciles every attempt that has
not finished (explicitly, repeated for ``--final-reconcile`` seconds, plus one implicit
reconciliation), writes a ``final`` record and tears the framework down.
"""

from __future__ import annotations

import argparse
import collections
import getpass
import json
import os
import random
import signal
import sys
import time
from dataclasses import dataclass, field

from tepui.sdk import install_reactor

reactor = install_reactor()  # before anything else touches Twisted's reactor

from tepui.sdk import (  # noqa: E402
    CommandInfo, Filters, FrameworkInfo, Resources, Scheduler, SchedulerDriver, TaskInfo, TaskReason,
    TaskSource, TaskState,
)

TASK = Resources.of(cpus=0.1, mem=16)
UNCONFIRMED_RECONCILE_EVERY = 5.0  # an attempt no agent has reported on yet (first ask 5 s after launch)
RECONCILE_EVERY = 20.0  # an attempt an agent has reported on, silent for this long
LAUNCH_TIMEOUT = 10.0
KILL_EVERY = 5.0
TICK = 1.0
RELAUNCH_ALWAYS = {TaskState.LOST, TaskState.DROPPED, TaskState.GONE, TaskState.GONE_BY_OPERATOR}


@dataclass
class Attempt:
    task_id: str
    item: int
    agent_id: str
    launched_at: float
    state: TaskState | None = None
    agent_heard: bool = False  # some status from an agent (not the master) about it
    last_heard: float = 0.0
    reconciled_at: float = 0.0
    killed_at: float = 0.0
    replaced: bool = False  # the framework relaunched its item under a new id


@dataclass
class Item:
    index: int
    seconds: float
    release_at: float
    attempts: list[str] = field(default_factory=list)
    finished: bool = False  # some attempt reached TASK_FINISHED


class Recorder:
    def __init__(self, path: str) -> None:
        self.file = open(path, "a", buffering=1)

    def __call__(self, event: str, **fields: object) -> None:
        self.file.write(json.dumps({"event": event, "t": round(time.monotonic(), 4), **fields}) + "\n")

    def sync(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())


class _Muted(Recorder):
    """What a new leader replaying the record writes: nothing."""

    def __init__(self) -> None:
        pass

    def __call__(self, event: str, **fields: object) -> None:
        pass

    def sync(self) -> None:
        pass


class ChaosScheduler(Scheduler):
    def __init__(self, args: argparse.Namespace, emit: Recorder) -> None:
        self.args, self.emit = args, emit
        rng = random.Random(args.seed)
        self.items: list[Item] = []
        for i in range(args.tasks):
            long = rng.random() < args.long_share
            seconds = round(rng.uniform(4.0, max(4.0, args.long_max)) if long else rng.uniform(0.1, 0.9), 1)
            self.items.append(Item(i, seconds, args.launch_window * i / max(1, args.tasks)))
        self.attempts: dict[str, Attempt] = {}
        self.queue: collections.deque[int] = collections.deque()  # items waiting for an offer
        self.released = 0
        self.started_at: float | None = None
        self.seen_offers: set[str] = set()
        self.last_offer_at = 0.0
        self.suppressed = False
        self.finishing_since: float | None = None
        self.final_started: float | None = None
        self.stopping = False
        self.reconcile_all = False
        self.ticking = False
        self.driver: SchedulerDriver | None = None

    # --- callbacks --------------------------------------------------------------------------

    def subscribed(self, driver, framework_id, master_info):
        self.emit("subscribed", framework_id=framework_id, master_id=master_info.id)
        self.emit.sync()
        self.suppressed = False
        if self.started_at is None:
            self.started_at = time.monotonic()
        else:
            self.reconcile_all = True  # Mesos: reconcile after every (re-)registration
        if not self.ticking:
            self.ticking = True
            reactor.callLater(TICK, self.tick)

    def disconnected(self, driver):
        self.emit("disconnected")

    def error(self, driver, message):
        self.emit("error", message=message)

    def rescinded(self, driver, offer_id):
        self.emit("rescinded", offer_id=offer_id)

    def offers(self, driver, offers):
        now = time.monotonic()
        self.last_offer_at = now
        launches = []
        for offer in offers:
            if offer.id in self.seen_offers:
                self.emit("duplicate_offer", offer_id=offer.id)
                continue
            self.seen_offers.add(offer.id)
            room, tasks = Resources.from_wire(offer.resources), []
            while self.queue and room.contains(TASK) and not self.stopping:
                item = self.items[self.queue.popleft()]
                if item.finished:
                    continue
                task_id = f"w{item.index:05d}-{len(item.attempts)}"
                item.attempts.append(task_id)
                self.attempts[task_id] = Attempt(task_id, item.index, offer.agent_id, now, last_heard=now)
                room = room - TASK
                command = f'echo "$TEPUI_TASK_ID" >> {self.args.starts}; exec sleep {item.seconds}'
                tasks.append(TaskInfo(name=task_id, task_id=task_id, agent_id=offer.agent_id,
                                      resources=TASK.to_wire(), command=CommandInfo(value=command)))
                self.emit("launch", task_id=task_id, item=item.index, attempt=len(item.attempts) - 1,
                          agent_id=offer.agent_id, hostname=offer.hostname, offer_id=offer.id, seconds=item.seconds)
            launches.append((offer.id, tasks))
        self.emit.sync()  # every launch is on disk before its ACCEPT leaves
        for offer_id, tasks in launches:
            if tasks:
                driver.launch(offer_id, tasks, Filters(refuse_seconds=0.5))
            else:
                driver.decline(offer_id, Filters(refuse_seconds=2.0))
        if not self.queue and not self.suppressed:
            driver.suppress()
            self.suppressed = True

    def status_update(self, driver, status):
        now = time.monotonic()
        self.emit("status", task_id=status.task_id, state=status.state.value,
                  reason=status.reason.value if status.reason else None,
                  source=status.source.value if status.source else None, agent_id=status.agent_id,
                  message=status.message, final_phase=self.final_started is not None)
        if self._apply_status(status.task_id, status.state, status.reason, status.source, now):
            self._want_offers(driver)
        self.emit.sync()  # on disk before the implicit acknowledgement leaves

    def _apply_status(self, task_id: str, state: TaskState, reason: TaskReason | None, source: TaskSource | None,
                      now: float) -> bool:
        """What a status changes (the same when a new leader replays the record); True when
        its item is to be relaunched."""
        attempt = self.attempts.get(task_id)
        if attempt is None:
            self.emit("status_for_unknown_task", task_id=task_id)
            return False
        # Whether to relaunch is decided on an attempt's first terminal report (the agent's, with
        # its reason); later copies (retries, reconciliation answers, whose reason is always
        # RECONCILIATION) must not turn a FAILED the command caused into one to relaunch.
        decided = attempt.state is not None and attempt.state.is_terminal
        attempt.state = state
        attempt.last_heard = now
        if source != TaskSource.MASTER:
            attempt.agent_heard = True
        item = self.items[attempt.item]
        if state == TaskState.FINISHED:
            if item.finished:
                self.emit("item_finished_again", item=item.index, task_id=task_id)
            item.finished = True
        elif not decided and not attempt.replaced and not item.finished and item.attempts[-1] == attempt.task_id \
                and self._should_relaunch(attempt, state, reason):
            attempt.replaced = True
            self.emit("relaunch", item=item.index, task_id=task_id, state=state.value,
                      reason=reason.value if reason else None)
            self.queue.appendleft(item.index)
            return True
        return False

    def _should_relaunch(self, attempt: Attempt, state: TaskState, reason: TaskReason | None) -> bool:
        if state in RELAUNCH_ALWAYS:
            return True
        if state == TaskState.FAILED:
            return reason != TaskReason.COMMAND_EXECUTOR_FAILED
        if state == TaskState.KILLED:
            return attempt.killed_at > 0
        if state == TaskState.UNKNOWN:
            return not attempt.agent_heard
        return False

    # --- a new leader takes over (--zk) ------------------------------------------------------

    def restore(self, records: list[dict], now: float) -> str | None:
        """Replays the shared record (see the module docstring) with nothing written or sent;
        returns the framework id (None: no leader ever subscribed)."""
        emit, self.emit = self.emit, _Muted()
        framework_id = None
        try:
            for r in records:
                event, t = r.get("event"), r.get("t", now)
                if event == "subscribed":
                    framework_id = r["framework_id"]
                    if self.started_at is None:
                        self.started_at = t
                elif event == "launch":
                    item = self.items[r["item"]]
                    item.attempts.append(r["task_id"])
                    self.attempts[r["task_id"]] = Attempt(r["task_id"], r["item"], r["agent_id"], t, last_heard=t)
                elif event == "status":
                    self._apply_status(r["task_id"], TaskState(r["state"]),
                                       TaskReason(r["reason"]) if r.get("reason") else None,
                                       TaskSource(r["source"]) if r.get("source") else None, t)
                elif event == "kill" and r["task_id"] in self.attempts:
                    self.attempts[r["task_id"]].killed_at = t
                elif event == "reconcile":
                    for task_id in r["task_ids"]:
                        if task_id in self.attempts:
                            self.attempts[task_id].reconciled_at = t
                elif event == "finishing" and self.finishing_since is None:
                    self.finishing_since = t
        finally:
            self.emit = emit
        # What waits for an offer: every released item not finished whose last attempt (if any)
        # was given up on. An attempt in flight is the reconciliation's to judge, not relaunched.
        self.queue.clear()
        if self.started_at is not None:
            while self.released < len(self.items) and self.items[self.released].release_at <= now - self.started_at:
                self.released += 1
        for item in self.items[:self.released]:
            if not item.finished and (not item.attempts or self.attempts[item.attempts[-1]].replaced):
                self.queue.append(item.index)
        return framework_id

    # --- the clock ----------------------------------------------------------------------------

    def _want_offers(self, driver) -> None:
        if self.suppressed and driver.connected:
            driver.revive()
            self.suppressed = False

    def tick(self) -> None:
        driver = self.driver
        now = time.monotonic()
        try:
            if self.stopping or driver is None:
                return
            assert self.started_at is not None
            while self.released < len(self.items) and self.items[self.released].release_at <= now - self.started_at:
                self.queue.append(self.released)
                self.released += 1
            if driver.connected:
                if self.queue and (self.suppressed or now - self.last_offer_at > 3.0):
                    driver.revive()
                    self.suppressed = False
                self._reconcile_and_kill(driver, now)
            if self.finishing_since is not None:
                self._maybe_final(driver, now)
        finally:
            if not self.stopping:
                reactor.callLater(TICK, self.tick)

    def _reconcile_and_kill(self, driver, now: float) -> None:
        ask = []
        for attempt in self.attempts.values():
            if attempt.state is not None and attempt.state.is_terminal:
                continue
            if attempt.replaced and attempt.state == TaskState.UNKNOWN:
                continue  # its item moved on; the final reconciliation asks once more
            age = now - attempt.launched_at
            if self.reconcile_all:
                ask.append(attempt)
            elif not attempt.agent_heard:
                if age > UNCONFIRMED_RECONCILE_EVERY and now - attempt.reconciled_at > UNCONFIRMED_RECONCILE_EVERY:
                    ask.append(attempt)
            elif now - attempt.reconciled_at > RECONCILE_EVERY and now - attempt.last_heard > RECONCILE_EVERY:
                ask.append(attempt)
            if attempt.state == TaskState.STAGING and not attempt.agent_heard and age > LAUNCH_TIMEOUT \
                    and now - attempt.killed_at > KILL_EVERY:
                attempt.killed_at = now
                self.emit("kill", task_id=attempt.task_id, why="launch timeout: still STAGING, no agent report")
                driver.kill(attempt.task_id, attempt.agent_id)
        self.reconcile_all = False
        if ask:
            for attempt in ask:
                attempt.reconciled_at = now
            self.emit("reconcile", task_ids=[a.task_id for a in ask])
            driver.reconcile([(a.task_id, a.agent_id) for a in ask])

    # --- the end ------------------------------------------------------------------------------

    def finish(self) -> None:
        """SIGUSR1: the chaos is over."""
        if self.finishing_since is None:
            self.finishing_since = time.monotonic()
            self.emit("finishing", settle=self.args.settle)
            self.emit.sync()

    def _settled(self) -> bool:
        return (self.released == len(self.items) and all(item.finished for item in self.items)
                and all(a.state is not None and (a.state.is_terminal or (a.replaced and a.state == TaskState.UNKNOWN))
                        for a in self.attempts.values()))

    def _maybe_final(self, driver, now: float) -> None:
        assert self.finishing_since is not None
        if self.final_started is None:
            if not self._settled() and now - self.finishing_since < self.args.settle:
                return
            self.final_started = now
            self.emit("final_reconcile", settled=self._settled(), waited=round(now - self.finishing_since, 1))
            if driver.connected:
                driver.reconcile()  # implicit: everything the master knows
        if now - self.final_started < self.args.final_reconcile:
            if driver.connected:
                unfinished = [a for a in self.attempts.values() if a.state != TaskState.FINISHED]
                if unfinished:
                    driver.reconcile([(a.task_id, a.agent_id) for a in unfinished])
            return
        self.emit("final", connected=driver.connected, attempts={
            a.task_id: (a.state.value if a.state else None) for a in self.attempts.values()},
            items_finished=sum(item.finished for item in self.items), items=len(self.items),
            released=self.released)
        self.emit.sync()
        self.stopping = True
        driver.stop_and_exit()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--master", required=True)
    parser.add_argument("--out", required=True, help="JSON-lines record of everything (appended)")
    parser.add_argument("--starts", required=True, help="file each task start appends its id to")
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--launch-window", type=float, default=60.0)
    parser.add_argument("--long-share", type=float, default=0.15)
    parser.add_argument("--long-max", type=float, default=20.0)
    parser.add_argument("--settle", type=float, default=60.0)
    parser.add_argument("--final-reconcile", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--zk", default=None, help="zk://HOSTS/PATH: one of several instances, one leading")
    parser.add_argument("--instance", default="chaos-0", help="this instance's name in the election (with --zk)")
    parser.add_argument("--zk-session-timeout", type=float, default=2.0)
    args = parser.parse_args()
    info = FrameworkInfo(user=getpass.getuser(), name="chaos-bench", capabilities=["PARTITION_AWARE"],
                         failover_timeout=3600.0)
    if args.zk:
        return run_instance(args, info)
    emit = Recorder(args.out)
    scheduler = ChaosScheduler(args, emit)
    driver = SchedulerDriver(scheduler, info, args.master, reactor=reactor)
    scheduler.driver = driver
    signal.signal(signal.SIGUSR1, lambda *_: reactor.callFromThread(scheduler.finish))
    signal.signal(signal.SIGTERM, lambda *_: reactor.callFromThread(driver.stop_and_exit))
    emit("started", pid=os.getpid())
    emit.sync()
    driver.run()
    return 0


def read_record(path: str) -> list[dict]:
    """The shared record as the last leader left it. A line torn by its SIGKILL (no newline) is
    dropped and a newline written so the next record starts clean; what it held was never acted
    on (each launch is synced before its ACCEPT, each status before its acknowledgement)."""
    records: list[dict] = []
    if not os.path.exists(path):
        return records
    with open(path, "rb") as f:
        data = f.read()
    if data and not data.endswith(b"\n"):
        with open(path, "ab") as f:
            f.write(b"\n")
    for line in data.split(b"\n"):
        if line.strip():
            try:
                records.append(json.loads(line))
            except ValueError:
                pass
    return records


def run_instance(args: argparse.Namespace, info: FrameworkInfo) -> int:
    """One instance of the highly available framework (see the module docstring)."""
    import msgspec

    from tepui.sdk.leadership import FRAMEWORKS, Contender, own_info
    from tepui.sdk.zookeeper import connect, parse_zk_url

    import logging

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("tepui.sdk.scheduler").setLevel(logging.INFO)  # re-subscriptions, stale epochs dropped
    url = parse_zk_url(args.zk)
    client = connect(url, args.zk_session_timeout)
    leading: dict[str, object] = {}
    finish_asked: list[bool] = []

    def say(text: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {args.instance} pid {os.getpid()}: {text}", flush=True)

    def elected() -> None:
        started = time.monotonic()
        records = read_record(args.out)
        if any(r.get("event") == "final" for r in records):
            say("elected after the run's final record: nothing left to do")
            return
        emit = Recorder(args.out)
        scheduler = ChaosScheduler(args, emit)
        framework_id = scheduler.restore(records, time.monotonic())
        epoch = 1 + sum(1 for r in records if r.get("event") == "leading")
        driver = SchedulerDriver(scheduler, msgspec.structs.replace(info, id=framework_id), args.master,
                                 reactor=reactor)
        scheduler.driver = driver
        leading.update(scheduler=scheduler, driver=driver)
        emit("leading", instance=args.instance, pid=os.getpid(), epoch=epoch, framework_id=framework_id,
             records=len(records), attempts=len(scheduler.attempts), queued=len(scheduler.queue),
             restore_s=round(time.monotonic() - started, 3))
        if not records:
            emit("started", pid=os.getpid())
        emit.sync()
        say(f"elected (epoch {epoch}): {len(records)} records replayed, framework id {framework_id}, "
            f"{len(scheduler.attempts)} attempts, {len(scheduler.queue)} items waiting")
        driver.start()
        contender.publish(msgspec.structs.replace(contender.info, epoch=epoch))
        if finish_asked or scheduler.finishing_since is not None:
            scheduler.finishing_since = None
            scheduler.finish()

    def lost(reason: str) -> None:
        say(f"leadership lost ({reason}): exiting 1")
        os._exit(1)

    contender = Contender(reactor, client, url.child(FRAMEWORKS, "chaos", "leader"), own_info(args.instance),
                          on_elected=elected, on_lost=lost, session_timeout=args.zk_session_timeout)

    def finish() -> None:
        finish_asked.append(True)
        if "scheduler" in leading:
            leading["scheduler"].finish()  # type: ignore[attr-defined]

    def terminate() -> None:
        if "driver" in leading:
            leading["driver"].stop_and_exit()  # type: ignore[attr-defined]
        else:
            contender.close()
            reactor.stop()

    signal.signal(signal.SIGUSR1, lambda *_: reactor.callFromThread(finish))
    signal.signal(signal.SIGTERM, lambda *_: reactor.callFromThread(terminate))
    reactor.callWhenRunning(contender.start)
    say("standing by for leadership")
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
