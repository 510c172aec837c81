"""The admission matrix against the local cluster's real kube-apiserver.

tests/api/test_crd_rules.py checks the same objects with an emulation of the
API server's validation (cel-python); here each one is sent to the real server
(server-side dry run, field validation Strict as ``kubectl apply
--validate=strict`` does) and must be refused with a message naming the field,
and each good one admitted. Unknown fields are refused only under Strict: by
default the API server prunes them and warns.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import samples
from test_crd_rules import ACCEPTED, REFUSED
from tests.cluster.fixtures import Cluster

from kiu.api import projectversion

pytestmark = pytest.mark.cluster

NAMESPACE = "default"  # dry runs create nothing


@pytest.fixture(scope="module")
def api(kiu_cluster: Cluster, projectversion_crd: None) -> Cluster:
    """The cluster, with the ProjectVersion CRD applied and established."""
    return kiu_cluster


def create(cluster: Cluster, obj: dict[str, Any]) -> tuple[int, str]:
    """A server-side dry-run create with strict field validation: (HTTP status, message)."""
    from kubernetes.client.exceptions import ApiException

    group, version = projectversion.API_VERSION.split("/")
    try:
        cluster.custom().create_namespaced_custom_object(
            group,
            version,
            NAMESPACE,
            projectversion.PLURAL,
            obj,
            dry_run="All",
            field_validation="Strict",
        )
    except ApiException as exc:
        return int(exc.status), str(json.loads(exc.body or "{}").get("message", exc.reason))
    return 201, ""


@pytest.mark.parametrize(("obj", "expected"), REFUSED)
def test_the_api_server_refuses_with_a_message_naming_the_field(
    api: Cluster, obj: dict[str, Any], expected: str
) -> None:
    status, message = create(api, obj)
    field = expected.split(":")[0]  # e.g. spec.maxInferenceUnits
    # 422 Invalid from schema and CEL validation, 400 from strict decoding (unknown field)
    assert status in (400, 422), (status, message)
    assert field in message, message


@pytest.mark.parametrize("obj", ACCEPTED)
def test_the_api_server_admits_good_objects(api: Cluster, obj: dict[str, Any]) -> None:
    assert create(api, obj) == (201, "")


def test_unknown_fields_need_strict_validation(api: Cluster) -> None:
    obj = samples.manifest(replicas=3)
    manifest = json.dumps({**obj, "metadata": {"name": "shoes-v3", "namespace": NAMESPACE}})
    strict = api.kubectl(
        "apply", "--dry-run=server", "--validate=strict", "-f", "-", input=manifest, check=False
    )
    assert strict.returncode != 0
    assert 'unknown field "spec.replicas"' in strict.stderr
    pruned = api.kubectl("apply", "--dry-run=server", "--validate=false", "-f", "-", input=manifest)
    assert "created (server dry run)" in pruned.stdout
