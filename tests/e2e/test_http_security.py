"""The master's HTTP API in a real process with TLS and read auth: HTTPS with a self-signed
certificate made here, the plain protocol not served on that port, /health open while /state
needs the token, mutating calls with the token, and a clear exit for unusable TLS files."""

from __future__ import annotations

import json
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.tls_certs import self_signed

from .conftest import child_env, free_ports, stop_process, tail, tepui_cmd, write_token

pytestmark = pytest.mark.slow


def call(url: str, method: str = "GET", token: str | None = None, body: Any = None,
         context: ssl.SSLContext | None = None) -> tuple[int, Any]:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def test_tls_token_and_read_auth_in_a_real_master(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    token = write_token(tmp_path / "http-token")
    port, http_port = free_ports(2)
    log_path = tmp_path / "master.log"
    with open(log_path, "ab") as log_file:
        master = subprocess.Popen(tepui_cmd("master", "--ip", "127.0.0.1", "--port", str(port), "--http-port",
                                            str(http_port), "--http-token-file", str(tmp_path / "http-token"),
                                            "--http-read-auth", "token", "--insecure", "--tls-cert", str(cert), "--tls-key",
                                            str(key)), stdout=log_file, stderr=subprocess.STDOUT, env=child_env())
    base = f"https://127.0.0.1:{http_port}"
    context = ssl.create_default_context(cafile=str(cert))
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                assert call(f"{base}/health", context=context)[0] == 200
                break
            except (OSError, urllib.error.URLError):
                assert master.poll() is None and time.monotonic() < deadline, tail(log_path)
                time.sleep(0.1)
        code, body = call(f"{base}/state", context=context)
        assert code == 401 and body["reason"] == "UNAUTHENTICATED"
        assert call(f"{base}/state", token=token, context=context)[0] == 200
        assert call(f"{base}/weights", "PUT", token=token, body=[{"role": "eng", "weight": 2}],
                    context=context) == (200, [{"role": "eng", "weight": 2.0}])
        code, body = call(f"{base}/weights", "PUT", token="wrong-token-wrong-token", body=[], context=context)
        assert code == 401 and body["reason"] == "BAD_TOKEN"
        # Cleartext on the same port gets no HTTP answer; an unverified client is refused by TLS.
        with pytest.raises((urllib.error.URLError, OSError, ValueError)):
            urllib.request.urlopen(f"http://127.0.0.1:{http_port}/health", timeout=5)
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(f"{base}/health", timeout=5, context=ssl.create_default_context())
        assert "http=https://" in log_path.read_text()
    finally:
        stop_process(master, 10)


def test_unusable_tls_files_stop_the_master_with_a_message(tmp_path: Path) -> None:
    (tmp_path / "bad.crt").write_text("not a certificate")
    port, http_port = free_ports(2)
    done = subprocess.run(tepui_cmd("master", "--ip", "127.0.0.1", "--port", str(port), "--http-port",
                                    str(http_port), "--insecure", "--tls-cert", str(tmp_path / "bad.crt"), "--tls-key",
                                    str(tmp_path / "bad.crt")),
                          capture_output=True, text=True, timeout=30, env=child_env())
    assert done.returncode != 0
    assert "not a usable PEM certificate" in done.stderr, done.stderr[-2000:]
    done = subprocess.run(tepui_cmd("master", "--ip", "127.0.0.1", "--port", str(port), "--http-port",
                                    str(http_port), "--insecure", "--http-read-auth", "token"),
                          capture_output=True, text=True, timeout=30, env=child_env())
    assert done.returncode != 0 and "--http-token-file" in done.stderr, done.stderr[-2000:]
