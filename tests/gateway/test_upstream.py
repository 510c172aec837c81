"""The unit's answer read from the KServe v2 response message, checked against
tritonclient's own reader (``InferResult.as_numpy``) on the same messages."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tritonclient.grpc import InferResult, service_pb2

from kiu.gateway import upstream

Tensor = service_pb2.ModelInferResponse.InferOutputTensor

_LABEL = st.binary(max_size=20)
_SCORE = st.floats(0, 100, width=32)


def _response(
    labels: list[bytes], scores: list[float], boxes: list[float] | None
) -> service_pb2.ModelInferResponse:
    n = len(labels)
    outputs = [
        Tensor(name="LABELS", datatype="BYTES", shape=[1, n]),
        Tensor(name="CONFIDENCES", datatype="FP32", shape=[1, n]),
        Tensor(name="THRESHOLDS", datatype="FP32", shape=[1, n]),
    ]
    if boxes is not None:
        outputs.append(Tensor(name="BOXES", datatype="FP32", shape=[1, n, 4]))
    floats = [scores, [50.0] * n, *([boxes] if boxes is not None else [])]
    contents = [b"".join(struct.pack("<I", len(v)) + v for v in labels)]
    contents += [struct.pack(f"<{len(f)}f", *f) for f in floats]
    return service_pb2.ModelInferResponse(outputs=outputs, raw_output_contents=contents)


@given(
    st.lists(st.tuples(_LABEL, _SCORE, st.lists(_SCORE, min_size=4, max_size=4)), max_size=6),
    st.booleans(),
)
def test_prediction_reads_what_tritonclient_reads(
    rows: list[tuple[bytes, float, list[float]]], with_boxes: bool
) -> None:
    labels = [r[0] for r in rows]
    scores = [r[1] for r in rows]
    boxes = [x for r in rows for x in r[2]] if with_boxes else None
    response = _response(labels, scores, boxes)
    got = upstream.prediction(response)
    reference = InferResult(response)
    names = reference.as_numpy("LABELS")
    assert got.labels == tuple(v.decode("utf-8", "replace") for v in names.reshape(-1))
    assert got.confidences == tuple(float(v) for v in reference.as_numpy("CONFIDENCES").flat)
    assert got.thresholds == tuple(float(v) for v in reference.as_numpy("THRESHOLDS").flat)
    if with_boxes:
        expected = reference.as_numpy("BOXES").reshape(-1, 4).tolist()
        assert got.boxes == tuple(tuple(b) for b in expected)
    else:
        assert got.boxes is None


def test_an_answer_that_breaks_the_contract_fails() -> None:
    good = _response([b"a", b"b"], [90.0, 10.0], None)
    truncated = service_pb2.ModelInferResponse()
    truncated.CopyFrom(good)
    truncated.raw_output_contents[0] = good.raw_output_contents[0][:-1]
    missing = service_pb2.ModelInferResponse(
        outputs=list(good.outputs)[:2], raw_output_contents=list(good.raw_output_contents)[:2]
    )
    typed = service_pb2.ModelInferResponse(outputs=list(good.outputs))
    short = _response([b"a", b"b"], [90.0, 10.0], [0.1] * 4)
    uneven = service_pb2.ModelInferResponse()
    uneven.CopyFrom(good)
    uneven.raw_output_contents[1] = struct.pack("<f", 1.0)
    for bad in (truncated, missing, typed, short, uneven):
        with pytest.raises(upstream.Failed):
            upstream.prediction(bad)
