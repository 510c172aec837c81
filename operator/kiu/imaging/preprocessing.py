"""Encoded image bytes -> the tensor a model takes, as its contract declares.

Decoding, the resize recipe (stretch, shorter side and centre crop, or
letterbox), colour order, scale, mean and std, element type and layout all
come from a `kiu.contract.Contract`; where the image landed in the input
(`kiu.contract.Placement`) is decided there too, so boxes can be mapped back
to ratios of the original image.
"""

from __future__ import annotations

import io
from collections.abc import Iterable

import numpy as np
from PIL import Image, UnidentifiedImageError

from kiu.contract import Contract

#: What a unit accepts, as the reference service does.
ACCEPTED_FORMATS = ("PNG", "JPEG")
#: The largest image the reference service accepts is 4096 x 4096 pixels.
MAX_PIXELS = 4096 * 4096

_FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}
_DTYPES = {"float32": np.float32, "float16": np.float16, "uint8": np.uint8}


class InvalidImageError(ValueError):
    """The bytes are not a usable PNG or JPEG image: the caller's fault, not the unit's."""


def open_image(data: bytes) -> Image.Image:
    """Open `data` lazily as a PNG or JPEG within the size limit.

    Raises InvalidImageError for anything else, so a corrupt upload is a
    protocol error instead of a crash.
    """
    if not data:
        raise InvalidImageError("empty image")
    try:
        image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except UnidentifiedImageError as error:
        raise InvalidImageError("not a PNG or JPEG image") from error
    except Exception as error:  # Pillow raises many types for corrupt data
        raise InvalidImageError(f"corrupt image: {error}") from error
    pixels = image.width * image.height
    if pixels == 0 or pixels > MAX_PIXELS:
        raise InvalidImageError(
            f"image is {image.width}x{image.height}; at most {MAX_PIXELS} pixels are accepted"
        )
    return image


def to_tensor(data: bytes, contract: Contract) -> tuple[np.ndarray, tuple[int, int]]:
    """One encoded image -> (the model's input without the batch dimension, original size).

    A JPEG is decoded at a reduced scale when the resize target is much
    smaller (Pillow's draft mode never goes below the target), which is most
    of the saving for photos fed to small models.
    """
    image = open_image(data)
    original = image.size
    place = contract.placement(original)
    mode = "L" if contract.input.channels == 1 else "RGB"
    try:
        image.draft("RGB", place.resized)
        image = image.convert(mode)
    except Exception as error:  # truncated or corrupt data surfaces while decoding
        raise InvalidImageError(f"corrupt image: {error}") from error
    resized = image.resize(place.resized, _FILTERS[contract.resize.interpolation])
    size = (contract.input.width, contract.input.height)
    if place.resized != size or place.offset != (0, 0):
        pad = contract.resize.pad
        canvas = Image.new(mode, size, pad if mode == "L" else (pad, pad, pad))
        canvas.paste(resized, place.offset)
        resized = canvas
    pixels = np.asarray(resized, dtype=np.uint8).reshape(size[1], size[0], -1)
    if contract.colour == "BGR":
        pixels = pixels[..., ::-1]
    tensor: np.ndarray = pixels
    if contract.input.dtype != "uint8":
        scaled = pixels.astype(np.float32) * np.float32(contract.scale)
        mean = np.asarray(contract.mean, dtype=np.float32)
        std = np.asarray(contract.std, dtype=np.float32)
        tensor = ((scaled - mean) / std).astype(_DTYPES[contract.input.dtype])
    if contract.input.layout == "NCHW":
        tensor = tensor.transpose(2, 0, 1)
    return np.ascontiguousarray(tensor), original


def preprocess(images: Iterable[bytes], contract: Contract) -> tuple[np.ndarray, np.ndarray]:
    """A batch of encoded images -> (model input (N, ...), original sizes int32 (N, 2)).

    The error names the failing item so a caller of a batch knows which one.
    """
    tensors = []
    sizes = []
    for index, data in enumerate(images):
        try:
            tensor, original = to_tensor(bytes(data), contract)
        except InvalidImageError as error:
            raise InvalidImageError(f"item {index}: {error}") from error
        tensors.append(tensor)
        sizes.append(original)
    if not tensors:
        empty = np.zeros((0, *contract.input.dims()), dtype=_DTYPES[contract.input.dtype])
        return empty, np.zeros((0, 2), dtype=np.int32)
    return np.stack(tensors), np.asarray(sizes, dtype=np.int32).reshape(-1, 2)
