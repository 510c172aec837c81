"""Encoded image bytes -> the float tensor a model takes.

Images are squashed to the model's input size without keeping the aspect
ratio: a model's boxes are then ratios of the input, which are the same ratios
of the original image, the unit the reference API reports boxes in.
"""

from __future__ import annotations

import io
from collections.abc import Iterable

import numpy as np
from PIL import Image, UnidentifiedImageError

#: What a unit accepts, as the reference service does.
ACCEPTED_FORMATS = ("PNG", "JPEG")
#: The largest image the reference service accepts is 4096 x 4096 pixels.
MAX_PIXELS = 4096 * 4096


class InvalidImageError(ValueError):
    """The bytes are not a usable PNG or JPEG image: the caller's fault, not the unit's."""


def decode(data: bytes, *, width: int, height: int) -> Image.Image:
    """Decode `data` as an RGB image, letting JPEG decode at a reduced scale near the target.

    Raises InvalidImageError for anything that is not a PNG or JPEG within the
    size limit, so a corrupt upload is a protocol error instead of a crash.
    """
    if not data:
        raise InvalidImageError("empty image")
    try:
        image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
        pixels = image.width * image.height
        if pixels == 0 or pixels > MAX_PIXELS:
            raise InvalidImageError(
                f"image is {image.width}x{image.height}; at most {MAX_PIXELS} pixels are accepted"
            )
        image.draft("RGB", (width, height))
        return image.convert("RGB")
    except InvalidImageError:
        raise
    except UnidentifiedImageError as error:
        raise InvalidImageError("not a PNG or JPEG image") from error
    except Exception as error:  # Pillow raises many types for corrupt data
        raise InvalidImageError(f"corrupt image: {error}") from error


def to_tensor(image: Image.Image, *, width: int, height: int) -> np.ndarray:
    """Resize to (width, height) and scale to [0, 1]: float32, channels first (3, H, W)."""
    resized = image.resize((width, height), Image.Resampling.BILINEAR)
    return (np.asarray(resized, dtype=np.float32) / 255.0).transpose(2, 0, 1)


def preprocess(images: Iterable[bytes], *, width: int, height: int) -> np.ndarray:
    """A batch of encoded images -> float32 (N, 3, height, width).

    The error names the failing item so a caller of a batch knows which one.
    """
    tensors = []
    for index, data in enumerate(images):
        try:
            image = decode(bytes(data), width=width, height=height)
        except InvalidImageError as error:
            raise InvalidImageError(f"item {index}: {error}") from error
        tensors.append(to_tensor(image, width=width, height=height))
    if not tensors:
        return np.zeros((0, 3, height, width), dtype=np.float32)
    return np.stack(tensors)
