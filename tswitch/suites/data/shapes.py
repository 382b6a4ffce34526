"""Rendered task: eight filled geometric shapes of random colour, size, angle and place."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from .base import TaskData, register_loader
from .render import colour_pair, composite, finish, rendered_task

SHAPES = ("circle", "square", "triangle", "star", "cross", "hexagon", "ring", "heart")
SIZE = 64
SUPERSAMPLE = 3  # draw at 3x and shrink: smooth edges without PIL's (absent) polygon antialiasing


def _polygon(radii: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """(k, 2) unit-scale vertices from polar coordinates."""
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


def _outline(shape: str) -> np.ndarray | None:
    """The shape's vertices at unit radius, pointing up; ``None`` for round shapes."""
    up = -np.pi / 2
    if shape == "square":
        return _polygon(np.ones(4), up + np.pi / 4 + np.arange(4) * np.pi / 2)
    if shape == "triangle":
        return _polygon(np.ones(3), up + np.arange(3) * 2 * np.pi / 3)
    if shape == "hexagon":
        return _polygon(np.ones(6), np.arange(6) * np.pi / 3)
    if shape == "star":
        return _polygon(np.tile([1.0, 0.42], 5), up + np.arange(10) * np.pi / 5)
    if shape == "cross":
        a, b = 0.3, 1.0  # half arm width, arm length
        return np.array(
            [(-a, -b), (a, -b), (a, -a), (b, -a), (b, a), (a, a), (a, b), (-a, b), (-a, a), (-b, a), (-b, -a), (-a, -a)]
        )
    if shape == "heart":
        t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
        x = 16 * np.sin(t) ** 3
        y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
        return np.stack([x, y + 2.5], axis=1) / 16.5
    return None


def _mask(shape: str, centre: np.ndarray, radius: float, angle: float) -> np.ndarray:
    """Coverage (SIZE, SIZE) in [0, 1] of one shape."""
    big = SIZE * SUPERSAMPLE
    c, r = centre * SUPERSAMPLE, radius * SUPERSAMPLE
    mask = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(mask)
    if shape in ("circle", "ring"):
        draw.ellipse([c[0] - r, c[1] - r, c[0] + r, c[1] + r], fill=255)
        if shape == "ring":
            hole = 0.6 * r
            draw.ellipse([c[0] - hole, c[1] - hole, c[0] + hole, c[1] + hole], fill=0)
    else:
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        points = _outline(shape) @ rotation.T * r + c
        draw.polygon([tuple(p) for p in points], fill=255)
    small = mask.resize((SIZE, SIZE), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float64) / 255.0


def _background(rng: np.random.Generator, colour: np.ndarray) -> np.ndarray:
    """A flat colour or a linear gradient away from it, (SIZE, SIZE, 3)."""
    if rng.random() < 0.5:
        return np.broadcast_to(colour, (SIZE, SIZE, 3)).astype(np.float64)
    theta = rng.uniform(0, 2 * np.pi)
    coords = np.linspace(-0.5, 0.5, SIZE)
    ramp = np.cos(theta) * coords[None, :] + np.sin(theta) * coords[:, None]
    shift = rng.uniform(-60, 60, size=3)
    return np.clip(colour + ramp[..., None] * shift, 0, 255)


def draw_shape(label: int, rng: np.random.Generator) -> Image.Image:
    """One shape, 64x64 RGB, at a random colour, radius (12-25 px), angle and place."""
    radius = rng.uniform(12, 25)
    centre = rng.uniform(radius + 2, SIZE - radius - 2, size=2)
    back, fill = colour_pair(rng, min_contrast=70)
    mask = _mask(SHAPES[label], centre, radius, rng.uniform(0, 2 * np.pi))
    return finish(composite(_background(rng, back), fill, mask), rng, max_noise=12.0)


@register_loader("shapes")
def load_shapes(n_per_class: int = 150, seed: int = 0) -> TaskData:
    """8 shape classes (circle, square, triangle, star, cross, hexagon, ring, heart)."""
    return rendered_task(
        draw_shape,
        SHAPES,
        n_per_class,
        seed,
        description="Which filled geometric shape (circle, square, star, ...).",
        source="rendered: tswitch.suites.data.shapes",
    )
