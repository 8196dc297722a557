# -*- test-case-name: tests.test_knx_address -*-
"""
KNX group addresses as installers write them.

Three-level C{main/middle/sub} (main 0..31, middle 0..7, sub 0..255) and
two-level C{main/sub} (sub 0..2047) notations are accepted; on the wire a group
address is 16 bits, big-endian: C{main << 11 | middle << 8 | sub}.
"""

import attr


@attr.s(frozen=True, slots=True, repr=False)
class GroupAddress:
    """
    A KNX group address.

    @ivar raw: the 16-bit address.
    """

    raw: int = attr.ib()

    @raw.validator
    def _check(self, attribute, value):
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError("group address must be an int")
        if not 0 < value <= 0xFFFF:
            raise ValueError("group address out of range 0/0/1..31/7/255")

    @classmethod
    def parse(cls, text):
        """
        Parse C{"9/7/0"} or C{"9/1792"}.

        @raise ValueError: with a reason an installer understands.
        """
        if not isinstance(text, str):
            raise ValueError("group address must be a string like '9/7/0'")
        parts = text.strip().split("/")
        if not all(p.isdigit() for p in parts) or len(parts) not in (2, 3):
            raise ValueError(f"bad group address {text!r} (expected main/middle/sub like '9/7/0')")
        numbers = [int(p) for p in parts]
        if numbers[0] > 31:
            raise ValueError(f"bad group address {text!r} (main group must be 0..31)")
        if len(numbers) == 3:
            main, middle, sub = numbers
            if middle > 7:
                raise ValueError(f"bad group address {text!r} (middle group must be 0..7)")
            if sub > 255:
                raise ValueError(f"bad group address {text!r} (sub group must be 0..255)")
            raw = main << 11 | middle << 8 | sub
        else:
            main, sub = numbers
            if sub > 2047:
                raise ValueError(f"bad group address {text!r} (sub group must be 0..2047)")
            raw = main << 11 | sub
        if raw == 0:
            raise ValueError(f"bad group address {text!r} (0/0/0 is the broadcast address)")
        return cls(raw)

    @classmethod
    def decode(cls, data):
        """
        The address in the first two bytes of C{data}.
        """
        return cls(data[0] << 8 | data[1])

    def encode(self):
        """
        @return: the two bytes sent on the wire.
        """
        return bytes((self.raw >> 8, self.raw & 0xFF))

    def __str__(self):
        return f"{self.raw >> 11 & 0x1F}/{self.raw >> 8 & 0x07}/{self.raw & 0xFF}"

    def __repr__(self):
        return f"GroupAddress({str(self)!r})"
