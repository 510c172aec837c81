"""The operator fixtures of test_operator_cluster (the CRD, operators started for a test's
namespace), shared with the other cluster tests of this folder."""

from tests.operator.test_operator_cluster import crd, operator, start_operator

__all__ = ["crd", "operator", "start_operator"]
