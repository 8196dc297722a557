# -*- test-case-name: tests.test_limits,tests.test_setup -*-
"""
Reading the configuration keys a charger reported (GetConfiguration, kept
in L{xxterocpp.domain.model.Charger.configuration}).
"""


def csl(entry):
    """
    @param entry: a reported C{KeyValue}, or None.
    @return: the items of a comma-separated configuration value.
    """
    if entry is None or not entry.value:
        return []
    return [item.strip() for item in entry.value.split(",") if item.strip()]


def lacks_profile(configuration, profile):
    """
    @return: whether the charger says it lacks the feature profile
        C{profile}: it reported C{SupportedFeatureProfiles} without it
        (a charger that did not report the key lacks nothing we know of).
    """
    entry = configuration.get("SupportedFeatureProfiles")
    return entry is not None and entry.value is not None and profile not in csl(entry)


#: The integers a configuration value may hold: OCPP's are 32-bit. A
#: charger's value of twenty digits would make a timer or a date overflow.
_INT32 = range(-2 ** 31, 2 ** 31)


def integer(entry, default):
    """
    @param entry: a reported C{KeyValue}, or None.
    @return: its value as an int, or C{default} when missing, no number or
        beyond 32 bits.
    """
    try:
        value = int(entry.value)
    except (AttributeError, TypeError, ValueError):
        return default
    return value if value in _INT32 else default


def units(configuration):
    """
    @return: the charging rate units a charger allows (C{"A"}, C{"W"}),
        preferred first; C{("A",)} when it does not say. Some chargers
        write C{power} or C{W} instead of C{Power}.
    """
    words = {"current": "A", "a": "A", "power": "W", "w": "W"}
    allowed = csl(configuration.get("ChargingScheduleAllowedChargingRateUnit"))
    found = [words[w.lower()] for w in allowed if w.lower() in words]
    return tuple(dict.fromkeys(found)) or ("A",)
