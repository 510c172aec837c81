"""The operator at scale: 200 and 1000 ProjectVersions on simulated nodes.

On the local cluster, `kiu operator` runs as a host process (so its memory can be
read from /proc) under a service account of its own, scoped to one namespace per
size. Unit pods go to the node agent's simulated nodes (Running and Ready at once,
no process): a MutatingAdmissionPolicy bound to the bench namespaces adds the
simulated nodes' toleration and node selector to every pod created there.
Each ProjectVersion has one unit (no autoscaling), zones spread round robin.

Measured per size, each on a fresh operator process: time from the first create
until every ProjectVersion reports RUNNING, the operator's peak resident memory,
and the API requests it makes per ProjectVersion per minute at rest, counted by
the API server itself (API Priority and Fairness: a FlowSchema matching only the
operator's service account, `apiserver_flowcontrol_dispatched_requests_total`).

Baselines measured in the same run: the same operator idle with no
ProjectVersion (memory, requests per minute), and the control plane alone
bringing the same number of plain one-replica Deployments to available on the
same simulated nodes (the floor under the time to RUNNING).
"""

from __future__ import annotations

import base64
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml
from tests.cluster.fixtures import REPO, ZONES, Cluster, start_cluster, stop_cluster, wait_for
from tests.gateway import processes

from bench import common

NAME = "operator"
NOT_RUN = (
    "It needs the local cluster with simulated nodes (`make tools`; it reuses a running "
    "`make cluster-up` or starts one; `KIU_SIM_NODES_PER_ZONE` must not be 0)."
)
GROUP, VERSION, PLURAL = "kiu.dev", "v1alpha1", "projectversions"
SIZES = tuple(int(n) for n in os.environ.get("KIU_BENCH_OPERATOR_SIZES", "200,1000").split(","))
IDLE_SECONDS = 20.0
SETTLE_SECONDS = 10.0
# Repetitions of every size (KIU_BENCH_OPERATOR_REPETITIONS; figures are medians).
REPETITIONS = int(os.environ.get("KIU_BENCH_OPERATOR_REPETITIONS", str(common.REPETITIONS)))
# The plain-Deployment baseline takes as long as the operator's run; by default it runs
# at the first size only, which keeps `make bench` some 10 minutes shorter on 2 cores
# (KIU_BENCH_OPERATOR_BASELINE_SIZES=200,1000 runs it at both).
BASELINE_SIZES = tuple(
    int(n) for n in os.environ.get("KIU_BENCH_OPERATOR_BASELINE_SIZES", "").split(",") if n
)
REST_SECONDS = 60.0  # one billing period: every running version writes its ledger once
CREATE_WORKERS = 16
SIM_TOLERATION = {
    "key": "kiu.dev/simulated",
    "operator": "Equal",
    "value": "true",
    "effect": "NoSchedule",
}
BENCH_LABEL = "kiu.dev/bench-simulated"


def cluster_objects(suffix: str, home: str) -> list[dict[str, Any]]:
    """FlowSchema (counts the operator's requests), the policy placing pods on simulated
    nodes, and the operator's permissions. All cluster-scoped, named with `suffix`."""
    toleration = (
        'Object.spec.tolerations{key: "kiu.dev/simulated", operator: "Equal", '
        'value: "true", effect: "NoSchedule"}'
    )
    patch = (
        "(has(object.spec.tolerations) ? "
        f'[JSONPatch{{op: "add", path: "/spec/tolerations/-", value: {toleration}}}] : '
        f'[JSONPatch{{op: "add", path: "/spec/tolerations", value: [{toleration}]}}]) + '
        "(has(object.spec.nodeSelector) ? "
        '[JSONPatch{op: "add", path: "/spec/nodeSelector/kiu.dev~1node-mode", '
        'value: "simulated"}] : '
        '[JSONPatch{op: "add", path: "/spec/nodeSelector", '
        'value: {"kiu.dev/node-mode": "simulated"}}])'
    )
    return [
        {
            "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
            "kind": "FlowSchema",
            "metadata": {"name": f"kiu-bench-operator-{suffix}"},
            "spec": {
                "priorityLevelConfiguration": {"name": "workload-low"},
                "matchingPrecedence": 1000,
                "distinguisherMethod": {"type": "ByUser"},
                "rules": [
                    {
                        "subjects": [
                            {
                                "kind": "ServiceAccount",
                                "serviceAccount": {"name": "kiu-bench-operator", "namespace": home},
                            }
                        ],
                        "resourceRules": [
                            {
                                "verbs": ["*"],
                                "apiGroups": ["*"],
                                "resources": ["*"],
                                "clusterScope": True,
                                "namespaces": ["*"],
                            }
                        ],
                        "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                    }
                ],
            },
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingAdmissionPolicy",
            "metadata": {"name": f"kiu-bench-simulated-{suffix}"},
            "spec": {
                "failurePolicy": "Fail",
                "reinvocationPolicy": "Never",
                "matchConstraints": {
                    "resourceRules": [
                        {
                            "apiGroups": [""],
                            "apiVersions": ["v1"],
                            "operations": ["CREATE"],
                            "resources": ["pods"],
                        }
                    ]
                },
                "mutations": [{"patchType": "JSONPatch", "jsonPatch": {"expression": patch}}],
            },
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingAdmissionPolicyBinding",
            "metadata": {"name": f"kiu-bench-simulated-{suffix}"},
            "spec": {
                "policyName": f"kiu-bench-simulated-{suffix}",
                "matchResources": {
                    "namespaceSelector": {"matchLabels": {BENCH_LABEL: suffix}},
                },
            },
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": f"kiu-bench-operator-{suffix}"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "cluster-admin",
            },
            "subjects": [
                {"kind": "ServiceAccount", "name": "kiu-bench-operator", "namespace": home}
            ],
        },
    ]


def projectversion(i: int) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ProjectVersion",
        "metadata": {"name": f"pv-{i:04d}"},
        "spec": {
            "project": "scale",
            "minInferenceUnits": 1,
            "model": {
                "name": "shapes-classifier",
                "repository": "/opt/kiu/triton-models",
                "task": "Classification",
            },
            "inferenceUnit": {
                "runtime": "cpu",
                "tps": 5,
                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
            },
            "zones": [ZONES[i % len(ZONES)]],
        },
    }


def deployment(i: int) -> dict[str, Any]:
    labels = {"app": f"plain-{i:04d}"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"plain-{i:04d}", "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "nodeSelector": {"topology.kubernetes.io/zone": ZONES[i % len(ZONES)]},
                    "containers": [
                        {
                            "name": "unit",
                            "image": "ghcr.io/kiu-dev/kiu:0.1.0",
                            "command": ["kiu", "unit"],
                            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                        }
                    ],
                },
            },
        },
    }


class Requests:
    """The operator's API requests so far, as the API server counts them."""

    def __init__(self, cluster: Cluster, flow_schema: str) -> None:
        self._cluster = cluster
        self._needle = f'flow_schema="{flow_schema}"'

    def count(self) -> float:
        text = self._cluster.kubectl("get", "--raw", "/metrics", timeout=60).stdout
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("apiserver_flowcontrol_dispatched_requests_total{")
            and self._needle in line
        )


def operator_kubeconfig(cluster: Cluster, home: str, path: Path) -> None:
    token = cluster.kubectl(
        "create", "token", "kiu-bench-operator", "-n", home, "--duration=7200s"
    ).stdout.strip()
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    entry = admin["clusters"][0]["cluster"]
    ca = entry.get("certificate-authority-data")
    if ca is None:
        ca = base64.b64encode(Path(entry["certificate-authority"]).read_bytes()).decode()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "c", "cluster": {"server": entry["server"], "certificate-authority-data": ca}}
        ],
        "users": [{"name": "kiu-bench-operator", "user": {"token": token}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "kiu-bench-operator"}}],
        "current-context": "c",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)


def start_operator(kubeconfig: Path, namespace: str, logs: Path) -> processes.Process:
    port = processes.free_port()
    process = processes.Process(
        f"operator-{namespace}",
        [
            sys.executable, "-m", "kiu", "operator",
            "--kubeconfig", str(kubeconfig),
            "--namespace", namespace,
            "--standalone",
            "--metrics-port", str(port),
            "--gateway-namespace", namespace,
            "--cpu-model-repository", str(REPO / "triton-models"),
            "--log-level", "WARNING",
        ],
        logs / f"operator-{namespace}.log",
        # kopf logs in with the client library's own loader, which reads $KUBECONFIG.
        env={"KUBECONFIG": str(kubeconfig)},
    ).start()  # fmt: skip
    processes.wait_until(
        lambda: processes.http_ok(f"http://127.0.0.1:{port}/healthz"),
        timeout=120,
        what="the operator's /healthz",
        process=process,
    )
    return process


def create_all(cluster: Cluster, namespace: str, make: Callable[[int], dict[str, Any]], n: int,
               kind: str) -> float:  # fmt: skip
    """Create n objects with a few threads; seconds it took."""
    from kubernetes import client

    api = cluster.new_api_client()
    custom, apps = client.CustomObjectsApi(api), client.AppsV1Api(api)

    def one(i: int) -> None:
        body = make(i)
        if kind == "pv":
            custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
        else:
            apps.create_namespaced_deployment(namespace, body)

    start = time.monotonic()
    try:
        with ThreadPoolExecutor(CREATE_WORKERS) as pool:
            list(pool.map(one, range(n)))
    finally:
        api.close()
    return time.monotonic() - start


def wait_all(
    count: Callable[[], int], n: int, *, timeout: float, what: str
) -> tuple[float | None, list[tuple[float, int]]]:
    """Poll `count` every 2 s until it reaches n: (seconds or None on timeout, progress)."""
    start = time.monotonic()
    progress: list[tuple[float, int]] = []
    while True:
        elapsed = time.monotonic() - start
        try:
            done = count()
        except Exception as exc:  # an API hiccup: poll again
            common.log(f"operator: polling {what} failed: {type(exc).__name__}")
            done = progress[-1][1] if progress else 0
        progress.append((round(elapsed, 1), done))
        if done >= n:
            return elapsed, progress
        if elapsed > timeout:
            common.log(f"operator: {what}: {done} of {n} after {timeout:.0f} s, giving up")
            return None, progress
        time.sleep(2.0)


def running(cluster: Cluster, namespace: str) -> int:
    items = cluster.custom().list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
    return sum((o.get("status") or {}).get("status") == "RUNNING" for o in items["items"])


def available(cluster: Cluster, namespace: str) -> int:
    items = cluster.apps().list_namespaced_deployment(namespace).items
    return sum((d.status.available_replicas or 0) >= 1 for d in items)


def fresh_namespace(cluster: Cluster, name: str, suffix: str) -> str:
    cluster.create_namespace(name)
    cluster.kubectl("label", "namespace", name, f"{BENCH_LABEL}={suffix}")
    return name


def drop_namespace(cluster: Cluster, name: str) -> None:
    cluster.delete_namespace(name)
    wait_for(
        lambda: (
            not cluster.kubectl(
                "get", "namespace", name, "--ignore-not-found", "-o", "name"
            ).stdout.strip()
        ),
        timeout=900,
        interval=3,
        what=f"namespace {name} to be deleted",
    )


def measure_size(
    cluster: Cluster,
    n: int,
    *,
    suffix: str,
    repetition: int,
    kubeconfig: Path,
    requests: Requests,
    logs: Path,
    last: bool,
    baseline: bool,
) -> dict[str, Any]:
    out: dict[str, Any] = {"projectversions": n}
    timeout = 300.0 + 0.6 * n
    # The operator.
    namespace = fresh_namespace(cluster, f"kiu-bench-op-{suffix}-{n}-{repetition}", suffix)
    process = start_operator(kubeconfig, namespace, logs)
    pid = process.pid
    try:
        common.log(f"operator: {n}: idle for {IDLE_SECONDS:.0f} s (baseline)")
        time.sleep(5)
        before = requests.count()
        time.sleep(IDLE_SECONDS)
        idle_requests = requests.count() - before
        out["idle_requests_per_minute"] = round(idle_requests * 60 / IDLE_SECONDS, 1)
        out["idle_rss_mib"] = round(_rss(pid), 1)
        cpu0 = common.cpu_seconds(pid)
        common.log(f"operator: {n}: creating {n} ProjectVersions")
        created_at = time.monotonic()
        out["create_s"] = round(create_all(cluster, namespace, projectversion, n, "pv"), 1)
        common.log(f"operator: {n}: created in {out['create_s']} s; waiting for RUNNING")
        elapsed, progress = wait_all(
            lambda: running(cluster, namespace), n, timeout=timeout, what="RUNNING"
        )
        since_first = time.monotonic() - created_at
        out["all_running_s"] = round(since_first, 1) if elapsed is not None else None
        out["running_progress"] = [
            (round(t + out["create_s"], 1), c) for t, c in progress
        ]  # seconds since the first create
        out["running_at_end"] = progress[-1][1]
        out["operator_cpu_s_to_running"] = round(common.cpu_seconds(pid) - cpu0, 1)
        common.log(f"operator: {n}: settling, then {REST_SECONDS:.0f} s at rest")
        time.sleep(SETTLE_SECONDS)
        before = requests.count()
        cpu1 = common.cpu_seconds(pid)
        time.sleep(REST_SECONDS)
        rest = requests.count() - before
        out["rest_requests_per_minute"] = round(rest * 60 / REST_SECONDS, 1)
        out["rest_requests_per_pv_per_minute"] = round(rest * 60 / REST_SECONDS / n, 3)
        out["rest_requests_per_pv_per_minute_above_idle"] = round(
            (rest * 60 / REST_SECONDS - out["idle_requests_per_minute"]) / n, 3
        )
        out["rest_cpu_cores"] = round((common.cpu_seconds(pid) - cpu1) / REST_SECONDS, 3)
        out["rest_rss_mib"] = round(_rss(pid), 1)
        out["peak_rss_mib"] = round(common.peak_rss_mib(pid) or 0.0, 1)
    finally:
        process.stop(timeout=30)
    common.log(f"operator: {n}: deleting the ProjectVersions")
    if last and not baseline:  # nothing is measured after it: deleted in the background
        cluster.delete_namespace(namespace)
        return out
    drop_namespace(cluster, namespace)
    if not baseline:
        return out
    # The control plane alone: the same number of plain Deployments.
    phase_start = time.monotonic()
    namespace = fresh_namespace(cluster, f"kiu-bench-plain-{suffix}-{n}-{repetition}", suffix)
    common.log(f"operator: {n}: baseline, {n} plain Deployments")
    created_at = time.monotonic()
    create_s = create_all(cluster, namespace, deployment, n, "deployment")
    elapsed, progress = wait_all(
        lambda: available(cluster, namespace), n, timeout=timeout, what="available"
    )
    out["baseline_create_s"] = round(create_s, 1)
    out["baseline_all_available_s"] = (
        round(time.monotonic() - created_at, 1) if elapsed is not None else None
    )
    out["baseline_progress"] = [(round(t + create_s, 1), c) for t, c in progress]
    if last:  # nothing is measured after it: the API server deletes it in the background
        cluster.delete_namespace(namespace)
    else:
        drop_namespace(cluster, namespace)
    out["baseline_phase_s"] = round(time.monotonic() - phase_start, 1)
    return out


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One size over its repetitions: each number its median (the spread beside it under
    ``spread``), the progress curves of the first repetition, and every run as measured."""
    first = runs[0]
    out: dict[str, Any] = {}
    spread: dict[str, Any] = {}
    for key, value in first.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            spread[key] = common.spread(r.get(key) for r in runs)
            out[key] = common.median(spread[key])
        else:
            out[key] = value
    out["spread"] = spread
    out["runs"] = runs
    return out


def default_duration_s(result: dict[str, Any]) -> float | None:
    """How long the run would have taken with the baseline at the first size only."""
    duration = result.get("duration_s")
    sizes = result["settings"]["sizes"]
    if duration is None:
        return None
    extra = sum(
        result["figures"][str(n)].get("baseline_phase_s") or 0.0
        for n in sizes[1:]
        if n in result["settings"].get("baseline_sizes", [])
    )
    return float(duration) - extra


def _rss(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def run(*, quick: bool = False) -> dict[str, Any] | None:
    started = common.machine()
    sizes = (20, 100) if quick else SIZES
    repetitions = 1 if quick else REPETITIONS
    baseline_sizes = BASELINE_SIZES or sizes[:1]
    cluster, we_started = start_cluster()
    suffix = uuid.uuid4().hex[:5]
    home = f"kiu-bench-op-{suffix}"
    objects = cluster_objects(suffix, home)
    try:
        if not cluster.nodes(simulated=True):
            common.log("operator: the cluster has no simulated nodes; not run")
            return None
        if cluster.kubectl("get", "crd", "projectversions.kiu.dev", check=False).returncode:
            cluster.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
            cluster.kubectl(
                "wait", "--for=condition=Established", "crd/projectversions.kiu.dev",
                "--timeout=60s",
            )  # fmt: skip
        cluster.create_namespace(home)
        cluster.apply({"apiVersion": "v1", "kind": "ServiceAccount",
                       "metadata": {"name": "kiu-bench-operator"}}, home)  # fmt: skip
        cluster.kubectl(
            "apply", "-f", "-",
            input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}),
        )  # fmt: skip
        time.sleep(2)  # the admission policy and the FlowSchema take effect
        requests = Requests(cluster, f"kiu-bench-operator-{suffix}")
        figures: dict[str, Any] = {}
        with tempfile.TemporaryDirectory(prefix="kiu-bench-operator-") as tmp:
            kubeconfig = Path(tmp) / "operator.kubeconfig"
            operator_kubeconfig(cluster, home, kubeconfig)
            runs: dict[int, list[dict[str, Any]]] = {n: [] for n in sizes}
            for rep in range(repetitions):  # sizes interleaved: drift hits every size alike
                for n in sizes:
                    common.log(f"operator: {n}: repetition {rep + 1} of {repetitions}")
                    runs[n].append(measure_size(
                        cluster, n, suffix=suffix, repetition=rep, kubeconfig=kubeconfig,
                        requests=requests, logs=Path(tmp),
                        last=n == sizes[-1] and rep == repetitions - 1,
                        baseline=n in baseline_sizes,
                    ))  # fmt: skip
            figures = {str(n): summarise(r) for n, r in runs.items()}
    finally:
        common.log("operator: cleaning up")
        for obj in reversed(objects):
            cluster.kubectl(
                "delete", obj["kind"].lower(), obj["metadata"]["name"], "--ignore-not-found",
                check=False,
            )  # fmt: skip
        cluster.delete_namespace(home)
        stop_cluster(cluster)
        if we_started:
            common.log("operator: the cluster this run started is stopped")
    small, large = (figures[str(n)] for n in (sizes[0], sizes[-1]))
    growth = {
        "size_ratio": sizes[-1] / sizes[0],
        "all_running_s": _ratio(large["all_running_s"], small["all_running_s"]),
        "baseline_all_available_s": _ratio(
            large.get("baseline_all_available_s"), small.get("baseline_all_available_s")
        ),
        "peak_rss_mib": _ratio(large["peak_rss_mib"], small["peak_rss_mib"]),
        "peak_rss_above_idle_mib": _ratio(
            large["peak_rss_mib"] - large["idle_rss_mib"],
            small["peak_rss_mib"] - small["idle_rss_mib"],
        ),
        "rest_requests_per_pv_per_minute": _ratio(
            large["rest_requests_per_pv_per_minute"], small["rest_requests_per_pv_per_minute"]
        ),
    }
    for n, f in figures.items():
        per_pv = (f["peak_rss_mib"] - f["idle_rss_mib"]) * 1024 / int(n)
        f["peak_rss_per_pv_kib"] = round(per_pv, 1)
        if f["all_running_s"] and f.get("baseline_all_available_s"):
            f["running_vs_baseline"] = round(f["all_running_s"] / f["baseline_all_available_s"], 2)
    result = {
        "name": NAME,
        "machine": started,
        "settings": {
            "sizes": list(sizes),
            "repetitions": repetitions,
            "idle_seconds": IDLE_SECONDS,
            "rest_seconds": REST_SECONDS,
            "settle_seconds": SETTLE_SECONDS,
            "create_workers": CREATE_WORKERS,
            "baseline_sizes": list(baseline_sizes),
            "projectversion": "1 unit (min 1, no max), cpu runtime, zones round robin",
            "operator": "host process, --standalone, one namespace, default evaluation "
            "period and billing period, no gateway (demand unknown)",
            "requests_counted_by": "apiserver_flowcontrol_dispatched_requests_total of a "
            "FlowSchema matching only the operator's service account",
            "cluster": f"local cluster {os.environ.get('KIU_CLUSTER_ID') or '(default)'}"
            f"{' started by this run' if we_started else ', already running'}",
            "quick": quick,
        },
        "figures": figures,
        "growth": growth,
        "targets": {},
    }
    plot(result)
    return result


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def plot(result: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (progress, bars) = plt.subplots(1, 2, figsize=(11, 4.5))
    for n, f in sorted(result["figures"].items(), key=lambda kv: int(kv[0])):
        t, c = zip(*f["running_progress"], strict=True) if f["running_progress"] else ((), ())
        progress.plot(t, c, label=f"{n} ProjectVersions RUNNING")
        if f.get("baseline_progress"):
            t, c = zip(*f["baseline_progress"], strict=True)
            progress.plot(t, c, ls="--", label=f"{n} plain Deployments available (baseline)")
    progress.set_xlabel("seconds since the first create", fontsize=8)
    progress.set_ylabel("objects", fontsize=8)
    progress.legend(fontsize=7)
    sizes = sorted(result["figures"], key=int)
    x = range(len(sizes))
    bars.bar([i - 0.2 for i in x], [result["figures"][n]["idle_rss_mib"] for n in sizes], 0.4,
             label="RSS idle, no ProjectVersion (MiB)")  # fmt: skip
    bars.bar([i + 0.2 for i in x], [result["figures"][n]["peak_rss_mib"] for n in sizes], 0.4,
             label="peak RSS (MiB)")  # fmt: skip
    bars.set_xticks(list(x), [f"{n} ProjectVersions" for n in sizes], fontsize=8)
    bars.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(common.png(NAME), dpi=90)
    plt.close(fig)


def summary(result: dict[str, Any]) -> str:
    st = result["settings"]
    lines = [
        f"`kiu operator` as a host process under its own service account, one namespace per "
        f"size, a fresh process per size; each ProjectVersion has one unit on a simulated "
        f"node. Requests are counted by the API server (FlowSchema of the operator's account). "
        f"Baselines in the same run: the operator idle with no ProjectVersion "
        f"({st['idle_seconds']:g} s), and the same number of plain Deployments brought to "
        f"available by the control plane alone (at "
        f"{', '.join(map(str, st.get('baseline_sizes', st['sizes'])))} ProjectVersions). "
        f"At rest = {st['rest_seconds']:g} s after "
        f"everything was RUNNING (+{st['settle_seconds']:g} s to settle). "
        f"{st.get('repetitions', 1)} repetition(s) per size, sizes interleaved: medians "
        f"[min, max] (growth and ratios from the medians; curves of the first repetition).",
        "",
        "| ProjectVersions | created in (s) | all RUNNING after (s) | plain Deployments "
        "available after (s) | ratio | operator CPU to RUNNING (s) | idle RSS MiB "
        "| peak RSS MiB (per PV KiB) | requests/min idle | requests/min at rest "
        "| per PV per min (above idle) | CPU at rest (cores) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n, f in sorted(result["figures"].items(), key=lambda kv: int(kv[0])):

        def cell(key: str, digits: int = 1, f: dict[str, Any] = f) -> str:
            return common.show(f.get("spread", {}).get(key, f.get(key)), digits)

        lines.append(
            f"| {n} | {cell('create_s')} | {cell('all_running_s')} "
            f"({cell('running_at_end', 0)} RUNNING) | {cell('baseline_all_available_s')} "
            f"| {common.fmt(f.get('running_vs_baseline'))} | {cell('operator_cpu_s_to_running')} "
            f"| {cell('idle_rss_mib')} | {cell('peak_rss_mib')} ({f['peak_rss_per_pv_kib']}) "
            f"| {cell('idle_requests_per_minute')} | {cell('rest_requests_per_minute')} "
            f"| {cell('rest_requests_per_pv_per_minute', 3)} "
            f"({cell('rest_requests_per_pv_per_minute_above_idle', 3)}) "
            f"| {cell('rest_cpu_cores', 3)} |"
        )
    g = result["growth"]
    lines += [
        "",
        f"Growth from {st['sizes'][0]} to {st['sizes'][-1]} ({g['size_ratio']:g}x the "
        f"ProjectVersions): time to all RUNNING x{common.fmt(g['all_running_s'])} (plain "
        f"Deployments x{common.fmt(g['baseline_all_available_s'])}), peak memory "
        f"x{common.fmt(g['peak_rss_mib'])} (above idle x{common.fmt(g['peak_rss_above_idle_mib'])}"
        f"), requests per ProjectVersion per minute at rest "
        f"x{common.fmt(g['rest_requests_per_pv_per_minute'])}.",
    ]
    largest = result["figures"][str(st["sizes"][-1])]
    idle = largest["idle_requests_per_minute"]
    lines += [
        "",
        f"- At rest the operator makes {largest['rest_requests_per_pv_per_minute_above_idle']:g} "
        f"request per ProjectVersion per minute above its idle rate, which matches one "
        f"status write per version per billing period (60 s by default: the operator writes "
        f"the unit-hours ledger that often while units run); idle it makes {idle:g} per "
        f"minute (one every {60 / idle:g} s)."
        if idle
        else "",
    ]
    ratios = [
        f.get("running_vs_baseline")
        for f in result["figures"].values()
        if f.get("running_vs_baseline") is not None
    ]
    if ratios:
        lines.append(
            f"- Time to RUNNING against the control plane alone: "
            f"{', '.join(f'{r:.2f}' for r in ratios)} of the time plain Deployments take to "
            f"become available: the pace is the control plane's (scheduler, ReplicaSets, "
            f"node agent), not the operator's."
        )
    return "\n".join(line for line in lines if line is not None)
