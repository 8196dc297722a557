"""
L{xxterocpp.slots}: connection slots shared by addresses.
"""

from twisted.trial.unittest import SynchronousTestCase

from xxterocpp.slots import ALL, PER_ADDRESS, Slots


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
