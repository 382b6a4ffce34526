"""Rendered task: nine procedural textures (stripes in three orientations, checkerboard, dots,
waves, rings, blotches, speckle), two random colours each, filling the whole picture."""

from __future__ import annotations

import numpy as np
from PIL import Image

from .base import TaskData, register_loader
from .render import colour_pair, composite, finish, rendered_task

TEXTURES = (
    "stripes-horizontal",
    "stripes-vertical",
    "stripes-diagonal",
    "checkerboard",
    "dots",
    "waves",
    "rings",
    "blotches",
    "speckle",
)
SIZE = 64
_Y, _X = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)


def _rotated(angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (u across, v along) in a frame turned by ``angle`` radians."""
    c, s = np.cos(angle), np.sin(angle)
    return c * _X + s * _Y, -s * _X + c * _Y


def _wave(phase: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A periodic profile of ``phase`` (radians) in [0, 1]: smooth sine or hard-edged bars."""
    wave = np.sin(phase)
    if rng.random() < 0.5:
        return 0.5 + 0.5 * wave
    return (wave > rng.uniform(-0.5, 0.5)).astype(np.float64)


def _field(texture: str, rng: np.random.Generator) -> np.ndarray:
    """The texture's (SIZE, SIZE) pattern in [0, 1], at a random scale, angle and phase."""
    period = rng.uniform(6, 16)
    phase = rng.uniform(0, 2 * np.pi)
    jitter = np.deg2rad(rng.uniform(-12, 12))
    if texture.startswith("stripes"):
        # stripes vary along v; angle 0 gives horizontal stripes
        angle = {
            "stripes-horizontal": 0.0,
            "stripes-vertical": np.pi / 2,
            "stripes-diagonal": rng.choice([np.pi / 4, -np.pi / 4]),
        }[texture]
        _, v = _rotated(angle + jitter)
        return _wave(2 * np.pi * v / period + phase, rng)
    if texture == "checkerboard":
        u, v = _rotated(rng.uniform(0, np.pi / 2))
        return (np.sin(2 * np.pi * u / period + phase) * np.sin(2 * np.pi * v / period) > 0) * 1.0
    if texture == "dots":
        u, v = _rotated(rng.uniform(0, np.pi / 2))
        shift = rng.random(2)  # where the lattice starts, in periods
        du, dv = (u / period + shift[0]) % 1.0 - 0.5, (v / period + shift[1]) % 1.0 - 0.5
        distance = np.hypot(du, dv)
        radius = rng.uniform(0.15, 0.35)
        return np.clip((radius - distance) * period + 0.5, 0, 1)  # about one pixel of soft edge
    if texture == "waves":
        u, v = _rotated(rng.uniform(0, np.pi))
        amplitude, wavelength = rng.uniform(3, 7), rng.uniform(14, 32)
        return _wave(2 * np.pi * (v + amplitude * np.sin(2 * np.pi * u / wavelength)) / period + phase, rng)
    if texture == "rings":
        centre = rng.uniform(-0.25 * SIZE, 1.25 * SIZE, size=2)
        return _wave(2 * np.pi * np.hypot(_X - centre[0], _Y - centre[1]) / period + phase, rng)
    if texture == "blotches":
        # smooth value noise: a coarse random grid blown up bicubically
        grid = int(rng.integers(3, 8))
        coarse = Image.fromarray(rng.random((grid, grid)).astype(np.float32))
        smooth = np.asarray(coarse.resize((SIZE, SIZE), Image.Resampling.BICUBIC), dtype=np.float64)
        smooth = (smooth - smooth.min()) / max(smooth.max() - smooth.min(), 1e-6)
        return (smooth > 0.5) * 1.0 if rng.random() < 0.5 else smooth
    if texture == "speckle":
        # sparse grains of one or two pixels
        grain = int(rng.integers(1, 3))
        cells = rng.random((SIZE // grain + 1, SIZE // grain + 1)) < rng.uniform(0.15, 0.5)
        return np.kron(cells, np.ones((grain, grain)))[:SIZE, :SIZE].astype(np.float64)
    raise ValueError(f"unknown texture {texture!r}; choose one of {', '.join(TEXTURES)}")


def draw_texture(label: int, rng: np.random.Generator) -> Image.Image:
    """One texture in two random colours, 64x64 RGB, with mild noise."""
    back, front = colour_pair(rng, min_contrast=60)
    pattern = _field(TEXTURES[label], rng)
    background = np.broadcast_to(back, (SIZE, SIZE, 3))
    return finish(composite(background, front, pattern), rng, max_noise=8.0)


@register_loader("textures")
def load_textures(n_per_class: int = 150, seed: int = 0) -> TaskData:
    """9 texture classes (stripes x3, checkerboard, dots, waves, rings, blotches, speckle)."""
    return rendered_task(
        draw_texture,
        TEXTURES,
        n_per_class,
        seed,
        description="Which procedural texture (stripes, checkerboard, dots, ...).",
        source="rendered: tswitch.suites.data.textures",
    )
