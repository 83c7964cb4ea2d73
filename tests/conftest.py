"""Suite-wide: no test may read the user's own client configuration (``tepui up`` writes one
to ``~/.config/tepui/config.yaml``, with the keys of *that* cluster). Clients in tests find no
configuration — a plain connection, for masters started with ``--insecure`` — unless a test
cluster points ``TEPUI_CONFIG`` at its own (tests/keyring.py)."""

import os
import tempfile

os.environ["TEPUI_CONFIG"] = os.path.join(tempfile.mkdtemp(prefix="tepui-no-config-"), "config.yaml")
