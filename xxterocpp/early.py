"""
The OCPP port, bound first thing when C{python3 -m xxterocpp} starts.

Loading Twisted, Autobahn and the service takes most of a second on a slow
controller. A charger that connects in that time would be refused, and
some chargers wait minutes before they try again, others not at all until
they are power-cycled (docs/quirks.md, Q10). So, before anything else is
imported, L{bind} reads where C{[ocpp]} listens from the configuration
file and listens there: the kernel completes the TCP handshake of a
charger that connects during the start-up, and its WebSocket handshake
waits in the socket until the service reads it.

L{xxterocpp.tap} then takes the socket over (L{take}) when the validated
configuration says the same address. Whatever goes wrong here (a file that
cannot be read, a name instead of an address, a port in use) binds
nothing, and the service binds the port itself later and reports what is
wrong as it always does. This module imports only the standard library.
"""

import socket
import tomllib

#: The configuration file of the command line, when it gives none.
DEFAULT_CONFIG = "/etc/xxterocpp/xxterocpp.toml"

#: Where C{[ocpp]} listens when the configuration file does not say
#: (L{xxterocpp.config.OcppConfig}).
DEFAULT_INTERFACE = "0.0.0.0"
DEFAULT_PORT = 8016

#: The listen backlog of the OCPP port. Twisted's default of 50 drops the
#: SYNs of a reconnect storm (every charger at once after a controller
#: reboot), and each dropped one costs its charger a 1 s / 3 s retransmit.
LISTEN_BACKLOG = 1024

#: The socket L{bind} listens on, with its interface and port as the
#: configuration gives them, until L{take} takes it: (interface, port,
#: socket), or None.
_bound = None


def config_path(argv):
    """
    @param argv: the command line after the program name.
    @return: the configuration file it names (C{--config FILE},
        C{--config=FILE}, C{-c FILE}, C{-cFILE}), L{DEFAULT_CONFIG} when it
        names none, or None when it has anything else (C{--help}, an unknown
        option): the service is not started then, or only after the
        command line is read the usual way.
    """
    path = DEFAULT_CONFIG
    arguments = iter(argv)
    for argument in arguments:
        if argument in ("--config", "-c"):
            path = next(arguments, None)
            if path is None:
                return None
        elif argument.startswith("--config="):
            path = argument[len("--config="):]
        elif argument.startswith("-c") and not argument.startswith("--"):
            path = argument[2:]
        else:
            return None
    return path


def _family(interface):
    """
    @return: the address family of C{interface} when it is an IPv4 or IPv6
        address, else None (a name such as C{localhost} is resolved by the
        service itself).
    """
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, interface)
        except (OSError, ValueError):
            continue
        return family
    return None


def listen_address(path):
    """
    @return: C{(interface, port)} where the configuration file at C{path}
        has the OCPP server listen, or None when the file cannot be read
        or does not say it plainly.
    """
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except (OSError, ValueError):
        # Unreadable, not UTF-8, not TOML: the service says so later.
        return None
    ocpp = data.get("ocpp", {})
    if not isinstance(ocpp, dict):
        return None
    interface = ocpp.get("interface", DEFAULT_INTERFACE)
    port = ocpp.get("port", DEFAULT_PORT)
    if not isinstance(interface, str) or type(port) is not int or not 0 <= port <= 65535:
        return None
    return interface, port


def bind(argv):
    """
    Listen where the configuration file of the command line C{argv} has
    the OCPP server listen, if that can be done; else do nothing.

    @return: whether a socket now listens.
    """
    global _bound
    path = config_path(argv)
    address = None if path is None else listen_address(path)
    family = None if address is None else _family(address[0])
    if family is None:
        return False
    try:
        # Refused without IPv6 (ipv6.disable=1, a unit's address families)
        # or without descriptors left.
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError:
        return False
    try:
        # As Twisted's own listening ports do.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(LISTEN_BACKLOG)
        # What the reactor's adoptStreamPort asks of it.
        sock.setblocking(False)
    except OSError:
        sock.close()
        return False
    _bound = (*address, sock)
    return True


def take(interface, port):
    """
    Take the socket L{bind} listens on, if it listens on C{interface} and
    C{port} as the configuration gives them; a socket listening elsewhere
    is closed.

    @return: the listening socket, which the caller closes once it has
        handed its descriptor on, or None.
    """
    global _bound
    bound, _bound = _bound, None
    if bound is None:
        return None
    if bound[:2] == (interface, port):
        return bound[2]
    bound[2].close()
    return None


#: Whether a SIGHUP came while L{hold_sighup} held it.
_sighup_held = False


def _hold(signum, frame):
    global _sighup_held
    _sighup_held = True


def hold_sighup():
    """
    From now until the service installs its own handler, a SIGHUP ("Load
    configuration", C{systemctl reload}) is kept for it instead of ending
    the process, which is what SIGHUP does by default. The unit's
    C{systemctl reload} waits for the start (L{xxterocpp.__main__.notify_ready}),
    but a SIGHUP sent another way (C{kill}, another supervisor) may come
    while the service still loads. Before this, the interpreter's start and
    the first lines of L{xxterocpp.__main__} ignore it (nothing is read yet).
    """
    import signal

    try:
        signal.signal(signal.SIGHUP, _hold)
    except ValueError:
        # Not the main thread: no signals.
        pass


def sighup_held():
    """
    @return: whether a SIGHUP was held since L{hold_sighup}, once: the
        second call says False.
    """
    global _sighup_held
    held, _sighup_held = _sighup_held, False
    return held
