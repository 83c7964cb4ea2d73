"""Suite-wide: no test may read the user's own client configuration (``tepui up`` writes one
to ``~/.config/tepui/config.yaml``, with the keys of *that* cluster). Clients in tests find no
configuration — a plain connection, for masters started with ``--insecure`` — unless a test
cluster points ``TEPUI_CONFIG`` at its own (tests/keyring.py)."""

import atexit
import os
import shutil
import tempfile

_NO_CONFIG = tempfile.mkdtemp(prefix="tepui-no-config-")
atexit.register(shutil.rmtree, _NO_CONFIG, True)  # one empty directory per run, not left behind
os.environ["TEPUI_CONFIG"] = os.path.join(_NO_CONFIG, "config.yaml")
