"""Registry of mask layouts: how one tensor's (mask, value codes) become payload bytes."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import bitmap, golomb, sass

AUTO = "auto"  # the writer's policy: per tensor, the smallest of the layouts below


@dataclass(frozen=True)
class Layout:
    """A payload layout.

    Attributes:
        name: the name stored in pack metadata.
        encode: ``(mask, value codes, b) -> bytes``.
        decode: ``(bytes, n, b) -> (mask, value codes)``; raises ``ValueError`` on corrupt data.
        size: ``(flat bool mask, b) -> int``, the exact payload bytes ``encode`` would write.
        description: one line for ``inspect`` and the docs.
        decode_positions: ``(bytes, n, b) -> (kept positions, value codes)``, no dense mask.
        min_version: the ``.tsw`` format version that introduced the layout.
    """

    name: str
    encode: Callable[[np.ndarray, np.ndarray, int], bytes]
    decode: Callable[[bytes, int, int], tuple[np.ndarray, np.ndarray]]
    size: Callable[[np.ndarray, int], int]
    description: str
    decode_positions: Callable[[bytes, int, int], tuple[np.ndarray, np.ndarray]]
    min_version: int = 1


def _by_count(nbytes: Callable[[int, int, int], int]) -> Callable[[np.ndarray, int], int]:
    return lambda mask, b: nbytes(mask.size, int(np.count_nonzero(mask)), b)


LAYOUTS: dict[str, Layout] = {
    "sass": Layout(
        "sass",
        sass.encode,
        sass.decode,
        _by_count(sass.sass_nbytes),
        "grouped COO, group size by journal Eq. 17, size = ceil(Eq. 16 / 8)",
        sass.decode_positions,
    ),
    "bitmap": Layout(
        "bitmap",
        bitmap.encode,
        bitmap.decode,
        _by_count(bitmap.bitmap_nbytes),
        "full mask bitmap + value codes of kept entries",
        bitmap.decode_positions,
    ),
    "golomb": Layout(
        "golomb",
        golomb.encode,
        golomb.decode,
        golomb.golomb_nbytes,
        "Golomb codes of the gaps between kept entries (near H(d) bits per entry)",
        golomb.decode_positions,
        min_version=2,
    ),
}


def get_layout(name: str) -> Layout:
    """Look a layout up by name; unknown names list the valid ones."""
    try:
        return LAYOUTS[name]
    except KeyError:
        raise ValueError(f"unknown layout {name!r}; valid: {', '.join(sorted(LAYOUTS))}") from None


def check_layout_choice(name: str) -> str:
    """A writer's layout argument: a layout name or ``"auto"``."""
    if name != AUTO:
        get_layout(name)
    return name


def choose_layout(mask: np.ndarray, b: int, name: str = AUTO) -> Layout:
    """The layout to write ``mask`` with: ``name``, or for ``"auto"`` the one with the fewest bytes
    (ties: the first registered, so a format-1 layout wins over a newer one of equal size)."""
    if name != AUTO:
        return get_layout(name)
    flat = np.asarray(mask, dtype=np.bool_).reshape(-1)
    return min(LAYOUTS.values(), key=lambda lay: lay.size(flat, b))


def entropy_bits(n: int, nnz: int, b: int) -> float:
    """The i.i.d. bound of a switch payload: ``n H(nnz / n) + nnz b`` bits (mask entropy, then the
    value codes as they are). No layout of a mask with Bernoulli-spread kept entries does better."""
    if n == 0 or nnz in (0, n):
        return float(nnz * b)
    d = nnz / n
    return n * -(d * math.log2(d) + (1 - d) * math.log2(1 - d)) + nnz * b
