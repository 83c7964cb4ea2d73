"""The HA faults of ``bench/chaos.py --masters N`` (the leader SIGKILLed, SIGSTOPped and resumed,
cut from ZooKeeper; a ZooKeeper server killed; the framework's leading instance killed), what
is seen after each, and the HA section of the summary. The cluster they act on is
bench/chaos_ha.py's."""

from __future__ import annotations

import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaos_ha import HaCluster, LeaderChange
from chaos_processes import Proc

# What a resumed old leader logs when it finds out (master/leadership/ha.py, master/shell.py).
FENCED_EVENTS = ("event=registry_failed", "event=leadership_lost", "event=master_superseded")
HA_KINDS = ("master_kill", "master_stop", "master_partition", "zk_kill", "framework_kill")


@dataclass
class HaFault:
    """One HA fault and what was seen after it (times in seconds from its start)."""

    kind: str
    start: float
    target: str
    info: dict[str, Any] = field(default_factory=dict)


class HaFaults:
    """The HA chaos actions. Each returns False when it cannot act now (its target is busy, or
    no master leads); the bench then tries again a second later. ``at(when, action)`` schedules
    on the bench's timeline; ``note(kind, target, now)`` records a chaos action for the summary
    (the bench's own ``Fault``), returning it so that its end can be set."""

    def __init__(self, run: Any, ha: HaCluster, at: Callable[[float, Callable[[], None]], None],
                 note: Callable[[str, str, float], Any]) -> None:
        self.run, self.ha, self.at, self.note = run, ha, at, note
        self.rng = random.Random(run.args.seed * 7919)
        self.faults: list[HaFault] = []
        self.problems: list[str] = []

    def _leader(self) -> LeaderChange | None:
        leader = self.ha.leader
        if leader is None or leader.index is None or not self.ha.masters[leader.index].alive():
            return None
        return leader

    def _master_free(self) -> bool:
        return "master" not in self.run.busy and not self.ha.pending_restart and not self.ha.frozen

    def _track_recovery(self, fault: HaFault, leader: LeaderChange) -> dict[str, Any]:
        """The bench's master-recovery watch (framework re-subscribed, agents back) for this fault,
        counted from ``fault.start``; 'restarted' is set once a new leader serves."""
        self.run.read_records()
        info: dict[str, Any] = {"killed": fault.start, "kind": fault.kind, "subscribed_before": sum(
            1 for r in self.run.records if r["event"] == "subscribed")}
        self.run.master_restarts.append(info)
        fault.info["recovery"] = info
        fault.info["old_epoch"] = leader.epoch

        def new_leader() -> None:
            if fault.info.get("no_failover"):
                return  # the leader came back within its session: nothing to wait for
            change = self.ha.changed_since(fault.start)
            if change is not None and change.id != leader.id:
                fault.info["new_leader_s"] = change.t - fault.start
                fault.info["new_leader"] = f"master-{change.index} epoch {change.epoch}"
                info["restarted"] = change.t
                self.run.say(f"observed: new leader master-{change.index} (epoch {change.epoch}) "
                             f"{change.t - fault.start:.2f} s after the {fault.kind}")
                return
            if time.monotonic() - fault.start < 60:
                self.at(time.monotonic() + 0.1, new_leader)
        self.at(time.monotonic() + 0.1, new_leader)
        return info

    # --- the leader SIGKILLed, restarted 1-3 s later as a standby ---------------------------------

    def _strike_leader(self, kind: str, now: float, strike: Callable[[int, Proc], None]
                       ) -> tuple[int, Proc, LeaderChange, HaFault, Any] | None:
        """``strike(i, master)`` the serving leader, if one serves and no master fault is under
        way: (its index, its process, the leader as it was, the fault, the bench's note)."""
        leader = self._leader()
        if leader is None or not self._master_free():
            return None
        assert leader.index is not None
        i, master = leader.index, self.ha.masters[leader.index]
        self.run.busy.add("master")
        strike(i, master)
        fault = HaFault(kind, now, f"master-{i}")
        self.faults.append(fault)
        note = self.note(kind, f"master-{i}", now)
        self._track_recovery(fault, leader)
        return i, master, leader, fault, note

    def master_kill(self, now: float) -> bool:
        pid = self.ha.leader_pid()

        def kill(i: int, master: Proc) -> None:
            self.ha.pending_restart.add(i)
            master.kill()
        struck = self._strike_leader("leader SIGKILL", now, kill)
        if struck is None:
            return False
        i, _master, leader, _fault, note = struck
        down = round(self.rng.uniform(1.0, 3.0), 1)
        self.run.say(f"chaos: SIGKILL the leading master-{i} (pid {pid}, epoch {leader.epoch}); "
                     f"restarted as a standby in {down} s")

        def restart() -> None:
            self.ha.restart(i)
            note.end = time.monotonic()
            self.run.busy.discard("master")
        self.at(now + down, restart)
        return True

    # --- the leader SIGSTOPped until another leads, then SIGCONT: it must be fenced ---------------

    def master_stop(self, now: float) -> bool:
        def stop(i: int, master: Proc) -> None:
            self.ha.frozen.add(i)
            master.signal(signal.SIGSTOP)
        struck = self._strike_leader("leader SIGSTOP", now, stop)
        if struck is None:
            return False
        i, master, leader, fault, note = struck
        self.run.say(f"chaos: SIGSTOP the leading master-{i} (pid {master.pid}, epoch {leader.epoch}) "
                     "until another master leads")

        def resume_when_replaced() -> None:
            change = self.ha.changed_since(now)
            waited = time.monotonic() - now
            if (change is None or change.id == leader.id) and waited < 30:
                self.at(time.monotonic() + 0.1, resume_when_replaced)
                return
            # Let the new leader act a little (offers, registrations) before the old one wakes.
            self.at(time.monotonic() + 1.0, resume)

        def resume() -> None:
            fault.info["log_offset"] = master.log.stat().st_size
            master.signal(signal.SIGCONT)
            self.ha.frozen.discard(i)
            resumed = fault.info["resumed"] = time.monotonic()
            note.end = resumed
            self.run.say(f"chaos: SIGCONT master-{i} after {resumed - now:.1f} s (a new leader serves)")
            self.at(resumed + 0.1, lambda: self._judge_fencing(fault, i, resumed))
        self.at(now + 0.1, resume_when_replaced)
        return True

    def _judge_fencing(self, fault: HaFault, i: int, resumed: float) -> None:
        exit_ = next(((t, code) for t, j, code in self.ha.exits if j == i and t >= resumed), None)
        master = self.ha.masters[i]
        if exit_ is None and time.monotonic() - resumed < 15:
            self.at(time.monotonic() + 0.1, lambda: self._judge_fencing(fault, i, resumed))
            return
        self.run.busy.discard("master")
        text = master.log.read_text(errors="replace")[fault.info.get("log_offset", 0):]
        reasons = [line.split(" event=", 1)[1].strip() for line in text.splitlines()
                   if " event=" in line and any(e in line for e in FENCED_EVENTS)]
        fault.info["old_log"] = reasons[0][:160] if reasons else ""
        if exit_ is None:
            fault.info["fenced"] = "NOT FENCED: still running 15 s after SIGCONT"
            self.problems.append(f"leader SIGSTOP master-{i}: still running 15 s after SIGCONT (not fenced)")
        elif exit_[1] == 0:
            fault.info["fenced"] = f"exited 0 (expected non-zero) {exit_[0] - resumed:.2f} s after SIGCONT"
            self.problems.append(f"leader SIGSTOP master-{i}: exited 0 after SIGCONT, not 1")
        else:
            fault.info["fenced"] = f"exited {exit_[1]} {exit_[0] - resumed:.2f} s after SIGCONT"
        self.run.say(f"observed: the resumed old leader master-{i} {fault.info['fenced']}"
                     + (f" ({fault.info['old_log']})" if fault.info["old_log"] else ""))

    # --- the leader cut off from ZooKeeper (iptables DROP in its namespace) for 4-10 s ------------

    def master_partition(self, now: float) -> bool:
        netns = self.ha.netns
        if netns is None:
            return True  # not possible here (said at the start): skipped
        def cut(i: int, _master: Proc) -> None:
            netns.cut(i)
        struck = self._strike_leader("leader cut from ZooKeeper", now, cut)
        if struck is None:
            return False
        i, master, leader, fault, note = struck
        # Long cuts outlive the session: the leader must pause, then exit. In the full run every
        # other cut is short (1.0-1.6 s, under the 2 s session): it must pause at most, and resume.
        cuts = sum(1 for f in self.faults if f.kind == fault.kind)
        short = not self.run.args.smoke and cuts % 2 == 0
        seconds = round(self.rng.uniform(1.0, 1.6) if short else self.rng.uniform(4.0, 10.0), 1)
        fault.info["log_offset"] = master.log.stat().st_size
        self.run.say(f"chaos: master-{i} (the leader, epoch {leader.epoch}) cut from ZooKeeper for {seconds} s "
                     f"(iptables DROP to {netns.zk_addr} in {netns.ns(i)}; agents and framework still reach it)")

        def watch_exit() -> None:  # while cut, the supervisor leaves it be: its exit is timed here
            if i in netns.cut_rules:
                if master.popen is not None and master.popen.poll() is not None:
                    fault.info["exit"] = (time.monotonic(), master.popen.returncode)
                else:
                    self.at(time.monotonic() + 0.05, watch_exit)
        self.at(now + 0.05, watch_exit)

        def heal() -> None:
            netns.heal(i)
            healed = note.end = time.monotonic()
            self.run.say(f"chaos: master-{i} reaches ZooKeeper again after {healed - now:.1f} s")
            # A short cut is judged once the leader had time to resume (or to give up).
            self.at(healed + (3.0 if short else 0.0), lambda: judge(healed))

        def judge(healed: float) -> None:
            self.run.busy.discard("master")
            exit_ = fault.info.get("exit")
            if exit_ is None and not master.alive() and master.popen is not None:
                exit_ = (healed, master.popen.returncode)
            if exit_ is not None:
                fault.info["outcome"] = f"paused, then exited {exit_[1]} {exit_[0] - now:.2f} s after the cut"
            else:
                same = self.ha.leader is not None and self.ha.leader.id == leader.id
                text = master.log.read_text(errors="replace")[fault.info["log_offset"]:]
                paused = "paused and resumed" if "event=master_resumed" in text else (
                    "paused" if "event=master_paused" in text else "never paused")
                fault.info["outcome"] = (f"kept leading ({paused}; healed within its session)" if same
                                         else "still running as a deposed leader")
                fault.info["no_failover"] = same
                if not same:
                    self.problems.append(f"leader cut from ZooKeeper master-{i}: deposed but still running at heal")
            self.run.say(f"observed: master-{i}, cut from ZooKeeper for {healed - now:.1f} s, {fault.info['outcome']}")
        self.at(now + seconds, heal)
        return True

    # --- one of the three ZooKeeper servers SIGKILLed (the quorum leader every other time) --------

    def zk_kill(self, now: float) -> bool:
        if "zk" in self.run.busy:
            return False
        ensemble = self.ha.ensemble
        try:
            quorum_leader = ensemble.leader_index()
        except Exception:  # noqa: BLE001 - no quorum leader right now: try later
            return False
        prefer_leader = sum(1 for f in self.faults if f.kind.startswith("ZooKeeper")) % 2 == 0
        index = quorum_leader if prefer_leader else self.rng.choice([k for k in range(3) if k != quorum_leader])
        down = round(self.rng.uniform(2.0, 5.0), 1)
        self.run.busy.add("zk")
        leader = self.ha.leader
        ensemble.kill(index)
        what = "quorum leader" if index == quorum_leader else "follower"
        fault = HaFault(f"ZooKeeper {what} SIGKILL", now, f"zk-{index + 1}")
        self.faults.append(fault)
        note = self.note(f"ZooKeeper {what} SIGKILL", f"zk-{index + 1}", now)
        self.run.say(f"chaos: SIGKILL ZooKeeper server {index + 1} (the {what}); restarted in {down} s")

        def restart() -> None:
            started = time.monotonic()

            def start_server() -> None:
                try:
                    ensemble.start_server(index)
                    fault.info["rejoined_s"] = time.monotonic() - started
                except Exception as exc:  # noqa: BLE001 - said in the summary
                    fault.info["rejoin_error"] = repr(exc)
                    self.problems.append(f"ZooKeeper server {index + 1} did not rejoin: {exc}")
                note.end = time.monotonic()
                self.run.busy.discard("zk")
            threading.Thread(target=start_server, daemon=True, name="zk-restart").start()
            changed = self.ha.changed_since(now)
            fault.info["masters"] = ("leader kept (no master failover)" if changed is None or leader is None
                                     else f"master failover (to master-{changed.index} after "
                                          f"{changed.t - now:.2f} s)")
            self.run.say(f"chaos: restarting ZooKeeper server {index + 1}; masters: {fault.info['masters']}")
        self.at(now + down, restart)
        return True

    # --- the leading framework instance SIGKILLed; the standby takes over -------------------------

    def framework_kill(self, now: float) -> bool:
        if "framework" in self.run.busy:
            return False
        self.run.read_records()
        leading = [r for r in self.run.records if r["event"] == "leading"]
        if not leading:
            return False
        pid = leading[-1]["pid"]
        instance = next((f for f in self.run.frameworks if f.alive() and f.pid == pid), None)
        if instance is None:
            return False
        down = round(self.rng.uniform(1.0, 3.0), 1)
        self.run.busy.add("framework")
        instance.kill()
        fault = HaFault("framework leader SIGKILL", now, instance.name)
        fault.info["leading_before"] = len(leading)
        self.faults.append(fault)
        note = self.note("framework leader SIGKILL", instance.name, now)
        self.run.say(f"chaos: SIGKILL the leading framework instance {instance.name} (pid {pid}); "
                     f"restarted as a standby in {down} s")

        def restart() -> None:
            instance.start()
            note.end = time.monotonic()
            self.run.busy.discard("framework")
            self.run.say(f"chaos: restarted {instance.name} (pid {instance.pid}) as a standby")
        self.at(now + down, restart)
        return True

    # --- the summary ---------------------------------------------------------------------------------

    def summary(self, proxy_stats: list[dict[str, Any]]) -> list[str]:
        """The HA section of the summary: per fault what was seen, then the spreads."""
        records = self.run.records
        lines = [f"\n== HA ({len(self.ha.masters)} masters on {self.ha.zk_url}"
                 + (f", each in its own network namespace" if self.ha.netns is not None
                    else f"; no namespaces: {self.ha.netns_why_not}") + ") =="]
        spreads: dict[str, list[float]] = {}

        def add(key: str, value: float | None) -> str:
            if value is None:
                return "-"
            spreads.setdefault(key, []).append(value)
            return f"{value:.2f} s"

        for f in self.faults:
            at = f"{f.kind} {f.target} at {f.start - self.run.t0:5.1f} s"
            rec = f.info.get("recovery", {})
            if f.kind.startswith("leader"):
                line = (f"{at}: → new leader {add(f.kind + ' → new leader', f.info.get('new_leader_s'))}"
                        f", → framework re-subscribed "
                        f"{add(f.kind + ' → framework re-subscribed', rec['framework_back'] - f.start if 'framework_back' in rec else None)}"
                        f", → all agents registered "
                        f"{add(f.kind + ' → agents registered', rec['agents_back'] - f.start if 'agents_back' in rec else None)}")
                if "fenced" in f.info:
                    line += f"; old leader {f.info['fenced']}" + (f" [{f.info['old_log']}]" if f.info["old_log"] else "")
                if "outcome" in f.info:
                    line += f"; the cut leader {f.info['outcome']}"
            elif f.kind.startswith("ZooKeeper"):
                line = (f"{at}: {f.info.get('masters', '?')}; server rejoined "
                        f"{add('ZooKeeper server rejoined after its restart', f.info.get('rejoined_s'))} after its restart")
            else:
                before = f.info["leading_before"]
                leading = [r for r in records if r["event"] == "leading"]
                took = leading[before] if len(leading) > before else None
                subs = [r for r in records if r["event"] == "subscribed" and took is not None and r["t"] >= took["t"]]
                line = (f"{at}: → standby elected and restored "
                        f"{add('framework kill → standby leading', took['t'] - f.start if took else None)}"
                        f" ({took['records'] if took else '?'} records replayed in {took['restore_s'] if took else '?'} s)"
                        f", → re-subscribed with the same id "
                        f"{add('framework kill → re-subscribed', subs[0]['t'] - f.start if subs else None)}")
                if took is not None and subs and subs[0]["framework_id"] != took["framework_id"]:
                    self.problems.append(f"{at}: re-subscribed as {subs[0]['framework_id']}, not {took['framework_id']}")
            lines.append("  " + line)
        if spreads:
            lines.append("")
            width = max(len(k) for k in spreads)
            for key, values in spreads.items():
                values = sorted(values)
                lines.append(f"  {key:<{width}}  n={len(values)}, min {values[0]:.2f} s, "
                             f"median {values[len(values) // 2]:.2f} s, max {values[-1]:.2f} s")
        old = sum(int(s.get("down_from_old_master", 0)) for s in proxy_stats)
        root = self.run.root
        stale_agents = _count_in_logs(root, ("agent-",), ("event=stale_master_message",))
        stale_framework = _count_in_logs(root, ("framework",), ("event=stale_epoch_dropped",))
        undecodable = _count_in_logs(root, ("agent-",), ("Invalid value 'ERROR'",))
        lines.append(f"  messages reaching peers from a former leader's address: {old} (a resumed deposed leader's, or "
                     "the standby restarted there answering what peers had queued for the dead one); dropped as "
                     f"stale epochs by agents {stale_agents}, by the framework {stale_framework}; a standby's ERROR "
                     f"that agents could not decode (malformed_message): {undecodable}")
        exits = ", ".join(f"master-{i} {code}" for _t, i, code in self.ha.exits) or "none"
        lines.append(f"  master exits seen (restarted as standbys): {exits}")
        for problem in self.problems:
            lines.append(f"  PROBLEM: {problem}")
        return lines


def _count_in_logs(root: Path, prefixes: tuple[str, ...], needles: tuple[str, ...]) -> int:
    count = 0
    for path in root.glob("*.log"):
        if path.name.startswith(prefixes):
            text = path.read_text(errors="replace")
            count += sum(text.count(n) for n in needles)
    return count
