# -*- test-case-name: tests.test_main -*-
"""
C{python3 -m xxterocpp --config FILE}: the service in the foreground, as
C{twistd --nodaemon --pidfile= xxterocpp --config FILE} runs it, without
twistd around it. twistd's plugin discovery imports every twistd plugin
installed, and its runner the debugger and the rest of its options: 1.3 MiB
of the service's memory at rest, so the systemd unit starts it this way.

It logs to standard output in twistd's format, stops cleanly on SIGTERM or
SIGINT and re-reads its configuration on SIGHUP; a bad configuration file
or a port in use ends it at once with one line and a non-zero status.
"""

import signal

if __name__ == "__main__":
    # Before anything else loads (linecache alone takes 10-20 ms): from here
    # a SIGHUP does not end the process, as it does by default. Until the
    # configuration is read there is nothing to reload, so it is ignored;
    # early.hold_sighup keeps the ones that come after. What comes before
    # this line, the interpreter's own start, the unit covers
    # (debian/xxterocpp.service, ExecStart).
    signal.signal(signal.SIGHUP, signal.SIG_IGN)

import gc  # noqa: E402
import linecache  # noqa: E402
import sys  # noqa: E402

if __name__ == "__main__":
    # No cyclic garbage collection while the service loads: see settle().
    gc.disable()
    # The OCPP port listens before Twisted is even loaded: see early.
    from xxterocpp import early

    early.hold_sighup()
    early.bind(sys.argv[1:])

from twisted.logger import Logger, globalLogBeginner, textFileLogObserver
from twisted.python import usage

from xxterocpp import tap

#: How the file names attrs gives the methods it generates begin.
GENERATED = "<attrs generated"


class _WithoutGeneratedSources(dict):
    """
    C{linecache.cache} that keeps no source of the methods attrs generates:
    attrs puts each one's source there (for debuggers) and nothing else
    reads it; a traceback through one shows no source line.
    """

    def setdefault(self, key, default=None):
        if key.startswith(GENERATED):
            # What attrs checks to know the name is its own.
            return default
        return super().setdefault(key, default)


def forget_generated_sources():
    """
    Keep no source of attrs' generated methods from now on, and drop those
    kept so far: the service's some 300 attrs classes (its messages,
    events, records and configuration) held 0.5 MiB of it at rest.
    """
    linecache.cache = _WithoutGeneratedSources(
        (name, entry) for name, entry in linecache.cache.items()
        if not name.startswith(GENERATED))


#: Seconds from the reactor's start to L{settle}: the chargers that
#: connected while the service loaded are answered first.
SETTLE_AFTER = 1.0


def settle():
    """
    End of the start-up, L{SETTLE_AFTER} seconds after the reactor started:
    one full collection, then every object alive (the modules, classes and
    configuration loaded, and the connections of that first second) set
    aside for good, then collection as usual.

    While the service loads its some 580 modules, the collector would run
    some 140 times and find next to nothing; afterwards each full
    collection would walk those 60,000 objects again (30 ms on the bench
    machine). Nothing is frozen when collection was on already (the
    service run from a test): only C{python3 -m xxterocpp} turns it off.

    The collection takes 50-70 ms; run before the first connection was
    read, it delayed the answer to every charger queued in the backlog
    (L{xxterocpp.early}) by as much. A connection alive when the objects
    are set aside is still freed when it closes: it breaks its own cycles
    (L{xxterocpp.ocpp.server.OcppServerProtocol._let_go}). What Debian's
    Twisted 22.4 leaves in a cycle is kept instead: each C{inlineCallbacks}
    still running then (a charger's set-up after its boot) keeps some 15
    small objects for good once it ends, 70 KB after 100 chargers booted
    at once (README.md, Performance).
    """
    if gc.isenabled():
        return
    gc.collect()
    gc.freeze()
    gc.enable()


def settle_later(reactor):
    """
    L{settle} in L{SETTLE_AFTER} seconds on C{reactor}.

    @return: the L{IDelayedCall}.
    """
    return reactor.callLater(SETTLE_AFTER, settle)


def notify_ready(environ=None):
    """
    Tell systemd the service has started (C{sd_notify(3)}'s C{READY=1}):
    its ports listen and its state is open. Under the unit's C{Type=notify}
    C{systemctl start} returns only then, and a C{systemctl reload} asked
    before waits for it instead of sending a SIGHUP into the start.

    @param environ: the environment (default C{os.environ}), whose
        C{NOTIFY_SOCKET} names systemd's datagram socket, a path or, after
        C{@}, an abstract name; without it (not run by systemd), nothing.
    @return: whether it was told.
    """
    import os
    import socket

    address = (os.environ if environ is None else environ).get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.sendto(b"READY=1", address)
    except OSError as e:
        Logger().warn("systemd was not told that the service started ({e}): under a"
                      " Type=notify unit it stops the service at the start timeout", e=e)
        return False
    return True


def main(argv=None, reactor=None):
    """
    Run the service until the reactor stops.

    @param argv: the command line after the program name (default
        C{sys.argv[1:]}): the options of L{tap.Options}.
    """
    forget_generated_sources()
    options = tap.Options()
    try:
        options.parseOptions(sys.argv[1:] if argv is None else argv)
    except usage.UsageError as e:
        raise SystemExit(f"xxterocpp: {e} (python3 -m xxterocpp --help)")
    if reactor is None:
        from twisted.internet import reactor
    service = tap.makeService(options, reactor)
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
    # What twistd does with the service of a plugin: bind the ports now,
    # start the rest once the reactor runs, stop it before the reactor does.
    service.privilegedStartService()
    failed = []

    def start():
        try:
            service.startService()
        except SystemExit as e:
            # The state store cannot be opened: a running reactor would
            # swallow the exit and serve chargers without their state.
            failed.append(e)
            reactor.stop()
        except Exception:
            Logger().failure("xxterocpp: the service could not start")
            failed.append(SystemExit(1))
            reactor.stop()
        else:
            notify_ready()

    reactor.callWhenRunning(start)
    reactor.callWhenRunning(settle_later, reactor)
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run()
    if failed:
        raise failed[0]


if __name__ == "__main__":
    try:
        main()
    finally:
        # Python's finalisation, some 0.1-0.3 s after the reactor stopped,
        # gives SIGHUP back its default action, which ends the process with
        # that signal instead of status 0 (systemctl reload during a stop);
        # it leaves an ignored signal ignored.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
