"""charts/kiu without a cluster: `helm lint` and `helm template` over tests/chart/values/*.yaml,
and what the rendered objects must say (labels, Pod Security, RBAC, wiring, schema)."""

from __future__ import annotations

import base64
import importlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kiu.manifests import workload
from tests.chart import chart, docs
from tests.chart.chart import args_of, find, of_kind, pod_specs
from tests.cluster.fixtures import REPO

pytestmark = pytest.mark.skipif(not chart.HELM.exists(), reason="helm is built by `make tools`")

NAMESPACE = "kiu-system"
STANDARD_LABELS = {
    "helm.sh/chart",
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
}


@pytest.fixture(scope="module", params=chart.VALUES_FILES, ids=lambda path: path.stem)
def rendered(request: pytest.FixtureRequest) -> tuple[Path, list[dict[str, Any]]]:
    path: Path = request.param
    return path, chart.template(path)


@pytest.fixture(scope="module")
def default() -> list[dict[str, Any]]:
    return chart.template()


@pytest.fixture(scope="module")
def production() -> list[dict[str, Any]]:
    return chart.template(chart.VALUES / "production.yaml")


def _values(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text()) or {}


# --- the chart as a whole --------------------------------------------------------------


def test_chart_crd_is_the_crd() -> None:
    assert (chart.CHART / "crds" / "projectversion.yaml").read_bytes() == (
        REPO / "crds" / "projectversion.yaml"
    ).read_bytes(), "copy crds/projectversion.yaml to charts/kiu/crds/"


@pytest.mark.parametrize("path", chart.VALUES_FILES, ids=lambda path: path.stem)
def test_helm_lint_strict(path: Path) -> None:
    proc = chart.helm("lint", str(chart.CHART), "--strict", "--values", str(path))
    assert "0 chart(s) failed" in proc.stdout


def test_chart_version_is_kiu_version() -> None:
    import kiu

    meta = yaml.safe_load((chart.CHART / "Chart.yaml").read_text())
    assert meta["appVersion"] == meta["version"] == kiu.__version__


def test_every_object_has_the_standard_labels(rendered: Any) -> None:
    _, objects = rendered
    for obj in objects:
        if obj["kind"] == "CustomResourceDefinition":
            continue
        labels = obj["metadata"].get("labels", {})
        missing = STANDARD_LABELS - set(labels)
        assert not missing, f"{obj['kind']}/{obj['metadata']['name']} lacks {missing}"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/part-of"] == "kiu"


def test_namespaced_objects_go_to_the_release_namespace(default: list[dict[str, Any]]) -> None:
    cluster_scoped = {
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    }
    for obj in default:
        if obj["kind"] in cluster_scoped:
            assert "namespace" not in obj["metadata"]
        else:
            assert obj["metadata"]["namespace"] == NAMESPACE, obj["metadata"]["name"]


def test_cluster_scoped_names_carry_the_namespace(default: list[dict[str, Any]]) -> None:
    """Two releases called kiu in two namespaces do not fight over a ClusterRole."""
    for kind in (
        "ClusterRole",
        "ClusterRoleBinding",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ):
        for obj in of_kind(default, kind):
            assert obj["metadata"]["name"].startswith(f"{NAMESPACE}-kiu-")


# --- Pod Security: restricted, and more ---------------------------------------------------

_RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def restricted_violations(spec: dict[str, Any]) -> Iterator[str]:
    """What the restricted Pod Security Standard (v1.36) forbids in a pod spec."""
    pod = spec.get("securityContext", {})
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            yield field
    for volume in spec.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= _RESTRICTED_VOLUMES:
            yield f"volume {volume['name']}: {kinds}"
    for container in spec.get("initContainers", []) + spec["containers"]:
        ctx = container.get("securityContext", {})
        name = container["name"]
        if ctx.get("privileged"):
            yield f"{name}: privileged"
        if ctx.get("allowPrivilegeEscalation") is not False:
            yield f"{name}: allowPrivilegeEscalation"
        if set(ctx.get("capabilities", {}).get("add", [])) - {"NET_BIND_SERVICE"}:
            yield f"{name}: capabilities.add"
        if "ALL" not in ctx.get("capabilities", {}).get("drop", []):
            yield f"{name}: capabilities.drop ALL"
        if ctx.get("runAsNonRoot", pod.get("runAsNonRoot")) is not True:
            yield f"{name}: runAsNonRoot"
        if ctx.get("runAsUser", pod.get("runAsUser")) == 0:
            yield f"{name}: runAsUser 0"
        seccomp = ctx.get("seccompProfile", pod.get("seccompProfile", {})).get("type")
        if seccomp not in {"RuntimeDefault", "Localhost"}:
            yield f"{name}: seccompProfile"
        if any(port.get("hostPort") for port in container.get("ports", [])):
            yield f"{name}: hostPort"


def test_pods_are_restricted_non_root_and_read_only(rendered: Any) -> None:
    _, objects = rendered
    specs = pod_specs(objects)
    assert {name for name, _ in specs} == {"kiu-operator", "kiu-gateway"}
    for name, spec in specs:
        assert list(restricted_violations(spec)) == [], name
        for container in spec["containers"]:
            ctx = container["securityContext"]
            assert ctx["readOnlyRootFilesystem"] is True
            assert ctx["capabilities"]["drop"] == ["ALL"]
            assert {"mountPath": "/tmp", "name": "tmp"} in container["volumeMounts"]
            assert "limits" in container["resources"]
            assert "requests" in container["resources"]
        assert spec["securityContext"]["runAsUser"] != 0


def test_the_unit_pods_the_operator_makes_are_restricted_too() -> None:
    from kiu.manifests import units

    template = units.unit_pod_template(
        runtime="cpu",
        model="shapes-classifier",
        repository=units.LocalPath(units.BUNDLED_REPOSITORY),
        image="ghcr.io/kiu-dev/kiu:0.1.0",
    )
    assert list(restricted_violations(template["spec"])) == []


# --- commands: exactly what `kiu` accepts ----------------------------------------------


def _parse(command: str, argv: list[str]) -> Any:
    module = importlib.import_module(f"kiu.{command}.command")
    make = getattr(module, "parser", None) or module._parser
    return make().parse_args(argv)


def test_commands_are_valid_kiu_command_lines(rendered: Any) -> None:
    _, objects = rendered
    operator = args_of(objects, "kiu-operator")
    gateway = args_of(objects, "kiu-gateway")
    assert operator[:2] == ["kiu", "operator"]
    assert gateway[:2] == ["kiu", "gateway"]
    _parse("controller", operator[2:])
    _parse("gateway", gateway[2:])


def test_the_operator_scrapes_exactly_this_releases_gateway_pods(rendered: Any) -> None:
    _, objects = rendered
    options = _parse("controller", args_of(objects, "kiu-operator")[2:])
    labels = find(objects, "Deployment", "kiu-gateway")["spec"]["template"]["metadata"]["labels"]
    wanted = dict(pair.split("=", 1) for pair in options.gateway_selector.split(","))
    assert wanted.items() <= labels.items()
    assert wanted["app.kubernetes.io/instance"] == "kiu"
    assert options.gateway_namespace == NAMESPACE
    gateway = _parse("gateway", args_of(objects, "kiu-gateway")[2:])
    assert options.gateway_port == gateway.internal_port
    operator_labels = find(objects, "Deployment", "kiu-operator")["spec"]["template"]["metadata"][
        "labels"
    ]
    assert not wanted.items() <= operator_labels.items()


def test_the_gateway_shares_tps_over_its_own_service(rendered: Any) -> None:
    _, objects = rendered
    options = _parse("gateway", args_of(objects, "kiu-gateway")[2:])
    assert options.kubernetes
    service = find(objects, "Service", options.gateway_service)
    pod_labels = find(objects, "Deployment", "kiu-gateway")["spec"]["template"]["metadata"][
        "labels"
    ]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert options.gateway_namespace == NAMESPACE


def test_operator_runs_two_replicas_with_a_lease_unless_alone(rendered: Any) -> None:
    path, objects = rendered
    replicas = _values(path).get("operator", {}).get("replicas", 2)
    deployment = find(objects, "Deployment", "kiu-operator")
    assert deployment["spec"]["replicas"] == replicas
    options = _parse("controller", args_of(objects, "kiu-operator")[2:])
    assert bool(options.standalone) == (replicas == 1)
    assert options.lease_namespace == NAMESPACE
    env = {e["name"] for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert {"POD_NAME", "POD_NAMESPACE"} <= env


def test_units_use_the_chart_image_by_default(default: list[dict[str, Any]]) -> None:
    options = _parse("controller", args_of(default, "kiu-operator")[2:])
    image = find(default, "Deployment", "kiu-operator")["spec"]["template"]["spec"]["containers"][
        0
    ]["image"]
    assert options.unit_image == image == "ghcr.io/kiu-dev/kiu:0.1.0"
    assert options.cpu_model_repository is None


def test_gateway_is_authenticated_unless_explicitly_anonymous(rendered: Any) -> None:
    path, objects = rendered
    anonymous = _values(path).get("gateway", {}).get("auth", {}).get("allowAnonymous", False)
    assert _parse("gateway", args_of(objects, "kiu-gateway")[2:]).allow_anonymous is anonymous


def test_digest_pins_the_image(production: list[dict[str, Any]]) -> None:
    for _, spec in pod_specs(production):
        assert re.fullmatch(
            r"registry\.example\.com/kiu@sha256:[0-9a-f]{64}", spec["containers"][0]["image"]
        )
        assert spec["imagePullSecrets"] == [{"name": "registry"}]


# --- RBAC: least privilege ------------------------------------------------------------

Rule = tuple[str, str, frozenset[str], frozenset[str]]


def _rules(role: dict[str, Any]) -> set[Rule]:
    out = set()
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.add(
                    (
                        group,
                        resource,
                        frozenset(rule["verbs"]),
                        frozenset(rule.get("resourceNames", [])),
                    )
                )
    return out


def _r(group: str, resource: str, *verbs: str, names: tuple[str, ...] = ()) -> Rule:
    return (group, resource, frozenset(verbs), frozenset(names))


OPERATOR_NAMESPACED = {
    _r("kiu.dev", "projectversions", "list", "watch"),
    _r("kiu.dev", "projectversions/status", "patch"),
    _r("apps", "deployments", "list", "watch", "create", "patch", "delete"),
    _r("", "services", "list", "watch", "create", "patch"),
    _r("policy", "poddisruptionbudgets", "list", "watch", "create", "patch"),
    _r("", "pods", "list", "watch"),
    _r("", "events", "create", "patch"),
}
GATEWAY_NAMESPACED = {
    _r("kiu.dev", "projectversions", "list", "watch", "patch"),
    _r("discovery.k8s.io", "endpointslices", "list", "watch"),
}
GATEWAY_CLUSTER = {
    _r("authentication.k8s.io", "tokenreviews", "create"),
    _r("authorization.k8s.io", "subjectaccessreviews", "create"),
    _r("", "nodes", "get"),
}


def _role(objects: list[dict[str, Any]], kind: str, name: str, namespace: str | None = None):
    matches = [
        o
        for o in of_kind(objects, kind, name)
        if namespace is None or o["metadata"]["namespace"] == namespace
    ]
    assert len(matches) == 1, (kind, name, namespace)
    return _rules(matches[0])


def test_operator_rbac_cluster_wide(default: list[dict[str, Any]]) -> None:
    cluster = _role(default, "ClusterRole", "kiu-system-kiu-operator")
    assert cluster == {_r("", "nodes", "list", "watch"), *OPERATOR_NAMESPACED}
    assert _role(default, "Role", "kiu-operator-leader") == {
        _r("coordination.k8s.io", "leases", "create"),
        _r("coordination.k8s.io", "leases", "get", "update", names=("kiu-operator",)),
        _r("", "pods", "list"),
    }


def _documented(doc: str, heading: str) -> dict[tuple[str, str], set[str]]:
    """The permissions table under `heading` in docs/<doc>: (group, resource) -> verbs."""
    section = (REPO / "docs" / doc).read_text().split(heading, 1)[1].split("\n## ", 1)[0]
    table: dict[tuple[str, str], set[str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or cells[0] in {"API group", ""} or set(cells[0]) <= {"-"}:
            continue
        group = "" if cells[0].startswith('""') else cells[0]
        resource = cells[1].split()[0]
        table[(group, resource)] = {v.strip() for v in cells[2].split(",")}
    return table


def _granted(rules: set[Rule]) -> dict[tuple[str, str], set[str]]:
    granted: dict[tuple[str, str], set[str]] = {}
    for group, resource, verbs, _ in rules:
        granted.setdefault((group, resource), set()).update(verbs)
    return granted


def test_operator_rbac_matches_docs_operator_md(default: list[dict[str, Any]]) -> None:
    """The table in docs/operator.md ("Permissions") is what the chart grants."""
    rules = _role(default, "ClusterRole", "kiu-system-kiu-operator") | _role(
        default, "Role", "kiu-operator-leader"
    )
    assert _granted(rules) == _documented("operator.md", "## Permissions")


def test_gateway_rbac_matches_docs_gateway_md(production: list[dict[str, Any]]) -> None:
    """The table in docs/gateway.md ("Kubernetes permissions") is what the chart grants
    (with access keys and an object store, so that every rule is there)."""
    rules = (
        _role(production, "ClusterRole", "kiu-system-kiu-gateway")
        | _role(production, "Role", "kiu-gateway-replicas")
        | _role(production, "Role", "kiu-gateway-access-keys")
    )
    assert _granted(rules) == _documented("gateway.md", "## Kubernetes permissions")


def test_operator_rbac_per_namespace() -> None:
    objects = chart.template(chart.VALUES / "namespaced.yaml")
    assert _role(objects, "ClusterRole", "kiu-system-kiu-operator") == {
        _r("", "nodes", "list", "watch")
    }
    for namespace in ("retail", "shipping"):
        assert _role(objects, "Role", "kiu-operator", namespace) == OPERATOR_NAMESPACED
        binding = find(
            [o for o in objects if o["metadata"].get("namespace") == namespace],
            "RoleBinding",
            "kiu-operator",
        )
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "kiu-operator", "namespace": NAMESPACE}
        ]
    assert _role(objects, "ClusterRole", "kiu-system-kiu-gateway") == GATEWAY_CLUSTER
    for namespace in ("retail", "shipping"):
        assert _role(objects, "Role", "kiu-gateway", namespace) == GATEWAY_NAMESPACED


def test_gateway_rbac(default: list[dict[str, Any]], production: list[dict[str, Any]]) -> None:
    assert (
        _role(default, "ClusterRole", "kiu-system-kiu-gateway")
        == GATEWAY_CLUSTER | GATEWAY_NAMESPACED
    )
    assert _role(default, "Role", "kiu-gateway-replicas") == {
        _r("discovery.k8s.io", "endpointslices", "list", "watch")
    }
    # No access key to read: no Secret at all.
    assert of_kind(default, "Role", "kiu-gateway-access-keys") == []
    # The keys' Secrets by name, in their own namespace; the S3 Secret by name too.
    assert _role(production, "Role", "kiu-gateway-access-keys", "kiu-keys") == {
        _r("", "secrets", "list", "watch", names=("kiu-access-key-retail",))
    }
    assert _r("", "secrets", "list", "watch", names=("kiu-s3",)) in _role(
        production, "Role", "kiu-gateway-replicas"
    )


def test_no_wildcards_no_secrets_for_the_operator(rendered: Any) -> None:
    _, objects = rendered
    for obj in of_kind(objects, "ClusterRole") + of_kind(objects, "Role"):
        for group, resource, verbs, _ in _rules(obj):
            assert "*" not in verbs, obj["metadata"]
            assert "*" not in {resource, group}, obj["metadata"]
            if "operator" in obj["metadata"]["name"]:
                assert resource not in {"secrets", "configmaps"}
            assert not verbs & {"escalate", "bind", "impersonate"}


def test_bindings_name_the_chart_service_accounts(rendered: Any) -> None:
    _, objects = rendered
    accounts = {o["metadata"]["name"] for o in of_kind(objects, "ServiceAccount")}
    assert accounts == {"kiu-operator", "kiu-gateway"}
    roles = {(o["kind"], o["metadata"]["name"]) for o in objects if "rules" in o}
    for binding in of_kind(objects, "ClusterRoleBinding") + of_kind(objects, "RoleBinding"):
        (subject,) = binding["subjects"]
        assert subject["name"] in accounts
        assert subject["namespace"] == NAMESPACE
        assert (binding["roleRef"]["kind"], binding["roleRef"]["name"]) in roles


# --- NetworkPolicies ------------------------------------------------------------------


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


def test_only_the_gateway_reaches_the_units(production: list[dict[str, Any]]) -> None:
    policies = of_kind(production, "NetworkPolicy", "kiu-inference-units")
    assert sorted(p["metadata"]["namespace"] for p in policies) == ["retail", "shipping"]
    unit = workload.labels(project_version="shoes-v3", project="shoes", zone="zone-a")
    gateway = find(production, "Deployment", "kiu-gateway")["spec"]["template"]["metadata"]
    operator = find(production, "Deployment", "kiu-operator")["spec"]["template"]["metadata"]
    for policy in policies:
        spec = policy["spec"]
        assert _matches(spec["podSelector"]["matchLabels"], unit)
        assert spec["policyTypes"] == ["Ingress"]
        grpc, metrics = spec["ingress"]
        assert grpc["ports"] == [{"port": 8001, "protocol": "TCP"}]
        (peer,) = grpc["from"]
        assert peer["namespaceSelector"]["matchLabels"] == {
            "kubernetes.io/metadata.name": NAMESPACE
        }
        assert _matches(peer["podSelector"]["matchLabels"], gateway["labels"])
        assert not _matches(peer["podSelector"]["matchLabels"], operator["labels"])
        assert metrics["ports"] == [{"port": 8002, "protocol": "TCP"}]


def test_gateway_clients_and_scrapers(
    default: list[dict[str, Any]], production: list[dict[str, Any]]
) -> None:
    """Clients reach the API port only; the internal port (metrics, probes, the replica
    exchange) admits the operator, metricsFrom and the other gateway pods only."""
    operator = find(production, "Deployment", "kiu-operator")["spec"]["template"]["metadata"]
    gateway = find(production, "Deployment", "kiu-gateway")["spec"]["template"]["metadata"]
    api, internal = find(production, "NetworkPolicy", "kiu-gateway")["spec"]["ingress"]
    assert api["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert api["from"] == [
        {"namespaceSelector": {"matchLabels": {"kiu.dev/gateway-client": "true"}}}
    ]
    assert internal["ports"] == [{"port": "internal", "protocol": "TCP"}]
    peers = internal["from"]
    assert any(
        "podSelector" in p and _matches(p["podSelector"]["matchLabels"], operator["labels"])
        for p in peers
    ), "the operator must reach the gateway's /metrics"
    assert any(
        "podSelector" in p and _matches(p["podSelector"]["matchLabels"], gateway["labels"])
        for p in peers
    ), "the replicas must reach each other's exchange"
    assert {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    } in peers
    assert not any(p in peers for p in api["from"])
    # Without gatewayClients the API is open to every client; the internal port is not.
    open_api, closed = find(default, "NetworkPolicy", "kiu-gateway")["spec"]["ingress"]
    assert "from" not in open_api
    assert closed["from"]
    # Nothing but metricsFrom reaches the operator.
    assert find(default, "NetworkPolicy", "kiu-operator")["spec"]["ingress"] == []
    (scrape,) = find(production, "NetworkPolicy", "kiu-operator")["spec"]["ingress"]
    assert scrape["ports"] == [{"port": "metrics", "protocol": "TCP"}]


def test_gateway_probes_and_metrics_use_the_internal_port(default: list[dict[str, Any]]) -> None:
    pod = find(default, "Deployment", "kiu-gateway")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    options = _parse("gateway", container["args"][1:])
    assert ports == {"http": options.port, "internal": options.internal_port}
    assert options.port != options.internal_port
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] == "internal", probe
    # The API Service exposes the API only; the internal port has a headless Service.
    service = find(default, "Service", "kiu-gateway")
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]
    internal = find(default, "Service", "kiu-gateway-internal")
    assert internal["spec"]["clusterIP"] == "None"
    assert [p["targetPort"] for p in internal["spec"]["ports"]] == ["internal"]
    env = {e["name"]: e.get("valueFrom", {}) for e in container["env"]}
    assert env["POD_IP"] == {"fieldRef": {"fieldPath": "status.podIP"}}


def test_network_policies_can_be_turned_off() -> None:
    assert of_kind(chart.template(chart.VALUES / "minimal.yaml"), "NetworkPolicy") == []


# --- availability: PDBs and HPA -------------------------------------------------------


def test_disruption_budgets_only_with_more_than_one_replica(rendered: Any) -> None:
    path, objects = rendered
    values = _values(path)
    budgets = {o["metadata"]["name"]: o for o in of_kind(objects, "PodDisruptionBudget")}
    operator_replicas = values.get("operator", {}).get("replicas", 2)
    assert ("kiu-operator" in budgets) == (operator_replicas > 1)
    for name, budget in budgets.items():
        pods = find(objects, "Deployment", name)["spec"]["template"]["metadata"]["labels"]
        assert _matches(budget["spec"]["selector"]["matchLabels"], pods)
        assert budget["spec"]["maxUnavailable"] == 1


def test_gateway_autoscaler(
    default: list[dict[str, Any]], production: list[dict[str, Any]]
) -> None:
    assert of_kind(default, "HorizontalPodAutoscaler") == []
    assert find(default, "Deployment", "kiu-gateway")["spec"]["replicas"] == 2
    hpa = find(production, "HorizontalPodAutoscaler", "kiu-gateway")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "kiu-gateway",
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 10)
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["averageUtilization"] == 60
    # The HPA owns the replica count.
    assert "replicas" not in find(production, "Deployment", "kiu-gateway")["spec"]


# --- monitoring ---------------------------------------------------------------------


def _metric_names() -> set[str]:
    """Every metric family kiu exports, read from the metrics modules."""
    names: set[str] = set()
    for path in (REPO / "operator" / "kiu").rglob("metrics.py"):
        names |= set(re.findall(r'"(kiu_[a-z_]+)"', path.read_text()))
    return names


def test_dashboard_plots_what_kiu_exports(production: list[dict[str, Any]]) -> None:
    config = find(production, "ConfigMap", "kiu-dashboard")
    assert config["metadata"]["namespace"] == "monitoring"
    assert config["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(config["data"]["kiu.json"])
    titles = [panel["title"] for panel in dashboard["panels"]]
    for wanted in (
        "desired vs in service",
        "Demand vs TPS limit",
        "Throttled",
        "Latency per model",
        "Cold starts",
    ):
        assert any(wanted.lower() in title.lower() for title in titles), wanted
    expressions = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert any(
        "histogram_quantile(0.99, sum by (namespace, projectversion, le)" in e
        and "kiu_gateway_model_request_duration_seconds_bucket" in e
        for e in expressions
    )
    exported = _metric_names()
    suffixes = ("_total", "_bucket", "_sum", "_count")
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            for name in re.findall(r"\b(kiu_[a-z_]+)", target["expr"]):
                base = next((name[: -len(s)] for s in suffixes if name.endswith(s)), name)
                assert name in exported or base in exported, f"{panel['title']}: {name}"


def test_service_monitors_scrape_both_components(production: list[dict[str, Any]]) -> None:
    monitors = {o["metadata"]["name"]: o for o in of_kind(production, "ServiceMonitor")}
    assert set(monitors) == {"kiu-operator", "kiu-gateway"}
    for component, monitor in monitors.items():
        assert monitor["metadata"]["labels"]["release"] == "prometheus"
        (endpoint,) = monitor["spec"]["endpoints"]
        service = next(
            s
            for s in of_kind(production, "Service")
            if _matches(monitor["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])
        )
        assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
        assert (
            service["metadata"]["labels"]["app.kubernetes.io/component"] == component.split("-")[1]
        )


# --- access keys --------------------------------------------------------------------


def test_access_key_secret(production: list[dict[str, Any]]) -> None:
    secret = find(production, "Secret", "kiu-access-key-retail")
    assert secret["metadata"]["namespace"] == "kiu-keys"
    assert secret["metadata"]["labels"]["kiu.dev/access-key"] == "retail"
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data == {
        "accessKeyId": "AKIAKIURETAIL0000001",
        "secretAccessKey": "not-a-real-secret-but-fixed-for-the-test",
        "namespaces": "retail,shipping",
    }
    # The gateway reads this Secret, by name, where it is.
    options = _parse("gateway", args_of(production, "kiu-gateway")[2:])
    assert options.credentials_namespace == "kiu-keys"
    assert options.access_key_secrets == ["kiu-access-key-retail"]
    assert not options.discover_access_keys


def test_access_keys_named_or_discovered() -> None:
    named = chart.template(
        chart.VALUES / "production.yaml",
        set_values=["gateway.auth.accessKeySecrets={team-a,kiu-access-key-retail}"],
    )
    options = _parse("gateway", args_of(named, "kiu-gateway")[2:])
    assert options.access_key_secrets == ["kiu-access-key-retail", "team-a"]
    assert _role(named, "Role", "kiu-gateway-access-keys", "kiu-keys") == {
        _r("", "secrets", "list", "watch", names=("kiu-access-key-retail", "team-a"))
    }
    discovered = chart.template(
        chart.VALUES / "production.yaml", set_values=["gateway.auth.discoverAccessKeys=true"]
    )
    options = _parse("gateway", args_of(discovered, "kiu-gateway")[2:])
    assert (options.discover_access_keys, options.access_key_secrets) == (True, [])
    assert _role(discovered, "Role", "kiu-gateway-access-keys", "kiu-keys") == {
        _r("", "secrets", "list", "watch")
    }


def test_a_missing_secret_is_generated() -> None:
    objects = chart.template(chart.VALUES / "local-cluster.yaml")
    secret = find(objects, "Secret", "kiu-access-key-test")
    generated = base64.b64decode(secret["data"]["secretAccessKey"]).decode()
    assert re.fullmatch(r"[A-Za-z0-9]{40}", generated)
    # by default no access key, only the gateway's generated TLS certificate
    assert [o["metadata"]["name"] for o in of_kind(chart.template(), "Secret")] == [
        "kiu-gateway-tls"
    ]


# --- values: schema and comments ----------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ("operator.replica=2", "additional properties 'replica' not allowed"),
        ("gateway.auth.allowAnonymous=yes", "allowAnonymous"),
        ("gateway.service.type=Ingress", "type"),
        ("operator.watchNamespaces[0]=Not_A_Namespace", "watchNamespaces"),
        ("accessKeys.keys[0].name=x", "accessKeyId"),
        ("image.digest=latest", "digest"),
        ("unknown=1", "additional properties 'unknown' not allowed"),
    ],
)
def test_schema_rejects_wrong_values(setting: str, complaint: str) -> None:
    with pytest.raises(chart.RenderError) as refused:
        chart.template(set_values=[setting])
    assert complaint in str(refused.value)


def _leaf_paths(values: Any, prefix: str = "") -> Iterator[str]:
    for key, value in values.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict) and value:
            yield from _leaf_paths(value, path)
        else:
            yield path


def test_every_value_is_in_the_schema_with_a_description() -> None:
    schema_doc = docs.chart_doc()
    schema = json.loads((chart.CHART / "values.schema.json").read_text())
    described = {path for path, node in schema_doc.leaves(schema) if node.get("description")}
    values = yaml.safe_load((chart.CHART / "values.yaml").read_text())
    leaves = set(_leaf_paths(values))
    # A free-form object with defaults (resources, securityContext...) is one value.
    for path in leaves:
        assert any(path == d or path.startswith(d + ".") for d in described), path


def test_every_value_is_commented() -> None:
    """Each value of values.yaml, or the value it is part of, has a `# --` comment above it."""
    lines = (chart.CHART / "values.yaml").read_text().splitlines()
    ancestors: list[tuple[int, bool]] = []  # (indent, commented) of the enclosing keys
    for number, line in enumerate(lines):
        match = re.match(r"^(\s*)([A-Za-z_][A-Za-z0-9_]*):(.*)$", line)
        if not match:
            continue
        indent = len(match.group(1))
        while ancestors and ancestors[-1][0] >= indent:
            ancestors.pop()
        block = []
        for previous in range(number - 1, -1, -1):
            if not lines[previous].lstrip().startswith("#"):
                break
            block.append(lines[previous].strip())
        commented = any(text.startswith("# --") for text in block)
        following = next((text for text in lines[number + 1 :] if text.strip()), "")
        is_section = match.group(3).strip() == "" and (
            len(following) - len(following.lstrip()) > indent
        )
        inherited = any(c for _, c in ancestors)
        assert commented or inherited or is_section, f"values.yaml:{number + 1}: {line}"
        ancestors.append((indent, commented or inherited))


# --- alerts and `helm test` --------------------------------------------------------------

ALERTS = {
    "KiuProjectVersionFailed",
    "KiuProjectVersionDegraded",
    "KiuThrottling",
    "KiuDemandAboveMaxCapacity",
    "KiuNoGatewayDemand",
    "KiuOperatorWithoutLeader",
}


def test_alerts_are_opt_in(default: list[dict[str, Any]]) -> None:
    assert not of_kind(default, "PrometheusRule")


def test_alert_rules_parse_and_read_what_kiu_exports(production: list[dict[str, Any]]) -> None:
    import promql_parser

    rule = find(production, "PrometheusRule", "kiu")
    (group,) = rule["spec"]["groups"]
    rules = {r["alert"]: r for r in group["rules"]}
    assert set(rules) == ALERTS
    exported = _metric_names()
    for name, alert in rules.items():
        promql_parser.parse(alert["expr"])  # ValueError on a PromQL syntax error
        for metric in re.findall(r"\b(kiu_[a-z_]+)", alert["expr"]):
            base = metric.removesuffix("_total")
            assert metric in exported or base in exported, f"{name}: {metric}"
        assert re.fullmatch(r"[0-9]+[smh]", alert["for"])
        assert alert["labels"]["severity"] == "warning"
        assert alert["annotations"]["summary"]
    assert "> 0.05" in rules["KiuThrottling"]["expr"]
    assert 'namespace="kiu-system"' in rules["KiuOperatorWithoutLeader"]["expr"]


def _hook_pod(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (pod,) = [
        o
        for o in of_kind(objects, "Pod")
        if o["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"
    ]
    return pod


def test_helm_test_calls_the_gateway_service_with_the_charts_key() -> None:
    objects = chart.template(chart.VALUES / "local-cluster.yaml")
    pod = _hook_pod(objects)
    (container,) = pod["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    service = find(objects, "Service", "kiu-gateway")
    port = service["spec"]["ports"][0]["port"]
    assert env["KIU_TEST_ENDPOINT"]["value"] == f"http://kiu-gateway.{NAMESPACE}.svc:{port}"
    secret = find(objects, "Secret", "kiu-access-key-test")
    for name, key in (
        ("AWS_ACCESS_KEY_ID", "accessKeyId"),
        ("AWS_SECRET_ACCESS_KEY", "secretAccessKey"),
    ):
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert (ref["name"], ref["key"]) == (secret["metadata"]["name"], key)
        assert key in secret["data"]
    assert env["KIU_TEST_EXPECT_PROJECT"]["value"] == "false"
    script = container["command"][2]
    assert container["command"][:2] == ["python", "-c"]
    assert script == (chart.CHART / "files" / "helm-test.py").read_text()
    compile(script, "helm-test.py", "exec")
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["spec"]["automountServiceAccountToken"] is False
    gateway = find(objects, "Deployment", "kiu-gateway")["spec"]["template"]["spec"]
    assert pod["spec"]["securityContext"] == gateway["securityContext"]
    assert container["securityContext"] == gateway["containers"][0]["securityContext"]


def test_helm_test_needs_a_key_it_can_read() -> None:
    # No key created by the chart, or keys kept in another namespace: no test Pod.
    assert not of_kind(chart.template(), "Pod")
    assert not of_kind(chart.template(chart.VALUES / "production.yaml"), "Pod")
    named = chart.template(
        chart.VALUES / "local-cluster.yaml",
        set_values=[
            "helmTest.projectArn=arn:kiu:rekognition:retail:000000000000:project/shapes/1",
            "helmTest.endpoint=http://10.96.0.12:8080",
        ],
    )
    env = {e["name"]: e.get("value") for e in _hook_pod(named)["spec"]["containers"][0]["env"]}
    assert env["KIU_TEST_ENDPOINT"] == "http://10.96.0.12:8080"
    assert env["KIU_TEST_EXPECT_PROJECT"] == "true"
