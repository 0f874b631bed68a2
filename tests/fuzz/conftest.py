"""Hypothesis profiles of the fuzz suite.

``ci`` (the default, used by ``make test``): a few dozen examples per entry point, derandomised
(a fixed seed per test) and without the example database, so every run draws the same examples.
``nightly`` (``make fuzz``, or ``HYPOTHESIS_PROFILE=nightly``): ten times more, random seeds.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Phase, settings

_COMMON = dict(
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,
    ],
    print_blob=True,
)
# CI does not shrink (a failure is reported as drawn; the strict xfails of known bugs stay fast)
settings.register_profile(
    "ci",
    max_examples=20,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    **_COMMON,
)
settings.register_profile("nightly", max_examples=200, derandomize=False, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
