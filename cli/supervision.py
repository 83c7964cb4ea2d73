"""What ``tepui up`` does when one of its children exits: the supervision policy, pure.

A local cluster behaves like a supervised one: the policy is systemd's ``Restart=on-failure``
with an exponential ``RestartSec`` and a start limit. It is a value that, given a child's
history, how it exited and ``now``, answers "restart at T", "give up: crash loop" or "not a
failure"; it starts no process and reads no clock (``cli/up.py`` does both).

- **What is a failure.** A non-zero exit code, or death by a signal other than the four systemd
  calls clean (SIGHUP, SIGINT, SIGTERM, SIGPIPE: someone asked the process to stop). Code 0 is a
  stop the child chose or was asked for — an agent drained with SIGUSR1, a SIGTERMed master —
  and a supervisor respects it instead of undoing it.
- **Backoff: 1 s, doubling with each failure in a row, up to 30 s.** One second lets what the
  crash left clear (the dead process's sockets close, the master sees the connection go) and
  brings a killed agent back well within the master's 10 s failure detection (2 s pings x 5), so
  its tasks are not even reported unreachable: a SIGKILLed agent was re-registered 2.6 s after
  the kill (measured on a 2-core machine at load average 5), a SIGKILLed master had both agents
  and the services framework back after 3.8 s. Doubling keeps a child that keeps crashing from
  hammering a machine that is probably short of something; 30 s caps it, as a supervisor silent
  for minutes looks hung. The streak ends once a child has run for a whole ``interval`` (2
  minutes): the next failure starts again at 1 s (Kubernetes forgets its CrashLoopBackOff the
  same way, after 10 minutes).
- **Crash loop: give up after 5 restarts within 120 s.** systemd's StartLimitBurst=5, over a
  longer interval than its 10 s because our delays are longer than its 100 ms: the delays of five
  restarts take 1+2+4+8+16 = 31 s, and the rest of the interval is how long the runs between
  them may last for the child to count as looping. An agent that cannot start (a torn
  checkpoint) fails 1 to 3 s after it is started on this 2-core machine at load average 7. With
  60 s, runs of 6 s would already escape the limit and loop forever at 30 s intervals; 120 s
  catches runs of up to 17 s. A child that fails 1 s after each start is given up on 37 s after
  it first died (its sixth exit; 49 s at 3 s a run), while one that runs 18 s or more between
  crashes never is: it is mostly up, which is what restarting on failure is for.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass

CLEAN_SIGNALS = frozenset({signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGPIPE})


def is_failure(code: int) -> bool:
    """``code`` as ``Popen.returncode`` gives it: negative for a death by that signal."""
    if code < 0:
        try:
            return signal.Signals(-code) not in CLEAN_SIGNALS
        except ValueError:  # a real-time signal: nothing asked for it
            return True
    return code != 0


def describe_exit(code: int) -> str:
    """``code -9 (killed)``, ``code 1``: the number as ``Popen`` reports it, and the signal's
    name in words when it is one."""
    if code >= 0:
        return f"code {code}"
    name = signal.strsignal(-code) or f"signal {-code}"
    return f"code {code} ({name[0].lower()}{name[1:]})"


@dataclass(frozen=True)
class History:
    """One child's past as the policy needs it: when its current run started, when it was
    restarted (within the last ``interval``), and how many failures came in a row."""

    started_at: float
    restarts: tuple[float, ...] = ()
    failures_in_a_row: int = 0


@dataclass(frozen=True)
class Restart:
    """Start the child again at ``at`` (``delay`` after its exit); ``count`` restarts within the
    policy's interval, this one included. ``history`` is the child's once it is restarted."""

    at: float
    delay: float
    count: int
    history: History


@dataclass(frozen=True)
class GiveUp:
    """A crash loop: ``restarts`` restarts within ``interval`` seconds did not help."""

    restarts: int
    interval: float


@dataclass(frozen=True)
class NotAFailure:
    """A clean exit (code 0, or a clean signal): leave the child stopped."""


Decision = Restart | GiveUp | NotAFailure


@dataclass(frozen=True)
class RestartPolicy:
    """Restart=on-failure with backoff and a start limit (the module docstring says why these
    numbers)."""

    initial_delay: float = 1.0
    max_delay: float = 30.0
    burst: int = 5
    interval: float = 120.0

    def decide(self, history: History, code: int, now: float) -> Decision:
        """What to do about a child with ``history`` that exited with ``code`` at ``now``."""
        if not is_failure(code):
            return NotAFailure()
        recent = tuple(t for t in history.restarts if t > now - self.interval)
        if len(recent) >= self.burst:
            return GiveUp(len(recent), self.interval)
        ran_well = now - history.started_at >= self.interval
        streak = 1 if ran_well else history.failures_in_a_row + 1
        delay = min(self.initial_delay * 2 ** (streak - 1), self.max_delay)
        at = now + delay
        return Restart(at, delay, len(recent) + 1, History(at, (*recent, at), streak))

    def restart_line(self, name: str, code: int, decision: Restart, resumes_from: str) -> str:
        """The line ``tepui up`` prints when it restarts a child."""
        where = f" {resumes_from}" if resumes_from else ""
        return (f"{name} exited with {describe_exit(code)}; restarting it{where} in {decision.delay:g} s "
                f"(restart {decision.count} of {self.burst} in {self.interval:g} s)")

    def give_up_line(self, name: str, code: int, decision: GiveUp) -> str:
        return (f"{name} exited with {describe_exit(code)} again: {decision.restarts} restarts within "
                f"{decision.interval:g} s did not help (a crash loop); giving up on it")
