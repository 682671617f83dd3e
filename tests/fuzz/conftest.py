"""Hypothesis profiles for the fuzz tests.

Quick and derandomized by default: the same examples every run, the whole folder in well
under a minute, no flaky CI. `HYPOTHESIS_PROFILE=long` runs many more, fresh random examples.
The profile is applied per test through `fuzz_settings`, so the fuzz folder does not change
the settings of other hypothesis tests in the same session.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_SUPPRESSED = [
    HealthCheck.function_scoped_fixture,
    HealthCheck.too_slow,
    HealthCheck.data_too_large,
    HealthCheck.filter_too_much,
    HealthCheck.large_base_example,
]

settings.register_profile(
    "fuzz",
    max_examples=40,
    deadline=None,
    suppress_health_check=_SUPPRESSED,
    database=None,
    derandomize=True,
)
settings.register_profile(
    "long", max_examples=2000, deadline=None, suppress_health_check=_SUPPRESSED, database=None
)

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "fuzz")
LONG = PROFILE == "long"


def fuzz_settings(max_examples: int) -> settings:
    """Settings on the selected profile: `max_examples` by default, the profile's under long."""
    parent = settings.get_profile(PROFILE if PROFILE in ("fuzz", "long") else "fuzz")
    if LONG:
        return settings(parent)
    return settings(parent, max_examples=max_examples)
