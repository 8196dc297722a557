"""
L{xxterocpp.knx.journal}: what the bridge last sent and received, and the
writes of other devices to its send objects.
"""

from twisted.trial.unittest import SynchronousTestCase

from xxterocpp.config import parse_config
from xxterocpp.knx.address import GroupAddress
from xxterocpp.knx.behaviour import OBJECTS
from xxterocpp.knx.journal import Journal, Record
from xxterocpp.knx.knxd import WRITE, Telegram
from xxterocpp.knx.points import linked_points

CONFIG = """
[[charger]]
id = "CP1"
max_current = 16
[charger.knx]
status = "1/0/0"
charging = "1/0/2"
reset = "1/0/11"
"""

CP1 = ("CP1", 1)


class JournalTests(SynchronousTestCase):

    def setUp(self):
        self.journal = Journal()
        self.point = linked_points(parse_config(CONFIG), OBJECTS)[0]
        self.objects = {obj.key: obj for obj, _ in self.point.objects}

    def test_nothing_seen(self):
        """
        An object nothing was seen of has no entry.
        """
        self.assertIsNone(self.journal.entry(CP1, "status"))

    def test_last_sent_and_received(self):
        """
        The last value sent and the last received are kept apart, each with
        its time (and the sender of what was received).
        """
        self.journal.sent(CP1, "charging", True, 10.0)
        self.journal.sent(CP1, "charging", False, 12.0)
        self.journal.received(CP1, "charging", True, 11.0, "1.1.5")
        entry = self.journal.entry(CP1, "charging")
        self.assertEqual(entry.sent, Record(False, 12.0))
        self.assertEqual(entry.received, Record(True, 11.0, "1.1.5"))
        self.assertIsNone(entry.foreign)

    def test_foreign_write_only_to_send_only_objects(self):
        """
        A write to an address of a send-only object is recorded as foreign;
        to one that also receives it is a command, not a warning.
        """
        telegram = Telegram("1.1.7", GroupAddress.parse("1/0/0"), WRITE, b"\x05")
        senders = [(self.point, self.objects["status"]), (self.point, self.objects["charging"])]
        self.journal.foreign_write(senders, telegram, 20.0)
        self.assertEqual(self.journal.entry(CP1, "status").foreign,
                         Record(b"\x05", 20.0, "1.1.7"))
        self.assertIsNone(self.journal.entry(CP1, "charging"))

    def test_bounded(self):
        """
        Past its limit the journal forgets the object seen longest ago.
        """
        journal = Journal(limit=2)
        journal.sent(CP1, "status", 1, 1.0)
        journal.sent(CP1, "charging", True, 2.0)
        journal.sent(CP1, "status", 2, 3.0)
        journal.sent(("CP2", 1), "status", 0, 4.0)
        self.assertIsNone(journal.entry(CP1, "charging"))
        self.assertEqual(journal.entry(CP1, "status").sent, Record(2, 3.0))
        self.assertEqual(journal.entry(("CP2", 1), "status").sent, Record(0, 4.0))
