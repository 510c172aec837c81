"""Costs that must stay small: the throttling decision, request parsing, /metrics."""

from __future__ import annotations

import base64
import json
import statistics
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kiu.gateway import auth, awsjson, catalog, dataplane, errors, metrics, routing, upstream

from .conftest import arn, png
from .fakes import FakeTransport
from .signing import ACCESS_KEY, SECRET_KEY, presented, sign


class Quiet:
    async def run(self, catalog: catalog.Catalog) -> None: ...

    async def set_state(self, **kwargs: Any) -> None: ...


def plane(*, models: int = 1, tps: float = 1.0) -> dataplane.Dataplane:
    meters = metrics.Metrics()
    table = catalog.Catalog(
        pools=lambda: routing.Pool(transport=FakeTransport(), zone="a"), meters=meters
    )
    for i in range(models):
        table.put(
            catalog.ModelSpec(
                namespace="retail",
                name=f"m{i}",
                project="p",
                created_ms=1,
                arn=f"arn:kiu:rekognition:retail:000000000000:project/p/version/m{i}/1",
                tps=tps,
                units=(upstream.Endpoint("10.0.0.1", 8001, "a"),),
            )
        )
    key = catalog.AccessKey(
        credentials=auth.sigv4.Credentials(ACCESS_KEY, SECRET_KEY), namespaces=frozenset({"*"})
    )
    table.set_access_keys([key])
    authenticator = auth.Authenticator(keys=table.access_key)
    return dataplane.Dataplane(
        catalog=table, source=Quiet(), authenticator=authenticator, meters=meters
    )


class Detect:
    tokens = False

    def __init__(self, shown: auth.Presented, body: bytes) -> None:
        self.presented = shown
        self._body = awsjson._DetectBody(shown, body)

    def target(self) -> dataplane.Target:
        return self._body.target()

    def params(self) -> dataplane.DetectParams:
        return self._body.params()


async def test_throttled_calls_are_decided_in_well_under_a_millisecond() -> None:
    p = plane(tps=1.0)
    url = "http://gw:8080/"
    body = json.dumps(
        {
            "ProjectVersionArn": "arn:kiu:rekognition:retail:000000000000:project/p/version/m0/1",
            "Image": {"Bytes": base64.b64encode(png(640, 480)).decode()},
        }
    ).encode()
    headers = sign(
        url=url, body=body, headers={"X-Amz-Target": "RekognitionService.DetectCustomLabels"}
    )
    request = Detect(presented(url, body, headers), body)
    await p.detect(request)  # the one token of the burst
    timings = []
    for _ in range(2000):
        started = time.perf_counter()
        with pytest.raises(errors.ProvisionedThroughputExceeded):
            await p.detect(request)
        timings.append(time.perf_counter() - started)
    median = statistics.median(timings)
    print(
        f"\nthrottled DetectCustomLabels, signed, {len(body)} bytes: median {median * 1e6:.0f} us"
    )
    assert median < 0.001


def test_the_bucket_decision_alone_is_microseconds() -> None:
    entry = plane(tps=1.0).catalog.get("retail", "m0")
    assert entry is not None
    bucket = entry.bucket
    started = time.perf_counter()
    for _ in range(100_000):
        bucket.try_acquire(now=time.monotonic())
    per_call = (time.perf_counter() - started) / 100_000
    print(f"\ntoken bucket decision: {per_call * 1e9:.0f} ns")
    assert per_call < 20e-6


def test_arn_is_read_without_decoding_the_image() -> None:
    image = png() + b"\0" * (3 * 1024 * 1024)
    body = json.dumps(
        {
            "ProjectVersionArn": arn("v"),
            "Image": {"Bytes": base64.b64encode(image).decode()},
            "MinConfidence": 10,
        }
    ).encode()
    started = time.perf_counter()
    doc, blob = awsjson.split_image(body)
    elapsed = time.perf_counter() - started
    assert doc["ProjectVersionArn"] == arn("v")
    assert blob is not None
    assert bytes(blob) == base64.b64encode(image)
    full = time.perf_counter()
    json.loads(body)
    whole = time.perf_counter() - full
    print(f"\nsplit {len(body)} bytes in {elapsed * 1e3:.2f} ms; json.loads: {whole * 1e3:.2f} ms")
    assert elapsed < 0.005


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["Bytes", "Image", "x"]), inner, max_size=3)
    ),
    max_leaves=8,
)


@given(json_values, st.binary(max_size=40), st.booleans())
def test_splitting_agrees_with_json_loads(extra: Any, image: bytes, escape: bool) -> None:
    encoded = base64.b64encode(image).decode()
    doc = {"ProjectVersionArn": "a", "Image": {"Bytes": encoded}, "Other": extra}
    text = json.dumps(doc)
    if escape:
        text = text.replace("/", "\\/")
    body = text.encode()
    parsed, blob = awsjson.split_image(body)
    if blob is not None:
        assert parsed["Image"]["Bytes"] == ""
        parsed["Image"]["Bytes"] = bytes(blob).decode()
    assert parsed == json.loads(body)


def test_metrics_scrape_with_thousands_of_models_is_cheap() -> None:
    p = plane(models=5000)
    meters = p._metrics
    for entry in p.catalog.entries():
        entry.meters.demand.inc()
        entry.meters.record(operation="DetectCustomLabels", outcome="success", seconds=0.01)
        entry.meters.record(operation="DetectCustomLabels", outcome="throttled", seconds=0.0001)
    started = time.perf_counter()
    demand = meters.exposition(["kiu_gateway_demand_total"])
    demand_time = time.perf_counter() - started
    started = time.perf_counter()
    everything = meters.exposition()
    full_time = time.perf_counter() - started
    print(
        f"\n5000 models: demand-only scrape {demand_time * 1e3:.0f} ms "
        f"({len(demand) // 1024} KiB), "
        f"full scrape {full_time * 1e3:.0f} ms ({len(everything) // 1024} KiB)"
    )
    assert demand.count(b"\nkiu_gateway_demand_total{") == 5000
    assert demand_time < 1.0
    assert full_time < 5.0


def test_recording_a_request_is_cheap() -> None:
    p = plane(models=1)
    entry = p.catalog.get("retail", "m0")
    assert entry is not None
    started = time.perf_counter()
    for _ in range(20_000):
        entry.meters.demand.inc()
        entry.meters.record(operation="DetectCustomLabels", outcome="success", seconds=0.01)
    per_call = (time.perf_counter() - started) / 20_000
    print(f"\nmetrics per request: {per_call * 1e6:.1f} us")
    assert per_call < 100e-6
