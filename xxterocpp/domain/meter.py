# -*- test-case-name: tests.test_station -*-
"""
Meter readings: the values the central system tracks, read from the
MeterValue elements a charger sends.
"""

from datetime import datetime, timezone

_PHASES = {"L1": "L1", "L2": "L2", "L3": "L3", "L1-N": "L1", "L2-N": "L2", "L3-N": "L3"}


_NO_TIME = datetime.min.replace(tzinfo=timezone.utc)


def _meter_value_time(mv):
    return mv.timestamp or _NO_TIME


def read_meter_values(meter_values):
    """
    Reduce MeterValue elements to the readings the central system tracks.

    @return: a dict with any of C{energy_wh} (the energy import register in
        Wh), C{currents} (A per phase), C{power_w}, C{current_offered}, and
        C{timestamp} (of the latest element used); empty when nothing
        usable was sent.
    """
    result = {}
    if len(meter_values) == 1:
        ordered = meter_values if meter_values[0] is not None else ()
    else:
        ordered = sorted((mv for mv in meter_values if mv is not None), key=_meter_value_time)
    for mv in ordered:
        currents, power_phases, energy_phases = {}, {}, {}
        for sv in mv.sampled_value or ():
            if sv is None or sv.format == "SignedData":
                continue
            try:
                # float() itself ignores surrounding white space.
                value = float(sv.value)
            except (TypeError, ValueError):
                continue
            measurand = sv.measurand or "Energy.Active.Import.Register"
            phase = _PHASES.get(sv.phase) if sv.phase else None
            if sv.phase and phase is None:
                # "N" or line-to-line phases carry no charging current.
                continue
            unit = sv.unit
            if measurand == "Energy.Active.Import.Register":
                wh = value * 1000 if unit == "kWh" else value
                if phase:
                    energy_phases[phase] = wh
                else:
                    result["energy_wh"] = wh
            elif measurand == "Current.Import":
                currents[phase or "L1"] = value
            elif measurand == "Power.Active.Import":
                w = value * 1000 if unit == "kW" else value
                if phase:
                    power_phases[phase] = w
                else:
                    result["power_w"] = w
            elif measurand == "Current.Offered":
                result["current_offered"] = value
            else:
                continue
            result["timestamp"] = mv.timestamp
        if currents:
            result["currents"] = currents
        if power_phases and "power_w" not in result:
            result["power_w"] = sum(power_phases.values())
        if energy_phases and "energy_wh" not in result:
            result["energy_wh"] = sum(energy_phases.values())
    return result
