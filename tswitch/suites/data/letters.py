"""Rendered task: the letters A-Z in 21 typefaces, at random sizes, angles, places, colours, noise."""

from __future__ import annotations

import string

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .base import TaskData, register_loader
from .render import LETTER_FONTS, composite, finish, font, rendered_task

LETTERS = tuple(string.ascii_uppercase)
SIZE = 64


def draw_letter(label: int, rng: np.random.Generator) -> Image.Image:
    """One capital letter, dark ink on light paper (a quarter of them inverted), 64x64 RGB."""
    face = font(LETTER_FONTS[rng.integers(len(LETTER_FONTS))], int(rng.integers(28, 51)))
    mask = Image.new("L", (SIZE, SIZE), 0)
    ImageDraw.Draw(mask).text((SIZE / 2, SIZE / 2), LETTERS[label], font=face, fill=255, anchor="mm")
    mask = mask.rotate(
        rng.uniform(-25, 25), resample=Image.Resampling.BICUBIC, translate=tuple(rng.uniform(-6, 6, size=2))
    )
    if rng.random() < 0.5:
        mask = mask.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2)))
    # printed matter, unlike the vivid shapes and textures: greyish paper, near-black ink with a
    # slight tint; a quarter are inverted like a sign
    paper = rng.uniform(175, 255) + rng.uniform(-15, 15, size=3)
    ink = rng.uniform(0, 80) + rng.uniform(-15, 15, size=3)
    if rng.random() < 0.25:
        paper, ink = ink, paper
    # a gentle lighting ramp across the page, so the background is not one flat colour
    ramp = np.linspace(-1, 1, SIZE)[None, :, None] * rng.uniform(-25, 25)
    background = np.broadcast_to(paper, (SIZE, SIZE, 3)) + ramp
    pixels = composite(background, ink, np.asarray(mask, dtype=np.float64) / 255.0)
    return finish(pixels, rng, max_noise=18.0)


@register_loader("letters")
def load_letters(n_per_class: int = 150, seed: int = 0) -> TaskData:
    """26 classes A-Z, ``n_per_class`` each, rendered with matplotlib's bundled fonts."""
    return rendered_task(
        draw_letter,
        LETTERS,
        n_per_class,
        seed,
        description="Which capital letter (A-Z), printed in one of 21 typefaces.",
        source="rendered: tswitch.suites.data.letters",
    )
