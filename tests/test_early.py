"""
The OCPP port bound before anything is loaded (L{xxterocpp.early}): read from
the configuration file, taken over by the service, and a charger connecting
during the start-up is served instead of refused.
"""

import errno
import os
import signal
import socket
import sys

from twisted.internet import defer, protocol, reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tests.service import (
    BASE_CONFIG, MAIN, ROOT, ServiceProcess, kill_on_cleanup, start_service, unit_wrapper,
    write_config)
from tests.sim import connect_charger
from tests.test_tls import secure_config, trusting
from xxterocpp import early
from xxterocpp.tap import AdoptingEndpoint, server_endpoint


def forget_bound(testcase):
    """
    Close at cleanup whatever socket L{early.bind} left untaken.
    """
    testcase.addCleanup(early.take, None, None)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def refused(port):
    """
    @return: whether a connection to C{port} on 127.0.0.1 is refused.
    """
    s = socket.socket()
    try:
        s.connect(("127.0.0.1", port))
    except ConnectionRefusedError:
        return True
    finally:
        s.close()
    return False


class HoldSighupTests(TestCase):
    """
    L{early.hold_sighup} keeps a SIGHUP for the service, which
    L{early.sighup_held} tells once.
    """

    def setUp(self):
        self.addCleanup(signal.signal, signal.SIGHUP, signal.getsignal(signal.SIGHUP))
        early.sighup_held()

    def test_held_and_told_once(self):
        early.hold_sighup()
        self.assertFalse(early.sighup_held())
        os.kill(os.getpid(), signal.SIGHUP)
        self.assertTrue(early.sighup_held())
        self.assertFalse(early.sighup_held())


class ConfigPathTests(TestCase):
    """
    L{early.config_path} reads the command line as L{xxterocpp.tap.Options}
    does, or gives up.
    """

    def test_forms(self):
        for argv, expected in [
            ([], early.DEFAULT_CONFIG),
            (["--config", "a.toml"], "a.toml"),
            (["--config=a.toml"], "a.toml"),
            (["-c", "a.toml"], "a.toml"),
            (["-ca.toml"], "a.toml"),
            (["-c", "a.toml", "--config", "b.toml"], "b.toml"),
        ]:
            self.assertEqual(early.config_path(argv), expected, argv)

    def test_anything_else_gives_up(self):
        for argv in (["--help"], ["--config"], ["-c"], ["a.toml"], ["--conifg", "a.toml"],
                     ["--config", "a.toml", "--verbose"]):
            self.assertIsNone(early.config_path(argv), argv)

    def test_same_default_as_the_service(self):
        from xxterocpp import tap

        self.assertEqual(tap.Options()["config"], early.DEFAULT_CONFIG)


class ListenAddressTests(TestCase):
    """
    L{early.listen_address} reads C{[ocpp] interface} and C{port}, with the
    configuration's defaults, and gives up on anything unclear.
    """

    def write(self, text):
        path = self.mktemp()
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def test_given(self):
        path = self.write('[ocpp]\ninterface = "127.0.0.2"\nport = 9000\n')
        self.assertEqual(early.listen_address(path), ("127.0.0.2", 9000))

    def test_defaults_are_the_configuration_s(self):
        from xxterocpp.config import parse_config

        config = parse_config("", "empty.toml")
        self.assertEqual(early.listen_address(self.write("")),
                         (config.ocpp.interface, config.ocpp.port))

    def test_unclear_gives_up(self):
        for text in ('[ocpp]\nport = "8016"\n', "[ocpp]\nport = true\n", "[ocpp]\nport = 70000\n",
                     "[ocpp]\nport = -1\n", "[ocpp]\ninterface = 1\n", "ocpp = 5\n",
                     "[ocpp\n", "port = = 1\n"):
            self.assertIsNone(early.listen_address(self.write(text)), text)

    def test_unreadable_or_not_utf8_gives_up(self):
        self.assertIsNone(early.listen_address(self.mktemp()))
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b'[ocpp]\ninterface = "\xff"\n')
        self.assertIsNone(early.listen_address(path))


class BindTests(TestCase):
    """
    L{early.bind} and L{early.take} on real sockets.
    """

    def bind(self, text):
        forget_bound(self)
        path = write_config(self, text)
        return early.bind(["--config", path])

    def test_bound_listening_and_taken_once(self):
        port = free_port()
        self.assertTrue(self.bind(f'[ocpp]\ninterface = "127.0.0.1"\nport = {port}\n'))
        self.assertFalse(refused(port))
        sock = early.take("127.0.0.1", port)
        self.addCleanup(sock.close)
        self.assertEqual(sock.getsockname(), ("127.0.0.1", port))
        self.assertFalse(sock.getblocking())
        self.assertIsNone(early.take("127.0.0.1", port))

    def test_taken_for_another_address_closes_it(self):
        port = free_port()
        self.assertTrue(self.bind(f'[ocpp]\ninterface = "127.0.0.1"\nport = {port}\n'))
        self.assertIsNone(early.take("127.0.0.1", port + 1))
        self.assertTrue(refused(port))

    def test_port_in_use_binds_nothing(self):
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        self.assertFalse(self.bind(f'[ocpp]\ninterface = "127.0.0.1"\nport = {port}\n'))
        self.assertIsNone(early.take("127.0.0.1", port))

    def test_a_name_is_left_to_the_service(self):
        self.assertFalse(self.bind('[ocpp]\ninterface = "localhost"\nport = 0\n'))

    def test_address_not_on_this_machine_binds_nothing(self):
        # 192.0.2.0/24 is TEST-NET-1: no interface has it.
        self.assertFalse(self.bind('[ocpp]\ninterface = "192.0.2.1"\nport = 0\n'))

    def test_socket_it_cannot_make_binds_nothing(self):
        """
        socket() refused (IPv6 disabled, no descriptors left): nothing is
        bound and the service reports it with its one line; it raised from
        python3 -m xxterocpp before (found by the attack on 38defec).
        """

        def refuse(*args, **kwargs):
            raise OSError(errno.EAFNOSUPPORT, "Address family not supported by protocol")

        self.patch(early.socket, "socket", refuse)
        self.assertFalse(self.bind('[ocpp]\ninterface = "::1"\nport = 0\n'))
        self.assertIsNone(early._bound)

    def test_ipv6(self):
        try:
            probe = socket.socket(socket.AF_INET6)
            probe.bind(("::1", 0))
            probe.close()
        except OSError as e:
            raise self.skipTest(f"no IPv6 loopback: {e}")
        self.assertTrue(self.bind('[ocpp]\ninterface = "::1"\nport = 0\n'))
        sock = early.take("::1", 0)
        self.addCleanup(sock.close)
        self.assertEqual(sock.family, socket.AF_INET6)

    def test_loads_nothing_but_the_standard_library(self):
        """
        Bound in a fresh interpreter with neither Twisted nor the rest of
        the service loaded.
        """
        port = free_port()
        path = write_config(self, f'[ocpp]\ninterface = "127.0.0.1"\nport = {port}\n')
        code = ("import sys\n"
                "from xxterocpp import early\n"
                f"print(early.bind(['--config', {path!r}]))\n"
                "print(sorted(m for m in sys.modules"
                " if m.split('.')[0] in ('twisted', 'autobahn', 'attr', 'OpenSSL')"
                " or m.startswith('xxterocpp')))\n")
        from twisted.internet import utils

        d = utils.getProcessOutputAndValue(sys.executable, ["-c", code],
                                           env=dict(os.environ, PYTHONPATH=ROOT), path=ROOT,
                                           reactor=reactor)

        def check(result):
            out, err, code = result
            self.assertEqual((code, out.decode().splitlines()),
                             (0, ["True", "['xxterocpp', 'xxterocpp.early']"]), err)

        return d.addCallback(check)


@defer.inlineCallbacks
def first_bytes(sock):
    """
    @return: a Deferred firing with the first bytes C{sock} receives, read
        without blocking the reactor that serves the other end.
    """
    sock.setblocking(False)
    for _ in range(500):
        try:
            return sock.recv(100)
        except BlockingIOError:
            yield deferLater(reactor, 0.02, lambda: None)
    raise AssertionError("nothing came back")


class Echo(protocol.Protocol):
    def dataReceived(self, data):
        self.transport.write(data)


class EchoClient(protocol.Protocol):
    def connectionMade(self):
        self.received = defer.Deferred()
        self.transport.write(b"ping")

    def dataReceived(self, data):
        self.received.callback(data)
        self.transport.loseConnection()


class AdoptingEndpointTests(TestCase):
    """
    L{AdoptingEndpoint} on the real reactor.
    """

    def listening_socket(self):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        sock.setblocking(False)
        return sock

    @defer.inlineCallbacks
    def echo(self, port):
        client = yield protocol.ClientCreator(reactor, EchoClient).connectTCP("127.0.0.1", port)
        return (yield client.received)

    @defer.inlineCallbacks
    def test_serves_connections_made_before_it_listened(self):
        """
        Connections queued in the backlog before the reactor took the
        socket over are served, and so are later ones: the port does not
        block the reactor.
        """
        sock = self.listening_socket()
        number = sock.getsockname()[1]
        early_clients = []
        # More than the reactor accepts in one go (tcp.Port.numberAccepts
        # starts at 100 and adapts), fewer than the backlog of 128 here.
        for _ in range(8):
            c = socket.create_connection(("127.0.0.1", number))
            self.addCleanup(c.close)
            c.sendall(b"early")
            early_clients.append(c)
        endpoint = server_endpoint(reactor, "127.0.0.1", number, None, sock)
        self.assertIsInstance(endpoint, AdoptingEndpoint)
        factory = protocol.Factory.forProtocol(Echo)
        port = yield endpoint.listen(factory)
        self.addCleanup(port.stopListening)
        self.assertEqual(sock.fileno(), -1, "the endpoint closes its copy")
        self.assertEqual(port.getHost().port, number)
        self.assertEqual((yield self.echo(number)), b"ping")
        for c in early_clients:
            data = yield first_bytes(c)
            self.assertEqual(data, b"early")

    @defer.inlineCallbacks
    def test_listens_anew_after_stopping(self):
        """
        The second listen (the service stopped and started again) binds
        through the ordinary endpoint.
        """
        sock = self.listening_socket()
        number = sock.getsockname()[1]
        endpoint = server_endpoint(reactor, "127.0.0.1", number, None, sock)
        factory = protocol.Factory.forProtocol(Echo)
        port = yield endpoint.listen(factory)
        yield port.stopListening()
        port = yield endpoint.listen(factory)
        self.addCleanup(port.stopListening)
        self.assertEqual(port.getHost().port, number)
        self.assertEqual((yield self.echo(number)), b"ping")

    def test_a_socket_it_cannot_take_fails_the_listen(self):
        sock = self.listening_socket()
        number = sock.getsockname()[1]
        endpoint = server_endpoint(reactor, "127.0.0.1", number, None, sock)
        sock.close()
        d = endpoint.listen(protocol.Factory.forProtocol(Echo))
        return self.assertFailure(d, OSError, ValueError)


class ServiceTests(TestCase):
    """
    The whole service, in-process, on a socket L{early.bind} bound.
    """

    @defer.inlineCallbacks
    def test_plain_charger_connected_before_the_start_is_served(self):
        forget_bound(self)
        path = write_config(self)
        self.assertTrue(early.bind(["--config", path]))
        bound = early._bound[2].getsockname()[1]
        # A charger's TCP connection is accepted by the kernel already, and
        # its opening handshake waits in the socket.
        waiting = socket.create_connection(("127.0.0.1", bound))
        self.addCleanup(waiting.close)
        waiting.sendall(b"GET /TWIN HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ocpp1.6\r\n\r\n")
        service = yield start_service(self, path)
        self.assertIsNone(service.ocpp.endpoint.sock, "the socket was not taken over")
        self.assertEqual(service.url, f"ws://127.0.0.1:{bound}/")
        answer = yield first_bytes(waiting)
        self.assertTrue(answer.startswith(b"HTTP/1.1 101 "), answer)
        waiting.close()
        for _ in range(250):
            if service.central.chargers["TWIN"].session is None:
                break
            yield deferLater(reactor, 0.02, lambda: None)
        self.assertIsNone(service.central.chargers["TWIN"].session)
        cp = yield connect_charger(service.url, "CP1")
        self.addCleanup(cp.close)
        self.assertEqual((yield cp.boot())["status"], "Accepted")

    @defer.inlineCallbacks
    def test_tls_on_the_taken_socket(self):
        """
        With C{secure = true} the taken socket speaks TLS: a wss charger
        is served, and a plain ws one is refused and counted.
        """
        forget_bound(self)
        path, _ = secure_config(self)
        self.assertTrue(early.bind(["--config", path]))
        bound = early._bound[2].getsockname()[1]
        service = yield start_service(self, path)
        self.assertIsNone(service.ocpp.endpoint.sock, "the socket was not taken over")
        url = f"wss://127.0.0.1:{bound}/"
        cp = yield connect_charger(url, "CP1", tls=trusting())
        self.addCleanup(cp.close)
        self.assertEqual((yield cp.boot())["status"], "Accepted")
        try:
            plain = yield connect_charger(f"ws://127.0.0.1:{bound}/", "CP1", timeout=5)
        except Exception:
            pass
        else:
            self.addCleanup(plain.close)
            self.fail("a plain ws:// charger was let in on the TLS port")
        for _ in range(100):
            if service.security_failures()["tls"]:
                break
            yield deferLater(reactor, 0.02, lambda: None)
        self.assertEqual(service.security_failures()["tls"], 1)


#: A site module for the service's process that holds it up when it first
#: imports the module C{XXTEROCPP_TEST_GATE_AT} names, after saying so,
#: until the test writes a byte into the FIFO C{XXTEROCPP_TEST_GATE}.
GATE = """\
import os
import sys


class Gate:
    def find_spec(self, name, path=None, target=None):
        if name == os.environ["XXTEROCPP_TEST_GATE_AT"]:
            sys.meta_path.remove(self)
            sys.stdout.write(f"held at the import of {name}\\n")
            sys.stdout.flush()
            with open(os.environ["XXTEROCPP_TEST_GATE"], "rb") as fifo:
                fifo.read(1)
        return None


sys.meta_path.insert(0, Gate())
"""


class ProgramTests(TestCase):
    """
    C{python3 -m xxterocpp} listens before it loads Twisted.
    """

    @defer.inlineCallbacks
    def held(self, at="twisted", wrapper=()):
        """
        Start the service held at L{GATE}, by default before it loads
        Twisted, then wait until its early-bound OCPP port accepts a
        connection; held at another module, until it waits there.

        @param at: the module the service is held at the import of.
        @param wrapper: what runs the interpreter (L{unit_wrapper}).
        @return: a Deferred firing with C{(process, port, started, gate)}:
            C{started} fires once the service listens, after a byte is
            written to the FIFO C{gate}.
        """
        site = os.path.abspath(self.mktemp())
        os.makedirs(site)
        with open(os.path.join(site, "sitecustomize.py"), "w") as f:
            f.write(GATE)
        gate = os.path.join(site, "gate")
        os.mkfifo(gate)
        port = free_port()
        path = write_config(self, BASE_CONFIG.replace("port = 0", f"port = {port}", 1))
        # The gate's directory first on the process's path, then the tree.
        process = ServiceProcess(path, command=MAIN, wrapper=wrapper, env={
            "XXTEROCPP_TEST_GATE": gate, "XXTEROCPP_TEST_GATE_AT": at,
            "PYTHONPATH": os.pathsep.join([site, ROOT])})
        kill_on_cleanup(self, process)
        started = process.start()
        yield process.wait_for_output(f"held at the import of {at}\n".encode(), timeout=30)
        if at != "twisted":
            return process, port, started, gate
        for _ in range(400):
            if not refused(port):
                break
            self.assertIsNone(process.exit, process.output.decode())
            yield deferLater(reactor, 0.025, lambda: None)
        else:
            self.fail("the port never accepted a connection")
        self.assertIsNone(process.url, "the service loaded Twisted already")
        return process, port, started, gate

    @defer.inlineCallbacks
    def test_charger_connecting_during_the_start_up_is_served(self):
        """
        While the service is held before it loads Twisted, its OCPP port
        accepts a connection already; once it goes on, the charger's
        WebSocket handshake, sent meanwhile, is answered and its boot
        accepted, on the one port the log names.
        """
        process, port, started, gate = yield self.held()
        charger = connect_charger(f"ws://127.0.0.1:{port}/", "CP1", timeout=30)
        yield deferLater(reactor, 0.1, lambda: None)
        self.assertFalse(charger.called, "a handshake was answered before Twisted loaded")
        with open(gate, "wb") as fifo:
            fifo.write(b"x")
        self.assertEqual((yield started), f"ws://127.0.0.1:{port}/")
        cp = yield charger
        self.addCleanup(cp.close)
        self.assertEqual((yield cp.boot())["status"], "Accepted")
        yield cp.close()
        self.assertEqual(process.output.count(b"OCPP server (ws) listening on"), 1)
        exit = yield process.stop()
        self.assertEqual(exit.exitCode, 0, process.output.decode())

    @defer.inlineCallbacks
    def test_reload_asked_during_the_start_up_is_carried_out(self):
        """
        A SIGHUP (C{kill -HUP}, or another supervisor's reload: it may come
        while the service still loads) sent before Twisted is loaded
        does not end the process, as SIGHUP does by default: once started,
        the service re-reads its configuration and serves on.
        """
        process, port, started, gate = yield self.held()
        yield process.signal("HUP")
        # Delivered while the process waits at the gate.
        yield deferLater(reactor, 0.2, lambda: None)
        self.assertIsNone(process.exit, process.output.decode())
        with open(gate, "wb") as fifo:
            fifo.write(b"x")
        yield started
        yield process.wait_for_output(b"configuration reloaded")
        self.assertEqual(process.output.count(b"configuration reloaded"), 1)
        cp = yield connect_charger(f"ws://127.0.0.1:{port}/", "CP1")
        self.addCleanup(cp.close)
        self.assertEqual((yield cp.boot())["status"], "Accepted")
        yield cp.close()
        exit = yield process.stop()
        self.assertEqual(exit.exitCode, 0, process.output.decode())
        self.assertNotIn(b"Traceback", process.output)

    @defer.inlineCallbacks
    def serves_without_reload(self, process, port, started, gate):
        """
        Let the service held at the gate go on, after a SIGHUP while it was
        held, and check it starts, serves a charger, reloads nothing (the
        signal came before the configuration was read) and stops with 0.
        """
        yield process.signal("HUP")
        yield deferLater(reactor, 0.2, lambda: None)
        self.assertIsNone(process.exit, process.output.decode())
        with open(gate, "wb") as fifo:
            fifo.write(b"x")
        self.assertEqual((yield started), f"ws://127.0.0.1:{port}/")
        cp = yield connect_charger(f"ws://127.0.0.1:{port}/", "CP1")
        self.addCleanup(cp.close)
        self.assertEqual((yield cp.boot())["status"], "Accepted")
        yield cp.close()
        self.assertNotIn(b"configuration reloaded", process.output)
        exit = yield process.stop()
        self.assertEqual(exit.exitCode, 0, process.output.decode())
        self.assertNotIn(b"Traceback", process.output)

    def test_reload_while_the_interpreter_starts_as_the_unit_runs_it(self):
        """
        Started as the unit's C{ExecStart=} starts it, the service is not
        ended by a SIGHUP that comes while the interpreter itself still
        starts, before the first line of L{xxterocpp.__main__} runs (held
        at the import of the package, which C{-m} makes first).
        """
        self.assertTrue(unit_wrapper(), "the unit runs the interpreter directly")
        d = self.held(at="xxterocpp", wrapper=unit_wrapper())
        return d.addCallback(lambda held: self.serves_without_reload(*held))

    @defer.inlineCallbacks
    def test_without_the_unit_s_wrapper_that_sighup_ends_it(self):
        """
        What the unit's wrapper is for: the same SIGHUP ends a service
        started without it, by the signal's default action.
        """
        process, port, started, gate = yield self.held(at="xxterocpp")
        started.addErrback(lambda failure: failure.trap(RuntimeError))
        yield process.signal("HUP")
        for _ in range(200):
            if process.exit is not None:
                break
            yield deferLater(reactor, 0.025, lambda: None)
        self.assertIsNotNone(process.exit, "the process outlived a SIGHUP")
        self.assertEqual(process.exit.signal, signal.SIGHUP)

    def test_reload_before_anything_is_loaded(self):
        """
        Started without the unit's wrapper, the service is not ended by a
        SIGHUP once L{xxterocpp.__main__} runs: held at its first import
        of its own, L{xxterocpp.early}.
        """
        d = self.held(at="xxterocpp.early")
        return d.addCallback(lambda held: self.serves_without_reload(*held))

    @defer.inlineCallbacks
    def test_reload_during_the_stop_leaves_status_0(self):
        """
        A SIGHUP after the reactor stopped, while Python finalises, does
        not end the process with the signal: the exit status stays 0.
        """
        port = free_port()
        path = write_config(self, BASE_CONFIG.replace("port = 0", f"port = {port}", 1))
        process = ServiceProcess(path, command=MAIN)
        kill_on_cleanup(self, process)
        url = yield process.start()
        # Started: the reactor runs and handles SIGTERM.
        cp = yield connect_charger(url, "CP1")
        self.addCleanup(cp.close)
        self.assertEqual((yield cp.boot())["status"], "Accepted")
        ended = process.signal("TERM")
        while b"Main loop terminated." not in process.output:
            self.assertIsNone(process.exit, process.output.decode())
            yield deferLater(reactor, 0.002, lambda: None)
        # Through the whole finalisation, until the process has ended.
        sent = 0
        while process.exit is None:
            process.transport.signalProcess("HUP")
            sent += 1
            yield deferLater(reactor, 0.005, lambda: None)
        exit = yield ended
        self.assertGreater(sent, 0, "the process ended before a SIGHUP was sent")
        self.assertEqual((exit.exitCode, exit.signal), (0, None), process.output.decode())
