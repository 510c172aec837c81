"""Bad input through a `kiu gateway` process in front of a real `kiu unit`, over sockets.

Each case is sent by boto3 when boto3 can send it, else as raw HTTP, and must get
the reference error with its status: never a 500, and the gateway keeps serving.
Slow and numerous clients are cut off after bounded times while others are served.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import socket
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from PIL import Image

from kiu.gateway import images

from . import processes
from .clients import alive, detect_body, post, serve, signed, target
from .conftest import arn, png, rekognition

FOREIGN_ARN = "arn:aws:rekognition:us-east-1:123456789012:project/x/version/y/1"


@pytest.fixture(scope="module")
def unit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[processes.Unit]:
    logs = tmp_path_factory.mktemp("unit")
    with processes.units([("shapes-classifier", "a")], logs) as (started,):
        yield started


@pytest.fixture(scope="module")
def gateway(
    unit: processes.Unit, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[processes.Gateway]:
    logs = tmp_path_factory.mktemp("gateway")
    with serve(unit, logs, "--header-timeout", "2", "--read-timeout", "3") as gw:
        yield gw


# --- images --------------------------------------------------------------------------


def jpeg(width: int = 256, height: int = 192) -> bytes:
    buffer = io.BytesIO()
    Image.radial_gradient("L").resize((width, height)).convert("RGB").save(buffer, "JPEG")
    return buffer.getvalue()


def png_bomb(side: int = 60_000) -> bytes:
    """A valid PNG header declaring side x side pixels, with a small deflated body."""
    chunk = b"IHDR" + struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk
    data += struct.pack(">I", zlib.crc32(chunk))
    idat = zlib.compress(b"\x00" * 1_000_000, 9)
    return data + struct.pack(">I", len(idat)) + b"IDAT" + idat


def padded(size: int) -> bytes:
    """A valid PNG of exactly ``size`` bytes (zeros after its end)."""
    image = png()
    return image + b"\x00" * (size - len(image))


# --- the matrix ----------------------------------------------------------------------

IMAGES: list[Any] = [
    pytest.param(jpeg()[:40], "InvalidImageFormatException", id="jpeg-header-truncated"),
    pytest.param(png_bomb(), "InvalidParameterException", id="png-bomb-60000px"),
    pytest.param(padded(images.MAX_BYTES + 1), "ImageTooLargeException", id="4MiB-plus-1-byte"),
    pytest.param(png(4097, 64), "InvalidParameterException", id="4097px"),
    pytest.param(png(63, 100), "InvalidParameterException", id="63px"),
    pytest.param(png(fmt="GIF"), "InvalidImageFormatException", id="gif"),
]


@pytest.mark.parametrize(("image", "error"), IMAGES)
def test_bad_images_get_reference_errors(
    gateway: processes.Gateway, image: bytes, error: str
) -> None:
    client = rekognition(gateway.port)
    with pytest.raises(ClientError) as caught:
        client.detect_custom_labels(ProjectVersionArn=arn("shoes-v3"), Image={"Bytes": image})
    response = caught.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert response["Error"]["Code"] == error, response
    alive(gateway)


def test_truncated_jpeg_with_an_intact_header_is_refused_by_the_unit(
    gateway: processes.Gateway,
) -> None:
    data = jpeg()
    cut = data[: len(data) // 2]  # frame header intact, entropy-coded data cut
    assert images.inspect(cut).format == "jpeg"
    client = rekognition(gateway.port)
    with pytest.raises(ClientError) as caught:
        client.detect_custom_labels(ProjectVersionArn=arn("shoes-v3"), Image={"Bytes": cut})
    assert caught.value.response["Error"]["Code"] == "InvalidImageFormatException"
    alive(gateway)


@pytest.mark.parametrize(
    "image",
    [padded(images.MAX_BYTES), png(64, 64), png(4096, 64), jpeg()],
    ids=["exactly-4MiB", "64px", "4096px", "jpeg"],
)
def test_the_limits_themselves_are_accepted(gateway: processes.Gateway, image: bytes) -> None:
    answer = rekognition(gateway.port).detect_custom_labels(
        ProjectVersionArn=arn("shoes-v3"), Image={"Bytes": image}, MinConfidence=0
    )
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert answer["CustomLabels"]


def _calls() -> list[Any]:
    good = base64.b64encode(png()).decode()
    image = {"Bytes": good}
    valid = {"ProjectVersionArn": arn("shoes-v3"), "Image": image}

    def doc(**changes: Any) -> bytes:
        return json.dumps({k: v for k, v in {**valid, **changes}.items() if v is not None}).encode()

    detect = "DetectCustomLabels"
    return [
        pytest.param(detect, b"", "InvalidParameterException", id="empty-body"),
        pytest.param(detect, b'{"ProjectVersionArn": ', "SerializationException", id="bad-json"),
        pytest.param(detect, b'"text"', "SerializationException", id="json-not-object"),
        pytest.param(detect, b'{"a": "\xff\xfe"}', "SerializationException", id="not-utf8"),
        pytest.param(detect, b"[" * 100_000, "SerializationException", id="json-nesting"),
        pytest.param(detect, doc(ProjectVersionArn=7), "InvalidParameterException", id="arn-int"),
        pytest.param(
            detect, doc(MinConfidence="high"), "InvalidParameterException", id="confidence-text"
        ),
        pytest.param(
            detect, doc(MinConfidence=101), "InvalidParameterException", id="confidence-101"
        ),
        pytest.param(detect, doc(MaxResults=1.5), "InvalidParameterException", id="max-float"),
        pytest.param(detect, doc(MaxResults=-1), "InvalidParameterException", id="max-negative"),
        pytest.param(detect, doc(Image="abc"), "InvalidParameterException", id="image-string"),
        pytest.param(
            detect, doc(Image={"Bytes": 7}), "InvalidParameterException", id="bytes-number"
        ),
        pytest.param(
            detect,
            doc(Image={"Bytes": good, "S3Object": {"Bucket": "b", "Name": "n"}}),
            "InvalidParameterException",
            id="bytes-and-s3",
        ),
        pytest.param(detect, doc(Image=None), "InvalidParameterException", id="missing-image"),
        pytest.param(
            detect, doc(ProjectVersionArn=None), "InvalidParameterException", id="missing-arn"
        ),
        pytest.param(
            detect, doc(ProjectVersionArn="not-an-arn"), "InvalidParameterException", id="bad-arn"
        ),
        pytest.param(
            detect, doc(ProjectVersionArn=FOREIGN_ARN), "InvalidParameterException", id="aws-arn"
        ),
        pytest.param(  # boto3 refuses to send a zero-byte image
            detect, doc(Image={"Bytes": ""}), "InvalidParameterException", id="zero-byte-image"
        ),
        pytest.param(
            detect,
            doc(Image={"Bytes": "@@@@"}),
            "InvalidParameterException",
            id="base64-alphabet",
        ),
        pytest.param(
            detect, doc(Image={"Bytes": good[:-1]}), "InvalidParameterException", id="base64-pad"
        ),
        pytest.param("DeleteProject", b"{}", "UnknownOperationException", id="unknown-op"),
        pytest.param("", b"{}", "UnknownOperationException", id="no-target"),
        pytest.param(
            "StartProjectVersion",
            json.dumps({"ProjectVersionArn": arn("shoes-v3"), "MinInferenceUnits": "2"}).encode(),
            "InvalidParameterException",
            id="units-text",
        ),
        pytest.param(
            "StartProjectVersion",
            json.dumps({"ProjectVersionArn": arn("shoes-v3"), "MinInferenceUnits": 0}).encode(),
            "InvalidParameterException",
            id="units-zero",
        ),
        pytest.param(
            "DescribeProjectVersions",
            json.dumps({"ProjectArn": arn("shoes-v3"), "MaxResults": 1000}).encode(),
            "InvalidParameterException",
            id="describe-max",
        ),
    ]


@pytest.mark.parametrize(("operation", "body", "error"), _calls())
def test_malformed_requests_get_reference_errors(
    gateway: processes.Gateway, operation: str, body: bytes, error: str
) -> None:
    headers = target(operation) if operation else {"Content-Type": "application/x-amz-json-1.1"}
    status, answer = post(gateway, body, signed(gateway, body, headers))
    assert (status, answer["__type"]) == (400, error), answer
    assert answer["message"]
    alive(gateway)


# --- size, slowness, numbers ---------------------------------------------------------


def connect(gw: processes.Gateway) -> socket.socket:
    return socket.create_connection((processes.HOST, gw.port), timeout=60)


def head(operation: str, length: int, **extra: str) -> bytes:
    lines = [
        "POST / HTTP/1.1",
        f"Host: {processes.HOST}",
        f"X-Amz-Target: RekognitionService.{operation}",
        "Content-Type: application/x-amz-json-1.1",
        f"Content-Length: {length}",
        *(f"{k}: {v}" for k, v in extra.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def answer_of(sock: socket.socket) -> tuple[int, dict[str, Any]]:
    """Read one HTTP response (status and JSON body) from a raw socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before an answer: {data!r}"
        data += chunk
    header, _, rest = data.partition(b"\r\n\r\n")
    lines = header.decode().split("\r\n")
    fields = dict(line.split(": ", 1) for line in lines[1:])
    length = int({k.lower(): v for k, v in fields.items()}["content-length"])
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk
        rest += chunk
    return int(lines[0].split()[1]), json.loads(rest[:length])


def closed(sock: socket.socket, *, within: float) -> bool:
    """Whether the peer closes the connection within ``within`` seconds (data is drained)."""
    sock.settimeout(within)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


def test_declared_oversized_body_is_refused_before_it_is_sent(gateway: processes.Gateway) -> None:
    with connect(gateway) as sock:
        sock.sendall(head("DetectCustomLabels", 7 * 1024 * 1024) + b'{"Image": ')
        status, answer = answer_of(sock)  # answered though 7 MiB were never sent
        assert (status, answer["__type"]) == (400, "ImageTooLargeException")
        assert closed(sock, within=30)
    alive(gateway)


def test_oversized_chunked_body_is_refused(gateway: processes.Gateway) -> None:
    chunk = b"x" * (1024 * 1024)
    with connect(gateway) as sock:
        sock.sendall(
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"X-Amz-Target: RekognitionService.DetectCustomLabels\r\n\r\n"
        )
        for _ in range(7):  # no length declared: refused once 6 MiB are exceeded
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        status, answer = answer_of(sock)
        assert (status, answer["__type"]) == (400, "ImageTooLargeException")
        assert closed(sock, within=30)
    alive(gateway)


def trickle(sock: socket.socket, data: bytes, *, stop: Callable[[], bool]) -> int:
    """Send ``data`` a byte a second until it is sent, the peer closes, or ``stop()``."""
    sent = 0
    for byte in data:
        if stop():
            break
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            break
        sent += 1
        time.sleep(1)
    return sent


def test_a_client_sending_headers_a_byte_a_second_is_cut_off(gateway: processes.Gateway) -> None:
    with connect(gateway) as slow:
        request = head("DescribeProjectVersions", 2)
        slow.settimeout(0.01)

        def cut() -> bool:
            try:
                return slow.recv(1) == b""
            except TimeoutError:
                return False
            except OSError:
                return True

        # others are served while it trickles
        assert processes.answers(gateway.url + "/")
        sent = trickle(slow, request, stop=cut)
        # --header-timeout 2 cut it, well before aiohttp's own 75 s keep-alive limit would
        assert sent < 30, f"{sent} bytes of the head were accepted a byte a second"
        assert closed(slow, within=30)
    alive(gateway)
    answer = rekognition(gateway.port).detect_custom_labels(
        ProjectVersionArn=arn("shoes-v3"), Image={"Bytes": png()}
    )
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_a_body_sent_a_byte_a_second_times_out(gateway: processes.Gateway) -> None:
    body = detect_body(png())
    with connect(gateway) as slow:
        slow.sendall(head("DetectCustomLabels", len(body)))
        slow.settimeout(1.5)
        answered: list[tuple[int, dict[str, Any]]] = []

        def answer_arrived() -> bool:
            try:
                if slow.recv(1, socket.MSG_PEEK):
                    answered.append(answer_of(slow))
                    return True
            except TimeoutError:
                return False
            return True

        for byte in body[:60]:
            slow.sendall(bytes([byte]))
            if answer_arrived():
                break
        assert answered, "no answer while the body trickled in"
        status, answer = answered[0]
        assert (status, answer["__type"]) == (408, "RequestTimeoutException")
        assert closed(slow, within=30)
    alive(gateway)


def test_an_idle_keep_alive_connection_is_not_cut_by_the_header_timeout(
    gateway: processes.Gateway,
) -> None:
    connection = http.client.HTTPConnection(processes.HOST, gateway.port, timeout=30)
    try:
        ends = []
        for _ in range(2):
            connection.request("GET", "/")  # answered MethodNotAllowed, kept alive
            assert connection.sock is not None
            ends.append(connection.sock.getsockname())
            response = connection.getresponse()
            assert response.status == 405
            response.read()
            time.sleep(3)  # idle for longer than --header-timeout 2, less than keep-alive
        assert ends[0] == ends[1]  # the same connection served both
    finally:
        connection.close()


def test_connections_beyond_the_limit_are_closed_and_others_still_served(
    unit: processes.Unit, tmp_path: Path
) -> None:
    with serve(unit, tmp_path, "--max-connections", "4") as gw:
        held = [connect(gw) for _ in range(4)]
        try:
            for sock in held:  # each is accepted: a request on it is answered
                sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                sock.settimeout(30)
                assert sock.recv(65536).startswith(b"HTTP/1.1 405")
            with connect(gw) as extra:
                assert closed(extra, within=30)
        finally:
            for sock in held:
                sock.close()
        processes.wait_until(
            lambda: processes.answers(gw.url + "/"), timeout=30, what="a free slot"
        )
        alive(gw)
