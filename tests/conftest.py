"""Shared fixtures: the local cluster handle, per-test namespaces, fault injection."""

pytest_plugins = ["tests.cluster.fixtures"]
