"""The live fuzzer (``bench/fuzz.py --live``, issue 15): hostile calls from authenticated clients
against a real master, while a well-behaved framework must keep being served.

    python bench/fuzz.py --live --count 100000            # ~10-20 min on 2 cores
    python bench/fuzz.py --live --count 2000 --clients 2  # the smoke test's run
    python bench/fuzz.py --live --replay 123456789        # one hostile life again

The cluster: a master with CURVE keys (a key store made as ``tepui certs init``/``issue`` make
it), a registry (``--work-dir``) and ``--framework-rate-limit unlimited`` (so every hostile call
reaches the handlers: the rate limiter would answer most of them itself), its log in a file; two
real agents — one whose resources are reserved for role ``good``, one unreserved — and the
well-behaved framework (bench/fuzz_good.py) in role ``good``: hostile keys are issued for roles
``eng`` and ``ads`` only, so they can never take its resources, and when it stalls the master is
to blame, not the allocator. Then ``--clients`` hostile clients (bench/fuzz_hostile.py, each
with its own framework key and spare keys for multi-frame messages) share ``--count`` calls.

Progress every 10%: calls, calls/s, refused calls left unanswered, the master's RSS and open
files, the well-behaved framework's finished tasks, crashes so far. At the end: a table per
kind of call, every case with refused calls left unanswered (with the seeds of the lives that
sent them), the relay outcomes, the master's RSS, open files and ``/state`` size at start, peak
and end, and every crash category found in the logs, with the lives in flight at its time. The
last line is ``crashes=<n>`` — master or agent deaths + crash records in the logs (tracebacks,
``handler_failed``, other ERROR records) + stalls of the well-behaved framework (no task
finished for ``--stall-seconds``, or an EXPLAIN unanswered for 10 s); exit status 1 when n > 0.

Every process it starts it stops by pid (agents with SIGUSR1, so that their tasks end; task
processes left under the run directory are killed by pid), also on Ctrl-C or SIGTERM; children
get ``PR_SET_PDEATHSIG`` as under ``tepui up``. The run directory is removed unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from chaos_processes import child_env, free_ports  # noqa: E402
from fuzz_cases import FORGED  # noqa: E402
from fuzz_good import UNRESPONSIVE, GoodFramework  # noqa: E402
from fuzz_logs import lives_at, scan  # noqa: E402
from chaos import sweep_task_processes  # noqa: E402
from tepui.cli.up import _agent_dies_with_parent, _die_with_parent  # noqa: E402
from tepui.sdk.keys import init_store, issue  # noqa: E402

SPARES_PER_CLIENT = 4
COVERAGE = [  # (label, case name parts) for the report's line on the issue's cases
    ("ids>1024", ["id_long"]), ("'..'", ["id_dotdot"]), ("'../../x'", ["id_traversal"]),
    ("ids with control chars", ["id_newline", "id_ctrl"]), ("next/future id", ["id_next", "id_future"]),
    ("3 MB strings", ["big_"]), ("newlines in strings", ["forged_log"]),
    ("NaN/inf/negative numbers", ["_nan", "_inf", "_-inf", "_negative", "nan_", "negative_", "inf_"]),
    ("unknown offers/tasks/agents/executors", ["unknown_offer", "unknown_task", "unknown_agent", "unknown_executor"]),
    ("ACK of no update", ["ack.unknown_"]), ("ACCEPT with one bad task", ["bad_task_"]),
    ("agent messages", ["agent_message."]), ("relay to the master", ["relay."]), ("multi-frame", ["multiframe."]),
    ("in batches", ["batch"]), ("call id shapes", ["envelope.call_id"]),
]
SHOWN = 5  # crash categories shown with their excerpt
AGENT_RESOURCES = ("cpus(good):2;mem(good):1024;disk(good):1024",
                   "cpus:4;mem:2048;disk:4096;ports:[31000-31099]")


class Child:
    """A process of the run, stopped by its pid only."""

    def __init__(self, name: str, argv: list[str], log: Path, agent: bool = False, stdout_pipe: bool = False) -> None:
        self.name, self.log = name, log
        with open(log, "ab") as out:
            self.popen = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE if stdout_pipe else out, stderr=out,
                env=child_env(), cwd=log.parent, preexec_fn=_agent_dies_with_parent if agent else _die_with_parent)
        self.stop_signal = signal.SIGUSR1 if agent else signal.SIGTERM

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, grace: float) -> None:
        if self.alive():
            self.popen.send_signal(self.stop_signal)
        try:
            self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)


class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.root = Path(tempfile.mkdtemp(prefix="tepui-fuzz-"))
        os.chmod(self.root, 0o711)  # tasks run as nobody: they must reach their sandboxes
        self.port, self.http_port = free_ports(2)
        self.master: Child | None = None
        self.agents: list[Child] = []
        self.clients: list[Child] = []
        self.good: GoodFramework | None = None
        self.progress: dict[int, dict[str, Any]] = {}
        self.tallies: dict[int, dict[str, Any]] = {}
        self.samples: list[tuple[float, int, int]] = []  # (time, rss KiB, fds) of the master
        self.stall_episodes = 0
        self.unresponsive_episodes = 0
        self.deaths: list[str] = []

    # --- the cluster -----------------------------------------------------------------------

    def keys(self) -> dict[str, Any]:
        store = str(self.root / "keys")
        init_store(store)
        made: dict[str, Any] = {"agents": [issue(store, f"agent-{i}", "agent")[1] for i in (1, 2)],
                                "good": issue(store, "good", "framework", "good", ("good",))[1], "clients": []}
        for i in range(self.args.clients):
            made["clients"].append({
                "keys": issue(store, f"hostile-{i}", "framework", f"hostile-{i}", ("eng", "ads"))[1],
                "spares": [issue(store, f"spare-{i}-{j}", "framework", f"spare-{i}-{j}", ("eng",))[1]
                           for j in range(SPARES_PER_CLIENT)]})
        return made

    def start_cluster(self, keys: dict[str, Any]) -> None:
        py = [sys.executable, "-m", "tepui.cli"]
        token = self.root / "http-token"
        token.write_text(secrets.token_urlsafe(24) + "\n")
        token.chmod(0o600)
        self.master = Child("master", py + [
            "master", "--ip", "127.0.0.1", "--port", str(self.port), "--http-port", str(self.http_port),
            "--keys", str(self.root / "keys"), "--work-dir", str(self.root / "registry"),
            "--http-token-file", str(token), "--framework-rate-limit", self.args.rate_limit,
            # Heartbeats every second: a hostile life that dropped its connection holds the open
            # agent's offer until the master's next send to it fails.
            "--offer-timeout", "5", "--heartbeat-interval", "1", "--log-level", "info"], self.root / "master.log")
        for i, resources in enumerate(AGENT_RESOURCES, start=1):
            self.agents.append(Child(f"agent-{i}", py + [
                "agent", "--master", f"127.0.0.1:{self.port}", "--work-dir", str(self.root / f"agent-{i}"),
                "--hostname", f"fuzz-{i}", "--http-port", "0", "--keys", keys["agents"][i - 1],
                "--resources", resources, "--containerizers", "mesos", "--kill-grace-period", "1",
                "--log-level", "info"], self.root / f"agent-{i}.log", agent=True))
        deadline = time.monotonic() + 60
        while (self.state() or {}).get("activated_slaves") != len(AGENT_RESOURCES):
            dead = [c.name for c in [self.master, *self.agents] if not c.alive()]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"the cluster did not come up ({', '.join(dead) or 'timeout'}); "
                                   f"logs in {self.root}")
            time.sleep(0.2)
        self.good = GoodFramework(f"tcp://127.0.0.1:{self.port}", keys["good"])
        self.good.start()
        deadline = time.monotonic() + 60
        while self.good.finished == 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the well-behaved framework finished no task in 60 s before the attack "
                                   f"(errors: {self.good.errors}); logs in {self.root}")
            time.sleep(0.2)

    def start_clients(self, keys: dict[str, Any]) -> None:
        args = self.args
        share = -(-args.count // args.clients)
        for i, client_keys in enumerate(keys["clients"]):
            config = {"client": i, "endpoint": f"tcp://127.0.0.1:{self.port}", "http": f"127.0.0.1:{self.http_port}",
                      "keys": client_keys["keys"], "spare_keys": client_keys["spares"], "principal": f"hostile-{i}",
                      "count": share, "seed": args.seed, "journal": str(self.root / f"journal-{i}.txt"),
                      "big_share": args.big_share, "relay_every": args.relay_every, "relay_timeout": 5.0,
                      "window_timeout": args.window_timeout, "replay": args.replay if i == 0 else None,
                      "trace": bool(args.replay)}
            path = self.root / f"client-{i}.json"
            path.write_text(json.dumps(config))
            if args.replay and i > 0:
                continue
            child = Child(f"client-{i}", [sys.executable, str(HERE / "fuzz_hostile.py"), str(path)],
                          self.root / f"client-{i}.log", stdout_pipe=True)
            self.clients.append(child)
            threading.Thread(target=self._read_client, args=(i, child), daemon=True).start()

    def _read_client(self, index: int, child: Child) -> None:
        assert child.popen.stdout is not None
        for line in child.popen.stdout:
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if doc.get("event") == "progress":
                self.progress[index] = doc
            elif doc.get("event") == "tally":
                self.tallies[index] = doc

    # --- watching --------------------------------------------------------------------------

    def state(self, timeout: float = 2.0) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/state", timeout=timeout) as answer:
                return json.load(answer)  # type: ignore[no-any-return]
        except (OSError, ValueError):
            return None

    def state_bytes(self) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/state", timeout=20) as answer:
                return len(answer.read())
        except (OSError, ValueError):
            return -1

    def sample(self) -> None:
        if self.master is None or not self.master.alive():
            return
        try:
            status = Path(f"/proc/{self.master.pid}/status").read_text()
            rss = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))
            fds = len(os.listdir(f"/proc/{self.master.pid}/fd"))
        except (OSError, StopIteration, ValueError):
            return
        self.samples.append((time.monotonic(), rss, fds))

    def watch(self, stall_reference: list[float]) -> None:
        """One look: deaths, stalls (episodes, counted once each), the master's footprint."""
        self.sample()
        for child in [self.master, *self.agents]:
            if child is not None and not child.alive() and child.name not in self.deaths:
                self.deaths.append(child.name)
        good = self.good
        assert good is not None
        now = time.monotonic()
        reference = max(good.last_finish, stall_reference[0])
        if now - reference > self.args.stall_seconds:
            self.stall_episodes += 1
            stall_reference[0] = now  # the next episode starts now
            print(f"  STALL: the well-behaved framework finished no task for {self.args.stall_seconds:g} s "
                  f"(launched {good.launched}, finished {good.finished}, in flight {len(good.inflight)})", flush=True)
        if good.newcomers_unanswered > stall_reference[2]:
            self.unresponsive_episodes += good.newcomers_unanswered - int(stall_reference[2])
            stall_reference[2] = good.newcomers_unanswered
            print(f"  UNRESPONSIVE: a newcomer's SUBSCRIBE got no SUBSCRIBED within {UNRESPONSIVE:g} s", flush=True)
        if good.waiting() > UNRESPONSIVE and stall_reference[1] < (good.explain_sent or 0):
            self.unresponsive_episodes += 1
            stall_reference[1] = good.explain_sent or 0
            print(f"  UNRESPONSIVE: the master has not answered an EXPLAIN for {UNRESPONSIVE:g} s", flush=True)

    def calls(self) -> int:
        return sum(int(p.get("calls", 0)) for p in self.progress.values())

    def logs(self) -> dict[str, Path]:
        return {"master": self.root / "master.log", **{a.name: a.log for a in self.agents}}

    def crashes_so_far(self) -> int:
        found = scan(self.logs(), FORGED)
        return len(found.crashes) + len(self.deaths) + self.stall_episodes + self.unresponsive_episodes

    # --- stopping --------------------------------------------------------------------------

    def stop(self) -> None:
        for client in self.clients:
            client.stop(10)
        if self.good is not None:
            self.good.stop()
        for agent in self.agents:
            if agent.alive():
                agent.popen.send_signal(signal.SIGUSR1)
        for agent in self.agents:
            agent.stop(15)
        if self.master is not None:
            self.master.stop(10)
        leftovers = sweep_task_processes(self.root)
        if leftovers:
            print(f"note: {leftovers} task processes outlived their agents; killed by pid")


def run(args: argparse.Namespace) -> int:
    def interrupted(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    # Ctrl-C and SIGTERM alike (also when started with SIGINT ignored, as a background job is).
    previous = {sig: signal.signal(sig, interrupted) for sig in (signal.SIGINT, signal.SIGTERM)}
    live = Run(args)
    started = time.monotonic()
    try:
        print(f"live fuzzing: {args.count} hostile calls from {args.clients} clients, seed {args.seed}; "
              f"run dir {live.root}", flush=True)
        keys = live.keys()
        live.start_cluster(keys)
        live.sample()
        start_state = live.state_bytes()
        assert live.good is not None
        finished_before = live.good.finished
        print(f"cluster up: master pid {live.master.pid if live.master else '?'} on 127.0.0.1:{live.port} "
              f"(HTTP {live.http_port}), 2 agents; the well-behaved framework has finished {finished_before} "
              "task(s); the attack begins", flush=True)
        attack_started = time.monotonic()
        live.start_clients(keys)
        step, next_report = max(1, args.count // 10), max(1, args.count // 10)
        stall_reference = [time.monotonic(), 0.0, 0.0]
        while any(c.alive() for c in live.clients):
            time.sleep(0.5)
            live.watch(stall_reference)
            if live.master is None or not live.master.alive():
                print("  the master died: stopping the attack", flush=True)
                break
            done = live.calls()
            if done >= next_report:
                report_progress(live, done, attack_started)
                next_report = (done // step + 1) * step
        attack_seconds = time.monotonic() - attack_started
        for client in live.clients:
            client.stop(10)
        time.sleep(0.5)  # the last tally lines
        after = live.good.finished
        deadline = time.monotonic() + args.stall_seconds
        while live.good.finished <= after and time.monotonic() < deadline and live.master is not None \
                and live.master.alive():
            time.sleep(0.2)
        served_after = live.good.finished > after
        live.watch(stall_reference)
        end_state = live.state_bytes()
        crashes = report(live, attack_seconds, start_state, end_state, finished_before, served_after)
    except KeyboardInterrupt:
        print("\ninterrupted: stopping everything this run started", flush=True)
        crashes = -1
    except RuntimeError as exc:  # the cluster did not come up: nothing was fuzzed
        print(f"error: {exc}", flush=True)
        args.keep = True
        crashes = -2
    finally:
        live.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if args.keep:
            print(f"run directory kept: {live.root}")
        else:
            shutil.rmtree(live.root, ignore_errors=True)
    print(f"time={time.monotonic() - started:.1f}s seed={args.seed}")
    if crashes < 0:
        return 130 if crashes == -1 else 2
    print(f"crashes={crashes}")
    return 1 if crashes else 0


def report_progress(live: Run, done: int, attack_started: float) -> None:
    elapsed = time.monotonic() - attack_started
    no_reply = sum(int(p.get("no_reply", 0)) for p in live.progress.values())
    timeouts = sum(int(p.get("timeouts", 0)) for p in live.progress.values())
    _t, rss, fds = live.samples[-1] if live.samples else (0, 0, 0)
    good = live.good
    assert good is not None
    print(f"  {done}/{live.args.count} calls, {done / max(elapsed, 1e-9):.0f}/s, unanswered refusals {no_reply}, "
          f"timeouts {timeouts}; master rss {rss // 1024} MiB, fds {fds}; well-behaved framework finished "
          f"{good.finished}; crashes so far {live.crashes_so_far()}", flush=True)


def report(live: Run, seconds: float, start_state: int, end_state: int, finished_before: int,
           served_after: bool) -> int:
    """Prints the findings; returns the crash count."""
    tallies = list(live.tallies.values())
    cases: dict[str, dict[str, Any]] = {}
    for tally in tallies:
        for name, counts in tally["cases"].items():
            into = cases.setdefault(name, {k: 0 for k, v in counts.items() if not isinstance(v, list)})
            for key, value in counts.items():
                if isinstance(value, list):
                    into.setdefault(key, []).extend(value[: 3 - len(into.get(key, []))])
                else:
                    into[key] += value
    calls = sum(int(t["calls"]) for t in tallies)
    lives = sum(int(t["lives"]) for t in tallies)
    print(f"\n{calls} hostile calls in {seconds:.1f} s ({calls / max(seconds, 1e-9):.0f}/s) from {len(tallies)} "
          f"clients, {lives} framework lives")
    call_ids = [t["call_ids"] for t in tallies]
    print(f"call ids: taken by the master {all(c['supported'] for c in call_ids)}, "
          f"echoed in ERRORs {all(c['echoed'] for c in call_ids)}")
    groups: dict[str, dict[str, int]] = {}
    for name, counts in cases.items():
        group = groups.setdefault(name.split("/")[0].split(".")[0], {})
        for key, value in counts.items():
            if not isinstance(value, list):
                group[key] = group.get(key, 0) + value
    print(f"{'kind':16} {'sent':>8} {'ERRORs':>8} {'refused':>8} {'answered':>8} {'call_id':>8} {'field':>8} {'silent':>7} "
          f"{'accepted':>8} {'timeout':>7}")
    for name, g in sorted(groups.items()):
        print(f"{name:16} {g['sent']:>8} {g['errors']:>8} {g['must']:>8} {g['replied']:>8} {g['echoed']:>8} {g['field_named']:>8} "
              f"{g['no_reply']:>7} {g['accepted']:>8} {g['timeouts']:>7}")
    print("the issue's cases, calls sent: " + ", ".join(
        f"{label} {sum(c['sent'] for n, c in cases.items() if any(p in n for p in parts))}"
        for label, parts in COVERAGE))
    must = sum(g["must"] for g in groups.values())
    silent = sum(g["no_reply"] for g in groups.values())
    echoed = sum(g["echoed"] for g in groups.values())
    id_errors = sum(g["id_errors"] for g in groups.values())
    print(f"refused calls: {must}; answered {must - silent} ({100 * (must - silent) / max(must, 1):.1f}%: an ERROR, "
          f"or an UPDATE, SUBSCRIBED or EXPLANATION where one answers); no answer at all {silent} "
          f"({100 * silent / max(must, 1):.2f}%). ERRORs answering a call that carried a call id: {id_errors}, "
          f"echoing it {echoed} ({100 * echoed / max(id_errors, 1):.1f}%)")
    problems = {n: c for n, c in cases.items() if c["no_reply"] or c["accepted"] or c["timeouts"]}
    if problems:
        print("cases with refused calls unanswered, accepted or timed out (case: silent/refused, accepted, timeouts):")
        for name, c in sorted(problems.items()):
            print(f"  {name}: {c['no_reply']}/{c['must']}, accepted {c['accepted']}, timeouts {c['timeouts']}; "
                  f"e.g. {' | '.join(c['examples'][:2])}")
    refused = {n: c for n, c in cases.items() if c.get("refusals")}
    if refused:
        print("cases whose calls could have been accepted and got ERRORs:")
        for name, c in sorted(refused.items()):
            print(f"  {name}: {c['errors']} ERRORs for {c['sent']} calls, e.g. {c['refusals'][0][:240]}")
    # A damaged frame often loses its call id with the damage: only whole calls are held to it.
    unechoed = {n: c for n, c in cases.items() if c["id_errors"] > c["echoed"] and n not in ("mutated", "raw")}
    if unechoed:
        print("ERRORs that did not echo the call's id (case: not echoed/ERRORs, e.g.):")
        for name, c in sorted(unechoed.items()):
            print(f"  {name}: {c['id_errors'] - c['echoed']}/{c['id_errors']}, e.g. {c['unechoed'][0][:240]}")
    unattributed = sum(int(t["unattributed"]) for t in tallies)
    if unattributed:
        examples = [e for t in tallies for e in t["unattributed_examples"]][:3]
        print(f"ERRORs beyond one per call (a damaged frame read as a batch, ...): {unattributed}, "
              f"e.g. {examples}")
    collisions = [c for t in tallies for c in t["id_collisions"]]
    if collisions:
        print(f"framework ids issued twice: {len(collisions)}, e.g. {collisions[:2]}")
    relays = [r for t in tallies for r in t["relays"]]
    for relay in relays[:6]:
        print(f"relay: GET {relay['url']} -> {relay['outcome']} in {relay['seconds']} s (life {relay['life']})")
    if live.samples:
        first, last = live.samples[0], live.samples[-1]
        print(f"master: rss {first[1] // 1024} -> {last[1] // 1024} MiB (peak {max(s[1] for s in live.samples) // 1024}), "
              f"open files {first[2]} -> {last[2]} (peak {max(s[2] for s in live.samples)}), /state {start_state} -> "
              f"{end_state} bytes")
    good = live.good
    assert good is not None
    latency = sorted(good.explain_ms)
    p50 = statistics.median(latency) if latency else float("nan")
    print(f"well-behaved framework: {good.finished - finished_before} tasks finished during the attack "
          f"({good.finished} in all, launched {good.launched}), other ends {({k: v for k, v in good.ends.items() if k != 'TASK_FINISHED'})}, "
          f"ERRORs {good.error_count} {good.errors[:2]}; EXPLAIN answered p50 {p50:.1f} ms, max "
          f"{latency[-1] if latency else float('nan'):.1f} ms; newcomers subscribed {len(good.newcomer_ms)} (max "
          f"{max(good.newcomer_ms, default=float('nan')):.1f} ms), unanswered {good.newcomers_unanswered}; "
          f"served after the attack: {served_after}")
    found = scan(live.logs(), FORGED)
    if found.forged:
        print(f"log lines forged by hostile strings (a raw newline in the log): {found.forged}, e.g. "
              f"{found.forged_example!r}")
    if found.expected:
        print(f"expected ERROR records (spare keys refused after their multi-frame message): {found.expected}")
    categories = found.categories()
    for index, (signature, crashes) in enumerate(sorted(categories.items(), key=lambda kv: -len(kv[1]))):
        print(f"CRASH x{len(crashes)} [{crashes[0].kind}] {signature}")
        if index < SHOWN:
            journals = sorted(live.root.glob("journal-*.txt"))
            print("\n".join("    " + line for line in crashes[0].excerpt.splitlines()))
            for line in lives_at(journals, crashes[0].at):
                print(f"    in flight: {line}")
    stalls = live.stall_episodes + live.unresponsive_episodes + (0 if served_after else 1)
    failed_clients = [c for i, c in enumerate(live.clients) if c.popen.returncode or i not in live.tallies]
    for client in failed_clients:  # a run with a client that died proves nothing about the master
        live.deaths.append(client.name)
        print(f"{client.name} exited with status {client.popen.returncode} (its log: {client.log}):\n"
              + "\n".join("    " + line for line in client.log.read_text(errors="replace").splitlines()[-15:]))
    if live.deaths:
        print(f"died: {', '.join(live.deaths)}")
    print(f"crashes: {len(found.crashes)} in the logs, {len(live.deaths)} deaths, {stalls} stalls; "
          f"no_reply_fraction={silent / max(must, 1):.4f}")
    return len(found.crashes) + len(live.deaths) + stalls
