# -*- test-case-name: tests.test_upstream_relay -*-
"""
What the back office's relayed commands left at a charger, kept across
restarts with the charger's other back-office settings: its reservation ids
mapped to ours (L{xxterocpp.upstream.relay.reserve_now}) and the charging
profiles it set (its ClearChargingProfile clears only those).
"""

from xxterocpp.ocpp import messages as m

#: How many reservation ids of the back office are remembered.
RESERVATIONS_KEPT = 50


class Relayed:
    """
    One charger's reservations and charging profiles of its back office.
    """

    def __init__(self, uplink):
        """
        @param uplink: the charger's L{xxterocpp.upstream.uplink.Uplink},
            whose settings keep what is remembered here.
        """
        self.uplink = uplink

    def map_reservation(self, remote, local):
        """
        Remember that the back office's reservation C{remote} is our
        C{local} one.
        """
        kept = dict(self.uplink.setting("reservations", {}))
        kept[str(local)] = remote
        while len(kept) > RESERVATIONS_KEPT:
            del kept[min(kept, key=int)]
        self.uplink.save("reservations", kept)

    def remote_reservation(self, local):
        """
        @return: the back office's reservationId for ours, or None.
        """
        return self.uplink.setting("reservations", {}).get(str(local))

    def local_reservation(self, remote):
        """
        @return: our reservationId for the back office's, or None.
        """
        for local, theirs in self.uplink.setting("reservations", {}).items():
            if theirs == remote:
                return int(local)
        return None

    def profiles(self):
        """
        @return: the charging profiles the back office set, as
            C{{profile id (str): [connector, purpose, stack level, as it
            asked for it (JSON), as the charger got it (JSON)]}} (an entry
            stored by an older version has the first three only).
        """
        return self.uplink.setting("profiles", {})

    def profile_set(self, connector, wanted, capped):
        """
        Remember a charging profile the back office set at the charger: as
        it asked for it (C{wanted}, with our transactionId) and as the
        charger got it (C{capped}).
        """
        profiles = dict(self.profiles())
        profiles[str(wanted.charging_profile_id)] = [
            connector, wanted.charging_profile_purpose, wanted.stack_level,
            m.encode(wanted), m.encode(capped)]
        self.uplink.save("profiles", profiles)

    def profile_cleared(self, profile_id):
        """
        Forget a charging profile of the back office that was cleared.
        """
        profiles = dict(self.profiles())
        if profiles.pop(str(profile_id), None) is not None:
            self.uplink.save("profiles", profiles)
