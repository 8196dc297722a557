# -*- test-case-name: tests.test_ets -*-
"""
The configured group addresses as a file ETS imports (C{GET
/api/knx/group-addresses?format=csv}), so that the installer does not retype
them.

The rows come from the declaration of the group objects
(L{xxterocpp.knx.objects.OBJECTS}) and the C{[smart]} bus inputs
(L{xxterocpp.knx.behaviour.SMART_INPUTS}): whatever is declared and linked in
the configuration is exported, with its datapoint type in ETS notation.

The file is ETS's three-level CSV ("3/1": three name columns, one address
column), as ETS 5 and 6 export it and read it back with Group Addresses ->
Import:

    - a header row C{"Main";"Middle";"Sub";"Address";"Central";
      "Unfiltered";"Description";"DatapointType";"Security"};
    - one row per main group (name in C{Main}, address C{9/-/-}), per
      middle group (name in C{Middle}, address C{9/7/-}) and per group
      address (name in C{Sub}, address C{9/7/0}), each range before the
      addresses inside it;
    - every field in double quotes (an inner quote doubled), separated by
      semicolons, lines ending CRLF, UTF-8 with a byte-order mark.

An address several objects share (send objects may) is one row whose name
lists them all: ETS knows an address once.
"""

import csv
import io
from itertools import groupby

import attr

from xxterocpp.knx import objects
from xxterocpp.knx.behaviour import SMART_INPUTS
from xxterocpp.web.knxvalues import spelled_out

__all__ = ["CSV_COLUMNS", "EtsAddress", "MAIN_RANGE_NAME", "ets_csv", "ets_dpt",
           "group_addresses"]

#: The header of ETS's three-level CSV.
CSV_COLUMNS = ("Main", "Middle", "Sub", "Address", "Central", "Unfiltered", "Description",
               "DatapointType", "Security")

#: The name of every main group holding exported addresses.
MAIN_RANGE_NAME = "EV charging"

#: ETS refuses names longer than this (its own exports say 1 to 255 characters).
MAX_NAME = 255

#: What owns the C{[smart]} inputs, in their names ("smart surplus_ga").
SMART_OWNER = "smart"


def ets_dpt(dpt_id):
    """
    @param dpt_id: a DPT id as the configuration and L{xxterocpp.knx.dpt}
        write it: C{"5.010"}, or C{"14.x"} for any subtype.
    @return: the datapoint type in ETS notation: C{"DPST-5-10"} (a
        subtype), C{"DPT-14"} (a main type only).
    """
    main, _, sub = dpt_id.partition(".")
    if not sub.isdigit():
        return f"DPT-{int(main)}"
    return f"DPST-{int(main)}-{int(sub)}"


@attr.s(frozen=True, slots=True)
class EtsAddress:
    """
    One exported group address.

    @ivar address: the L{GroupAddress}.
    @ivar names: C{"<owner> <key>"} of each object linked to it, in
        configuration order (C{"SN12345/1 status"}).
    @ivar owners: the charging points (C{"SN12345/1"}) or C{"smart"} of
        those objects, without repeats.
    @ivar dpt: the datapoint type in ETS notation, C{""} when the objects
        sharing the address disagree.
    @ivar description: what the values mean, the numbers of a status or an
        error code spelled out.
    @ivar direction: L{objects.SEND}, L{objects.RECEIVE} or L{objects.BOTH}
        (of the first object).
    """

    address = attr.ib()
    names = attr.ib()
    owners = attr.ib()
    dpt = attr.ib()
    description = attr.ib()
    direction = attr.ib()

    @property
    def name(self):
        """
        The group address's name in ETS.
        """
        return _bounded(", ".join(self.names))

    def json(self):
        """
        @return: this address as C{GET /api/knx/group-addresses} lists it.
        """
        return {"address": str(self.address), "name": self.name, "dpt": self.dpt,
                "description": self.description, "direction": self.direction}


def _bounded(name):
    return name if len(name) <= MAX_NAME else name[:MAX_NAME - 1] + "\N{HORIZONTAL ELLIPSIS}"


def _linked(config):
    """
    @return: C{(address, owner, key, ETS DPT, meaning, direction)} of every
        linked object and C{[smart]} input, in configuration order.
    """
    for charger in config.chargers:
        owner = f"{charger.id}/{charger.connector}"
        for obj in objects.OBJECTS:
            address = getattr(charger.knx, obj.key)
            if address is not None:
                yield (address, owner, obj.key, ets_dpt(obj.dpt_for(charger)),
                       spelled_out(obj.meaning), obj.direction)
    for entry in SMART_INPUTS:
        address = getattr(config.smart, entry.name)
        if address is not None:
            yield (address, SMART_OWNER, entry.name, ets_dpt(entry.dpt.id), entry.dpt.name,
                   objects.RECEIVE)


def group_addresses(config):
    """
    @param config: the L{Config}.
    @return: an L{EtsAddress} per configured group address, by address.
    """
    by_address = {}
    for address, owner, key, dpt, meaning, direction in _linked(config):
        by_address.setdefault(address, []).append((owner, key, dpt, meaning, direction))
    exported = []
    for address in sorted(by_address, key=lambda a: a.raw):
        linked = by_address[address]
        dpts = {dpt for _, _, dpt, _, _ in linked}
        exported.append(EtsAddress(
            address=address,
            names=tuple(f"{owner} {key}" for owner, key, _, _, _ in linked),
            owners=tuple(dict.fromkeys(owner for owner, _, _, _, _ in linked)),
            dpt=dpts.pop() if len(dpts) == 1 else "",
            description="; ".join(dict.fromkeys(meaning for _, _, _, meaning, _ in linked)),
            direction=linked[0][4],
        ))
    return exported


def _main(address):
    return address.raw >> 11 & 0x1F


def _middle(address):
    return address.raw >> 8 & 0x07


def ets_csv(config):
    """
    @param config: the L{Config}.
    @return: the CSV file ETS imports, as text (its byte-order mark
        first): encode it as UTF-8.
    """
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out, delimiter=";", quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for main, in_main in groupby(group_addresses(config), key=lambda e: _main(e.address)):
        writer.writerow([MAIN_RANGE_NAME, "", "", f"{main}/-/-", "", "", "", "", "Auto"])
        for middle, in_middle in groupby(in_main, key=lambda e: _middle(e.address)):
            in_middle = list(in_middle)
            owners = dict.fromkeys(o for e in in_middle for o in e.owners)
            writer.writerow(["", _bounded(", ".join(owners)), "", f"{main}/{middle}/-",
                             "", "", "", "", "Auto"])
            for entry in in_middle:
                writer.writerow(["", "", entry.name, str(entry.address), "", "",
                                 entry.description, entry.dpt, "Auto"])
    return out.getvalue()
