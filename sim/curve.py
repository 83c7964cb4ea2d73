"""The client side of CurveZMQ (RFC 26, as libzmq speaks it over ZMTP 3) in Python, without I/O:
what lets ``tepui sim``'s own ZMTP peer (:mod:`tepui.sim.zmtp`) talk to a secure master.

The crypto is libsodium's ``crypto_box`` through ctypes: the copy pyzmq's wheel ships (libzmq
uses it for the same handshake), else the system's. Nothing here is Tepui-specific; the
handshake, as the client sees it:

* after the greeting (mechanism ``CURVE``), HELLO: a fresh short-term key C' and
  ``Box[64 zero bytes](C'→S)`` — only the holder of the master's secret key can open it;
* WELCOME: ``Box[S' + cookie](S→C')``, the server's short-term key;
* INITIATE: the cookie and ``Box[C + vouch + metadata](C'→S')``, the vouch being
  ``Box[C' + S](C→S')`` — proof that the long-term key C holds C';
* READY: ``Box[metadata](S'→C')``, or ERROR with a reason (a refused key).

After it, every ZMTP frame travels as a MESSAGE command: ``"\\x07MESSAGE"``, an 8-byte nonce
(strictly increasing), and ``Box[flags + body](C'→S')`` where flags bit 0 is MORE and bit 1 says
the body is a command (ZMTP heartbeats: PING and PONG travel encrypted too).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
import struct

import zmq
import zmq.utils.z85

MESSAGE_PREFIX = b"\x07MESSAGE"
FLAG_MORE, FLAG_COMMAND = 0x01, 0x02
_MAC = 16


class CurveError(ValueError):
    """The server broke the CurveZMQ handshake, or a box did not open."""


def _load_sodium() -> ctypes.CDLL:
    wheel = os.path.join(os.path.dirname(os.path.dirname(zmq.__file__)), "pyzmq.libs")
    candidates = sorted(glob.glob(os.path.join(wheel, "libsodium*.so*")))
    system = ctypes.util.find_library("sodium")
    if system:
        candidates.append(system)
    for candidate in candidates:
        try:
            lib = ctypes.CDLL(candidate)
        except OSError:
            continue
        if lib.sodium_init() >= 0:
            return lib
    raise CurveError("no libsodium found (neither pyzmq's nor the system's): install libsodium "
                     "(apt-get install libsodium23) or use --transport zmq")


_sodium: ctypes.CDLL | None = None


def sodium() -> ctypes.CDLL:
    global _sodium
    if _sodium is None:
        _sodium = _load_sodium()
    return _sodium


def available() -> bool:
    try:
        sodium()
    except CurveError:
        return False
    return True


def _keypair() -> tuple[bytes, bytes]:
    public, secret = ctypes.create_string_buffer(32), ctypes.create_string_buffer(32)
    sodium().crypto_box_keypair(public, secret)
    return public.raw, secret.raw


def _box(plain: bytes, nonce: bytes, public: bytes, secret: bytes) -> bytes:
    out = ctypes.create_string_buffer(len(plain) + _MAC)
    if sodium().crypto_box_easy(out, plain, ctypes.c_ulonglong(len(plain)), nonce, public, secret) != 0:
        raise CurveError("crypto_box failed")
    return out.raw


def _open(boxed: bytes, nonce: bytes, public: bytes, secret: bytes, what: str) -> bytes:
    if len(boxed) < _MAC:
        raise CurveError(f"the {what} box is too short")
    out = ctypes.create_string_buffer(max(1, len(boxed) - _MAC))
    if sodium().crypto_box_open_easy(out, boxed, ctypes.c_ulonglong(len(boxed)), nonce, public, secret) != 0:
        raise CurveError(f"the {what} box does not open: the server does not hold the master key this client has")
    return out.raw[:len(boxed) - _MAC]


def _random(size: int) -> bytes:
    out = ctypes.create_string_buffer(size)
    sodium().randombytes_buf(out, ctypes.c_size_t(size))
    return out.raw


def z85_key(text: bytes | str) -> bytes:
    """A 40-character Z85 key as its 32 raw bytes."""
    return zmq.utils.z85.decode(text.encode() if isinstance(text, str) else text)


def metadata(properties: dict[str, bytes]) -> bytes:
    return b"".join(bytes((len(name),)) + name.encode() + struct.pack(">I", len(value)) + value
                    for name, value in properties.items())


class CurveClient:
    """One connection's CurveZMQ state: ``hello()``, then ``welcome(body)`` returns INITIATE,
    ``ready(body)`` returns the server's metadata; then ``encrypt``/``decrypt`` per frame.
    Keys are raw 32-byte values (:func:`z85_key`). Bodies are command bodies *after* the
    command name (what :class:`tepui.sim.zmtp.ZmtpParser` yields for a command)."""

    __slots__ = ("_server", "_public", "_secret", "_short_public", "_short_secret", "_nonce", "_peer_nonce",
                 "_server_short", "_cookie", "_shared", "_metadata")

    def __init__(self, server: bytes, public: bytes, secret: bytes, properties: dict[str, bytes]) -> None:
        self._server, self._public, self._secret = server, public, secret
        self._short_public, self._short_secret = _keypair()
        self._nonce = 1
        self._peer_nonce = 0
        self._server_short = b""
        self._cookie = b""
        self._shared = ctypes.create_string_buffer(32)
        self._metadata = metadata(properties)

    def _next_nonce(self) -> bytes:
        nonce = struct.pack(">Q", self._nonce)
        self._nonce += 1
        return nonce

    def hello(self) -> bytes:
        """The HELLO command body, name included (``\\x05HELLO`` ...): 200 bytes."""
        short = self._next_nonce()
        signature = _box(b"\x00" * 64, b"CurveZMQHELLO---" + short, self._server, self._short_secret)
        return b"\x05HELLO" + b"\x01\x00" + b"\x00" * 72 + self._short_public + short + signature

    def welcome(self, body: bytes) -> bytes:
        """WELCOME (after its name) → the INITIATE command body, name included."""
        if len(body) != 160:
            raise CurveError(f"a WELCOME of {len(body) + 8} bytes (168 expected)")
        plain = _open(bytes(body[16:]), b"WELCOME-" + bytes(body[:16]), self._server, self._short_secret, "WELCOME")
        self._server_short, self._cookie = plain[:32], plain[32:128]
        if sodium().crypto_box_beforenm(self._shared, self._server_short, self._short_secret) != 0:
            raise CurveError("crypto_box_beforenm failed")
        vouch_nonce = _random(16)
        vouch = _box(self._short_public + self._server, b"VOUCH---" + vouch_nonce, self._server_short, self._secret)
        short = self._next_nonce()
        boxed = _box(self._public + vouch_nonce + vouch + self._metadata, b"CurveZMQINITIATE" + short,
                     self._server_short, self._short_secret)
        return b"\x08INITIATE" + self._cookie + short + boxed

    def ready(self, body: bytes) -> bytes:
        """READY (after its name) → the server's metadata (as a READY command's properties)."""
        if len(body) < 8 + _MAC:
            raise CurveError("a READY too short to hold its box")
        nonce = bytes(body[:8])
        self._peer_nonce = struct.unpack(">Q", nonce)[0]
        return self._open_shared(bytes(body[8:]), b"CurveZMQREADY---" + nonce, "READY")

    def _open_shared(self, boxed: bytes, nonce: bytes, what: str) -> bytes:
        out = ctypes.create_string_buffer(max(1, len(boxed) - _MAC))
        if len(boxed) < _MAC or sodium().crypto_box_open_easy_afternm(
                out, boxed, ctypes.c_ulonglong(len(boxed)), nonce, self._shared) != 0:
            raise CurveError(f"the {what} box does not open")
        return out.raw[:len(boxed) - _MAC]

    def encrypt(self, body: bytes, flags: int = 0) -> bytes:
        """One frame (``flags``: FLAG_MORE, FLAG_COMMAND) as a MESSAGE command body."""
        short = self._next_nonce()
        plain = bytes((flags,)) + body
        out = ctypes.create_string_buffer(len(plain) + _MAC)
        sodium().crypto_box_easy_afternm(out, plain, ctypes.c_ulonglong(len(plain)), b"CurveZMQMESSAGEC" + short,
                                         self._shared)
        return MESSAGE_PREFIX + short + out.raw

    def decrypt(self, message: bytes) -> tuple[int, bytes]:
        """A MESSAGE from the server (its whole body, ``\\x07MESSAGE`` included) → (flags, body)."""
        if len(message) < 8 + 8 + _MAC + 1 or bytes(message[:8]) != MESSAGE_PREFIX:
            raise CurveError("not a MESSAGE command")
        nonce = bytes(message[8:16])
        value = struct.unpack(">Q", nonce)[0]
        if value <= self._peer_nonce:
            raise CurveError("a MESSAGE nonce that does not increase")
        self._peer_nonce = value
        plain = self._open_shared(bytes(message[16:]), b"CurveZMQMESSAGES" + nonce, "MESSAGE")
        return plain[0], plain[1:]
