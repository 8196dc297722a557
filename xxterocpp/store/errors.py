# -*- test-case-name: tests.test_store -*-
"""
The one exception the store raises to its callers.
"""


class StoreError(Exception):
    """
    The store could not do what was asked: a commit failed (the writes stay
    queued and are retried), a write was rejected, or the database cannot be
    opened.
    """
