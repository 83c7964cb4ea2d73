"""Where the master's framework proxy may connect (issue 15, bug 4): never to itself, and to
loopback, link-local or this host's own addresses only where the operator allowed it.

Why: ``webui_url`` is written by a framework, and the master connects wherever it says, with the
cluster's token. A ``webui_url`` naming the master's own ``/frameworks/<name>/`` turned one GET
into an endless relay loop (open files 36 → 19,237 in 20 s); one naming a loopback or
link-local address would let any framework key make the master call services that trust the
master's host (a cloud metadata service at 169.254.169.254, an agent's files API on 127.0.0.1).

What is checked is the address the master really connects to, not the name: a host name is
resolved here, each resolved address is checked, and the connection goes to that checked
address literally (the ``Host`` header and TLS verification still use the name). A name that
resolves to an allowed address once and to 127.0.0.1 the next time (DNS rebinding) is checked
again at the next connection and refused then.

The rules, in order (:func:`refusal`, pure but for ``is_local``):

1. The master's own ports (``own_ports``: its HTTP and ZeroMQ ports) on any address of this host
   are always refused, even where an allow rule matches: that is the loop itself.
2. An address an allow rule matches (``--proxy-allow``: ``ADDRESS[/PREFIX]`` for every port, or
   ``ADDRESS[/PREFIX]:PORT`` / ``[IPV6]:PORT`` for one) may be relayed to.
3. Loopback (127.0.0.0/8, ::1), unspecified (0.0.0.0, ::, which reach this host), link-local
   (169.254.0.0/16, fe80::/10) and every other address of this host are refused.
4. Anything else (the addresses frameworks normally run at) is allowed.

Hops and concurrent relays are capped by the proxy itself (master/http/framework_proxy.py).
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Union

from twisted.internet import defer
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, wrapClientTLS
from twisted.internet.interfaces import IResolutionReceiver
from twisted.web.client import BrowserLikePolicyForHTTPS, URI
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

Address = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

MAX_RELAYS_PER_FRAMEWORK = 64  # concurrent relays to one framework (event streams count while open)
MAX_RELAYS = 256  # concurrent relays in all: about 512 file descriptors at most


@dataclass(frozen=True)
class Refusal:
    """Why the proxy will not connect to an address; ``allowable``: ``--proxy-allow`` would change
    that (everything but the master's own ports)."""

    why: str
    allowable: bool = True


class RelayRefused(Exception):
    """The proxy will not connect to this address; the message says which and why."""

    def __init__(self, address: str, port: int, refused: Refusal) -> None:
        super().__init__(f"{address}:{port} is {refused.why}")
        self.address, self.port, self.allowable = address, port, refused.allowable


@dataclass(frozen=True)
class AllowRule:
    """One ``--proxy-allow`` entry: a network, and one port or (None) all of them."""

    network: Network
    port: int | None = None

    def matches(self, address: Address, port: int) -> bool:
        return (address.version == self.network.version and address in self.network
                and (self.port is None or self.port == port))

    def __str__(self) -> str:
        net = str(self.network.network_address) if self.network.prefixlen == self.network.max_prefixlen \
            else str(self.network)
        if self.port is None:
            return net
        return f"[{net}]:{self.port}" if self.network.version == 6 else f"{net}:{self.port}"


def parse_allow(text: str) -> AllowRule:
    """``127.0.0.1:5090``, ``10.1.0.0/16``, ``::1``, ``[::1]:5090``, ``fd00::/8``. Addresses only:
    a host name could resolve elsewhere by the time the master connects."""
    text = text.strip()
    try:
        return AllowRule(ipaddress.ip_network(text, strict=False))
    except ValueError:
        pass
    host, colon, port_text = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        network = ipaddress.ip_network(host, strict=False)
    except ValueError:
        raise ValueError(f"--proxy-allow {text!r}: give an IP address or network, optionally with a port "
                         "(127.0.0.1:5090, 10.0.0.0/8, [::1]:5090), not a host name") from None
    if not colon or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"--proxy-allow {text!r}: the port must be a number from 1 to 65535")
    return AllowRule(network, int(port_text))


def host_has_address(address: Address) -> bool:
    """Whether ``address`` is one of this host's own (a socket can bind to it). Conservative: a
    host with ``ip_nonlocal_bind`` set answers True for every address, and then every relay off
    the allow list is refused — never the other way round."""
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((str(address), 0))
    except OSError as exc:
        return exc.errno != errno.EADDRNOTAVAIL and exc.errno != errno.EAFNOSUPPORT
    return True


@dataclass(frozen=True)
class RelayPolicy:
    """What the operator allowed, and what the master is (its ports)."""

    allow: tuple[AllowRule, ...] = ()
    own_ports: frozenset[int] = frozenset()
    max_per_framework: int = MAX_RELAYS_PER_FRAMEWORK
    max_total: int = MAX_RELAYS
    is_local: Callable[[Address], bool] = host_has_address


def refusal(policy: RelayPolicy, host: str, port: int) -> Refusal | None:
    """None when the proxy may connect to ``host`` (an IP address) on ``port``, else why not, in
    words that fit "ADDRESS:PORT is ..."."""
    address: Address = ipaddress.ip_address(host)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    special = address.is_loopback or address.is_unspecified or address.is_link_local
    local = special or policy.is_local(address)
    if local and port in policy.own_ports:
        return Refusal("the master itself (one of its own ports): a framework's webui_url must not point back "
                       "at the master, or every call would loop through it", allowable=False)
    if any(rule.matches(address, port) for rule in policy.allow):
        return None
    if address.is_loopback:
        what = "a loopback address"
    elif address.is_unspecified:
        what = "the unspecified address (it reaches the master's own host)"
    elif address.is_link_local:
        what = "a link-local address (where cloud metadata services listen)"
    elif local:
        what = "an address of the master's own host"
    else:
        return None
    return Refusal(f"{what}, which the master relays to only when the operator allows it")


def resolve(reactor: Any, host: str, port: int) -> defer.Deferred[list[str]]:
    """The addresses ``host`` resolves to (an IP literal: itself, without a lookup), through the
    reactor's resolver (getaddrinfo on its thread pool: the reactor never blocks)."""
    try:
        return defer.succeed([str(ipaddress.ip_address(host))])
    except ValueError:
        pass
    done: defer.Deferred[list[str]] = defer.Deferred()
    found: list[str] = []

    @implementer(IResolutionReceiver)
    class _Receiver:
        def resolutionBegan(self, resolution: Any) -> None:
            pass

        def addressResolved(self, address: Any) -> None:
            found.append(address.host)

        def resolutionComplete(self) -> None:
            done.callback(found)

    reactor.nameResolver.resolveHostName(_Receiver(), host, port)
    return done


Resolve = Callable[[Any, str, int], "defer.Deferred[list[str]]"]


@implementer(IAgentEndpointFactory)
class GuardedEndpoints:
    """``twisted.web.client.Agent``'s endpoints, each connecting only to a checked address
    (``Agent.usingEndpointFactory``). ``policy`` is read at every connection, so a change of
    the proxy's policy applies to the next call."""

    def __init__(self, reactor: Any, policy: Callable[[], RelayPolicy], connect_timeout: float,
                 resolver: Resolve = resolve) -> None:
        self.reactor, self.policy, self.connect_timeout, self.resolver = reactor, policy, connect_timeout, resolver
        self.tls = BrowserLikePolicyForHTTPS()

    def endpointForURI(self, uri: URI) -> _GuardedEndpoint:
        return _GuardedEndpoint(self, uri.host.decode("ascii").strip("[]"), uri.port, uri.scheme == b"https")


class _GuardedEndpoint:
    def __init__(self, factory: GuardedEndpoints, host: str, port: int, tls: bool) -> None:
        self.factory, self.host, self.port, self.tls = factory, host, port, tls

    def connect(self, protocol_factory: Any) -> defer.Deferred[Any]:
        resolved = self.factory.resolver(self.factory.reactor, self.host, self.port)
        return resolved.addCallback(self._connect_checked, protocol_factory)

    def _connect_checked(self, addresses: list[str], protocol_factory: Any) -> defer.Deferred[Any]:
        if not addresses:
            raise RelayRefused(self.host, self.port, Refusal("a name that resolves to no address", False))
        policy = self.factory.policy()
        reasons = [(address, refusal(policy, address, self.port)) for address in addresses]
        allowed = [address for address, why in reasons if why is None]
        if not allowed:
            address, why = reasons[0]
            assert why is not None
            raise RelayRefused(address if address == self.host else f"{self.host} ({address})", self.port, why)
        factory, address = self.factory, allowed[0]
        kind = TCP6ClientEndpoint if ipaddress.ip_address(address).version == 6 else TCP4ClientEndpoint
        endpoint: Any = kind(factory.reactor, address, self.port, timeout=factory.connect_timeout)
        if self.tls:  # verified against the name in webui_url, as a browser would
            endpoint = wrapClientTLS(factory.tls.creatorForNetloc(self.host.encode(), self.port), endpoint)
        return endpoint.connect(protocol_factory)
