"""Registry of mask layouts: how one tensor's (mask, value codes) become payload bytes."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import bitmap, sass


@dataclass(frozen=True)
class Layout:
    """A payload layout.

    Attributes:
        name: the name stored in pack metadata.
        encode: ``(mask, value codes, b) -> bytes``.
        decode: ``(bytes, n, b) -> (mask, value codes)``; raises ``ValueError`` on corrupt data.
        nbytes: ``(n, nnz, b) -> int``, the exact payload size.
        description: one line for ``inspect`` and the docs.
        decode_positions: ``(bytes, n, b) -> (kept positions, value codes)``, no dense mask.
    """

    name: str
    encode: Callable[[np.ndarray, np.ndarray, int], bytes]
    decode: Callable[[bytes, int, int], tuple[np.ndarray, np.ndarray]]
    nbytes: Callable[[int, int, int], int]
    description: str
    decode_positions: Callable[[bytes, int, int], tuple[np.ndarray, np.ndarray]]


LAYOUTS: dict[str, Layout] = {
    "sass": Layout("sass", sass.encode, sass.decode, sass.sass_nbytes,
                   "grouped COO, group size by journal Eq. 17, size = ceil(Eq. 16 / 8)", sass.decode_positions),
    "bitmap": Layout("bitmap", bitmap.encode, bitmap.decode, bitmap.bitmap_nbytes,
                     "full mask bitmap + value codes of kept entries", bitmap.decode_positions),
}


def get_layout(name: str) -> Layout:
    """Look a layout up by name; unknown names list the valid ones."""
    try:
        return LAYOUTS[name]
    except KeyError:
        raise ValueError(f"unknown layout {name!r}; valid: {', '.join(sorted(LAYOUTS))}") from None
