"""The Kubernetes side without a cluster: list/watch against a scripted API, and the
gateway's Kubernetes source fed with API-shaped objects.

What only a real API server shows (RBAC, the EndpointSlice controller copying
labels, TokenReview) is left to the end-to-end tests on the local cluster.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from kiu.gateway import catalog, kube, metrics, routing
from kiu.k8s import credentials, discovery
from kiu.k8s import errors as k8s_errors

from .fakes import FakeTransport


class Response:
    def __init__(self, status: int, lines: list[dict[str, Any]], *, broken: bool = False) -> None:
        self.status = status
        self._data = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
        self._broken = broken
        self.content = self
        self.closed = False

    async def iter_any(self) -> AsyncIterator[bytes]:
        # split mid-line, as the network does
        for i in range(0, len(self._data), 7):
            yield self._data[i : i + 7]
        if self._broken:
            raise ConnectionResetError("peer went away")

    async def read(self) -> bytes:
        return self._data

    def close(self) -> None:
        self.closed = True


class ScriptedApi:
    """Answers lists and watches from a script, and records what was asked."""

    def __init__(self, script: list[Any]) -> None:
        self.script = script
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def call_api(self, path: str, method: str, **kwargs: Any) -> Any:
        query = dict(kwargs.get("query_params") or [])
        self.calls.append((path, query))
        if not self.script:
            await asyncio.sleep(3600)
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        return step


def pod(name: str, rv: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "resourceVersion": rv}}


async def take(stream: AsyncIterator[Any], count: int) -> list[Any]:
    out = []
    async for item in stream:
        out.append(item)
        if len(out) == count:
            break
    return out


async def test_reflect_lists_watches_resumes_and_relists_on_410() -> None:
    api = ScriptedApi(
        [
            {"metadata": {"resourceVersion": "10"}, "items": [pod("a", "9")]},
            Response(
                200,
                [
                    {"type": "ADDED", "object": pod("b", "11")},
                    {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "15"}}},
                ],
                broken=True,
            ),
            Response(200, [{"type": "DELETED", "object": pod("a", "16")}]),
            Response(200, [{"type": "ERROR", "object": {"code": 410, "reason": "Expired"}}]),
            {"metadata": {"resourceVersion": "30"}, "items": [pod("b", "29")]},
        ]
    )
    stream = discovery.reflect(api, "/api/v1/pods", label_selector="app=x")  # type: ignore[arg-type]
    events = await take(stream, 4)
    await stream.aclose()
    assert events[0] == discovery.Listed([pod("a", "9")])
    assert events[1] == discovery.Changed("ADDED", pod("b", "11"))
    assert events[2] == discovery.Changed("DELETED", pod("a", "16"))
    assert events[3] == discovery.Listed([pod("b", "29")])
    watches = [q for _, q in api.calls if q.get("watch") == "true"]
    # the broken watch resumed after the bookmark; the expired one led to a new list
    assert [w["resourceVersion"] for w in watches] == ["10", "15", "16"]
    assert all(q["labelSelector"] == "app=x" for _, q in api.calls)


async def test_reflect_backs_off_while_the_api_is_down(monkeypatch: pytest.MonkeyPatch) -> None:
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    monkeypatch.setattr(discovery.asyncio, "sleep", sleep)
    api = ScriptedApi(
        [
            ConnectionRefusedError(),
            ConnectionRefusedError(),
            {"metadata": {"resourceVersion": "1"}, "items": []},
        ]
    )

    async def call(api_: Any, **kwargs: Any) -> dict[str, Any]:
        step = api.script.pop(0)
        if isinstance(step, Exception):
            raise k8s_errors.Unavailable("down")
        return step  # type: ignore[no-any-return]

    monkeypatch.setattr(discovery.rest, "call", call)
    stream = discovery.reflect(api, "/x")  # type: ignore[arg-type]
    (first,) = await take(stream, 1)
    await stream.aclose()
    assert first == discovery.Listed([])
    assert len(sleeps) == 2
    assert sleeps[1] > sleeps[0]


def test_endpoint_slice_readiness_rules() -> None:
    body = {
        "metadata": {
            "name": "shoes-v3-abcde",
            "namespace": "retail",
            "labels": {
                "kubernetes.io/service-name": "shoes-v3",
                "kiu.dev/projectversion": "shoes-v3",
            },
        },
        "ports": [{"name": "http", "port": 8000}, {"name": "grpc", "port": 8001}],
        "endpoints": [
            {"addresses": ["10.0.0.1"], "zone": "a", "conditions": {"ready": True}},
            {"addresses": ["10.0.0.2"], "zone": "b", "conditions": {}},
            {"addresses": ["10.0.0.3"], "zone": "c", "conditions": {"ready": False}},
            {"addresses": ["10.0.0.4"], "conditions": {"ready": True, "terminating": True}},
        ],
    }
    parsed = discovery.endpoint_slice(body, port_name="grpc", default_port=1)
    assert parsed.service == "shoes-v3"
    assert [(a.host, a.port, a.zone, a.ready) for a in parsed.addresses] == [
        ("10.0.0.1", 8001, "a", True),
        ("10.0.0.2", 8001, "b", True),
        ("10.0.0.3", 8001, "c", False),
        ("10.0.0.4", 8001, "", False),
    ]


def secret(name: str, **data: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "kiu-system",
            "labels": {credentials.ACCESS_KEY_LABEL: "true"},
        },
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def test_access_key_secrets() -> None:
    key = credentials.access_key(
        secret("k", accessKeyId="AKID1", secretAccessKey="s3cr3t", namespaces="retail, shipping")
    )
    assert key == credentials.AccessKey("AKID1", "s3cr3t", frozenset({"retail", "shipping"}))
    assert "s3cr3t" not in repr(key)
    assert credentials.access_key(secret("k", accessKeyId="AKID1")) is None
    store = credentials.object_store_key(
        secret("s", AWS_ACCESS_KEY_ID="a", AWS_SECRET_ACCESS_KEY="b")
    )
    assert store is not None
    assert (store.access_key_id, store.secret_access_key) == ("a", "b")


def projectversion(
    name: str, *, state: str = "Running", status: str | None = "RUNNING", tps: float = 5
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "kiu.dev/v1alpha1",
        "kind": "ProjectVersion",
        "metadata": {
            "name": name,
            "namespace": "retail",
            "uid": f"uid-{name}",
            "generation": 1,
            "creationTimestamp": "2023-11-14T22:13:20Z",
            "resourceVersion": "1",
        },
        "spec": {
            "project": "shoes",
            "state": state,
            "minInferenceUnits": 1,
            "model": {
                "name": "shapes-classifier",
                "repository": "/models",
                "task": "Classification",
            },
            "inferenceUnit": {"runtime": "cpu", "tps": tps},
        },
    }
    if status:
        body["status"] = {"status": status}
    return body


def slice_of(
    service: str, name: str, *hosts: tuple[str, str, bool], namespace: str = "retail"
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"kubernetes.io/service-name": service, "kiu.dev/projectversion": service},
        },
        "ports": [{"name": "grpc", "port": 8001}],
        "endpoints": [
            {"addresses": [host], "zone": zone, "conditions": {"ready": ready}}
            for host, zone, ready in hosts
        ],
    }


class Streams:
    """Replaces discovery.reflect: one queue of events per watched path and selector."""

    def __init__(self) -> None:
        self.queues: dict[str, asyncio.Queue[Any]] = {}

    def queue(self, key: str) -> asyncio.Queue[Any]:
        return self.queues.setdefault(key, asyncio.Queue())

    def reflect(
        self,
        api: Any,
        path: str,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> AsyncIterator[Any]:
        selector = label_selector or field_selector
        queue = self.queue(path + (f"?{selector}" if selector else ""))

        async def stream() -> AsyncIterator[Any]:
            while True:
                yield await queue.get()

        return stream()


@pytest.fixture
def table() -> catalog.Catalog:
    return catalog.Catalog(
        pools=lambda: routing.Pool(transport=FakeTransport(), zone="a"), meters=metrics.Metrics()
    )


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_the_kubernetes_source_fills_and_follows_the_catalog(
    monkeypatch: pytest.MonkeyPatch, table: catalog.Catalog
) -> None:
    streams = Streams()
    monkeypatch.setattr(discovery, "reflect", streams.reflect)
    source = kube.Source(
        None,
        namespaces=None,
        gateway_namespace="kiu-system",
        gateway_service="kiu-gateway",
        credentials_namespace="kiu-system",
        s3_secret="store",
        s3_namespace_secret="own-store",
    )
    task = asyncio.create_task(source.run(table))
    await settle()
    versions = streams.queue("/apis/kiu.dev/v1alpha1/projectversions")
    slices = streams.queue("/apis/discovery.k8s.io/v1/endpointslices?kiu.dev/projectversion")
    keys = streams.queue("/api/v1/namespaces/kiu-system/secrets?kiu.dev/access-key")
    replicas = streams.queue(
        "/apis/discovery.k8s.io/v1/namespaces/kiu-system/endpointslices"
        "?kubernetes.io/service-name=kiu-gateway"
    )
    store = streams.queue("/api/v1/namespaces/kiu-system/secrets?metadata.name=store")
    own = streams.queue("/api/v1/secrets?metadata.name=own-store")
    await versions.put(
        discovery.Listed([projectversion("shoes-v3", tps=5), projectversion("bad", state="Nope")])
    )
    await slices.put(
        discovery.Listed(
            [slice_of("shoes-v3", "s1", ("10.0.0.1", "a", True), ("10.0.0.2", "b", True))]
        )
    )
    await keys.put(
        discovery.Listed(
            [secret("k", accessKeyId="AKID1", secretAccessKey="x", namespaces="retail")]
        )
    )
    await settle()
    assert not table.synced
    await replicas.put(
        discovery.Listed(
            [
                slice_of(
                    "kiu-gateway",
                    "g1",
                    ("10.1.0.1", "a", True),
                    ("10.1.0.2", "b", True),
                    ("10.1.0.3", "b", False),
                    namespace="kiu-system",
                )
            ]
        )
    )
    await store.put(
        discovery.Listed([secret("store", accessKeyId="S3KEY", secretAccessKey="S3SECRET")])
    )
    await settle()
    assert not table.synced
    own_store = secret("own-store", accessKeyId="RETAILKEY", secretAccessKey="RETAILSECRET")
    own_store["metadata"]["namespace"] = "retail"
    await own.put(discovery.Listed([own_store]))
    await settle()
    assert table.synced
    entry = table.get("retail", "shoes-v3")
    assert entry is not None
    assert table.get("retail", "bad") is None  # refused by the model: ignored, logged
    assert (
        entry.spec.arn
        == "arn:kiu:rekognition:retail:000000000000:project/shoes/version/shoes-v3/1700000000000"
    )
    assert [u.endpoint.host for u in entry.pool.units] == ["10.0.0.1", "10.0.0.2"]
    assert (entry.tps_limit, table.replicas, entry.bucket.rate) == (10.0, 2, 5.0)
    # every listed replica exchanges offered rates, ready or not (kiu.gateway.peers)
    assert table.replica_hosts == {"10.1.0.1", "10.1.0.2", "10.1.0.3"}
    assert table.access_key("AKID1") is not None
    assert table.s3_credentials is not None
    assert table.s3_credentials.access_key_id == "S3KEY"
    # a namespace's own Secret wins for its models; the others get the gateway-wide one
    retail, other = table.s3_credentials_for("retail"), table.s3_credentials_for("garden")
    assert (retail and retail.access_key_id, other and other.access_key_id) == (
        "RETAILKEY",
        "S3KEY",
    )
    await own.put(discovery.Changed("DELETED", own_store))
    await settle()
    assert table.s3_credentials_for("retail") == table.s3_credentials

    # a unit stops being ready: it leaves the routing table with the event
    await slices.put(
        discovery.Changed(
            "MODIFIED",
            slice_of("shoes-v3", "s1", ("10.0.0.1", "a", True), ("10.0.0.2", "b", False)),
        )
    )
    await settle()
    assert [u.endpoint.host for u in entry.pool.units] == ["10.0.0.1"]
    assert entry.tps_limit == 5.0
    # a second slice of the same Service adds units; deleting it removes them
    await slices.put(
        discovery.Changed("ADDED", slice_of("shoes-v3", "s2", ("10.0.0.3", "c", True)))
    )
    await settle()
    assert len(entry.pool) == 2
    await slices.put(discovery.Changed("DELETED", slice_of("shoes-v3", "s2")))
    await settle()
    assert len(entry.pool) == 1
    # status and spec changes follow
    await versions.put(
        discovery.Changed(
            "MODIFIED", projectversion("shoes-v3", state="Stopped", status="STOPPING")
        )
    )
    await settle()
    assert (entry.spec.state, entry.spec.status) == ("Stopped", "STOPPING")
    # a version without status yet is STARTING
    await versions.put(discovery.Changed("ADDED", projectversion("new", status=None)))
    await settle()
    new = table.get("retail", "new")
    assert new is not None
    assert new.spec.status == "STARTING"
    # deletion, and a relist that no longer has a version, remove it
    await versions.put(discovery.Changed("DELETED", projectversion("new")))
    await versions.put(discovery.Listed([]))
    await settle()
    assert list(table.entries()) == []
    # keys rotate
    await keys.put(discovery.Changed("DELETED", secret("k")))
    await settle()
    assert table.access_key("AKID1") is None
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_relist_in_one_namespace_keeps_the_others(
    monkeypatch: pytest.MonkeyPatch, table: catalog.Catalog
) -> None:
    streams = Streams()
    monkeypatch.setattr(discovery, "reflect", streams.reflect)
    source = kube.Source(
        None,
        namespaces=["retail", "shipping"],
        gateway_namespace="kiu-system",
        gateway_service="kiu-gateway",
        credentials_namespace="kiu-system",
        s3_secret=None,
    )
    task = asyncio.create_task(source.run(table))
    await settle()

    def in_namespace(namespace: str, name: str) -> dict[str, Any]:
        body = projectversion(name)
        body["metadata"]["namespace"] = namespace
        return body

    retail = streams.queue("/apis/kiu.dev/v1alpha1/namespaces/retail/projectversions")
    shipping = streams.queue("/apis/kiu.dev/v1alpha1/namespaces/shipping/projectversions")
    retail_slices = streams.queue(
        "/apis/discovery.k8s.io/v1/namespaces/retail/endpointslices?kiu.dev/projectversion"
    )
    shipping_slices = streams.queue(
        "/apis/discovery.k8s.io/v1/namespaces/shipping/endpointslices?kiu.dev/projectversion"
    )
    await retail.put(discovery.Listed([in_namespace("retail", "a")]))
    await shipping.put(discovery.Listed([in_namespace("shipping", "b")]))
    await retail_slices.put(discovery.Listed([slice_of("a", "sa", ("10.0.0.1", "a", True))]))
    await shipping_slices.put(
        discovery.Listed([slice_of("b", "sb", ("10.0.0.2", "a", True), namespace="shipping")])
    )
    await settle()
    await retail.put(discovery.Listed([in_namespace("retail", "a")]))
    await retail_slices.put(discovery.Listed([slice_of("a", "sa", ("10.0.0.1", "a", True))]))
    await settle()
    b = table.get("shipping", "b")
    assert b is not None
    assert len(b.pool) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_start_and_stop_patch_the_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []

    async def call(api: Any, **kwargs: Any) -> dict[str, Any]:
        calls.append(kwargs)
        if "missing" in kwargs["path"]:
            raise k8s_errors.NotFound("gone", status=404)
        return {}

    from kiu.k8s import projectversions

    monkeypatch.setattr(projectversions.rest, "call", call)
    source = kube.Source(
        None,
        namespaces=["retail"],
        gateway_namespace="g",
        gateway_service="s",
        credentials_namespace="g",
        s3_secret=None,
    )
    await source.set_state(
        namespace="retail", name="shoes-v3", state="Running", min_units=2, max_units=None
    )
    await source.set_state(namespace="retail", name="shoes-v3", state="Stopped")
    assert calls[0]["method"] == "PATCH"
    assert calls[0]["path"] == "/apis/kiu.dev/v1alpha1/namespaces/retail/projectversions/shoes-v3"
    assert calls[0]["content_type"] == "application/merge-patch+json"
    assert calls[0]["body"] == {
        "spec": {"state": "Running", "minInferenceUnits": 2, "maxInferenceUnits": None}
    }
    assert calls[1]["body"] == {"spec": {"state": "Stopped"}}
    from kiu.gateway import errors

    with pytest.raises(errors.ResourceNotFound):
        await source.set_state(namespace="retail", name="missing", state="Stopped")
