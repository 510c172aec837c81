"""The pod template of an inference unit, for either runtime.

Both runtimes speak KServe v2 on Triton's ports (8000 HTTP, 8001 gRPC, 8002
metrics) and answer Triton's health endpoints, so the probes, ports, Service
and clients are the same; only the container command differs:

- `triton`: NVIDIA Triton (kiu's image extending the official one with the
  Python steps' dependencies, see docker/triton/Dockerfile), loading one model
  in explicit model-control mode from a path, a PVC or object storage.
- `cpu`: `kiu unit` from the kiu image, for clusters without GPUs or Triton;
  it reads a path, a PVC, or S3 (copying the model into the same cache Triton uses).

Every unit runs as a non-root user on a read-only root filesystem with no
privilege escalation and no capabilities; what needs writing (/tmp, Triton's
copy of a remote repository, its shared memory) gets an emptyDir. Builders are
pure: the same arguments give the same dict.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Runtime = Literal["triton", "cpu"]

#: The Triton release kiu's Triton image extends (docker/triton/Dockerfile).
TRITON_BASE_IMAGE = "nvcr.io/nvidia/tritonserver:25.06-py3"
#: Where the kiu image carries the bundled model repository.
BUNDLED_REPOSITORY = "/opt/kiu/triton-models"

CONTAINER_NAME = "unit"
HTTP_PORT = 8000
GRPC_PORT = 8001
METRICS_PORT = 8002
#: The user of both images (Triton's `triton-server` is 1000 too).
UNIT_USER = 1000
#: Seconds a stopping unit gets to finish requests in flight; the pod gets a little more.
DRAIN_SECONDS = 30
GPU_RESOURCE = "nvidia.com/gpu"

S3_SCHEME = "s3://"
OBJECT_STORAGE_SCHEMES = (S3_SCHEME, "gs://", "as://")
PVC_SCHEME = "pvc://"

_READY_PATH = "/v2/health/ready"
_LIVE_PATH = "/v2/health/live"
_REPOSITORY_MOUNT = "/models"
_MODEL_CACHE = "/var/cache/kiu/models"
_GCS_CREDENTIALS_DIR = "/var/run/secrets/kiu/repository"
#: The key a Secret for a gs:// repository holds its service-account key under.
GCS_CREDENTIALS_KEY = "credentials.json"


@dataclass(frozen=True)
class ObjectStorage:
    """An s3://, gs:// or as:// repository, read by Triton itself; the cpu runtime reads s3://.

    `credentials_secret` names a Secret in the unit's namespace: for s3:// its
    keys are AWS_* variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
    AWS_DEFAULT_REGION...), for as:// AZURE_STORAGE_ACCOUNT and
    AZURE_STORAGE_KEY, for gs:// a service-account key under `credentials.json`.
    None relies on the node's or the pod's identity.
    """

    uri: str
    credentials_secret: str | None = None


@dataclass(frozen=True)
class VolumeClaim:
    """A repository on a PersistentVolumeClaim, mounted read-only; `path` within it."""

    claim: str
    path: str = ""


@dataclass(frozen=True)
class LocalPath:
    """A repository already on the unit's filesystem: baked into the image, or, in the local
    test cluster where pods are host processes, a directory of the host."""

    path: str


RepositorySource = ObjectStorage | VolumeClaim | LocalPath


def repository_source(uri: str, *, credentials_secret: str | None = None) -> RepositorySource:
    """Parse a ProjectVersion's `model.repository`.

    `s3://...`, `gs://...`, `as://...` -> ObjectStorage; `pvc://<claim>[/<path>]`
    -> VolumeClaim; an absolute path -> LocalPath. Anything else is a ValueError.
    """
    if uri.startswith(OBJECT_STORAGE_SCHEMES):
        return ObjectStorage(uri=uri, credentials_secret=credentials_secret)
    if uri.startswith(PVC_SCHEME):
        claim, _, path = uri.removeprefix(PVC_SCHEME).partition("/")
        if not claim:
            raise ValueError(f"{uri!r}: a PVC repository is pvc://<claim>[/<path>]")
        return VolumeClaim(claim=claim, path=path.strip("/"))
    if uri.startswith("/"):
        return LocalPath(path=uri)
    raise ValueError(
        f"{uri!r}: a model repository is an s3://, gs:// or as:// URI, pvc://<claim>[/<path>] "
        "or an absolute path"
    )


def unit_pod_template(
    *,
    runtime: Runtime,
    model: str,
    repository: RepositorySource,
    image: str,
    labels: Mapping[str, str] | None = None,
    resources: Mapping[str, Any] | None = None,
    placement: Mapping[str, Any] | None = None,
    log_format: str = "text",
) -> dict[str, Any]:
    """A PodTemplateSpec (metadata and spec) running one unit that serves `model`.

    `resources` is the container's requests/limits as given; a GPU is asked for
    with `nvidia.com/gpu` in its limits (triton only), which also tolerates
    nodes tainted for GPUs. `placement` holds the user's Pod fields in the Pod's
    shape (nodeSelector, tolerations, affinity, priorityClassName,
    serviceAccountName, runtimeClassName, imagePullSecrets) plus pod `labels`,
    `annotations` and container `env`: kiu's own labels and annotations win, the
    user's env comes after kiu's (a later entry wins, as in a Pod), and the service
    account token stays unmounted (cloud identities need none). `log_format` (text or
    json) is the cpu runtime's, so its lines match the operator's; Triton has no JSON
    format. Raises ValueError for what a runtime cannot do.
    """
    extra = dict(placement or {})
    pod_labels = dict(extra.pop("labels", {}))
    pod_annotations = dict(extra.pop("annotations", {}))
    user_env = list(extra.pop("env", []))
    tolerations = list(extra.pop("tolerations", []))
    gpus = _gpu_count(resources)
    if runtime == "cpu" and gpus:
        raise ValueError("the cpu runtime uses no GPU: drop nvidia.com/gpu or use triton")
    if (
        runtime == "cpu"
        and isinstance(repository, ObjectStorage)
        and not repository.uri.startswith(S3_SCHEME)
    ):
        raise ValueError(
            f"spec.model.repository {repository.uri!r}: the cpu runtime reads s3://, pvc:// "
            "or a path; gs:// and as:// need the triton runtime"
        )
    storage = _storage(repository, runtime=runtime)
    volumes = [{"name": "tmp", "emptyDir": {}}, *storage.volumes]
    mounts = [{"name": "tmp", "mountPath": "/tmp"}, *storage.mounts]
    if runtime == "triton":
        # The Python backend passes tensors through shared memory; the default 64 MiB is small.
        volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "256Mi"}})
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
        command, args = ["tritonserver"], _triton_args(model=model, path=storage.path)
    else:
        command, args = ["kiu"], _cpu_args(model=model, path=storage.path, log_format=log_format)
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": image,
        "command": command,
        "args": args,
        "ports": [
            {"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"},
            {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
        ],
        "startupProbe": _probe(_READY_PATH, period=5, failures=120),  # up to 10 min to load
        "readinessProbe": _probe(_READY_PATH, period=5, failures=2),
        "livenessProbe": _probe(_LIVE_PATH, period=10, failures=3),
        # A unit that cannot load its model says why in its last log line; the kubelet
        # copies it into the container's termination message, which the operator reports.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": mounts,
    }
    if storage.env or user_env:
        container["env"] = [*storage.env, *user_env]
    if storage.env_from:
        container["envFrom"] = list(storage.env_from)
    if resources:
        container["resources"] = {key: dict(value) for key, value in resources.items()}
    spec: dict[str, Any] = {
        "automountServiceAccountToken": False,  # a unit never calls the Kubernetes API
        "terminationGracePeriodSeconds": DRAIN_SECONDS + 15,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": UNIT_USER,
            "runAsGroup": UNIT_USER,
            "fsGroup": UNIT_USER,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": volumes,
    }
    spec = {**extra, **spec}
    gpu_toleration = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
    if gpus and gpu_toleration not in tolerations:
        tolerations.append(gpu_toleration)
    if tolerations:
        spec["tolerations"] = tolerations
    return {
        "metadata": {
            "labels": {**pod_labels, **(labels or {}), "kiu.dev/runtime": runtime},
            "annotations": {
                **pod_annotations,
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(METRICS_PORT),
            },
        },
        "spec": spec,
    }


@dataclass(frozen=True)
class _Storage:
    """How a repository reaches the container: the path or URI to pass, and what to add."""

    path: str
    volumes: tuple[dict[str, Any], ...] = ()
    mounts: tuple[dict[str, Any], ...] = ()
    env: tuple[dict[str, Any], ...] = ()
    env_from: tuple[dict[str, Any], ...] = ()


def _storage(repository: RepositorySource, *, runtime: Runtime) -> _Storage:
    if isinstance(repository, LocalPath):
        return _Storage(path=repository.path)
    if isinstance(repository, VolumeClaim):
        return _Storage(
            path="/".join(p for p in (_REPOSITORY_MOUNT, repository.path) if p),
            volumes=(
                {
                    "name": "model-repository",
                    "persistentVolumeClaim": {"claimName": repository.claim, "readOnly": True},
                },
            ),
            mounts=(
                {"name": "model-repository", "mountPath": _REPOSITORY_MOUNT, "readOnly": True},
            ),
        )
    return _object_storage(repository)


def _object_storage(repository: ObjectStorage) -> _Storage:
    """Triton copies a remote repository locally before loading: s3:// into an emptyDir it is
    told about (the cpu runtime copies its model there too), gs:// and as:// into a temporary
    directory under /tmp."""
    secret = repository.credentials_secret
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    env: list[dict[str, Any]] = []
    env_from: list[dict[str, Any]] = []
    if repository.uri.startswith(S3_SCHEME):
        volumes.append({"name": "model-cache", "emptyDir": {}})
        mounts.append({"name": "model-cache", "mountPath": _MODEL_CACHE})
        env.append({"name": "TRITON_AWS_MOUNT_DIRECTORY", "value": _MODEL_CACHE})
    if secret and repository.uri.startswith("gs://"):
        volumes.append({"name": "repository-credentials", "secret": {"secretName": secret}})
        mounts.append(
            {"name": "repository-credentials", "mountPath": _GCS_CREDENTIALS_DIR, "readOnly": True}
        )
        env.append(
            {
                "name": "GOOGLE_APPLICATION_CREDENTIALS",
                "value": f"{_GCS_CREDENTIALS_DIR}/{GCS_CREDENTIALS_KEY}",
            }
        )
    elif secret:
        env_from.append({"secretRef": {"name": secret}})
    return _Storage(
        path=repository.uri,
        volumes=tuple(volumes),
        mounts=tuple(mounts),
        env=tuple(env),
        env_from=tuple(env_from),
    )


def _triton_args(*, model: str, path: str) -> list[str]:
    return [
        f"--model-repository={path}",
        "--model-control-mode=explicit",
        f"--load-model={model}",
        f"--http-port={HTTP_PORT}",
        f"--grpc-port={GRPC_PORT}",
        f"--metrics-port={METRICS_PORT}",
        f"--exit-timeout-secs={DRAIN_SECONDS}",
    ]


def _cpu_args(*, model: str, path: str, log_format: str) -> list[str]:
    return [
        "unit",
        f"--model-repository={path}",
        f"--model={model}",
        f"--http-port={HTTP_PORT}",
        f"--grpc-port={GRPC_PORT}",
        f"--metrics-port={METRICS_PORT}",
        f"--grace-period={DRAIN_SECONDS}",
        f"--log-format={log_format}",
    ]


def _probe(path: str, *, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def _gpu_count(resources: Mapping[str, Any] | None) -> int:
    limits = (resources or {}).get("limits") or {}
    return int(limits.get(GPU_RESOURCE, 0))
