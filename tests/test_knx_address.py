"""
Tests for L{xxterocpp.knx.address}.
"""

from twisted.trial.unittest import SynchronousTestCase

from xxterocpp.knx.address import GroupAddress


class GroupAddressTests(SynchronousTestCase):
    def test_three_level_encodes_big_endian(self):
        """
        9/7/0 is 0x4F00 on the wire, as seen on a real knxd bus monitor.
        """
        ga = GroupAddress.parse("9/7/0")
        self.assertEqual(ga.encode(), b"\x4f\x00")
        self.assertEqual(str(ga), "9/7/0")
        self.assertEqual(GroupAddress.parse("1/2/3").raw, 0x0A03)
        self.assertEqual(GroupAddress.parse("17/5/127").raw, 0x8D7F)

    def test_two_level_is_the_same_address(self):
        """
        9/1792 and 9/7/0 name one address.
        """
        self.assertEqual(GroupAddress.parse("9/1792"), GroupAddress.parse("9/7/0"))

    def test_decode_round_trips(self):
        """
        Decoding the two wire bytes gives the address back.
        """
        self.assertEqual(GroupAddress.decode(b"\x8d\x7f"), GroupAddress.parse("17/5/127"))

    def test_out_of_range_fields_are_refused(self):
        """
        Each field is range-checked with a reason, never wrapped.
        """
        for text, reason in [
            ("32/0/0", "main group"),
            ("1/8/0", "middle group"),
            ("1/1/256", "sub group"),
            ("1/2048", "sub group"),
            ("0/0/0", "broadcast"),
            ("a/b/c", "expected"),
            ("1/2/3/4", "expected"),
            ("", "expected"),
        ]:
            e = self.assertRaises(ValueError, GroupAddress.parse, text)
            self.assertIn(reason, str(e))
