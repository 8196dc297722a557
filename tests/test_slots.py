"""
L{xxterocpp.slots}: connection slots shared by addresses; and the web
interface's connections in memory, on a fake clock: their slots and their
request timeout.
"""

from twisted.internet.address import IPv4Address
from twisted.internet.protocol import connectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web import resource

from xxterocpp.config import WebConfig
from xxterocpp.slots import ALL, PER_ADDRESS, Slots
from xxterocpp.web.gate import MAX_CONNECTIONS_PER_ADDRESS, REQUEST_TIMEOUT, Gate, WebSite


class SlotsTests(SynchronousTestCase):

    def setUp(self):
        self.given_up = []
        self.slots = Slots(lambda *args: self.given_up.append(args))

    def test_per_address_and_in_all(self):
        self.assertIsNone(self.slots.take("a", 1, 2, 3))
        self.assertIsNone(self.slots.take("a", 2, 2, 3))
        self.assertEqual(self.slots.take("a", 3, 2, 3), PER_ADDRESS)
        self.assertIsNone(self.slots.take("b", 4, 2, 3))
        # b holds 1, a 2: a is not 2 ahead of b.
        self.assertEqual(self.slots.take("b", 5, 2, 3), ALL)
        self.assertEqual((self.slots.taken, self.given_up), (3, []))

    def test_the_richest_address_gives_up_its_oldest(self):
        for holder in range(3):
            self.slots.take("a", holder, 4, 3)
        self.assertIsNone(self.slots.take("b", "new", 4, 3))
        self.assertEqual(self.given_up, [("a", 0, 3, "b")])
        self.assertEqual((self.slots.held("a"), self.slots.held("b"), self.slots.taken),
                         (2, 1, 3))

    def test_release_frees_once(self):
        self.slots.take("a", 1, 2, 2)
        self.slots.release("a", 1)
        self.slots.release("a", 1)
        self.slots.release("z", 9)
        self.assertEqual((self.slots.taken, self.slots.held("a")), (0, 0))


class WebChannelTests(SynchronousTestCase):
    """
    The web site's connections with fake transports and a fake clock.
    """

    def setUp(self):
        self.clock = Clock()
        web = WebConfig()
        self.site = WebSite(resource.Resource(), Gate(lambda: web, self.clock), self.clock)
        self.site.startFactory()
        self.addCleanup(self.site.stopFactory)

    def connect(self, host="127.0.0.1"):
        address = IPv4Address("TCP", host, 40000)
        channel = self.site.buildProtocol(address)
        transport = StringTransport(peerAddress=address)
        channel.makeConnection(transport)
        return channel, transport

    def test_request_not_in_within_the_timeout_is_closed(self):
        """
        Bytes that come every 50 s (below Twisted's idle timeout) do not
        keep a request open past L{REQUEST_TIMEOUT}.
        """
        channel, transport = self.connect()
        channel.dataReceived(b"GET / HTTP/1.1\r\n")
        for _ in range(int(REQUEST_TIMEOUT // 10) - 1):
            self.clock.advance(10)
            channel.dataReceived(b"X")
        self.assertFalse(transport.disconnecting)
        self.clock.advance(10)
        self.assertTrue(transport.disconnected or transport.disconnecting)
        channel.connectionLost(connectionDone)
        self.assertEqual(self.site.connections, 0)

    def test_connections_beyond_the_cap_of_an_address_are_closed(self):
        held = [self.connect() for _ in range(MAX_CONNECTIONS_PER_ADDRESS)]
        self.assertFalse(any(t.disconnecting for _, t in held))
        _, refused = self.connect()
        self.assertTrue(refused.disconnecting or refused.disconnected)
        _, other = self.connect("127.0.0.2")
        self.assertFalse(other.disconnecting)
        self.assertEqual((self.site.connections, self.site.refused_connections),
                         (MAX_CONNECTIONS_PER_ADDRESS + 1, 1))
