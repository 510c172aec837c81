"""Image admission: format and dimensions read from the headers, never by decoding.

The reference accepts PNG and JPEG from 64 to 4096 pixels per side, up to 4 MB
as bytes and 15 MB from object storage. These checks run in the gateway before a
unit is called, in microseconds and without decompressing anything: the PNG IHDR
chunk sits at a fixed offset, and a JPEG's frame header (SOFn) is found by
walking the segment lengths. A decompression bomb (a small file that claims or
inflates to a huge bitmap) is rejected by its declared size, so units never see
more than 4096 x 4096 pixels.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Literal

from kiu.gateway import errors

#: Largest image accepted inline (``Image.Bytes``).
MAX_BYTES = 4 * 1024 * 1024
#: Largest image accepted from object storage (``Image.S3Object``).
MAX_S3_BYTES = 15 * 1024 * 1024
MIN_SIDE = 64
MAX_SIDE = 4096

Format = Literal["png", "jpeg"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_BIT_DEPTHS = {
    0: (1, 2, 4, 8, 16),  # greyscale
    2: (8, 16),  # truecolour
    3: (1, 2, 4, 8),  # indexed
    4: (8, 16),  # greyscale + alpha
    6: (8, 16),  # truecolour + alpha
}
# Start-of-frame markers carry the dimensions; C4 (DHT), C8 (JPG) and CC (DAC) do not.
_JPEG_SOF = frozenset(
    (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF)
)
# Markers without a length field.
_JPEG_STANDALONE = frozenset((0x01, *range(0xD0, 0xD8)))


@dataclass(frozen=True, slots=True)
class ImageInfo:
    format: Format
    width: int
    height: int


def inspect(data: bytes, *, max_bytes: int = MAX_BYTES) -> ImageInfo:
    """Check an encoded image the way the reference does; return what its headers say.

    Raises ImageTooLarge (over ``max_bytes``), InvalidImageFormat (not a PNG or
    JPEG, or a header that cannot be read) or InvalidParameter (a side outside
    64..4096 pixels).
    """
    if len(data) > max_bytes:
        raise errors.ImageTooLarge(
            f"Image size {len(data)} bytes exceeds the limit of {max_bytes} bytes."
        )
    if data.startswith(_PNG_SIGNATURE):
        info = _png(data)
    elif data.startswith(b"\xff\xd8\xff"):
        info = _jpeg(data)
    else:
        raise errors.InvalidImageFormat()
    if not (MIN_SIDE <= info.width <= MAX_SIDE and MIN_SIDE <= info.height <= MAX_SIDE):
        raise errors.InvalidParameter(
            f"Image dimensions {info.width}x{info.height} are outside the supported range: "
            f"each side must be between {MIN_SIDE} and {MAX_SIDE} pixels."
        )
    return info


def _png(data: bytes) -> ImageInfo:
    # signature (8) | length (4) | "IHDR" | width, height (4+4) | 5 bytes | CRC (4)
    if len(data) < 33:
        raise errors.InvalidImageFormat("PNG image is truncated.")
    length, kind = struct.unpack_from(">I4s", data, 8)
    if length != 13 or kind != b"IHDR":
        raise errors.InvalidImageFormat("PNG image does not start with an IHDR chunk.")
    (crc,) = struct.unpack_from(">I", data, 29)
    if zlib.crc32(data[12:29]) != crc:
        raise errors.InvalidImageFormat("PNG image header is corrupt.")
    width, height, depth, colour = struct.unpack_from(">IIBB", data, 16)
    if depth not in _PNG_BIT_DEPTHS.get(colour, ()):
        raise errors.InvalidImageFormat("PNG image has an invalid colour type or bit depth.")
    return ImageInfo("png", width, height)


def _jpeg(data: bytes) -> ImageInfo:
    size = len(data)
    pos = 2
    while pos < size:
        if data[pos] != 0xFF:
            raise errors.InvalidImageFormat("JPEG image has a corrupt segment.")
        while pos < size and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= size:
            break
        marker = data[pos]
        pos += 1
        if marker in _JPEG_STANDALONE:
            continue
        if marker in (0xD9, 0xDA):  # end of image, or scan data before any frame header
            break
        if pos + 2 > size:
            break
        (length,) = struct.unpack_from(">H", data, pos)
        if length < 2:
            raise errors.InvalidImageFormat("JPEG image has a corrupt segment.")
        if marker in _JPEG_SOF:
            if length < 8 or pos + 7 > size:
                break
            height, width = struct.unpack_from(">HH", data, pos + 3)
            if height == 0 or width == 0:
                raise errors.InvalidImageFormat("JPEG image does not declare its size.")
            return ImageInfo("jpeg", width, height)
        pos += length
    raise errors.InvalidImageFormat("JPEG image has no frame header.")
