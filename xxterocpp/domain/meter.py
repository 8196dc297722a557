# -*- test-case-name: tests.test_domain,tests.test_handlers -*-
"""
Meter readings: the quantities the central system tracks for a connector,
as a protocol adapter reads them from what a charger reports.
"""

import attr


# Not frozen: it is made for every MeterValues a charger sends, and a frozen
# attrs class costs several times as much to build.
@attr.s(slots=True, eq=False)
class MeterReading:
    """
    One report of a connector's meter, reduced to what the central system
    tracks; None for what was not reported.

    @ivar timestamp: when the latest value used was sampled (aware UTC), or
        None when the charger did not say.
    @ivar energy_wh: the energy import register (Wh).
    @ivar currents: the charging current per phase (A), e.g.
        C{{"L1": 15.9, "L2": 16.0}}.
    @ivar power_w: the active import power (W).
    @ivar current_offered: the current the charger offers the car (A).
    """

    timestamp = attr.ib()
    energy_wh = attr.ib(default=None)
    currents = attr.ib(default=None)
    power_w = attr.ib(default=None)
    current_offered = attr.ib(default=None)
