"""
The service of a tree from before C{python3 -m xxterocpp} (2026-12-02) as it
was run then, for bench/versus.py: C{python3 bench/legacy.py --config FILE}
is C{twistd --nodaemon --pidfile= --logfile=- xxterocpp --config FILE}.
Nothing here is part of the service.
"""

import os
import sys

# The folder of this script is not the service's.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]

from twisted.scripts.twistd import run  # noqa: E402

sys.argv = ["twistd", "--nodaemon", "--pidfile=", "--logfile=-", "xxterocpp", *sys.argv[1:]]
run()
