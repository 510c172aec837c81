"""The local cluster behaves like a real one where kiu depends on it."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from .conftest import (
    HTTP_PORT,
    deployment,
    http_get,
    http_pod_spec,
    is_ready,
    live_pods,
    node_zone,
    ready_endpoints,
    wait_ready_pods,
)
from .fixtures import REPO, ZONES, Cluster, host_path_claim, wait_for

pytestmark = pytest.mark.cluster


def test_spread_constraint_puts_one_ready_pod_in_each_zone(
    cluster: Cluster, web: list[Any]
) -> None:
    zones = sorted(node_zone(cluster, p.spec.node_name) for p in web)
    assert zones == list(ZONES)
    # Three replicas listen on the same port, each in its own network namespace.
    ips = {p.status.pod_ip for p in web}
    assert len(ips) == 3
    for ip in ips:
        assert http_get(f"http://{ip}:{HTTP_PORT}/")[0] == 200


def test_pod_is_reachable_at_its_endpointslice_address(
    cluster: Cluster, namespace: str, web: list[Any]
) -> None:
    expected = {p.status.pod_ip for p in web}
    # Wait for exactly what is asserted: every pod's address ready, not just the first.
    addresses = wait_for(
        lambda: (found := ready_endpoints(cluster, namespace, "web")) == expected and found,
        timeout=30,
        what=f"ready EndpointSlice addresses {sorted(expected)} for service web",
    )
    assert addresses == expected
    for address in addresses:
        status, body = http_get(f"http://{address}:{HTTP_PORT}/")
        assert status == 200
        assert "Directory listing" in body


def test_cluster_ip_reaches_the_pods_when_kube_proxy_runs(
    cluster: Cluster, namespace: str, web: list[Any]
) -> None:
    if not (cluster.state_dir / "config" / "kube-proxy.enabled").exists():
        pytest.skip("kube-proxy is not running (no iptables, KIU_KUBE_PROXY=0 or KIU_CLUSTER_ID>0)")
    ip = cluster.core().read_namespaced_service("web", namespace).spec.cluster_ip
    wait_for(
        lambda: http_get(f"http://{ip}/")[0] == 200,
        timeout=30,
        what=f"the ClusterIP {ip} to answer",
    )


def test_zone_outage_evicts_pods_and_drops_their_endpoints(
    cluster: Cluster, namespace: str, web: list[Any]
) -> None:
    victim = next(p for p in web if node_zone(cluster, p.spec.node_name) == "zone-a")
    survivors = {p.status.pod_ip for p in web} - {victim.status.pod_ip}
    wait_for(
        lambda: ready_endpoints(cluster, namespace, "web") == survivors | {victim.status.pod_ip},
        timeout=30,
        what="all three endpoints to be ready before the outage",
    )

    cluster.zone_outage("zone-a")
    # The outage is real for traffic at once.
    assert http_get(f"http://{victim.status.pod_ip}:{HTTP_PORT}/", timeout=1)[0] == 0
    # The node lifecycle controller notices within its grace period.
    for node in cluster.nodes("zone-a"):
        wait_for(
            lambda node=node: not cluster.node_ready(node),
            timeout=40,
            what=f"node {node} to become NotReady",
        )
    wait_for(
        lambda: ready_endpoints(cluster, namespace, "web") == survivors,
        timeout=40,
        what="the EndpointSlice to drop the zone-a pod",
    )

    def evicted() -> bool:
        pod = cluster.core().read_namespaced_pod(victim.metadata.name, namespace)
        return pod.metadata.deletion_timestamp is not None

    wait_for(evicted, timeout=40, what="the zone-a pod to be evicted")
    for ip in survivors:
        assert http_get(f"http://{ip}:{HTTP_PORT}/")[0] == 200

    cluster.zone_repair("zone-a")

    def gone() -> bool:
        try:
            cluster.core().read_namespaced_pod(victim.metadata.name, namespace)
        except ApiException as e:
            return e.status == 404
        return False

    wait_for(gone, timeout=40, what="the evicted pod to be removed once its node is back")
    running = {(p["namespace"], p["name"]) for p in cluster.agent_status()["podList"]}
    assert (namespace, victim.metadata.name) not in running
    # The replacement lands in the repaired zone again.
    pods = wait_ready_pods(cluster, namespace, "app=web", 3)
    assert sorted(node_zone(cluster, p.spec.node_name) for p in pods) == list(ZONES)


def test_killed_process_is_restarted(cluster: Cluster, namespace: str) -> None:
    cluster.apply(deployment("solo", 1, http_pod_spec()), namespace)
    (pod,) = wait_ready_pods(cluster, namespace, "app=solo", 1)
    pids = cluster.kill_pod_process(namespace, pod.metadata.name)
    assert pids

    def restarted() -> Any:
        p = cluster.core().read_namespaced_pod(pod.metadata.name, namespace)
        status = p.status.container_statuses[0]
        return p if status.restart_count == 1 and is_ready(p) else None

    fresh = wait_for(restarted, timeout=60, what="the container to restart and be Ready")
    last = fresh.status.container_statuses[0].last_state.terminated
    assert last.exit_code == 137
    assert last.signal == 9
    assert fresh.status.pod_ip == pod.status.pod_ip
    assert http_get(f"http://{fresh.status.pod_ip}:{HTTP_PORT}/")[0] == 200


def test_a_frozen_process_hangs_turns_unready_and_resumes(cluster: Cluster, namespace: str) -> None:
    cluster.apply(deployment("frozen", 1, http_pod_spec()), namespace)
    (pod,) = wait_ready_pods(cluster, namespace, "app=frozen", 1)
    url = f"http://{pod.status.pod_ip}:{HTTP_PORT}/"
    assert cluster.kill_pod_process(namespace, pod.metadata.name, signal="STOP")

    # Alive but silent: the connection is accepted, no answer comes, the probe fails.
    assert http_get(url, timeout=1.0)[0] == 0
    wait_for(
        lambda: not is_ready(cluster.core().read_namespaced_pod(pod.metadata.name, namespace)),
        timeout=30,
        what="the frozen pod to turn unready",
    )
    assert (namespace, pod.metadata.name) in {
        (p["namespace"], p["name"]) for p in cluster.agent_status()["podList"]
    }

    cluster.kill_pod_process(namespace, pod.metadata.name, signal="CONT")
    wait_ready_pods(cluster, namespace, "app=frozen", 1)
    current = cluster.core().read_namespaced_pod(pod.metadata.name, namespace)
    assert current.status.container_statuses[0].restart_count == 0
    assert http_get(url)[0] == 200


def test_api_server_stops_and_starts_with_the_state_kept(
    cluster: Cluster, namespace: str, web: list[Any]
) -> None:
    cluster.stop_component("kube-apiserver")
    try:
        with pytest.raises(Exception, match=r"(?i)connect|refused|max retries"):
            cluster.core().read_namespace(namespace, _request_timeout=3)
        # The pods keep running and serving while the API server is gone.
        assert http_get(f"http://{web[0].status.pod_ip}:{HTTP_PORT}/")[0] == 200
    finally:
        cluster.start_component("kube-apiserver")
    pods = wait_ready_pods(cluster, namespace, "app=web", 3)
    assert {p.metadata.uid for p in pods} == {p.metadata.uid for p in web}
    # The controllers act again: a new Deployment gets its pod.
    cluster.apply(deployment("after", 1, http_pod_spec()), namespace)
    wait_ready_pods(cluster, namespace, "app=after", 1)


def test_liveness_exec_probe_failure_restarts_the_container(
    cluster: Cluster, namespace: str
) -> None:
    script = "touch /tmp/alive; sleep 2; rm /tmp/alive; exec sleep 600"
    spec = {
        "terminationGracePeriodSeconds": 1,
        "containers": [
            {
                "name": "main",
                "image": "busybox",
                "command": ["sh", "-c", script],
                "livenessProbe": {
                    "exec": {"command": ["cat", "/tmp/alive"]},
                    "periodSeconds": 1,
                    "failureThreshold": 2,
                },
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
            }
        ],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
    }
    cluster.apply(deployment("flaky", 1, spec), namespace)

    def restarted() -> bool:
        pods = live_pods(cluster, namespace, "app=flaky")
        statuses = pods[0].status.container_statuses if pods else None
        return bool(statuses) and statuses[0].restart_count >= 1

    wait_for(restarted, timeout=60, what="the liveness probe to restart the container")


def test_missing_command_waits_with_a_reason(cluster: Cluster, namespace: str) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "triton"},
        "spec": {
            "containers": [
                {
                    "name": "triton",
                    "image": "nvcr.io/nvidia/tritonserver:24.08-py3",
                    "command": ["tritonserver", "--model-repository=/models"],
                }
            ]
        },
    }
    cluster.apply(pod, namespace)

    def waiting() -> Any:
        p = cluster.core().read_namespaced_pod("triton", namespace)
        statuses = p.status.container_statuses or []
        return statuses[0].state.waiting if statuses and statuses[0].state.waiting else None

    state = wait_for(
        lambda: (w := waiting()) is not None and w.reason == "ErrImagePull" and w,
        timeout=30,
        what="the container to wait with reason ErrImagePull",
    )
    assert "tritonserver" in state.message
    assert cluster.core().read_namespaced_pod("triton", namespace).status.phase == "Pending"


IN_CLUSTER = """
import json, os, socket, ssl, urllib.request
sa = "/var/run/secrets/kubernetes.io/serviceaccount"
token = open(f"{sa}/token").read()
ctx = ssl.create_default_context(cafile=f"{sa}/ca.crt")
url = "https://{}:{}/apis/authentication.k8s.io/v1/selfsubjectreviews".format(
    os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"])
body = json.dumps({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
req = urllib.request.Request(url, data=body.encode(), method="POST", headers={
    "Authorization": "Bearer " + token, "Content-Type": "application/json"})
review = json.load(urllib.request.urlopen(req, context=ctx))
print("user", review["status"]["userInfo"]["username"])
print("namespace", open(f"{sa}/namespace").read())
print("hostname", socket.gethostname())
print("config", open("/etc/kiu/greeting").read())
print("secret", os.environ["PASSWORD"], "node", os.environ["NODE"], "ip", os.environ["POD_IP"])
print("cwd", os.getcwd())
"""


def test_pod_gets_in_cluster_credentials_volumes_and_env(cluster: Cluster, namespace: str) -> None:
    objects = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "cfg"},
            "data": {"greeting": "hello"},
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "sec"},
            "stringData": {"password": "s3cret"},
        },
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "client"},
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "main",
                        "image": "python:3.11-slim",
                        "command": ["python3", "-c", IN_CLUSTER],
                        "workingDir": "/scratch",
                        "env": [
                            {
                                "name": "PASSWORD",
                                "valueFrom": {"secretKeyRef": {"name": "sec", "key": "password"}},
                            },
                            {
                                "name": "NODE",
                                "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}},
                            },
                            {
                                "name": "POD_IP",
                                "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}},
                            },
                        ],
                        "volumeMounts": [
                            {"name": "cfg", "mountPath": "/etc/kiu"},
                            {"name": "scratch", "mountPath": "/scratch"},
                        ],
                    }
                ],
                "volumes": [
                    {"name": "cfg", "configMap": {"name": "cfg"}},
                    {"name": "scratch", "emptyDir": {}},
                ],
            },
        },
    ]
    cluster.apply(objects, namespace)

    def finished() -> Any:
        pod = cluster.core().read_namespaced_pod("client", namespace)
        return pod if pod.status.phase in ("Succeeded", "Failed") else None

    pod = wait_for(finished, timeout=60, what="the in-cluster client pod to finish")
    logs = cluster.kubectl("logs", "-n", namespace, "client").stdout
    assert pod.status.phase == "Succeeded", logs
    assert f"user system:serviceaccount:{namespace}:default" in logs
    assert f"namespace {namespace}" in logs
    assert "hostname client" in logs
    assert "config hello" in logs
    assert f"secret s3cret node {pod.spec.node_name} ip {pod.status.pod_ip}" in logs
    assert "cwd /scratch" in logs


def test_deletion_sends_sigterm_and_honours_the_grace_period(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    script = (
        "trap 'sleep 1; echo terminated > /out/marker; exit 0' TERM; while :; do sleep 0.1; done"
    )
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "graceful"},
        "spec": {
            "terminationGracePeriodSeconds": 10,
            "containers": [
                {
                    "name": "main",
                    "image": "busybox",
                    "command": ["sh", "-c", script],
                    "volumeMounts": [{"name": "out", "mountPath": "/out"}],
                }
            ],
            "volumes": [{"name": "out", "hostPath": {"path": str(tmp_path)}}],
        },
    }
    cluster.apply(pod, namespace)
    (running,) = wait_ready_pods(cluster, namespace, "", 1)
    uid = running.metadata.uid
    started = time.monotonic()
    cluster.kubectl("delete", "pod", "graceful", "-n", namespace, "--timeout=30s")
    elapsed = time.monotonic() - started
    assert (tmp_path / "marker").read_text().strip() == "terminated"
    assert 1 <= elapsed < 10
    namespaces = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, check=True
    ).stdout
    assert f"kiu-{uid}" not in namespaces


def test_simulated_nodes_run_many_pods_without_processes(cluster: Cluster, namespace: str) -> None:
    replicas = 60
    spec = {
        "nodeSelector": {"kiu.dev/node-mode": "simulated"},
        "tolerations": [{"key": "kiu.dev/simulated", "operator": "Exists"}],
        "containers": [{"name": "unit", "image": "example.invalid/unit", "command": ["none"]}],
    }
    cluster.apply(deployment("many", replicas, spec), namespace)

    def available() -> bool:
        status = cluster.apps().read_namespaced_deployment("many", namespace).status
        return status.available_replicas == replicas

    wait_for(available, timeout=120, interval=1, what=f"{replicas} simulated pods to be available")
    processes = [p for p in cluster.agent_status()["podList"] if p["namespace"] == namespace]
    assert all(p["simulated"] for p in processes)


def test_crds_pass_server_side_dry_run(cluster: Cluster) -> None:
    crd = REPO / "crds" / "projectversion.yaml"
    if not crd.exists():
        pytest.skip("crds/projectversion.yaml does not exist yet")
    out = cluster.kubectl("apply", "--dry-run=server", "-f", str(REPO / "crds")).stdout
    assert "projectversions.kiu.dev" in out


def _component_pids() -> dict[str, str]:
    """COMPONENT -> PID, as `hack/cluster.sh status` prints them."""
    out = subprocess.run(
        [str(REPO / "hack" / "cluster.sh"), "status"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    rows = [line.split() for line in out.splitlines()[1:]]
    return {row[0]: row[1] for row in rows if len(row) == 3 and row[1].isdigit()}


def test_cluster_up_reuses_the_running_cluster(cluster: Cluster) -> None:
    before = _component_pids()
    assert {"etcd", "kube-apiserver"} <= before.keys()
    proc = subprocess.run(
        [str(REPO / "hack" / "cluster.sh"), "up"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert f"KUBECONFIG={cluster.kubeconfig}" in proc.stdout.splitlines()
    assert _component_pids() == before  # nothing was restarted


GRPC_HEALTH_SERVER = """
import time
from concurrent import futures
import grpc

def check(request, context):
    return b"\\x08\\x01"  # HealthCheckResponse{status: SERVING}

handler = grpc.method_handlers_generic_handler(
    "grpc.health.v1.Health",
    {"Check": grpc.unary_unary_rpc_method_handler(check)},
)
server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
server.add_generic_rpc_handlers((handler,))
server.add_insecure_port("0.0.0.0:9000")
server.start()
server.wait_for_termination()
"""


def test_grpc_and_startup_probes_gate_readiness(cluster: Cluster, namespace: str) -> None:
    spec = {
        "terminationGracePeriodSeconds": 1,
        "containers": [
            {
                "name": "grpc",
                "image": "python:3.11-slim",
                "command": ["python3", "-c", GRPC_HEALTH_SERVER],
                "ports": [{"containerPort": 9000}],
                "startupProbe": {
                    "tcpSocket": {"port": 9000},
                    "periodSeconds": 1,
                    "failureThreshold": 30,
                },
                "readinessProbe": {"grpc": {"port": 9000}, "periodSeconds": 1},
            }
        ],
    }
    cluster.apply(deployment("grpc", 1, spec), namespace)
    (pod,) = wait_ready_pods(cluster, namespace, "app=grpc", 1, timeout=60)
    status = pod.status.container_statuses[0]
    assert status.started
    assert status.ready


def test_init_containers_run_first_and_sidecars_keep_running(
    cluster: Cluster, namespace: str
) -> None:
    shared = [{"name": "shared", "mountPath": "/shared"}]
    spec = {
        "terminationGracePeriodSeconds": 1,
        "initContainers": [
            {
                "name": "prepare",
                "image": "busybox",
                "command": ["sh", "-c", "echo prepared > /shared/state"],
                "volumeMounts": shared,
            },
            {
                "name": "sidecar",
                "image": "python:3.11-slim",
                "restartPolicy": "Always",
                "command": ["python3", "-m", "http.server", "9090"],
                "startupProbe": {"tcpSocket": {"port": 9090}, "periodSeconds": 1},
            },
        ],
        "containers": [
            {
                "name": "app",
                "image": "busybox",
                "command": ["sh", "-c", "cat /shared/state; exec sleep 600"],
                "volumeMounts": shared,
                "readinessProbe": {
                    "exec": {"command": ["test", "-s", "/shared/state"]},
                    "periodSeconds": 1,
                },
            }
        ],
        "volumes": [{"name": "shared", "emptyDir": {}}],
    }
    cluster.apply(deployment("init", 1, spec), namespace)
    (pod,) = wait_ready_pods(cluster, namespace, "app=init", 1, timeout=60)
    init = {s.name: s for s in pod.status.init_container_statuses}
    assert init["prepare"].state.terminated.exit_code == 0
    assert init["sidecar"].state.running is not None
    assert http_get(f"http://{pod.status.pod_ip}:9090/")[0] == 200
    logs = cluster.kubectl("logs", "-n", namespace, pod.metadata.name, "-c", "app").stdout
    assert logs.strip() == "prepared"


def test_a_claim_bound_to_a_host_path_volume_is_mounted_read_only(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    (tmp_path / "greeting").write_text("hello from the volume\n")
    with host_path_claim(cluster, namespace, claim="data", path=tmp_path):
        script = "cat /data/greeting; touch /data/written || echo refused; sleep 3600"
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "reader"},
            "spec": {
                "containers": [
                    {
                        "name": "main",
                        "image": "busybox",
                        "command": ["sh", "-c", script],
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                    }
                ],
                "volumes": [
                    {
                        "name": "data",
                        "persistentVolumeClaim": {"claimName": "data", "readOnly": True},
                    }
                ],
            },
        }
        cluster.apply(pod, namespace)
        logs = wait_for(
            lambda: (
                (
                    out := cluster.kubectl("logs", "reader", "-n", namespace, check=False).stdout
                ).endswith("refused\n")
                and out
            ),
            timeout=60,
            what="the reader to print the file and fail to write",
        )
        assert logs.startswith("hello from the volume\n")
        assert not (tmp_path / "written").exists()
