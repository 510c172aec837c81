"""Shared fixtures: the local cluster handle, per-test namespaces, fault injection."""

import os

from hypothesis import settings

pytest_plugins = ["tests.cluster.fixtures"]

# Property tests: a small, derandomized budget by default (same examples on every
# run), many more random ones with HYPOTHESIS_PROFILE=fuzz (``make fuzz``).
settings.register_profile("kiu", max_examples=200, deadline=None, derandomize=True)
settings.register_profile("fuzz", max_examples=5_000, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "kiu"))
