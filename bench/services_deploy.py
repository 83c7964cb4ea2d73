"""Time from `tepui apps deploy` of N instances of a process app to all of them healthy, on
`tepui up` (issue 7's closing figure).

Starts `tepui up` (master, two agents, the services framework) on free ports in a temp state dir
with its own client configuration, then, per round: `tepui apps deploy` of N instances of
Python's HTTP server with an HTTP health check every second, timed from the command's start to
its exit (it exits when the deployment has succeeded: every instance running and healthy), then
`tepui apps rm` and wait. Reports each round and the median (this machine's timings move
1.5-2x between runs).

    python bench/services_deploy.py [--instances 100] [--rounds 3] [--app python|busybox]
    python bench/services_deploy.py --smoke            # 5 instances, 1 round (CI)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

COMMANDS = {
    # Python's HTTP server: available everywhere, but ~0.15 CPU-seconds to start, which the
    # agent's CFS quota (cpus x period) stretches: at cpus 0.03 one start takes ~5 s.
    "python": "python3 -m http.server $PORT0 --bind 127.0.0.1",
    # BusyBox httpd: starts in a millisecond; measures the scheduler rather than Python.
    "busybox": "echo ok > index.html && exec busybox httpd -f -p 127.0.0.1:$PORT0 -h .",
}

SPEC = """id: /bench/web
command: {command}
cpus: {cpus}
mem: 16
instances: {instances}
ports: [{{name: http}}]
health_checks:
  - {{protocol: HTTP, path: /, grace_period_seconds: 60, interval_seconds: 1, timeout_seconds: 0.5}}
"""


def free_ports_for_up() -> tuple[int, int]:
    """``--port`` and ``--http-port`` for `tepui up`, which also takes http port + 10, + 11 and
    + 12: 14 consecutive ports, all free a moment ago, below the kernel's ephemeral range
    (32768-60999 here). Two random free ports from the ephemeral range failed now and then in
    CI: an outgoing connection held a neighbour (`tepui up`: "port 60662 (--http-port + 11) is
    already in use")."""
    rng = random.Random()
    for _ in range(100):
        first = rng.randrange(10000, 30000 - 14)  # below the agents' task ports, 31000-32000
        held: list[socket.socket] = []
        try:
            for number in range(first, first + 14):
                sock = socket.socket()
                held.append(sock)
                sock.bind(("127.0.0.1", number))
            return first + 13, first  # --port after the http port's block
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
    raise SystemExit("no block of 14 free ports between 10000 and 30000")


def tepui(*args: str) -> list[str]:
    return [sys.executable, "-m", "tepui.cli", *args]


def wait_services(http_port: int, up: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if up.poll() is not None:
            raise SystemExit(f"tepui up exited with {up.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/frameworks/services/v1/health", timeout=2) as r:
                if json.load(r).get("subscribed"):
                    return
        except (OSError, ValueError):
            pass
        time.sleep(0.2)
    raise SystemExit(f"the services framework did not come up within {timeout:g} s")


def last_deployment(http_port: int) -> float:
    """Seconds from start to success of the newest finished deployment, as the framework recorded."""
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/frameworks/services/v1/deployments", timeout=5) as r:
        done = [d for d in json.load(r)["deployments"] if d["status"] == "SUCCEEDED" and d["kind"] != "remove"]
    newest = max(done, key=lambda d: d["finished_at"])
    return float(newest["finished_at"] - newest["started_at"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--app", choices=sorted(COMMANDS), default="python",
                        help="the process each instance runs (default: python)")
    parser.add_argument("--cpus", type=float, default=0.03,
                        help="cpus per instance (the two agents of `tepui up` offer this machine's cores each)")
    parser.add_argument("--smoke", action="store_true", help="5 instances, 1 round")
    args = parser.parse_args()
    if args.smoke:
        args.instances, args.rounds = 5, 1
    root = tempfile.mkdtemp(prefix="tepui-bench-services-")
    os.chmod(root, 0o711)  # tasks run as an unprivileged user who must reach the sandboxes
    env = {**os.environ, "TEPUI_CONFIG": os.path.join(root, "client.yaml")}
    port, http_port = free_ports_for_up()
    http = f"http://127.0.0.1:{http_port}"
    spec_path = os.path.join(root, "app.yaml")
    with open(spec_path, "w") as f:
        f.write(SPEC.format(instances=args.instances, command=COMMANDS[args.app], cpus=args.cpus))
    log = open(os.path.join(root, "up.log"), "wb")
    up = subprocess.Popen(tepui("up", "--agents", "2", "--state-dir", os.path.join(root, "state"), "--port", str(port),
                                "--http-port", str(http_port)), env=env, stdout=log, stderr=subprocess.STDOUT)
    times = []
    done = False
    try:
        wait_services(http_port, up)
        print(f"tepui up ready (state in {root}); deploying {args.instances} instances of the {args.app} app "
              f"(cpus {args.cpus:g} each) x {args.rounds} rounds", flush=True)
        for round_no in range(1, args.rounds + 1):
            start = time.perf_counter()
            deploy = subprocess.run(tepui("apps", "deploy", spec_path, "--http", http, "--timeout", "600"),
                                    env=env, capture_output=True, text=True, timeout=700)
            elapsed = time.perf_counter() - start
            if deploy.returncode != 0:
                raise SystemExit(f"deploy failed (exit {deploy.returncode}):\n{deploy.stdout[-2000:]}\n"
                                 f"{deploy.stderr[-2000:]}")
            times.append(elapsed)
            server = last_deployment(http_port)
            print(f"round {round_no}: {args.instances} instances healthy {elapsed:.2f} s after `tepui apps deploy` "
                  f"({args.instances / elapsed:.1f} instances/s; the framework's own record: deployment took "
                  f"{server:.2f} s)", flush=True)
            remove = subprocess.run(tepui("apps", "rm", "/bench/web", "--http", http, "--timeout", "120"),
                                    env=env, capture_output=True, text=True, timeout=180)
            if remove.returncode != 0:
                raise SystemExit(f"rm failed (exit {remove.returncode}):\n{remove.stdout[-2000:]}\n{remove.stderr[-2000:]}")
        done = True
    finally:
        up.send_signal(signal.SIGTERM)
        try:
            up.wait(60)
        except subprocess.TimeoutExpired:
            up.kill()
            up.wait()
        log.close()
        if done:
            shutil.rmtree(root, ignore_errors=True)  # the cluster's files; kept (with up.log) when a run fails
        else:
            print(f"services_deploy: the cluster's files and up.log are kept in {root}", file=sys.stderr)
    median = statistics.median(times)
    print(f"median over {len(times)} round(s): {median:.2f} s (min {min(times):.2f}, max {max(times):.2f}); "
          f"machine: {os.cpu_count()} cores", flush=True)
    print(f"services_deploy_{args.instances}_healthy_seconds={median:.2f}")


if __name__ == "__main__":
    main()
