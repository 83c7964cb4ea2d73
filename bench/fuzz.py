"""Fuzzing benchmark (issue 6, RELIABILITY scenario 32): a long run of the harness that the CI
fuzz tests use (``tests/fuzz_harness.py``), split evenly between the master and the agent.

    python bench/fuzz.py                        # 100,000 messages, seed 1 (~1-2 min)
    python bench/fuzz.py --count 1000000 --seed 7
    python bench/fuzz.py --count 200 --targets agent

Each message is raw bytes, a valid message mutated, or a structurally valid adversarial message
generated from the protocol schema (ids the core knows and ids that are empty, ``..`` or 300
characters, NaN and huge numbers, unknown enum values, wrong types), fed through the endpoint's
decoder into the pure core's ``handle`` exactly as the shells do, without sockets. Messages come
in sessions (``--session`` messages on a fresh, warm core: an agent registered, a framework
subscribed, offers out, a task running); after each session the core's timers fire and its
invariants are checked (the allocator's books balance; it still serves a newcomer).

Progress goes to stdout every 10%; the last line is ``crashes=<n>`` (0 is the only good answer;
the exit status is 1 otherwise), and the first crashes are printed with their tracebacks and the
seed that reproduces them.

``--live`` (issue 15) fuzzes a real master instead: a master with CURVE keys and two agents on
this machine, a well-behaved framework that must keep being served, and ``--clients``
authenticated hostile clients living whole framework lives with a mutation at every step
(bench/fuzz_live.py, bench/fuzz_hostile.py, bench/fuzz_cases.py)::

    python bench/fuzz.py --live --count 100000
    python bench/fuzz.py --live --replay 123456789   # one hostile life, by the seed a finding printed
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, for tests.fuzz_harness
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/, for fuzz_live

from tests.fuzz_harness import TARGETS, Tally, run_session  # noqa: E402

SHOWN = 3  # crashes printed in full


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100_000, help="messages in all (default 100000)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (the same seed replays the same run)")
    parser.add_argument("--session", type=int, default=20, help="messages per fresh core (default 20)")
    parser.add_argument("--targets", default="master,agent", help="comma-separated: master, agent")
    live = parser.add_argument_group("live mode (a real master, agents and hostile clients)")
    live.add_argument("--live", action="store_true", help="fuzz a real cluster (bench/fuzz_live.py)")
    live.add_argument("--clients", type=int, default=3, help="hostile clients, each a process (default 3)")
    live.add_argument("--stall-seconds", type=float, default=30.0,
                      help="no task of the well-behaved framework finished for this long is a stall (default 30)")
    live.add_argument("--rate-limit", default="unlimited",
                      help="the master's --framework-rate-limit (default unlimited: every call reaches a handler)")
    live.add_argument("--big-share", type=float, default=0.003,
                      help="share of steps carrying a 3 MB string (default 0.003)")
    live.add_argument("--relay-every", type=float, default=60.0,
                      help="seconds between a client's relay-loop GETs through the master's proxy (default 60)")
    live.add_argument("--window-timeout", type=float, default=20.0,
                      help="seconds a step's barrier may take before the step counts as timed out (default 20)")
    live.add_argument("--replay", type=lambda text: [int(s) for s in text.split(",")], default=None,
                      help="life seeds (comma-separated) to live again, from a finding; implies --live")
    live.add_argument("--keep", action="store_true", help="keep the run directory (logs, journals)")
    args = parser.parse_args(argv)
    if args.live or args.replay:
        if args.clients < 1 or args.count < 1:
            parser.error("--clients and --count: at least 1")
        if args.replay:
            args.clients = 1
        from fuzz_live import run as run_live

        return run_live(args)
    names = [n.strip() for n in args.targets.split(",") if n.strip()]
    unknown = [n for n in names if n not in TARGETS]
    if unknown or not names or args.count < 1 or args.session < 1:
        parser.error(f"--targets takes master and/or agent (got {args.targets!r}); --count and --session >= 1")
    rng = random.Random(args.seed)
    tallies = {name: Tally() for name in names}
    started = time.monotonic()
    step = max(1, args.count // 10)
    next_report = step
    done = 0
    print(f"fuzzing {', '.join(names)} with {args.count} messages, seed {args.seed}, {args.session} per session",
          flush=True)
    while done < args.count:
        for name in names:
            session = min(args.session, args.count - done)
            if session <= 0:
                break
            tally = tallies[name]
            before = tally.messages
            run_session(TARGETS[name], rng, session, tally)
            done += tally.messages - before
        if done >= next_report or done >= args.count:
            elapsed = time.monotonic() - started
            crashes = sum(len(t.crashes) for t in tallies.values())
            print(f"  {done}/{args.count} messages, {done / max(elapsed, 1e-9):.0f}/s, crashes so far {crashes}",
                  flush=True)
            next_report = (done // step + 1) * step
    elapsed = time.monotonic() - started
    total_crashes = 0
    for name, tally in tallies.items():
        total_crashes += len(tally.crashes)
        print(f"{name}: messages={tally.messages} decoded={tally.decoded} rejected_by_decoder={tally.rejected} "
              f"crashes={len(tally.crashes)}")
        for crash in tally.crashes[:SHOWN]:
            print(f"--- {name} crashed in {crash.where} on {crash.message}\n{crash.error}", file=sys.stderr)
    print(f"time={elapsed:.1f}s seed={args.seed}")
    print(f"crashes={total_crashes}")
    return 1 if total_crashes else 0


if __name__ == "__main__":
    sys.exit(main())
