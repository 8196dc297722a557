# -*- test-case-name: tests.test_tap,tests.test_footprint -*-
"""
The composition root: C{twistd -n xxterocpp --config FILE}, or
C{python3 -m xxterocpp --config FILE} (L{xxterocpp.__main__}).

The only module that reads the configuration file and touches the global
reactor; every part below receives what it needs.
"""

import os
import signal
import sys
import time

from twisted.application import service
from twisted.internet import defer, endpoints, protocol, task
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.logger import Logger
from twisted.python import usage
from zope.interface import implementer

from xxterocpp import early
from xxterocpp.clock import use_monotonic
from xxterocpp.config import ConfigError, load_config
from xxterocpp.early import DEFAULT_CONFIG, LISTEN_BACKLOG


class Options(usage.Options):
    """
    The command line of the C{xxterocpp} twistd plugin.
    """

    optParameters = [
        ["config", "c", DEFAULT_CONFIG, "Path to the configuration file."],
    ]

    def postOptions(self):
        try:
            self["settings"] = load_config(self["config"])
        except ConfigError as e:
            # One line naming file, key and problem, not twistd's usage text.
            print(f"xxterocpp: {e}", file=sys.stderr)
            raise SystemExit(1)


def database_path(configured, log=None):
    """
    Where the state database goes: the configured path when its directory
    is (or can be made) writable, else a per-user state directory, so that
    C{make run} works as any user. A database of ours (one this user can
    read) at the configured path is never left for another: on a file
    system that went read-only the service must not start afresh with
    transactionIds from 1 and its open sessions forgotten; the store then
    says it cannot open the file.
    """
    if os.path.isfile(configured) and os.access(configured, os.R_OK):
        return configured
    directory = os.path.dirname(os.path.abspath(configured))
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError:
        pass
    if os.access(directory, os.W_OK):
        return configured
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    fallback = os.path.join(base, "xxterocpp", os.path.basename(configured))
    os.makedirs(os.path.dirname(fallback), exist_ok=True)
    if log is not None:
        log.warn("{configured} is not writable; keeping state in {fallback}",
                 configured=configured, fallback=fallback)
    return fallback


def open_chargers(config, central):
    """
    @param central: the L{CentralSystem} (its rotated keys count).
    @return: the ids of the chargers anyone on the network can connect as:
        no password, on a reachable OCPP interface without client
        certificates (a line each is logged at start and reload).
    """
    ocpp = config.ocpp
    if ocpp.is_loopback() or (ocpp.secure and ocpp.client_ca):
        return []
    return [charger_id for charger_id in central.chargers
            if not central.credentials.password_for(charger_id)]


class ServerService(service.Service):
    """
    Listen on an endpoint while running, logging "C{what} listening on HOST
    port PORT" once bound; a port that cannot be bound stops the start-up
    (twistd exits non-zero and systemd restarts it).

    Not Twisted's C{StreamServerEndpointService}: its module also holds
    C{ClientService} and loads the state machine library behind it, 0.4 MiB
    that nothing uses while KNX is not configured.
    """

    def __init__(self, endpoint, factory, what):
        self.endpoint = endpoint
        self.factory = factory
        self.what = what
        #: The Deferred of listen() while running, else None.
        self._listened = None

    def privilegedStartService(self):
        # twistd (and xxterocpp.__main__) binds the ports here, before
        # startService.
        super().privilegedStartService()
        self._listen()

    def startService(self):
        super().startService()
        if self._listened is None:
            self._listen()

    def _listen(self):
        failed = []
        self._listened = self.endpoint.listen(self.factory)
        self._listened.addCallbacks(self._listening, failed.append)
        if failed:
            # Raised from (privileged)startService, as the services of
            # twisted.application.strports do, instead of only logged.
            self._listened = None
            failed[0].raiseException()

    def _listening(self, port):
        address = port.getHost()
        Logger().info("{what} listening on {host} port {port}", what=self.what,
                      host=address.host, port=address.port)
        return port

    def when_listening(self):
        """
        @return: a Deferred firing with the listening port (an
            L{IListeningPort}) once the started service is bound.
        """
        d = defer.Deferred()

        def listening(port):
            d.callback(port)
            return port

        self._listened.addCallback(listening)
        return d

    def stopService(self):
        super().stopService()
        listened, self._listened = self._listened, None
        if listened is None:
            return None
        return listened.addCallback(lambda port: port.stopListening())


def server_endpoint(reactor, interface, port, tls=None, bound=None):
    """
    A TCP (or TLS) server endpoint on C{interface}, IPv4 or IPv6.

    @param bound: a socket listening there already (L{early.take}), which
        the endpoint's first listen takes over, or None.
    """
    if tls is not None:
        endpoint = endpoints.SSL4ServerEndpoint(reactor, port, tls, backlog=LISTEN_BACKLOG,
                                                interface=interface)
    else:
        endpoint = endpoints.TCP4ServerEndpoint(reactor, port, backlog=LISTEN_BACKLOG,
                                                interface=interface)
    if bound is not None:
        return AdoptingEndpoint(reactor, bound, tls, endpoint)
    return endpoint


@implementer(IStreamServerEndpoint)
class AdoptingEndpoint:
    """
    A server endpoint whose first listen is on a socket bound and listening
    already (L{xxterocpp.early}), with the connections it holds; the ones
    after (a service stopped and started again) bind anew through
    C{then}.
    """

    def __init__(self, reactor, sock, tls, then):
        """
        @param sock: the listening socket; closed once taken over.
        @param tls: the server TLS context factory, or None for plain TCP.
        @param then: the endpoint of the listens after the first.
        """
        self.reactor = reactor
        self.sock = sock
        self.tls = tls
        self.then = then

    def listen(self, factory):
        sock, self.sock = self.sock, None
        if sock is None:
            return self.then.listen(factory)
        if self.tls is not None:
            # What the reactor's listenSSL does with a TCP port.
            from twisted.protocols.tls import TLSMemoryBIOFactory

            factory = TLSMemoryBIOFactory(self.tls, False, factory)
        try:
            # The port listens on a duplicate of the descriptor.
            port = self.reactor.adoptStreamPort(sock.fileno(), sock.family, factory)
        except Exception:
            return defer.fail()
        finally:
            sock.close()
        if self.tls is not None:
            port._type = "TLS"
        return defer.succeed(port)


def charger_signer(config, log):
    """
    @return: the L{xxterocpp.signing.ChargerSigner} of C{[ocpp]
        signing_certificate} and C{signing_key}, or None (one log line
        says why) when they cannot be used: signing is then disabled.
    """
    ocpp = config.ocpp
    if not os.path.exists(ocpp.signing_certificate):
        # The usual case, no charger-signing CA made: the signing code
        # (cryptography's x509 builders, the CA tool) is not even loaded.
        log.info("chargers' certificate signing requests are refused: ocpp.signing_certificate:"
                 " {path!r}: No such file or directory (make the charger-signing CA with"
                 " 'xxterocpp-certs signing-ca')", path=ocpp.signing_certificate)
        return None
    from xxterocpp.signing import ChargerSigner, SigningConfigurationError

    try:
        return ChargerSigner(ocpp.signing_certificate, ocpp.signing_key,
                             ocpp.organization or None)
    except SigningConfigurationError as e:
        log.info("chargers' certificate signing requests are refused: {e} (make the"
                 " charger-signing CA with 'xxterocpp-certs signing-ca')", e=str(e))
        return None


class OnFirstConnection(protocol.Factory):
    """
    A server factory that builds the real one when the first connection
    arrives, so that what serves a port nobody uses at rest (twisted.web and
    the status page behind the web interface) is not loaded until then.

    @ivar factory: the real factory once built, else None.
    """

    noisy = False

    def __init__(self, build):
        """
        @param build: makes the real factory, called once.
        """
        self._build = build
        self.factory = None

    def built(self):
        """
        @return: the real factory, built now if it was not yet.
        """
        if self.factory is None:
            self.factory = self._build()
            self.factory.doStart()
        return self.factory

    def buildProtocol(self, addr):
        return self.built().buildProtocol(addr)

    def stopFactory(self):
        if self.factory is not None:
            self.factory.doStop()
            self.factory = None


class XxterocppService(service.MultiService):
    """
    The whole service: state store, central system, OCPP server.

    @ivar central: the L{CentralSystem}, once started.
    @ivar ocpp: the L{ServerService} of the OCPP server.
    @ivar controller: the L{Controller} every adapter steers chargers with.
    @ivar smart: the L{SmartManager} of smart sessions and the site limit.
    @ivar upstream: the L{Upstream} forwarding chargers to their back offices,
        or None while no charger has one (L{_apply_upstream}).
    @ivar knx_link: the knxd link, None without one ("not configured" on
        the status page).
    @ivar knx_bridge: the L{KnxBridge} over C{knx_link}, or None.
    @ivar web: the L{ServerService} of the status page and HTTP API.

    The domain's events reach its observers in the order they are
    subscribed here: the controller first (post-boot set-up, limits, local
    lists), then the smart manager (it plans with what the controller
    applied), then the back offices' forwarding (it opens a charger's uplink
    when the charger connects), then the KNX bridge (it shows the outcome of
    all of them on the bus). The web interface reads the domain when asked and subscribes to
    nothing.

    Time: C{reactor}'s timers are durations (L{makeService} puts the
    global reactor on the monotonic clock); C{wall} is the system clock,
    which the central system checks (L{TrustedTime}) and the parts that
    need the time of day (the Smart Energy Manager, the KNX bridge) get
    from it.
    """

    log = Logger()

    def __init__(self, config, reactor, wall=time.time):
        super().__init__()
        from xxterocpp.control import Controller
        from xxterocpp.ocpp.server import OcppServerFactory
        from xxterocpp.domain.central import CentralSystem
        from xxterocpp.domain.trusted import EARLIEST
        from xxterocpp.store import Store

        self.config = config
        self.reactor = reactor
        self.store = Store(database_path(config.storage.database, self.log), reactor, wall=wall)
        self.central = CentralSystem(config, self.store, reactor, charger_signer(config, self.log),
                                     wall=wall, floor=EARLIEST)
        self.ocpp_factory = OcppServerFactory(self.central, reactor, config.ocpp.ping_interval)
        tls = None
        if config.ocpp.secure:
            from xxterocpp.tls import ServerTLS, TLSConfigurationError

            try:
                tls = ServerTLS(config.ocpp, now=self.central.now,
                                clock_ok=lambda: self.central.time.ok)
            except TLSConfigurationError as e:
                # The one line of a bad configuration, not a traceback.
                raise SystemExit(f"xxterocpp: {config.path}: {e}")
        self.ocpp_tls = tls
        self.ocpp = ServerService(
            server_endpoint(reactor, config.ocpp.interface, config.ocpp.port, tls,
                            early.take(config.ocpp.interface, config.ocpp.port)),
            self.ocpp_factory, "OCPP server (wss)" if tls else "OCPP server (ws)")
        self.ocpp.setServiceParent(self)
        self.controller = Controller(self.central, reactor)
        self.central.subscribe(self.controller.observe)
        from xxterocpp.smart.manager import SmartManager

        self.smart = SmartManager(self.central, self.controller, reactor, config,
                                  wall=self.central.time.seconds, pace=self.central.time.pace)
        self.central.subscribe(self.smart.observe)
        self.smart.setServiceParent(self)
        # The back offices: a second adapter, between the chargers' calls
        # and the domain, made when a charger has one (L{_apply_upstream}).
        self.upstream = None
        self.central.subscribe(self._observe_upstream)
        self._apply_upstream(config)
        self.knx_link = None
        self.knx_bridge = None
        self._apply_knx(config)
        self.web = ServerService(
            server_endpoint(reactor, config.web.interface, config.web.port),
            OnFirstConnection(self._web_site), "web interface")
        self.web.setServiceParent(self)
        self._previous_sighup = None
        #: Whether a reload a SIGHUP asked for waits for the reactor.
        self._reload_asked = False
        # The shutdown trigger that closes the store of a service nobody
        # stops (see _store_at_shutdown), and whether stopService began.
        self._store_trigger = None
        self._stopping = False

    def _web_site(self):
        """
        @return: the server factory of the status page and HTTP API.
        """
        from xxterocpp.web.api import web_site

        return web_site(self.central, self.controller, self.store, lambda: self.knx_link,
                        self.reactor, smart=self.smart, refused=self.security_failures,
                        journal=lambda: self.knx_bridge and self.knx_bridge.journal,
                        upstream=lambda: self.upstream)

    def _apply_upstream(self, config, kept=False):
        """
        Make the back offices' forwarding (L{xxterocpp.upstream.Upstream})
        once a charger has a C{[charger.upstream]}, or the state store
        keeps messages for a back office (C{kept}): without either, its
        modules are not even loaded (0.5 MiB at rest). Once made, it stays
        and follows the configuration.
        """
        if self.upstream is not None:
            self.upstream.reconfigure(config)
            return
        if not kept and not any(config.upstream(c) for c in config.charger_ids()):
            return
        from xxterocpp.upstream import Upstream

        self.upstream = Upstream(self.central, self.controller, self.store, self.reactor)
        self.ocpp_factory.relay = self.upstream.handle
        # Started at once by a running parent: the store is open then.
        self.upstream.setServiceParent(self)

    def _observe_upstream(self, event):
        # Subscribed in the back offices' place among the observers, also
        # before there is any.
        if self.upstream is not None:
            self.upstream.observe(event)

    def _apply_knx(self, config):
        """
        Run the KNX bridge while C{[knx] knxd} is set and a charging point
        links a group object (KNX is optional); a reload re-links
        the objects, a changed knxd endpoint replaces the link.
        """
        if self.knx_bridge is None and not config.knx.knxd:
            # Without knxd the KNX modules are not even loaded.
            return
        from xxterocpp.knx.behaviour import has_group_objects
        from xxterocpp.knx.bridge import KnxBridge
        from xxterocpp.knx.knxd import KnxdLink

        endpoint = config.knx.knxd if has_group_objects(config) else ""
        if self.knx_bridge is not None:
            if self.knx_link.description == endpoint:
                self.knx_bridge.reconfigure(config)
                return
            self.knx_bridge.disownServiceParent()
            self.knx_link.disownServiceParent()
            self.knx_link = self.knx_bridge = None
        if endpoint:
            self.knx_link = KnxdLink(endpoint, self.reactor)
            self.knx_link.setServiceParent(self)
            self.knx_bridge = KnxBridge(
                config, self.central, self.controller, self.knx_link, self.reactor,
                smart=self.smart, wall=self.central.time.seconds)
            self.central.subscribe(self.knx_bridge.observe)
            self.knx_bridge.setServiceParent(self)

    def privilegedStartService(self):
        # twistd binds the ports here, before startService.
        try:
            super().privilegedStartService()
        except CannotListenError as e:
            # One line, not a traceback: another process has the port, or
            # the interface is no address of this machine.
            raise SystemExit(f"xxterocpp: {e}")

    def startService(self):
        from xxterocpp.store import StoreError

        try:
            # Closed by stopService, after the writes of the stop (the time
            # given out): the store's own shutdown trigger would run before
            # twistd's stopService and refuse them.
            self.store.open(close_at_shutdown=False)
        except StoreError as e:
            # One line saying what to do, not a traceback; the process must
            # end (systemd starts it again), not serve chargers without
            # its state.
            raise SystemExit(f"xxterocpp: {e}")
        self._store_trigger = self.reactor.addSystemEventTrigger(
            "before", "shutdown", self._store_at_shutdown)
        try:
            self.central.load()
            if self.upstream is None and self.store.keeps_upstream_messages():
                # Shown and kept for when the charger has a back office again.
                self._apply_upstream(self.config, kept=True)
            self._warn_open_chargers(self.config)
            super().startService()
        except BaseException:
            # Nobody may stop a service that did not start.
            self._forget_store_trigger()
            self.store.close()
            raise
        self._install_sighup()

    def _store_at_shutdown(self):
        """
        The reactor shuts down: close the store, unless stopService does
        (after the writes of the stop). Its own trigger may come after this
        one (twistd adds it after startService), so the answer waits for
        the end of this reactor turn, once every trigger has been called;
        a service embedded without a stopService still gets its store's
        thread ended, or the process would not end.
        """
        self._store_trigger = None

        def close():
            if not self._stopping:
                return self.store.close()

        return task.deferLater(self.reactor, 0, close)

    def _forget_store_trigger(self):
        if self._store_trigger is not None:
            self.reactor.removeSystemEventTrigger(self._store_trigger)
            self._store_trigger = None

    def _warn_open_chargers(self, config):
        for charger_id in open_chargers(config, self.central):
            self.log.warn(
                "{id}: no password, and [ocpp] interface {interface} is reachable from the"
                " network: anyone there can connect as this charger; set its password",
                id=charger_id, interface=config.ocpp.interface)

    def _install_sighup(self):
        try:
            self._previous_sighup = signal.signal(signal.SIGHUP, self._sighup)
        except ValueError:
            # Not the main thread (embedded in a test runner): no signals.
            self._previous_sighup = None
            return
        if early.sighup_held():
            # Sent while the service loaded: the file may have changed
            # since it was read.
            self._sighup(signal.SIGHUP, None)

    def _sighup(self, signum, frame):
        # The signals that come before the reactor gets to the reload are
        # one reload (a storm of them starved the chargers: 6,000 reloads
        # in 3 s); one that comes while it runs makes one more, as the
        # file may have changed after it was read.
        if not self._reload_asked:
            self._reload_asked = True
            self.reactor.callFromThread(self._reload_asked_by_signal)

    def _reload_asked_by_signal(self):
        self._reload_asked = False
        if self._stopping:
            # Asked just before the stop: nothing to apply it to (a reload
            # would start the back office's and knxd's links again).
            self.log.info("the service stops: the configuration is not reloaded")
            return
        self.reload()

    def reload(self):
        """
        Re-read the configuration file ("Load configuration", SIGHUP); a bad
        file is refused and the running configuration stays in force. The
        settings it cannot apply (L{_RESTART_TO_APPLY}) are named in a
        warning.
        """
        try:
            config = load_config(self.config.path)
        except ConfigError as e:
            self.log.error("configuration not reloaded, the running one stays in force: {e}",
                           e=str(e))
            return False
        old, self.config = self.config, config
        self._warn_unapplied(old, config)
        self._reload_per_connection(old, config)
        self.central.reconfigure(config)
        self.central.signing.signer = charger_signer(config, self.log)
        self._warn_open_chargers(config)
        self.smart.reconfigure(config)
        self._apply_upstream(config)
        self._reload_tls(config)
        self._apply_knx(config)
        self.log.info("configuration reloaded from {path}: {n} charger(s)", path=config.path,
                      n=len(config.charger_ids()))
        return True

    #: The settings a reload cannot apply: where the OCPP server and the
    #: web interface listen, and whether with TLS (their ports are bound
    #: once, at the start), and the state database (open for the life of
    #: the process).
    _RESTART_TO_APPLY = (("ocpp", "interface"), ("ocpp", "port"), ("ocpp", "secure"),
                         ("web", "interface"), ("web", "port"), ("storage", "database"))

    def _warn_unapplied(self, old, config):
        """
        One line naming the settings of L{_RESTART_TO_APPLY} that changed
        from C{old} to C{config}, if any.
        """
        changed = [f"[{section}] {key}" for section, key in self._RESTART_TO_APPLY
                   if getattr(getattr(old, section), key) != getattr(getattr(config, section), key)]
        if changed:
            self.log.warn("{settings} changed: restart the service to apply",
                          settings=", ".join(changed))

    #: The C{[ocpp]} settings each connection reads when its charger
    #: connects, and how a value of each is shown: the chargers connecting
    #: after a reload get the new one, the connected ones keep theirs until
    #: they reconnect.
    _PER_CONNECTION = (
        ("ping_interval", lambda value: f"{value} s" if value else "0 (no pings)"),
        ("call_timeout", lambda value: f"{value:g} s"),
    )

    def _reload_per_connection(self, old, config):
        """
        Apply the changed settings of L{_PER_CONNECTION} to the chargers
        connecting from now on (the pings through
        L{OcppServerFactory.set_ping_interval}; the call timeout is read
        from the configuration at each connection), one line for each.
        """
        if old.ocpp.ping_interval != config.ocpp.ping_interval:
            self.ocpp_factory.set_ping_interval(config.ocpp.ping_interval)
        for key, shown in self._PER_CONNECTION:
            before, after = getattr(old.ocpp, key), getattr(config.ocpp, key)
            if before != after:
                self.log.info("[ocpp] {key} changed from {before} to {after}: chargers that"
                              " connect from now on get it, the connected ones keep {before}"
                              " until they reconnect", key=key, before=shown(before),
                              after=shown(after))

    def _reload_tls(self, config):
        """
        Serve the certificate, key and client CA files as they are now (a
        certificate renewed with xxterocpp-certs) to new connections; the
        connected chargers keep theirs.
        """
        if self.ocpp_tls is None:
            return
        from xxterocpp.tls import TLSConfigurationError

        try:
            self.ocpp_tls.reload(config.ocpp)
        except TLSConfigurationError as e:
            self.log.error("TLS files not reloaded, the running certificate stays in force:"
                           " {e}", e=str(e))
        else:
            self.log.info("TLS certificate reloaded from {path}", path=config.ocpp.certificate)

    def security_failures(self):
        """
        @return: for the status page, how many charger connections were
            refused: C{"auth"} for credentials (Basic auth, a client
            certificate of another charger), C{"tls"} for a failed TLS
            handshake (untrusted certificate, old TLS version, plain ws://).
        """
        factory = self.ocpp_factory
        return {"auth": factory.auth_failures, "tls": factory.tls_failures}

    @defer.inlineCallbacks
    def stopService(self):
        self._stopping = True
        self._forget_store_trigger()
        if self._previous_sighup is not None:
            signal.signal(signal.SIGHUP, self._previous_sighup)
            self._previous_sighup = None
        try:
            yield super().stopService()
            self.controller.shutdown()
            self.central.shutdown()
            for charger in self.central.chargers.values():
                if charger.session is not None:
                    charger.session.close()
            # Queued before the store's last commit (not waited for: a full
            # disk must not hold up the stop).
            self.central.unknown_attempts.save()
        finally:
            # Whatever failed above, the store's thread must end, or the
            # process would not.
            yield self.store.close()


def makeService(options, reactor=None):
    """
    Build the service from parsed L{Options}; the global reactor (twistd's)
    is put on the monotonic clock first (L{use_monotonic}), so that a step
    of the system clock fires no burst of timeouts.
    """
    if reactor is None:
        from twisted.internet import reactor

        use_monotonic(reactor)
    return XxterocppService(options["settings"], reactor)
