"""
The configured group addresses as ETS's three-level CSV
(L{xxterocpp.web.ets}), read back the way ETS reads the file: the header,
then range rows (C{9/-/-}, C{9/7/-}) each followed by what lies in it.
"""

import csv
import io

from twisted.trial.unittest import SynchronousTestCase

from tests.test_web_routes import RoutesTestCase
from xxterocpp.config import parse_config
from xxterocpp.knx import objects
from xxterocpp.web import ets

#: The DPT ids of the configuration in ETS's notation, from the KNX
#: datapoint type names (DPST-main-sub; DPT-main for a main type only).
ETS_NOTATION = {
    "1.001": "DPST-1-1", "1.002": "DPST-1-2", "1.003": "DPST-1-3", "1.010": "DPST-1-10",
    "1.015": "DPST-1-15", "5.010": "DPST-5-10", "9.021": "DPST-9-21", "10.001": "DPST-10-1",
    "13.010": "DPST-13-10", "14.019": "DPST-14-19", "14.056": "DPST-14-56",
    "19.001": "DPST-19-1", "14.x": "DPT-14",
}

#: Where the two chargers' objects are: each in its own middle group of 9.
MIDDLES = {"SN12345": 7, "SN67890": 6}


def two_chargers():
    """
    @return: the text of a configuration whose two chargers link every
        declared object (the second with the other time and current DPTs),
        and both C{[smart]} inputs.
    """
    text = '[smart]\nprices_ga = "10/0/1"\nsurplus_ga = "10/0/2"\n'
    for charger_id, middle in MIDDLES.items():
        text += f'\n[[charger]]\nid = "{charger_id}"\nmax_current = 16\n'
        if charger_id == "SN67890":
            text += 'time_dpt = "19.001"\ncurrent_dpt = "9.021"\n'
        text += "[charger.knx]\n" + "".join(
            f'{obj.key} = "9/{middle}/{i}"\n' for i, obj in enumerate(objects.OBJECTS))
    return text


def read_back(text):
    """
    Read the CSV as ETS does.

    @return: C{(header, ranges, addresses)}: the header row, C{{"9/-/-":
        name, "9/7/-": name}} and C{{"9/7/0": (main name, middle name,
        name, description, DPT, security)}}.
    """
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=";"))
    header, ranges, addresses = rows[0], {}, {}
    main = middle = None
    for row in rows[1:]:
        name_main, name_middle, name, address, central, unfiltered, description, dpt, security \
            = row
        numbers = address.split("/")
        if name_main:
            main = (numbers[0], name_main)
            assert numbers[1:] == ["-", "-"], row
            ranges[address] = name_main
        elif name_middle:
            assert numbers[0] == main[0] and numbers[2] == "-", row
            middle = (numbers[1], name_middle)
            ranges[address] = name_middle
        else:
            assert numbers[:2] == [main[0], middle[0]], f"{row} outside its ranges"
            addresses[address] = (main[1], middle[1], name, description, dpt, security)
        assert (central, unfiltered) == ("", ""), row
    return header, ranges, addresses


class DatapointTypeTests(SynchronousTestCase):
    """
    L{ets.ets_dpt}: DPT ids as ETS writes them.
    """

    def test_subtypes_and_main_types(self):
        """
        Leading zeros go, a subtype is DPST-main-sub, "14.x" is DPT-14.
        """
        for dpt_id, notation in ETS_NOTATION.items():
            self.assertEqual(ets.ets_dpt(dpt_id), notation)


class CsvTests(SynchronousTestCase):
    """
    L{ets.ets_csv} of two chargers that link every declared object.
    """

    def setUp(self):
        self.config = parse_config(two_chargers())
        self.text = ets.ets_csv(self.config)

    def test_file_format(self):
        """
        UTF-8 with a byte-order mark, the header of ETS's three-level
        export, every field quoted, semicolons, CRLF.
        """
        self.assertTrue(self.text.startswith("\ufeff"))
        lines = self.text[1:].split("\r\n")
        self.assertEqual(lines[0], '"Main";"Middle";"Sub";"Address";"Central";"Unfiltered";'
                                   '"Description";"DatapointType";"Security"')
        self.assertEqual(lines[1], '"EV charging";"";"";"9/-/-";"";"";"";"";"Auto"')
        self.assertEqual(lines[-1], "")
        for line in lines[1:-1]:
            self.assertTrue(line.startswith('"') and line.endswith('"Auto"'), line)
            self.assertNotIn("\n", line)

    def test_every_declared_object_of_both_chargers(self):
        """
        Read back, every declared object of each charging point is there
        with its address, its name and its DPT in ETS notation (the time and
        current DPTs as each charger chose them), in the charger's middle
        group.
        """
        self.assertGreaterEqual(len(objects.OBJECTS), 12)
        header, ranges, addresses = read_back(self.text[1:])
        self.assertEqual(tuple(header), ets.CSV_COLUMNS)
        for charger in self.config.chargers:
            middle = MIDDLES[charger.id]
            self.assertEqual(ranges[f"9/{middle}/-"], f"{charger.id}/1")
            for i, obj in enumerate(objects.OBJECTS):
                dpt_id = obj.dpt_for(charger)
                self.assertIn(dpt_id, ETS_NOTATION, f"{obj.key}: no ETS notation known")
                main_name, middle_name, name, _, dpt, security = addresses.pop(
                    f"9/{middle}/{i}")
                self.assertEqual(
                    (main_name, middle_name, name, dpt, security),
                    ("EV charging", f"{charger.id}/1", f"{charger.id}/1 {obj.key}",
                     ETS_NOTATION[dpt_id], "Auto"))
        self.assertEqual(ranges["9/-/-"], "EV charging")
        self.assertEqual(ranges["10/-/-"], "EV charging")
        self.assertEqual(ranges["10/0/-"], "smart")
        self.assertEqual(addresses.pop("10/0/1")[2:5:2], ("smart prices_ga", "DPT-14"))
        self.assertEqual(addresses.pop("10/0/2")[2:5:2], ("smart surplus_ga", "DPST-14-56"))
        self.assertEqual(addresses, {})

    def test_descriptions_say_what_the_values_mean(self):
        """
        The description is the object's meaning; the numbers of the status
        and the error code are spelled out.
        """
        _, _, addresses = read_back(self.text[1:])
        for i, obj in enumerate(objects.OBJECTS):
            description = addresses[f"9/7/{i}"][3]
            if obj.key == "status":
                self.assertIn("0 Available, 1 Preparing, 2 Charging", description)
                self.assertIn("8 Faulted", description)
            elif obj.key == "error_code":
                self.assertIn("0 NoError, 1 ConnectorLockFailure", description)
                self.assertIn("15 WeakSignal", description)
            else:
                self.assertEqual(description, obj.meaning)

    def test_time_and_current_dpts_follow_the_charger(self):
        """
        The first charger's times are DPT 10.001 and currents 14.019 (the
        defaults), the second's 19.001 and 9.021.
        """
        _, _, addresses = read_back(self.text[1:])
        index = {obj.key: i for i, obj in enumerate(objects.OBJECTS)}
        self.assertEqual(addresses[f"9/7/{index['start_time']}"][4], "DPST-10-1")
        self.assertEqual(addresses[f"9/7/{index['current']}"][4], "DPST-14-19")
        self.assertEqual(addresses[f"9/6/{index['start_time']}"][4], "DPST-19-1")
        self.assertEqual(addresses[f"9/6/{index['max_current']}"][4], "DPST-9-21")

    def test_ranges_come_before_their_addresses_in_order(self):
        """
        Addresses are listed in ascending order, each main and middle group
        once, before what lies in it.
        """
        rows = list(csv.reader(io.StringIO(self.text[1:], newline=""), delimiter=";"))[1:]
        listed = [row[3] for row in rows]
        self.assertEqual(len(listed), len(set(listed)))
        self.assertEqual(listed[:2], ["9/-/-", "9/6/-"])
        self.assertEqual(listed[-3:], ["10/0/-", "10/0/1", "10/0/2"])


class SharedAddressTests(SynchronousTestCase):
    """
    Addresses several objects share, and names ETS would refuse.
    """

    def test_shared_send_address_is_one_row_naming_both(self):
        """
        Two status objects on one address: one row, both names, one DPT.
        """
        config = parse_config("""
[[charger]]
id = "TWIN"
connector = 1
max_current = 16
[charger.knx]
status = "1/2/3"

[[charger]]
id = "TWIN"
connector = 2
max_current = 16
[charger.knx]
status = "1/2/3"
energy = "1/2/4"
""")
        _, ranges, addresses = read_back(ets.ets_csv(config)[1:])
        self.assertEqual(ranges["1/2/-"], "TWIN/1, TWIN/2")
        self.assertEqual(addresses["1/2/3"][2], "TWIN/1 status, TWIN/2 status")
        self.assertEqual(addresses["1/2/3"][4], "DPST-5-10")
        self.assertEqual(addresses["1/2/4"][2], "TWIN/2 energy")

    def test_names_are_at_most_255_characters(self):
        """
        ETS takes names of up to 255 characters: a long charger id is cut.
        """
        config = parse_config(f"""
[[charger]]
id = "{'X' * 255}"
max_current = 16
[charger.knx]
status = "1/2/3"
""")
        _, ranges, addresses = read_back(ets.ets_csv(config)[1:])
        self.assertEqual(len(addresses["1/2/3"][2]), 255)
        self.assertEqual(len(ranges["1/2/-"]), 255)

    def test_no_addresses_is_the_header_alone(self):
        """
        Without linked objects the file is only the header.
        """
        text = ets.ets_csv(parse_config('[[charger]]\nid = "CP1"\nmax_current = 16\n'))
        self.assertEqual(text.count("\r\n"), 1)


class RouteTests(RoutesTestCase):
    """
    C{GET /api/knx/group-addresses} and the page's link to it.
    """

    config_text = two_chargers()

    def test_csv_download(self):
        """
        C{?format=csv} is the file as UTF-8 with its byte-order mark, to
        be saved under a name.
        """
        response = self.request("GET", "/api/knx/group-addresses?format=csv")
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers["content-type"], "text/csv; charset=utf-8")
        self.assertEqual(response.headers["content-disposition"],
                         'attachment; filename="xxterocpp-group-addresses.csv"')
        self.assertTrue(response.body.startswith(b"\xef\xbb\xbf\"Main\";"))
        self.assertEqual(response.body.decode("utf-8"), ets.ets_csv(self.central.config))

    def test_json_list(self):
        """
        Without a format, the same addresses as JSON.
        """
        response = self.request("GET", "/api/knx/group-addresses")
        self.assertEqual(response.code, 200)
        listed = response.json["group_addresses"]
        self.assertEqual(len(listed), 2 * len(objects.OBJECTS) + 2)
        self.assertEqual(listed[0]["address"], "9/6/0")
        self.assertEqual(listed[0]["name"], "SN67890/1 " + objects.OBJECTS[0].key)
        self.assertEqual(listed[-1], {
            "address": "10/0/2", "name": "smart surplus_ga", "dpt": "DPST-14-56",
            "description": "DPT_Value_Power", "direction": "receive"})

    def test_bad_format_400(self):
        """
        A format other than json or csv is refused.
        """
        self.assertError(self.request("GET", "/api/knx/group-addresses?format=xml"), 400,
                         "format")

    def test_page_links_the_csv(self):
        """
        The status page links the file and says how many addresses it has.
        """
        response = self.request("GET", "/")
        self.assertEqual(response.code, 200)
        self.assertIn(b'href="/api/knx/group-addresses?format=csv"', response.body)
        self.assertIn(f"{2 * len(objects.OBJECTS) + 2} group addresses".encode(),
                      response.body)
