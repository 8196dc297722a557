"""
The tests of xxterocpp (run with C{python3 -m twisted.trial tests}).
"""

# TEMPORARY until the domain side of issue 14 is merged: see tests/contract14.py.
import tests.contract14  # noqa: E402,F401
