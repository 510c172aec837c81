"""Tests of the bundled models, the shared imaging code and the cpu runtime (`kiu unit`)."""
