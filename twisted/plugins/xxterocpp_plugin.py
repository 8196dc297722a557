# The twistd plugin: "twistd -n xxterocpp --config FILE". Kept tiny and lazy:
# every twistd/trial run imports every plugin file, so nothing heavy here and
# no reactor import (xxterocpp.tap is loaded only when the subcommand is used).
from twisted.application.service import ServiceMaker

xxterocpp = ServiceMaker(
    "xxterocpp",
    "xxterocpp.tap",
    "OCPP 1.6J central system bridging car chargers to KNX through knxd.",
    "xxterocpp",
)
