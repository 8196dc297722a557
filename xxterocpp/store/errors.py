# -*- test-case-name: tests.test_store -*-
"""
The one exception the store raises to its callers.
"""


class StoreError(Exception):
    """
    The store could not do what was asked: a write was rejected (it can
    never succeed), the store closed before a write could be committed, or
    the database cannot be opened. A commit that fails is no error to the
    caller: the write waits for the retry.
    """
