"""kiu.api.arn: exact round trips, clear refusals of malformed and foreign ARNs."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiu.api import arn
from kiu.api.errors import ParseError

VERSION = "arn:kiu:rekognition:retail:000000000000:project/shoes/version/shoes-v3/1714564800000"
PROJECT = "arn:kiu:rekognition:retail:000000000000:project/shoes/1714564800000"


def test_project_version_arn_parses_into_its_parts() -> None:
    assert arn.parse_project_version(VERSION) == arn.ProjectVersionArn(
        namespace="retail", project="shoes", version="shoes-v3", created_ms=1_714_564_800_000
    )


def test_project_arn_parses_into_its_parts() -> None:
    assert arn.parse_project(PROJECT) == arn.ProjectArn(
        namespace="retail", project="shoes", created_ms=1_714_564_800_000
    )


def test_formats_are_the_reference_shapes() -> None:
    assert str(arn.parse_project_version(VERSION)) == VERSION
    assert str(arn.parse_project(PROJECT)) == PROJECT
    assert arn.PROJECT_VERSION_FORM == (
        "arn:kiu:rekognition:<namespace>:000000000000:project/<project>"
        "/version/<name>/<creation ms>"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "'' is not an ARN: expected arn:kiu:rekognition:<namespace>:"),
        ("shoes-v3", "'shoes-v3' is not an ARN"),
        ("arn:kiu:rekognition:retail", "is not an ARN"),
        (
            "arn:aws:rekognition:us-east-1:123456789012:project/shoes/version/v3/1",
            "is not a kiu ARN: partition and service are 'aws' and 'rekognition',"
            " expected 'kiu' and 'rekognition'",
        ),
        (
            "arn:kiu:s3:retail:000000000000:project/shoes/version/v3/1",
            "is not a kiu ARN: partition and service are 'kiu' and 's3'",
        ),
        (
            "arn:kiu:rekognition:retail:123456789012:project/shoes/version/v3/1",
            ": account is '123456789012', expected '000000000000'",
        ),
        (PROJECT, "is a project ARN; expected a project version ARN: arn:kiu:rekognition:"),
        (
            "arn:kiu:rekognition:retail:000000000000:model/shoes/version/v3/1",
            "is not a project version ARN: expected",
        ),
        (
            "arn:kiu:rekognition:Retail:000000000000:project/shoes/version/v3/1",
            ": 'Retail' in the region field is not a namespace name (a DNS label)",
        ),
        (
            "arn:kiu:rekognition:retail:000000000000:project/Shoes/version/v3/1",
            ": project 'Shoes' is not a DNS label",
        ),
        (
            "arn:kiu:rekognition:retail:000000000000:project/shoes/version/3d/1",
            ": version '3d' is not a ProjectVersion name (a DNS-1035 label)",
        ),
        (
            "arn:kiu:rekognition:retail:000000000000:project/shoes/version/v3/017",
            ": creation time '017' is not a number of milliseconds",
        ),
        (
            "arn:kiu:rekognition:retail:000000000000:project/shoes/version/v3/-1",
            ": creation time '-1' is not a number of milliseconds",
        ),
        (
            "arn:kiu:rekognition:retail:000000000000:project/shoes/version/v3/1/extra",
            "is not a project version ARN",
        ),
        (
            "arn:kiu:rekognition:retail:000000000000:project/shoes/version/v3:x/1",
            ": version 'v3:x' is not a ProjectVersion name",
        ),
    ],
)
def test_malformed_project_version_arns_are_refused_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(ParseError) as caught:
        arn.parse_project_version(text)
    assert message in caught.value.message
    assert caught.value.message.startswith(repr(text[:160]))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (VERSION, "is a project version ARN; expected a project ARN: arn:kiu:rekognition:"),
        ("arn:kiu:rekognition:retail:000000000000:project/shoes", "is not a project ARN"),
        ("arn:kiu:rekognition:retail:000000000000:project/shoes/x", "'x' is not a number"),
        ("arn:aws:rekognition:us-east-1:123456789012:project/shoes/1", "is not a kiu ARN"),
    ],
)
def test_malformed_project_arns_are_refused_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        arn.parse_project(text)


def test_long_input_is_cut_short_in_messages() -> None:
    with pytest.raises(ParseError) as caught:
        arn.parse_project_version("x" * 10_000)
    assert len(caught.value.message) < 400


@pytest.mark.parametrize(
    "fields",
    [
        {"namespace": "", "project": "p", "version": "v", "created_ms": 1},
        {"namespace": "n", "project": "p", "version": "v", "created_ms": -1},
        {"namespace": "n", "project": "p", "version": "v", "created_ms": True},
        {"namespace": "n", "project": "p" * 64, "version": "v", "created_ms": 1},
    ],
)
def test_invalid_values_cannot_be_constructed(fields: dict) -> None:
    with pytest.raises(ParseError):
        arn.ProjectVersionArn(**fields)


_LABEL = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", fullmatch=True)
_VERSION = st.from_regex(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", fullmatch=True)
_MS = st.integers(min_value=0, max_value=9_999_999_999_999_999)


@settings(max_examples=200)
@given(namespace=_LABEL, project=_LABEL, version=_VERSION, created_ms=_MS)
def test_project_version_arns_round_trip(
    namespace: str, project: str, version: str, created_ms: int
) -> None:
    value = arn.ProjectVersionArn(
        namespace=namespace, project=project, version=version, created_ms=created_ms
    )
    assert arn.parse_project_version(str(value)) == value


@settings(max_examples=200)
@given(namespace=_LABEL, project=_LABEL, created_ms=_MS)
def test_project_arns_round_trip(namespace: str, project: str, created_ms: int) -> None:
    value = arn.ProjectArn(namespace=namespace, project=project, created_ms=created_ms)
    assert arn.parse_project(str(value)) == value


_NEAR_ARN = st.lists(
    st.sampled_from(
        [
            "arn",
            "kiu",
            "aws",
            "rekognition",
            "retail",
            "000000000000",
            "project",
            "shoes",
            "version",
            "v3",
            "17",
        ]
    )
    | st.text(alphabet="arn:kiu/-0123456789", max_size=6),
    max_size=12,
).map(
    lambda parts: "".join(part + (":" if i < 5 else "/") for i, part in enumerate(parts)).rstrip(
        ":/"
    )
)


@settings(max_examples=300)
@given(text=_NEAR_ARN | st.text(max_size=80))
def test_any_text_parses_exactly_or_raises_parse_error(text: str) -> None:
    for parse in (arn.parse_project_version, arn.parse_project):
        outcome = _attempt(parse, text)
        if isinstance(outcome, ParseError):
            assert outcome.message
        else:
            assert str(outcome) == text


def _attempt(parse: Callable[[str], object], text: str) -> object:
    try:
        return parse(text)
    except ParseError as error:
        return error
