"""Run as a subprocess by test_fetcher.py: ``Fetcher.fetch`` on a real asyncio reactor (a reactor
runs once per process, so it cannot live inside pytest's process).

Usage: fetcher_probe.py WORK_DIR. Prints one JSON object: what each Deferred delivered, and on
which thread the fetching and the callbacks ran.
"""

import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tepui.sdk.runtime import install_reactor

reactor = install_reactor()

from tepui.agent.fetching.fetcher import Fetcher, FetchError  # noqa: E402
from tepui.sdk.protocol.values import CommandURI  # noqa: E402

work = sys.argv[1]
result: dict = {}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/hello.txt":
            body = b"hello from the probe\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_error(404)

    def log_message(self, *args: object) -> None:
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
base = f"http://127.0.0.1:{server.server_address[1]}"


class RecordingFetcher(Fetcher):
    def fetch_blocking(self, uris, sandbox):  # type: ignore[no-untyped-def]
        result.setdefault("worker_threads", []).append(threading.current_thread() is not threading.main_thread())
        return super().fetch_blocking(uris, sandbox)


fetcher = RecordingFetcher(reactor, os.path.join(work, "cache"), timeout=5.0)


def on_results(results: list) -> None:
    result["on_reactor_thread"] = threading.current_thread() is threading.main_thread()
    result["results"] = [[r.uri, r.path, r.bytes, r.from_cache] for r in results]
    with open(results[0].path) as f:
        result["content"] = f.read()
    d = fetcher.fetch([CommandURI(value=f"{base}/missing.txt")], os.path.join(work, "sandbox2"))
    d.addCallbacks(lambda _: finish("unexpected success"), on_failure)


def on_failure(failure) -> None:  # type: ignore[no-untyped-def]
    result["error_on_reactor_thread"] = threading.current_thread() is threading.main_thread()
    result["error_type"] = failure.type.__name__
    result["error"] = str(failure.value)
    result["is_fetch_error"] = failure.check(FetchError) is not None
    finish(None)


def finish(problem: object) -> None:
    if problem is not None:
        result["problem"] = repr(problem)
    if reactor.running:
        reactor.stop()


def start() -> None:
    d = fetcher.fetch([CommandURI(value=f"{base}/hello.txt", cache=True)], os.path.join(work, "sandbox"))
    d.addCallbacks(on_results, lambda f: finish(f.getTraceback()))
    d.addErrback(lambda f: finish(f.getTraceback()))


reactor.callWhenRunning(start)
reactor.callLater(20, finish, "timeout")
reactor.run()
server.shutdown()
server.server_close()
json.dump(result, sys.stdout)
