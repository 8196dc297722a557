# -*- test-case-name: tests.test_smart,tests.test_planner -*-
"""
The Smart Energy Manager: sessions started with a charging point's
C{smart_tag} are charged at the cheapest (or sunniest) time before departure.
L{planner} does the arithmetic, L{site} shares a site limit, L{manager} is the
service around them; the control model sends the plans.
"""
