"""
The tests of xxterocpp (run with C{python3 -m twisted.trial tests}).
"""
