"""Synthetic scenes of coloured shapes, with their ground truth.

The bundled models are trained on these, the tests check them against fixed
scenes, and `kiu calibrate` sends them to a unit, so every image a unit sees in
this project is generated here. A scene depends only on the random generator
it is given: the same seed gives the same bytes with the same Pillow.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw

#: The classes, in the order of the models' outputs.
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star")

Kind = Literal["classification", "detection"]

_SIZE_RANGE = (96, 225)  # image width and height, pixels
_MIN_CONTRAST = 140.0  # RGB distance between a shape and its background
_PLACEMENT_ATTEMPTS = 60


@dataclass(frozen=True)
class SceneObject:
    """One shape: its class and its box as ratios of the image width and height."""

    label: str
    left: float
    top: float
    width: float
    height: float


@dataclass(frozen=True)
class Scene:
    """An encoded image (PNG or JPEG) and the shapes drawn on it."""

    image: bytes
    format: str
    width: int
    height: int
    objects: tuple[SceneObject, ...]


def scenes(kind: Kind, *, seed: int, count: int) -> Iterator[Scene]:
    """`count` scenes of `kind`, the same ones for the same seed."""
    rng = np.random.default_rng(seed)
    make = classification_scene if kind == "classification" else detection_scene
    for _ in range(count):
        yield make(rng)


def classification_scene(rng: np.random.Generator) -> Scene:
    """One large shape on a cluttered background."""
    width, height = _size(rng)
    canvas = _background(rng, width=width, height=height)
    radius = float(rng.uniform(0.3, 0.8)) * min(width, height) / 2
    centre = (
        float(rng.uniform(radius, width - radius)),
        float(rng.uniform(radius, height - radius)),
    )
    label = SHAPES[int(rng.integers(len(SHAPES)))]
    obj = _draw(rng, canvas, label=label, centre=centre, radius=radius)
    return _encode(rng, canvas, (obj,))


def detection_scene(rng: np.random.Generator) -> Scene:
    """One to four smaller shapes whose boxes do not overlap."""
    width, height = _size(rng)
    canvas = _background(rng, width=width, height=height)
    wanted = int(rng.integers(1, 5))
    placed: list[tuple[float, float, float]] = []  # centre x, centre y, radius (pixels)
    for _ in range(_PLACEMENT_ATTEMPTS):
        if len(placed) == wanted:
            break
        radius = float(rng.uniform(0.09, 0.2)) * min(width, height)
        x = float(rng.uniform(radius, width - radius))
        y = float(rng.uniform(radius, height - radius))
        margin = 3.0
        if all(
            abs(x - px) > radius + pr + margin or abs(y - py) > radius + pr + margin
            for px, py, pr in placed
        ):
            placed.append((x, y, radius))
    objects = tuple(
        _draw(
            rng,
            canvas,
            label=SHAPES[int(rng.integers(len(SHAPES)))],
            centre=(x, y),
            radius=radius,
        )
        for x, y, radius in placed
    )
    return _encode(rng, canvas, objects)


def _size(rng: np.random.Generator) -> tuple[int, int]:
    """Width and height, at most 3:2 either way, as photos usually are."""
    width = int(rng.integers(*_SIZE_RANGE))
    height = int(np.clip(width * rng.uniform(2 / 3, 3 / 2), *_SIZE_RANGE))
    return width, height


def _background(rng: np.random.Generator, *, width: int, height: int) -> Image.Image:
    """A gentle two-colour gradient with noise and sometimes a distracting line."""
    start = rng.uniform(0, 255, size=3)
    end = np.clip(start + rng.normal(0, 40, size=3), 0, 255)
    angle = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:height, 0:width]
    ramp = xs / width * np.cos(angle) + ys / height * np.sin(angle)
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    pixels = start + ramp[..., None] * (end - start)
    pixels += rng.normal(0, rng.uniform(0, 6), size=pixels.shape)
    canvas = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(0, 2))):
        x0, x1 = rng.uniform(0, width, size=2)
        y0, y1 = rng.uniform(0, height, size=2)
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        draw.line([(x0, y0), (x1, y1)], fill=colour, width=int(rng.integers(1, 3)))
    return canvas


def _draw(
    rng: np.random.Generator,
    canvas: Image.Image,
    *,
    label: str,
    centre: tuple[float, float],
    radius: float,
) -> SceneObject:
    """Draw one shape filled with a colour that stands out; return its true box."""
    x, y = centre
    background = np.asarray(
        canvas.crop((int(x - radius), int(y - radius), int(x + radius) + 1, int(y + radius) + 1)),
        dtype=np.float64,
    ).reshape(-1, 3)
    mean = background.mean(axis=0)
    colour = rng.integers(0, 256, size=3)
    while float(np.linalg.norm(colour - mean)) < _MIN_CONTRAST:
        colour = rng.integers(0, 256, size=3)
    fill = tuple(int(c) for c in colour)
    draw = ImageDraw.Draw(canvas)
    rotation = float(rng.uniform(0, 2 * np.pi))
    if label == "circle":
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=fill)
        points = np.array([[x - radius, y - radius], [x + radius, y + radius]])
    else:
        points = _polygon(label, centre=centre, radius=radius, rotation=rotation)
        draw.polygon([(float(px), float(py)) for px, py in points], fill=fill)
    left, top = np.clip(points.min(axis=0), 0, None)
    right = min(float(points[:, 0].max()), canvas.width)
    bottom = min(float(points[:, 1].max()), canvas.height)
    return SceneObject(
        label=label,
        left=float(left) / canvas.width,
        top=float(top) / canvas.height,
        width=(right - float(left)) / canvas.width,
        height=(bottom - float(top)) / canvas.height,
    )


def _polygon(
    label: str, *, centre: tuple[float, float], radius: float, rotation: float
) -> np.ndarray:
    """Vertices of a square, triangle or five-pointed star inscribed in `radius`."""
    if label == "square":
        angles = rotation + np.arange(4) * np.pi / 2
        radii = np.full(4, radius)
    elif label == "triangle":
        angles = rotation + np.arange(3) * 2 * np.pi / 3
        radii = np.full(3, radius)
    elif label == "star":
        angles = rotation + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, radius, radius * 0.45)
    else:
        raise ValueError(f"unknown shape {label!r}")
    return np.stack(
        [centre[0] + radii * np.cos(angles), centre[1] + radii * np.sin(angles)], axis=1
    )


def _encode(
    rng: np.random.Generator, canvas: Image.Image, objects: tuple[SceneObject, ...]
) -> Scene:
    """PNG or JPEG at a random quality, as callers send both."""
    buffer = io.BytesIO()
    if rng.random() < 0.5:
        canvas.save(buffer, format="PNG")
        encoding = "PNG"
    else:
        canvas.save(buffer, format="JPEG", quality=int(rng.integers(70, 96)))
        encoding = "JPEG"
    return Scene(
        image=buffer.getvalue(),
        format=encoding,
        width=canvas.width,
        height=canvas.height,
        objects=objects,
    )
