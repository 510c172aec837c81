"""What the chart renders to confine its components and serve callers safely: the
gateway's ValidatingAdmissionPolicy, the roles for users, TLS, the Ingress and the
HTTPRoute, and the object grants (the API server's verdicts are in
test_chart_install.py)."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from cryptography import x509

from tests.chart import chart
from tests.chart.chart import args_of, find, of_kind

pytestmark = pytest.mark.skipif(not chart.HELM.exists(), reason="helm is built by `make tools`")

NAMESPACE = "kiu-system"
POLICY = f"{NAMESPACE}-kiu-gateway-writes"


@pytest.fixture(scope="module")
def default() -> list[dict[str, Any]]:
    return chart.template()


@pytest.fixture(scope="module")
def exposed() -> list[dict[str, Any]]:
    return chart.template(chart.VALUES / "exposed.yaml")


def _gateway_pod(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return dict(find(objects, "Deployment", "kiu-gateway")["spec"]["template"]["spec"])


def test_the_chart_needs_a_cluster_with_admission_policies() -> None:
    proc = chart.helm("template", "kiu", str(chart.CHART), "--kube-version", "1.29.9", check=False)
    assert proc.returncode != 0
    assert "kubeVersion" in proc.stderr


def test_the_gateways_writes_are_confined_to_its_service_account(
    default: list[dict[str, Any]],
) -> None:
    policy = find(default, "ValidatingAdmissionPolicy", POLICY)["spec"]
    assert policy["failurePolicy"] == "Fail"
    (rule,) = policy["matchConstraints"]["resourceRules"]
    assert rule["apiGroups"] == ["kiu.dev"]
    assert set(rule["resources"]) == {
        "projectversions",
        "projectversions/status",
        "projectversions/scale",
    }
    (condition,) = policy["matchConditions"]
    assert '"system:serviceaccount:kiu-system:kiu-gateway"' in condition["expression"]
    binding = find(default, "ValidatingAdmissionPolicyBinding", POLICY)["spec"]
    assert (binding["policyName"], binding["validationActions"]) == (POLICY, ["Deny"])
    renamed = chart.template(set_values=["gateway.serviceAccount.name=edge"])
    (condition,) = find(renamed, "ValidatingAdmissionPolicy", POLICY)["spec"]["matchConditions"]
    assert '"system:serviceaccount:kiu-system:edge"' in condition["expression"]
    without = chart.template(set_values=["gateway.rbac.create=false"])
    assert of_kind(without, "ValidatingAdmissionPolicy") == []


def test_roles_for_users_aggregate_into_view_and_edit(default: list[dict[str, Any]]) -> None:
    def role(suffix: str) -> dict[str, Any]:
        return find(default, "ClusterRole", f"{NAMESPACE}-kiu-{suffix}")

    aggregate = "rbac.authorization.k8s.io/aggregate-to-"
    view, edit, invoker = role("view"), role("edit"), role("invoker")
    assert {k for k in view["metadata"]["labels"] if k.startswith(aggregate)} == {
        f"{aggregate}view",
        f"{aggregate}edit",
        f"{aggregate}admin",
    }
    assert {k for k in edit["metadata"]["labels"] if k.startswith(aggregate)} == {
        f"{aggregate}edit",
        f"{aggregate}admin",
    }
    assert not any(k.startswith(aggregate) for k in invoker["metadata"]["labels"])
    assert {verb for rule in view["rules"] for verb in rule["verbs"]} == {"get", "list", "watch"}
    assert {"invoke", "patch", "delete"} <= set(edit["rules"][0]["verbs"])
    assert edit["rules"][1] == {
        "apiGroups": ["kiu.dev"],
        "resources": ["projectversions/scale"],
        "verbs": ["update", "patch"],
    }
    assert invoker["rules"] == [
        {"apiGroups": ["kiu.dev"], "resources": ["projectversions"], "verbs": ["invoke"]}
    ]
    assert of_kind(chart.template(set_values=["userRoles.create=false"]), "ClusterRole") == [
        o for o in of_kind(default, "ClusterRole") if o not in (view, edit, invoker)
    ]


def test_tls_is_on_by_default_with_a_generated_certificate(
    default: list[dict[str, Any]],
) -> None:
    secret = find(default, "Secret", "kiu-gateway-tls")
    assert secret["type"] == "kubernetes.io/tls"
    ca = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["ca.crt"]))
    cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    cert.verify_directly_issued_by(ca)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "kiu-gateway.kiu-system.svc" in names.get_values_for_type(x509.DNSName)
    pod = _gateway_pod(default)
    (container,) = pod["containers"]
    args = args_of(default, "kiu-gateway")
    assert "--tls-cert=/etc/kiu/tls/tls.crt" in args
    assert "--tls-key=/etc/kiu/tls/tls.key" in args
    assert {"name": "tls", "mountPath": "/etc/kiu/tls", "readOnly": True} in container[
        "volumeMounts"
    ]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "tls"]
    assert volume["secret"]["secretName"] == "kiu-gateway-tls"
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):  # the internal port
        assert "scheme" not in container[probe]["httpGet"]


def test_plain_http_only_when_asked_and_named_secrets_are_used() -> None:
    plain = chart.template(set_values=["gateway.tls.enabled=false"])
    assert not [a for a in args_of(plain, "kiu-gateway") if a.startswith("--tls")]
    assert of_kind(plain, "Secret") == []
    named = chart.template(set_values=["gateway.tls.secretName=edge-tls"])
    assert of_kind(named, "Secret") == []
    assert of_kind(named, "Certificate") == []
    (volume,) = [v for v in _gateway_pod(named)["volumes"] if v["name"] == "tls"]
    assert volume["secret"]["secretName"] == "edge-tls"


def test_cert_manager_issues_the_certificate(exposed: list[dict[str, Any]]) -> None:
    certificate = find(exposed, "Certificate", "kiu-gateway-tls")["spec"]
    assert certificate["secretName"] == "kiu-gateway-tls"
    assert certificate["issuerRef"] == {
        "name": "letsencrypt",
        "kind": "ClusterIssuer",
        "group": "cert-manager.io",
    }
    assert {"kiu.example.com", "kiu-gateway.kiu-system.svc"} <= set(certificate["dnsNames"])
    assert of_kind(exposed, "Secret") == []


def test_ingress_and_route_pass_host_and_path_unchanged(exposed: list[dict[str, Any]]) -> None:
    ingress = find(exposed, "Ingress", "kiu-gateway")
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/backend-protocol"] == "HTTPS"
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-body-size"].rstrip("m")) >= 6
    assert not [a for a in annotations if "rewrite" in a or "upstream-vhost" in a]
    spec = ingress["spec"]
    assert spec["tls"] == [{"hosts": ["kiu.example.com"], "secretName": "kiu-example-com-tls"}]
    (rule,) = spec["rules"]
    (path,) = rule["http"]["paths"]
    assert (rule["host"], path["path"], path["pathType"]) == ("kiu.example.com", "/", "Prefix")
    assert path["backend"]["service"]["name"] == "kiu-gateway"
    route = find(exposed, "HTTPRoute", "kiu-gateway")["spec"]
    assert route["parentRefs"] == [
        {"name": "public", "namespace": "gateways", "sectionName": "https"}
    ]
    (rule,) = route["rules"]
    assert "filters" not in rule
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    assert rule["backendRefs"] == [{"name": "kiu-gateway", "port": 8080}]


def test_object_grants_reach_the_gateway(exposed: list[dict[str, Any]]) -> None:
    grants = [a for a in args_of(exposed, "kiu-gateway") if a.startswith("--s3-allow")]
    assert grants == [
        "--s3-allow=retail=photos/retail/",
        "--s3-allow=retail=shared",
        "--s3-allow=shipping=labels",
    ]
    assert "--s3-namespace-secret=kiu-objects" in args_of(exposed, "kiu-gateway")
    role = find(exposed, "ClusterRole", f"{NAMESPACE}-kiu-gateway")
    assert {
        "apiGroups": [""],
        "resources": ["secrets"],
        "resourceNames": ["kiu-objects"],
        "verbs": ["list", "watch"],
    } in role["rules"]
