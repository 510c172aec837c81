"""Property-based fuzzing of request parsing and image admission (hypothesis).

Properties: whatever arrives, only the gateway's domain errors are raised (so the
answer is a reference error, never a 500); a valid request parses to what it says;
image inspection reads headers only. ``make test`` runs a fixed budget
(tests/conftest.py), ``make fuzz`` a much longer random run.
"""

from __future__ import annotations

import base64
import json
import struct
import zlib
from typing import Any
from unittest import mock

import PIL.Image
from hypothesis import assume, example, given
from hypothesis import strategies as st

from kiu.gateway import awsjson, errors, images

from .conftest import arn, png
from .signing import presented
from .tally import TALLY

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=20,
)
MEMBERS = ("ProjectVersionArn", "ProjectArn", "Image", "Bytes", "S3Object", "MinConfidence")
KEYS = st.sampled_from(
    [*MEMBERS, "MaxResults", "MinInferenceUnits", "MaxInferenceUnits", "VersionNames", "NextToken"]
)
IMAGE_DOCS = st.fixed_dictionaries(
    {},
    optional={
        "Bytes": JSON_VALUES | st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode()),
        "S3Object": JSON_VALUES
        | st.fixed_dictionaries({"Bucket": JSON_VALUES, "Name": JSON_VALUES}),
    },
)
DOCS = st.dictionaries(KEYS, JSON_VALUES | IMAGE_DOCS, max_size=6) | st.dictionaries(
    st.text(max_size=12), JSON_VALUES, max_size=4
)
# Mostly valid-looking separators, so the fast path (the image cut out) runs too.
SEPARATORS = st.tuples(st.sampled_from([",", ", ", " ,\n"]), st.sampled_from([":", ": ", " :\t"]))


def dumps(doc: Any, separators: tuple[str, str] = (",", ":")) -> bytes:
    return json.dumps(doc, separators=separators).encode()


def documents(body: bytes) -> list[awsjson._Document]:
    shown = presented("http://gateway/", body, {})
    return [awsjson._Document(shown, body), awsjson._DetectBody(shown, body)]


def use_every_member(document: awsjson._Document) -> None:
    """Everything the data plane may ask a request; only domain errors may escape."""
    reads = [
        document.target,
        document.project,
        document.units,
        document.options,
        lambda: document.string("NextToken"),
    ]
    if isinstance(document, awsjson._DetectBody):
        reads.append(document.params)
    TALLY["tried:request"] += 1
    refusals = set()
    for read in reads:
        try:
            read()
        except errors.GatewayError as exc:
            refusals.add(exc.name)
    for name in refusals or {"accepted"}:
        TALLY[f"request:{name}"] += 1


# --- the AWS JSON request ------------------------------------------------------------


@given(
    st.text(max_size=60) | st.sampled_from(awsjson.OPERATIONS).map("RekognitionService.{}".format)
)
def test_any_target_header_names_an_operation_or_is_unknown(target: str) -> None:
    try:
        operation = awsjson.operation_of(target)
    except errors.UnknownOperation:
        assert not any(target == awsjson.TARGET_PREFIX + name for name in awsjson.OPERATIONS)
    else:
        assert target == awsjson.TARGET_PREFIX + operation


@given(st.binary(max_size=300))
@example(b"[" * 100_000)
@example(b'{"Image": {"Bytes": "\\u0041"}, "Bytes": 1}')
@example(b'{"Image": {"Bytes": "abc')
def test_arbitrary_bodies_raise_only_domain_errors(body: bytes) -> None:
    for document in documents(body):
        use_every_member(document)


@given(DOCS, SEPARATORS)
def test_arbitrary_json_shapes_raise_only_domain_errors(
    doc: dict[str, Any], separators: tuple[str, str]
) -> None:
    for document in documents(dumps(doc, separators)):
        use_every_member(document)


@given(DOCS, SEPARATORS)
def test_the_image_cut_out_changes_nothing_but_speed(
    doc: dict[str, Any], separators: tuple[str, str]
) -> None:
    body = dumps(doc, separators)
    parsed, blob = awsjson.split_image(body)
    if blob is not None:
        parsed["Image"]["Bytes"] = bytes(blob).decode()
    assert parsed == json.loads(body)


@given(
    name=st.from_regex(r"[a-z]([-a-z0-9]{0,20}[a-z0-9])?", fullmatch=True),  # DNS-1035
    created=st.integers(min_value=1, max_value=2**42),
    confidence=st.none() | st.floats(min_value=0, max_value=100) | st.integers(0, 100),
    results=st.none() | st.integers(min_value=0, max_value=2**31),
    separators=SEPARATORS,
    order=st.permutations(["ProjectVersionArn", "Image", "MinConfidence", "MaxResults"]),
)
def test_a_valid_detect_request_parses_to_what_it_says(
    name: str,
    created: int,
    confidence: float | None,
    results: int | None,
    separators: tuple[str, str],
    order: list[str],
) -> None:
    image = png(64, 64)
    values = {
        "ProjectVersionArn": arn(name, created),
        "Image": {"Bytes": base64.b64encode(image).decode()},
        "MinConfidence": confidence,
        "MaxResults": results,
    }
    body = dumps({k: values[k] for k in order if values[k] is not None}, separators)
    (document,) = [d for d in documents(body) if isinstance(d, awsjson._DetectBody)]
    target = document.target()
    assert (target.name, target.created_ms) == (name, created)
    params = document.params()
    assert params.image == image
    assert params.min_confidence == (None if confidence is None else float(confidence))
    assert params.max_results == results


# --- images --------------------------------------------------------------------------

PNG = png(100, 80)
JPEG = png(100, 80, fmt="JPEG")


def inspect(data: bytes) -> images.ImageInfo | errors.GatewayError:
    """What inspection says; nothing may be decoded on the way (decoders are disabled)."""
    forbidden = mock.Mock(side_effect=AssertionError("an image was decoded"))
    with (
        mock.patch.object(zlib, "decompress", forbidden),
        mock.patch.object(zlib, "decompressobj", forbidden),
        mock.patch.object(PIL.Image, "open", forbidden),
    ):
        TALLY["tried:image"] += 1
        try:
            info = images.inspect(data)
        except (errors.InvalidImageFormat, errors.InvalidParameter, errors.ImageTooLarge) as exc:
            TALLY[f"image:{exc.name}"] += 1
            return exc
        TALLY["image:accepted"] += 1
        return info


@given(st.binary(max_size=600), st.sampled_from([b"", PNG[:8], PNG[:33], JPEG[:2], JPEG[:3]]))
def test_arbitrary_bytes_get_an_answer_or_a_reference_error(data: bytes, prefix: bytes) -> None:
    inspect(prefix + data)


@given(
    st.sampled_from([PNG, JPEG]),
    st.lists(st.tuples(st.integers(0, 199), st.integers(0, 255)), min_size=1, max_size=6),
)
def test_mutated_headers_get_an_answer_or_a_reference_error(
    original: bytes, changes: list[tuple[int, int]]
) -> None:
    data = bytearray(original)
    for position, value in changes:  # in the headers and just after them
        data[position % len(data)] = value
    outcome = inspect(bytes(data))
    if isinstance(outcome, images.ImageInfo):
        assert min(outcome.width, outcome.height) >= images.MIN_SIDE
        assert max(outcome.width, outcome.height) <= images.MAX_SIDE


def png_header(width: int, height: int) -> bytes:
    chunk = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))
    )


def jpeg_header(width: int, height: int, app: bytes) -> bytes:
    segment = b"\xff\xe0" + struct.pack(">H", len(app) + 2) + app
    frame = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + segment + frame


SIDES = st.integers(min_value=0, max_value=2**16 - 1)


@given(
    width=SIDES,
    height=SIDES,
    app=st.binary(max_size=40),
    jpeg=st.booleans(),
    tail=st.binary(max_size=200),
    other=st.binary(max_size=200),
)
def test_only_the_header_decides(
    width: int, height: int, app: bytes, jpeg: bool, tail: bytes, other: bytes
) -> None:
    """Whatever follows the header (pixels, a bomb, garbage) does not change the answer."""
    assume(tail != other)
    header = jpeg_header(width, height, app) if jpeg else png_header(width, height)
    first, second = inspect(header + tail), inspect(header + other)
    assert repr(first) == repr(second)
    inside = 64 <= width <= 4096 and 64 <= height <= 4096
    if jpeg and (width == 0 or height == 0):
        assert isinstance(first, errors.InvalidImageFormat)
    elif inside:
        assert first == images.ImageInfo("jpeg" if jpeg else "png", width, height)
    else:
        assert isinstance(first, errors.InvalidParameter)
