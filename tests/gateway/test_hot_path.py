"""What keeps the hot path cheap, as behaviour: a throttled call touches neither the
image nor a unit, the ARN is read without copying or decoding the image, and a
demand scrape holds only the demand series. (How fast: `make bench-gateway`.)"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kiu import sigv4
from kiu.gateway import auth, awsjson, catalog, dataplane, errors, metrics, routing, upstream

from .conftest import arn, png
from .fakes import FakeTransport
from .signing import ACCESS_KEY, SECRET_KEY, presented, sign


class Quiet:
    async def run(self, catalog: catalog.Catalog) -> None: ...

    async def set_state(self, **kwargs: Any) -> None: ...


M0 = "arn:kiu:rekognition:retail:000000000000:project/p/version/m0/1"


def plane(
    *, models: int = 1, tps: float = 1.0, transport: FakeTransport | None = None
) -> dataplane.Dataplane:
    meters = metrics.Metrics()
    table = catalog.Catalog(
        pools=lambda: routing.Pool(transport=transport or FakeTransport(), zone="a"),
        meters=meters,
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
        credentials=sigv4.Credentials(ACCESS_KEY, SECRET_KEY), namespaces=frozenset({"*"})
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


async def test_a_throttled_call_touches_neither_the_image_nor_a_unit() -> None:
    transport = FakeTransport()
    p = plane(tps=1.0, transport=transport)
    url = "http://gw:8080/"

    def call(image: str) -> Detect:
        body = json.dumps(
            {
                "ProjectVersionArn": M0,
                "Image": {"Bytes": image},
            }
        ).encode()
        headers = sign(
            url=url, body=body, headers={"X-Amz-Target": "RekognitionService.DetectCustomLabels"}
        )
        return Detect(presented(url, body, headers), body)

    await p.detect(call(base64.b64encode(png(640, 480)).decode()))  # the burst's one token
    sent = len(transport.calls)
    assert sent == 1
    # Not base64 and not an image: a call that looked at the image would fail on it.
    with pytest.raises(errors.ProvisionedThroughputExceeded):
        await p.detect(call("%%% not base64 %%%"))
    assert len(transport.calls) == sent


def test_arn_is_read_without_decoding_the_image() -> None:
    image = png() + b"\0" * (3 * 1024 * 1024)
    body = json.dumps(
        {
            "ProjectVersionArn": arn("v"),
            "Image": {"Bytes": base64.b64encode(image).decode()},
            "MinConfidence": 10,
        }
    ).encode()
    doc, blob = awsjson.split_image(body)
    assert doc["ProjectVersionArn"] == arn("v")
    assert doc["Image"]["Bytes"] == ""  # the JSON parser never saw the image
    assert blob is not None
    assert blob.obj is body  # a view of the request body, not a copy
    assert bytes(blob) == base64.b64encode(image)


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


def test_a_demand_scrape_holds_only_the_demand_series_of_every_model() -> None:
    p = plane(models=5000)
    meters = p._metrics
    for entry in p.catalog.entries():
        entry.meters.demand.inc()
        entry.meters.record(operation="DetectCustomLabels", outcome="success", seconds=0.01)
        entry.meters.record(operation="DetectCustomLabels", outcome="throttled", seconds=0.0001)
    demand = meters.exposition(["kiu_gateway_demand_total"])
    samples = [line for line in demand.splitlines() if line and not line.startswith(b"#")]
    assert len(samples) == 5000
    assert all(line.startswith(b"kiu_gateway_demand_total{") for line in samples)
    everything = meters.exposition()
    assert everything.count(b"\nkiu_gateway_demand_total{") == 5000
    assert len(everything) > 2 * len(demand)


_B64 = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_ \n.")


@given(st.one_of(st.binary(max_size=300).map(base64.b64encode), _B64.map(str.encode)))
def test_base64_decodes_exactly_as_strict_binascii(encoded: bytes) -> None:
    """The fast decoder accepts and refuses what ``a2b_base64(strict_mode=True)`` does."""
    try:
        expected: bytes | None = binascii.a2b_base64(encoded, strict_mode=True)
    except binascii.Error:
        expected = None
    for given_as in (encoded, memoryview(b"x" + encoded + b"y")[1:-1]):
        try:
            got: bytes | None = awsjson.decode_base64(given_as)
        except binascii.Error:
            got = None
        assert got == expected
