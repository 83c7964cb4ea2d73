"""Suite-wide: no test may read the user's own client configuration (``tepui up`` writes one
to ``~/.config/tepui/config.yaml``, with the keys of *that* cluster). Clients in tests find no
configuration — a plain connection, for masters started with ``--insecure`` — unless a test
cluster points ``TEPUI_CONFIG`` at its own (tests/keyring.py)."""

import atexit
import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tepui.cli.ensemble import LocalEnsemble

_NO_CONFIG = tempfile.mkdtemp(prefix="tepui-no-config-")
atexit.register(shutil.rmtree, _NO_CONFIG, True)  # one empty directory per run, not left behind
os.environ["TEPUI_CONFIG"] = os.path.join(_NO_CONFIG, "config.yaml")


# ------------------------------------------------------------ the shared ZooKeeper ensemble


class SharedZkEnsemble:
    """The 3-server ensemble scripts/test starts (TEPUI_TEST_ZK_ENSEMBLE), shared by every test
    of the session. ``kill``/``start_server`` work only on the ensemble scripts/test started on
    this machine (its pid files under TEPUI_TEST_STATE_DIR); a test that kills a server must
    bring it back, quorum formed, before it ends — :meth:`server_down` does both."""

    def __init__(self, connect_string: str) -> None:
        self.connect_string = connect_string
        hosts = connect_string.split(",")
        base = int(hosts[0].rsplit(":", 1)[1])
        local = LocalEnsemble(Path(os.environ.get("TEPUI_TEST_STATE_DIR", "/var/lib/tepui-test")) / "zk-ensemble",
                              base_port=base, servers=len(hosts))
        # Ours to kill only if it is the one scripts/test started (same ports, its pid files).
        self.local = local if local.connect_string == connect_string and local.pid(0) is not None else None

    def zk_url(self, path: str = "/tepui") -> str:
        return f"zk://{self.connect_string}{path}"

    def _own(self) -> LocalEnsemble:
        if self.local is None:
            pytest.skip("TEPUI_TEST_ZK_ENSEMBLE is not the ensemble scripts/test started here: cannot kill its servers")
        return self.local

    def leader_index(self) -> int:
        """The quorum leader's index in the connect string."""
        return self._own().leader_index()

    def kill(self, index: int) -> None:
        """SIGKILL server ``index``; call :meth:`start_server` before the test ends."""
        self._own().kill(index)

    def start_server(self, index: int) -> None:
        """Restart server ``index`` and wait until the whole quorum serves again."""
        own = self._own()
        own.start_server(index)
        own.wait_serving(60)

    @contextlib.contextmanager
    def server_down(self, index: int) -> Iterator[None]:
        """Server ``index`` killed for the ``with`` block, restarted (quorum formed) after it."""
        self.kill(index)
        try:
            yield
        finally:
            self.start_server(index)


@pytest.fixture(scope="session")
def zk_ensemble() -> Iterator[SharedZkEnsemble]:
    connect = os.environ.get("TEPUI_TEST_ZK_ENSEMBLE")
    if not connect:
        pytest.skip("TEPUI_TEST_ZK_ENSEMBLE is unset: run through scripts/test, which starts a 3-server "
                    "ZooKeeper ensemble (python -m tepui.cli.ensemble start --dir DIR)")
    ensemble = SharedZkEnsemble(connect)
    if ensemble.local is not None:
        ensemble.local.wait_serving(30)  # a server a crashed test left down shows here, by name
    yield ensemble
