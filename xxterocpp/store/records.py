# -*- test-case-name: tests.test_store -*-
"""
What the store hands back: one frozen attrs class per kind of row, and the
text form instants take in the database.
"""

from datetime import datetime, timezone

import attr


def to_text(when):
    """
    Fixed-width ISO 8601 UTC, so that text order is time order in SQL.

    @param when: an aware L{datetime}, or L{None}.
    @raise ValueError: for a naive datetime, whose instant is unknown.
    """
    if when is None:
        return None
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"naive datetime {when!r}: give a timezone")
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def from_text(text):
    """
    The instant L{to_text} wrote, as an aware UTC L{datetime}; L{None}
    stays L{None}.
    """
    if text is None:
        return None
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=timezone.utc
    )


@attr.s(frozen=True, slots=True, auto_attribs=True)
class TransactionRecord:
    """
    A charging session as stored, from StartTransaction to StopTransaction.

    @ivar id: the transactionId the central system handed out.
    @ivar meter_start: energy register at start, Wh.
    @ivar start_status: the idTagInfo status the StartTransaction got.
    @ivar dedup_key: identifies the StartTransaction, so that a retried
        identical request is answered with the same id.
    @ivar stop_time: L{None} while the transaction is open.
    @ivar last_meter_wh: the latest energy register reading, Wh.
    @ivar time_uncertain: its start or stop time is the central system's
        from a time its clock was wrong (the charger's was implausible).
    """

    id: int
    charger_id: str
    connector: int
    id_tag: str
    start_time: datetime
    meter_start: int
    reservation_id: "int | None"
    start_status: str
    dedup_key: str
    stop_time: "datetime | None" = None
    meter_stop: "int | None" = None
    stop_reason: "str | None" = None
    stop_id_tag: "str | None" = None
    last_meter_wh: "float | None" = None
    last_meter_time: "datetime | None" = None
    time_uncertain: bool = False

    @property
    def energy_wh(self):
        """
        Energy of the session in Wh, L{None} while nothing is known. Never
        negative: a meter replaced or reset mid-session must not show up as
        energy given back.
        """
        if self.meter_stop is not None:
            end = self.meter_stop
        elif self.last_meter_wh is not None:
            end = self.last_meter_wh
        else:
            return None
        return max(end - self.meter_start, 0)


#: The columns of C{transactions}, in the order of L{TransactionRecord}'s
#: fields.
TRANSACTION_COLUMNS = (
    "id, charger_id, connector, id_tag, start_time, meter_start,"
    " reservation_id, start_status, dedup_key, stop_time, meter_stop,"
    " stop_reason, stop_id_tag, last_meter_wh, last_meter_time, time_uncertain"
)


def transaction_from_row(row):
    """
    @param row: the L{TRANSACTION_COLUMNS} of one transaction.
    @rtype: L{TransactionRecord}
    """
    (id, charger_id, connector, id_tag, start_time, meter_start,
     reservation_id, start_status, dedup_key, stop_time, meter_stop,
     stop_reason, stop_id_tag, last_meter_wh, last_meter_time, time_uncertain) = row
    return TransactionRecord(
        id, charger_id, connector, id_tag, from_text(start_time),
        meter_start, reservation_id, start_status, dedup_key,
        from_text(stop_time), meter_stop, stop_reason, stop_id_tag,
        last_meter_wh, from_text(last_meter_time), bool(time_uncertain),
    )


@attr.s(frozen=True, slots=True, auto_attribs=True)
class OrphanStopRecord:
    """
    A StopTransaction for a transaction that was unknown or already stopped:
    acknowledged to the charger and kept here for the installer.
    """

    charger_id: "str | None"
    transaction_id: "int | None"
    meter_stop: "int | None"
    stop_time: "datetime | None"
    reason: "str | None"
    received_at: datetime
    note: str


@attr.s(frozen=True, slots=True, auto_attribs=True)
class ConnectorStatusRecord:
    """
    The last StatusNotification of one connector.
    """

    charger_id: str
    connector: int
    status: str
    error_code: str
    info: "str | None"
    at: datetime


@attr.s(frozen=True, slots=True, auto_attribs=True)
class UnknownChargerRecord:
    """
    A charger identity that tried to connect but is not configured.
    """

    identity: str
    address: str
    first_seen: datetime
    last_seen: datetime
    count: int


@attr.s(frozen=True, slots=True, auto_attribs=True)
class TagRecord:
    """
    An RFID tag managed through the HTTP API.
    """

    id: str
    status: str
    expiry: "datetime | None"
    parent: "str | None"
