"""Shared pieces of the rendered image tasks: per-item random generators, colours, fonts.

Every rendered item is drawn from its own generator seeded with ``(seed, class, index)``, so an item
does not change when ``n_per_class`` or the class list around it does, and ids ``<class>/<index>``
always name the same picture for a given seed.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from PIL import Image, ImageFont

from ...extras import install_hint
from .base import TaskData

# matplotlib's bundled fonts: DejaVu in three families and four styles, STIX (Times-like) and
# Computer Modern, so a class is a letter, not a typeface
LETTER_FONTS = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSans-BoldOblique.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSerif-BoldItalic.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSansMono-Oblique.ttf",
    "DejaVuSansMono-BoldOblique.ttf",
    "STIXGeneral.ttf",
    "STIXGeneralBol.ttf",
    "STIXGeneralItalic.ttf",
    "STIXGeneralBolIta.ttf",
    "cmr10.ttf",
    "cmb10.ttf",
    "cmss10.ttf",
    "cmtt10.ttf",
    "cmti10.ttf",
)


def item_rng(seed: int, label: int, index: int) -> np.random.Generator:
    """The generator of one rendered item."""
    return np.random.default_rng([seed, label, index])


def font_dir() -> Path:
    """matplotlib's bundled TrueType fonts."""
    try:
        import matplotlib
    except ImportError as err:
        raise ImportError(
            f"the rendered letter task needs matplotlib's bundled fonts: {install_hint('matplotlib')}"
        ) from err
    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


@functools.lru_cache(maxsize=512)
def font(name: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(font_dir() / name), size)


def luminance(rgb: np.ndarray) -> float:
    return float(np.dot(rgb, (0.299, 0.587, 0.114)))


def colour_pair(rng: np.random.Generator, min_contrast: float = 70.0) -> tuple[np.ndarray, np.ndarray]:
    """Two random RGB colours (float, 0-255) whose luminances differ by at least ``min_contrast``."""
    while True:
        a, b = rng.uniform(0, 255, size=(2, 3))
        if abs(luminance(a) - luminance(b)) >= min_contrast:
            return a, b


def composite(background: np.ndarray, colour: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Paint ``colour`` over ``background`` (H, W, 3) with coverage ``mask`` (H, W) in [0, 1]."""
    return background * (1.0 - mask[..., None]) + colour * mask[..., None]


def finish(pixels: np.ndarray, rng: np.random.Generator, max_noise: float) -> Image.Image:
    """Add Gaussian pixel noise of a random strength up to ``max_noise`` and make an RGB image."""
    sigma = rng.uniform(0, max_noise)
    noisy = pixels + rng.normal(0, sigma, size=pixels.shape) if sigma > 0 else pixels
    return Image.fromarray(np.clip(np.round(noisy), 0, 255).astype(np.uint8))


def rendered_task(
    draw, class_names: tuple[str, ...], n_per_class: int, seed: int, description: str, source: str
) -> TaskData:
    """Render ``n_per_class`` items of every class with ``draw(label, rng) -> Image``, class-major."""
    if n_per_class < 1:
        raise ValueError(f"n_per_class must be at least 1, got {n_per_class}")
    inputs, labels, ids = [], [], []
    for label, name in enumerate(class_names):
        for i in range(n_per_class):
            inputs.append(draw(label, item_rng(seed, label, i)))
            labels.append(label)
            ids.append(f"{name}/{i:04d}")
    return TaskData(
        inputs,
        np.asarray(labels, dtype=np.int64),
        class_names,
        ids,
        description=description,
        source=f"{source} (seed={seed})",
    )
