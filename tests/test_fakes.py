"""
The fakes of L{tests.fakes} against the classes they stand in for: a method
renamed, or given other parameters, in the real class fails here rather
than leaving tests that pass against a fake nobody calls that way any more.
"""

import inspect
import unittest

from twisted.trial.unittest import SynchronousTestCase

from tests import fakes, test_upstream_link, upstream_memory

#: The modules with fakes of the service's classes: importing them
#: registers those with L{fakes.fake_of}.
FAKE_MODULES = (fakes, upstream_memory, test_upstream_link)

#: Their classes that stand in for none of ours: a back office is not
#: part of the service.
NOT_FAKES = {upstream_memory.MemoryBackOffice}


def _kind(value):
    """
    @return: what a class attribute is, as far as callers can tell.
    """
    for kind in (property, staticmethod, classmethod):
        if isinstance(value, kind):
            return kind.__name__
    return "method"


def _parameters(function):
    # Names, kinds and defaults: what a caller depends on (not annotations).
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


def drift(fake, real, helpers):
    """
    @return: one line per way C{fake} differs from C{real}: a public method
        (or property) C{real} lacks or defines otherwise (another kind,
        other parameters or defaults), a helper C{real} has too (it would
        hide the real one) or the fake lacks, a catch-all attribute hook;
        empty when they agree.
    """
    problems = []
    own = {}
    for klass in reversed(fake.__mro__[:-1]):
        for name in ("__getattr__", "__getattribute__"):
            if name in vars(klass):
                problems.append(f"{klass.__name__}.{name} accepts any name")
        for name, value in vars(klass).items():
            if not name.startswith("_") and (
                    inspect.isfunction(value) or _kind(value) != "method"):
                own[name] = value
    for name in sorted(helpers - set(own)):
        problems.append(f"helper {name} is not defined")
    for name, value in sorted(own.items()):
        theirs = inspect.getattr_static(real, name, None)
        where = f"{fake.__name__}.{name}"
        if name in helpers:
            if theirs is not None:
                problems.append(f"helper {where} hides {real.__name__}.{name}")
        elif theirs is None:
            problems.append(f"{where}: {real.__name__} has no {name}")
        elif _kind(value) != _kind(theirs):
            problems.append(f"{where} is a {_kind(value)}, {real.__name__}'s a {_kind(theirs)}")
        elif _kind(value) != "property":
            mine, real_one = getattr(fake, name), getattr(real, name)
            if _parameters(mine) != _parameters(real_one):
                problems.append(f"{where}{inspect.signature(mine)} is not "
                                f"{real.__name__}.{name}{inspect.signature(real_one)}")
    return problems


class FakeTests(SynchronousTestCase):
    """
    Every fake matches the real class it stands in for.
    """

    def test_every_fake_matches_its_class(self):
        for fake, real, helpers in fakes.FAKES:
            self.assertEqual(drift(fake, real, helpers), [], fake.__name__)

    def test_every_fake_is_checked(self):
        """
        Every class of L{FAKE_MODULES} but their test cases and
        L{NOT_FAKES} is registered with L{fakes.fake_of}.
        """
        classes = {value for module in FAKE_MODULES for value in vars(module).values()
                   if isinstance(value, type) and value.__module__ == module.__name__
                   and not issubclass(value, unittest.TestCase)} - NOT_FAKES
        self.assertEqual(classes, {fake for fake, real, helpers in fakes.FAKES})
        self.assertGreaterEqual(len(classes), 13)

    def test_unknown_names_are_refused(self):
        self.assertRaises(AttributeError, getattr, fakes.MemoryStore(), "load_everything")
        self.assertRaises(AttributeError, getattr, fakes.FakeController(), "stop_all")


class DriftTests(SynchronousTestCase):
    """
    L{drift} finds each way a fake can differ from its class.
    """

    def test_differences(self):
        class Real:
            def call(self, charger_id, connector=1):
                pass

            def other(self):
                pass

            @property
            def state(self):
                pass

            @staticmethod
            def pure(x):
                pass

        class Fake:
            def call(self, charger_id, connector=2):
                pass

            def renamed(self):
                pass

            def state(self):
                pass

            @staticmethod
            def pure(y):
                pass

            def other(self):
                pass

            def helper(self):
                pass

            def _private(self, anything):
                pass

        self.assertEqual(drift(Fake, Real, frozenset({"helper", "other", "gone"})), [
            "helper gone is not defined",
            "Fake.call(self, charger_id, connector=2) is not"
            " Real.call(self, charger_id, connector=1)",
            "helper Fake.other hides Real.other",
            "Fake.pure(y) is not Real.pure(x)",
            "Fake.renamed: Real has no renamed",
            "Fake.state is a method, Real's a property",
        ])

    def test_catch_all(self):
        class Real:
            pass

        class Fake:
            def __getattr__(self, name):
                return lambda *args: None

        self.assertEqual(drift(Fake, Real, frozenset()), ["Fake.__getattr__ accepts any name"])

    def test_same(self):
        class Real:
            def call(self, a, *, b=None):
                pass

        class Fake(Real):
            def call(self, a, *, b=None):
                return a

        self.assertEqual(drift(Fake, Real, frozenset()), [])
