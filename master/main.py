"""``tepui master``: build the core and its shell and run them on the asyncio reactor."""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import uuid
from typing import TYPE_CHECKING, Any

from tepui.master.admission.acls import PERMISSIVE, Acls
from tepui.master.admission.acls_file import AclError, load_acls
from tepui.master.admission.rate_limits import RateLimit
from tepui.sdk.runtime import install_reactor
from tepui.sdk.shell import configure_logging

if TYPE_CHECKING:
    from tepui.master.leadership.ha import HaMaster
    from tepui.master.options import MasterOptions
    from tepui.master.shell import MasterShell
    from tepui.sdk.curve import CurveServer
    from tepui.sdk.store import Store

log = logging.getLogger("tepui.master")


def run_master(options: MasterOptions) -> None:
    """Runs a master until it is stopped; exits 1 when its shell failed (a lost registry, a
    newer epoch). Every refusal to start is a SystemExit that says what to change."""
    configure_logging(options.log_level, "master")
    if options.zk and options.work_dir:
        raise SystemExit("give --zk or --work-dir, not both: with --zk the registry lives in ZooKeeper, "
                         "shared by every master of the cluster")
    curve = master_curve(options.keys_dir, options.insecure)
    acls = _initial_acls(options.acls_path)
    reactor = install_reactor()
    from tepui.master.core import MasterConfig, MasterCore
    from tepui.master.http.api import HttpCollector
    from tepui.master.http.files_proxy import task_files_request_scope
    from tepui.master.shell import MasterShell
    from tepui.master.http.relay_guard import RelayPolicy
    from tepui.sdk.http_security import GuardedSite, client_tls, listen, policy_from_flags
    from twisted.web.resource import Resource

    host = options.hostname or socket.gethostname()
    advertised = options.advertise_ip or ("127.0.0.1" if options.ip in ("0.0.0.0", "*") else options.ip)
    interface = "" if options.ip in ("0.0.0.0", "*") else options.ip
    _refuse_ports_in_use(interface, options.port, options.http_port)  # before the registry is claimed (see there)
    policy = policy_from_flags(options.http_token_file, options.http_read_auth, "master")
    # The framework proxy never relays to the master's own ports (issue 15: a relay loop).
    relay = RelayPolicy(allow=options.proxy_allow, own_ports=frozenset({options.port, options.http_port}))
    agent_tls = client_tls(options.agent_ca, "--agent-ca")
    http_url = f"{'https' if options.tls_cert else 'http'}://{advertised}:{options.http_port}"

    def lead(store: Store | None, epoch: int, endpoint: Any = None) -> MasterShell:
        """The master itself, on ``store`` with ``epoch``: the same for a single master and for
        an HA contender that has just won (which hands over the socket it bound as a standby)."""
        config = MasterConfig(
            master_id=master_id,
            epoch=epoch,
            hostname=host,
            address=f"{advertised}:{options.port}",
            http_port=options.http_port,
            agent_ping_interval=options.agent_ping_interval,
            max_agent_ping_timeouts=options.max_agent_ping_timeouts,
            max_agent_pings_per_second=options.max_agent_pings_per_second,
            heartbeat_interval=options.heartbeat_interval,
            allocation_interval=options.allocation_interval,
            offer_timeout=options.offer_timeout,
            agent_reregister_timeout=options.agent_reregister_timeout,
            agent_removal_rate=options.agent_removal_rate,
            agent_gone_timeout=options.agent_gone_timeout,
            recovery_agent_removal_limit=options.recovery_agent_removal_limit,
            allow_host_volumes=options.allow_host_volumes,
            acls=acls,
            framework_rate_limit=options.framework_rate_limit,
            durable_registry=store is not None,
        )
        shell = MasterShell(reactor, MasterCore(config), f"tcp://{options.ip}:{options.port}", store, curve=curve,
                            heartbeat_seconds=options.zmq_heartbeat_interval, endpoint=endpoint,
                            watch_epoch=not options.zk)
        shell.http_url = http_url
        site.resource = shell.site_root(policy, relay, agent_tls)  # a standby's site switches to the master's
        shell.registry.register(HttpCollector(site.counters))
        log.info("event=framework_proxy proxy_allow=%s agent_ca=%s",
                 ",".join(map(str, options.proxy_allow)) or "none", options.agent_ca or "system")
        _serve_admission(reactor, shell, options.acls_path, options.framework_rate_limit)
        _watch_allow_list(reactor, shell)  # after the ACL SIGHUP handler: this one chains to it
        shell.start()
        return shell

    master_id = uuid.uuid4().hex[:12]
    site = GuardedSite(Resource(), policy, request_scope=task_files_request_scope)
    if options.zk:
        ha = _contend(reactor, options, master_id, advertised, http_url, curve, lead)
        site.resource = ha.standby_root()
        listen(reactor, options.http_port, site, interface, options.tls_cert, options.tls_key)
        _log_serving(options)
        ha.start()
        reactor.addSystemEventTrigger("before", "shutdown", ha.stop)
        reactor.run()
        if ha.failed or (ha.shell is not None and ha.shell.failed):
            _abort()
        return
    store, epoch = _open_registry(options.work_dir)
    shell = lead(store, epoch)
    listen(reactor, options.http_port, site, interface, options.tls_cert, options.tls_key)
    _log_serving(options)
    reactor.addSystemEventTrigger("before", "shutdown", shell.stop)
    reactor.run()
    if store is not None:
        store.close()
    if shell.failed:
        raise SystemExit(1)


def _abort() -> None:
    """Exits 1 now, as a Mesos master aborts. Not ``SystemExit``: kazoo's exit handler joins
    its callback threads, and one waiting on a ZooKeeper that cannot be reached — why this
    master gave up — waits for ever (measured: a master cut off from ZooKeeper never exited)."""
    logging.shutdown()
    os._exit(1)


def _log_serving(options: MasterOptions) -> None:
    log.info("event=failure_detection agent_silent_after_s=%g ping_interval_s=%g max_agent_pings_per_second=%s "
             "agent_removal_rate=%s agent_gone_timeout_s=%g recovery_agent_removal_limit=%g%%",
             options.agent_ping_interval * options.max_agent_ping_timeouts, options.agent_ping_interval,
             f"{options.max_agent_pings_per_second:g}" if options.max_agent_pings_per_second else "unlimited",
             options.agent_removal_rate or "unlimited", options.agent_gone_timeout,
             options.recovery_agent_removal_limit)
    log.info("event=master_serving zmq=%s:%d http=%s://%s:%d http_read_auth=%s mutating_calls=%s",
             options.ip, options.port,
             "https" if options.tls_cert else "http", options.ip, options.http_port, options.http_read_auth,
             "token" if options.http_token_file else "refused (no --http-token-file)")


def _contend(reactor: Any, options: MasterOptions, master_id: str, advertised: str, http_url: str,
             curve: CurveServer | None, lead: Any) -> HaMaster:
    """HA mode: connect to the ensemble and become a contender (master/leadership/ha.py)."""
    from tepui.master.leadership.ha import HaMaster, master_info
    from tepui.sdk.router import RouterEndpoint
    from tepui.sdk.zookeeper import ZkUnavailable, connect, parse_zk_url

    assert options.zk is not None
    try:
        url = parse_zk_url(options.zk)
        client = connect(url, options.zk_session_timeout)
    except (ValueError, ZkUnavailable) as exc:
        raise SystemExit(f"--zk: {exc}") from None

    def endpoint(on_message: Any, on_unreachable: Any) -> RouterEndpoint:
        return RouterEndpoint(reactor, f"tcp://{options.ip}:{options.port}", on_message, on_unreachable, curve=curve,
                              pass_identity=True, heartbeat_seconds=options.zmq_heartbeat_interval)

    info = master_info(master_id, f"{advertised}:{options.port}", http_url,
                       curve.public if curve is not None else None)
    return HaMaster(reactor, url, client, info, endpoint, lead, options.zk_session_timeout)


def _refuse_ports_in_use(interface: str, *ports: int) -> None:
    """Claiming the epoch supersedes whichever master serves the registry, so a second master
    started by mistake on the same work dir and ports must fail *before* it claims, not after
    (when its bind fails, having already made the serving master exit). A listener on the port
    is what this catches; a port in TIME_WAIT is fine (SO_REUSEADDR, as ZeroMQ and Twisted bind)."""
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((interface, port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:  # anything else: the real bind says what is wrong
                    raise SystemExit(f"cannot listen on port {port}: it is in use. Is another master running? "
                                     "Stop it, or choose another port") from None


def _open_registry(work_dir: str | None) -> tuple[Store | None, int]:
    """The registry (``registry.db`` in the work dir; in memory without one) and this master's
    epoch, claimed and persisted before it serves anyone (master/durability/epoch.py). A registry that
    cannot be opened, or an epoch that cannot be written, stops the master here."""
    from tepui.master.durability.epoch import claim_epoch, clock_epoch
    from tepui.sdk.store import SQLiteStore, StoreError

    if not work_dir:
        log.warning("event=registry_in_memory hint=\"give --work-dir to keep weights, quotas, reservations, "
                    "agents and frameworks across master restarts\"")
        epoch = clock_epoch()
        log.info("event=master_epoch epoch=%d source=clock", epoch)
        return None, epoch
    path = os.path.join(work_dir, "registry.db")
    try:
        store = SQLiteStore(path)
    except StoreError as exc:
        raise SystemExit(f"cannot open the registry in {work_dir}: {exc}") from None
    log.info("event=registry path=%s", path)
    try:
        epoch = claim_epoch(store, clock_epoch())
    except StoreError as exc:
        store.close()
        raise SystemExit(f"cannot claim a master epoch in the registry {path}: {exc}") from None
    log.info("event=master_epoch epoch=%d source=registry", epoch)
    return store, epoch


def _initial_acls(path: str | None) -> Acls:
    """No --acls: the built-in permissive ACLs (root still denied), with a warning; a bad file
    stops the master before it serves anyone (better than running with rules nobody wrote)."""
    if path is None:
        log.warning("event=acls_builtin hint=\"every principal may register in every role, reserve and tear "
                    "down; tasks never run as root. Give --acls FILE to restrict (docs/security.md)\"")
        return PERMISSIVE
    try:
        acls = load_acls(path)
    except AclError as exc:
        raise SystemExit(f"{exc}. Fix the file and start the master again.") from None
    log.info("event=acls_loaded path=%s permissive=%s", path, acls.permissive)
    return acls


def _serve_admission(reactor: Any, shell: Any, acls_path: str | None, limit: RateLimit | None) -> None:
    """Per-principal /metrics, and the ACL file read again on SIGHUP (a bad file keeps the old
    rules and says why)."""
    from tepui.master.admission.gatekeeper import AdmissionCollector, ReplaceAcls

    shell.registry.register(AdmissionCollector(shell.core))
    log.info("event=framework_rate_limit limit=%s", limit or "unlimited")
    if acls_path is None:
        return

    def reload() -> None:
        try:
            acls = load_acls(acls_path)
        except AclError as exc:
            log.error("event=acls_reload_failed error=%r action=kept_previous_acls", str(exc))
            return
        shell.operator_call(ReplaceAcls(acls))

    signal.signal(signal.SIGHUP, lambda _signum, _frame: reactor.callFromThread(reload))


def master_curve(keys_dir: str | None, insecure: bool) -> CurveServer | None:
    """Secure by default (DESIGN §7): CURVE keys from ``--keys DIR``, or a refusal to start
    that says how to get them; ``--insecure`` only with a warning at start."""
    from tepui.sdk.curve import CurveServer, KeyGate
    from tepui.sdk.keys import KeyStoreError, load_server_keys

    if keys_dir is None:
        if not insecure:
            raise SystemExit("the master needs CURVE keys: create a key store with `tepui certs init DIR` and start "
                             "with --keys DIR (or use `tepui up`, which does both); --insecure runs without "
                             "encryption or authentication, for tests only")
        log.warning("event=insecure_mode hint=\"--insecure: ZeroMQ traffic is plain text and any peer may "
                    "connect and claim any identity; use --keys DIR outside tests\"")
        return None
    if insecure:
        raise SystemExit("give either --keys DIR or --insecure, not both")
    try:
        keys = load_server_keys(keys_dir)
        gate = KeyGate(keys.allow_list_path)
    except KeyStoreError as exc:
        raise SystemExit(str(exc)) from None
    active = sum(1 for entry in gate.allow.entries if not entry.revoked)
    log.info("event=curve_enabled public_key=%s allow_list=%s active_keys=%d", keys.public.decode(),
             keys.allow_list_path, active)
    return CurveServer(keys.public, keys.secret, gate)


def _watch_allow_list(reactor: Any, shell: Any) -> None:
    """The allow list is re-read when its file changes (polled each second) and on SIGHUP; the
    SIGHUP handler chains to any other (the ACL file is re-read on SIGHUP too)."""
    if shell.curve is None:
        return
    shell.watch_allow_list()
    previous = signal.getsignal(signal.SIGHUP)

    def on_hup(signum: int, frame: Any) -> None:
        reactor.callFromThread(shell.reload_allow_list)
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGHUP, on_hup)
