"""The ``bitmap`` layout: a full activation bitmap followed by the kept entries' value codes.

MSB-first bit stream (see :mod:`tswitch.codec.bits`): ``n`` mask bits (1 = kept), then ``b`` bits per
kept entry in increasing position (for T-Switch ``b = 1``: the polarity bit, 1 = positive), then zero
padding to a whole byte. Size: ``ceil((n + nnz * b) / 8)`` bytes, the "Indep" scheme of the journal
(§III-C4) with value codes stored only for kept entries.
"""

from __future__ import annotations

import numpy as np

from .bits import bits_to_uint, pack_bits, uint_to_bits, unpack_bits


def bitmap_nbytes(n: int, nnz: int, b: int) -> int:
    """Bytes of a bitmap payload."""
    return -(-(n + nnz * b) // 8)


def encode(mask: np.ndarray, values: np.ndarray, b: int) -> bytes:
    """Encode a flat bool ``mask`` and the ``b``-bit codes of its kept entries (in order)."""
    mask = np.asarray(mask, dtype=np.bool_).reshape(-1)
    values = np.asarray(values).reshape(-1)
    nnz = int(mask.sum())
    if values.size != nnz:
        raise ValueError(f"expected {nnz} value codes, got {values.size}")
    if b == 1:  # the common T-Switch case: value codes already are bits
        return pack_bits(np.concatenate([mask, values.astype(np.bool_)]))
    return pack_bits(np.concatenate([mask, uint_to_bits(values, b).reshape(-1)]))


def decode(data: bytes, n: int, b: int) -> tuple[np.ndarray, np.ndarray]:
    """Decode a bitmap payload of a length-``n`` vector into ``(mask, value codes)``.

    Raises:
        ValueError: the payload is truncated or too long (corrupt).
    """
    buf = np.frombuffer(data, dtype=np.uint8)
    mask = unpack_bits(buf, n)
    nnz = int(mask.sum())
    if buf.size != bitmap_nbytes(n, nnz, b):
        raise ValueError(f"corrupt bitmap payload: {buf.size} bytes, expected {bitmap_nbytes(n, nnz, b)}")
    raw = unpack_bits(buf, nnz * b, n)
    values = raw.astype(np.int64) if b == 1 else bits_to_uint(raw.reshape(nnz, b))
    return mask.copy(), values


def decode_positions(data: bytes, n: int, b: int) -> tuple[np.ndarray, np.ndarray]:
    """Decode into ``(kept positions, value codes)``."""
    mask, values = decode(data, n, b)
    return np.flatnonzero(mask), values
