"""Image admission from the headers: format, dimensions, size, and no decoding."""

from __future__ import annotations

import contextlib
import io
import struct
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from kiu.gateway import errors, images


def encode(fmt: str, width: int, height: int, **options: object) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, format=fmt, **options)
    return buffer.getvalue()


@pytest.mark.parametrize(("fmt", "kind"), [("PNG", "png"), ("JPEG", "jpeg")], ids=["png", "jpeg"])
@pytest.mark.parametrize(("width", "height"), [(64, 64), (640, 480), (4096, 64), (64, 4096)])
def test_reads_format_and_size_from_the_header(
    fmt: str, kind: str, width: int, height: int
) -> None:
    info = images.inspect(encode(fmt, width, height))
    assert (info.format, info.width, info.height) == (kind, width, height)


def test_progressive_jpeg_with_metadata_segments() -> None:
    data = encode("JPEG", 300, 200, progressive=True, quality=80, dpi=(72, 72))
    assert images.inspect(data) == images.ImageInfo("jpeg", 300, 200)


@pytest.mark.parametrize(("width", "height"), [(63, 100), (100, 63), (4097, 100), (100, 4097)])
@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_sides_outside_64_to_4096_are_invalid_parameters(fmt: str, width: int, height: int) -> None:
    with pytest.raises(errors.InvalidParameter, match="between 64 and 4096"):
        images.inspect(encode(fmt, width, height))


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "WEBP", "TIFF"])
def test_other_formats_are_refused(fmt: str) -> None:
    with pytest.raises(errors.InvalidImageFormat):
        images.inspect(encode(fmt, 100, 100))


@pytest.mark.parametrize(
    "data",
    [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"\xff\xd8\xff\xe0\x00", b"hello world" * 10],
    ids=["empty", "png-signature-only", "jpeg-soi-only", "jpeg-truncated-segment", "text"],
)
def test_truncated_or_foreign_bytes_are_invalid_formats(data: bytes) -> None:
    with pytest.raises(errors.InvalidImageFormat):
        images.inspect(data)


def test_png_with_corrupt_header_crc_is_refused() -> None:
    data = bytearray(encode("PNG", 100, 100))
    data[20] ^= 0xFF  # inside IHDR: the CRC no longer matches
    with pytest.raises(errors.InvalidImageFormat, match="corrupt"):
        images.inspect(bytes(data))


def test_png_bomb_is_refused_from_its_header_without_inflating() -> None:
    # A 100 000 x 100 000 PNG whose IDAT would inflate to ~30 GB: never decompressed.
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    header = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk
    header += struct.pack(">I", zlib.crc32(chunk))
    idat = zlib.compress(b"\x00" * 1_000_000, 9)
    data = header + struct.pack(">I", len(idat)) + b"IDAT" + idat
    with pytest.raises(errors.InvalidParameter, match="100000x100000"):
        images.inspect(data)


def test_size_limit_is_checked_first() -> None:
    data = encode("PNG", 100, 100)
    with pytest.raises(errors.ImageTooLarge):
        images.inspect(data + b"\x00" * images.MAX_BYTES)
    assert images.inspect(data + b"\x00" * 100, max_bytes=len(data) + 100).format == "png"


@given(st.binary(max_size=512))
def test_arbitrary_bytes_never_raise_anything_but_reference_errors(data: bytes) -> None:
    for prefix in (b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff"):
        with contextlib.suppress(errors.InvalidImageFormat, errors.InvalidParameter):
            images.inspect(prefix + data)
