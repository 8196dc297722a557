"""
The host side of the install test: a simulated charger (L{tests.sim}) against
the packaged service, which serves the shipped configuration on port 8016.

    python3 -m tests.debian.charger_check ws://127.0.0.1:8016/

Exits 0 when the configured charger SN12345 boots Accepted and an unknown
identity is refused with HTTP 404; prints one line per check.
"""

import sys

from twisted.internet import defer, task

from tests.sim import HandshakeRefused, connect_charger

#: The charger of etc/xxterocpp/xxterocpp.toml.
CONFIGURED = "SN12345"
UNKNOWN = "NOT-CONFIGURED-1"


@defer.inlineCallbacks
def check(reactor, url):
    charger = yield connect_charger(url, CONFIGURED, timeout=10, reactor=reactor)
    try:
        answer = yield charger.boot()
        if answer.get("status") != "Accepted":
            raise SystemExit(f"FAIL: BootNotification of {CONFIGURED} answered {answer!r}")
        print(f"ok: {CONFIGURED} BootNotification Accepted, interval {answer.get('interval')} s")
        yield charger.heartbeat()
        print(f"ok: {CONFIGURED} Heartbeat answered")
    finally:
        yield charger.close()
    try:
        other = yield connect_charger(url, UNKNOWN, timeout=10, reactor=reactor)
    except HandshakeRefused as e:
        if e.status != 404:
            raise SystemExit(f"FAIL: unknown identity refused with HTTP {e.status}, not 404")
        print(f"ok: unknown identity {UNKNOWN} refused with HTTP 404")
    else:
        yield other.close()
        raise SystemExit(f"FAIL: unknown identity {UNKNOWN} was accepted")


def main(argv=sys.argv[1:]):
    (url,) = argv
    task.react(check, [url])


if __name__ == "__main__":
    main()
