"""The read-auth modes of Tepui's HTTP servers: ``open`` (reads need no token) or ``token``.

A module of its own so that a command-line option can list them without importing
:mod:`tepui.sdk.http_security`, which loads Twisted's web server: that import cost every
``tepui`` command 0.1 s (measured with ``python -X importtime``, 101 of 268 ms).
"""

READ_AUTH_MODES = ("open", "token")
