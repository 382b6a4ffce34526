"""Bit streams: big-endian bit packing of boolean arrays and fixed-width unsigned fields.

Every bit stream in a ``.tsw`` pack is MSB-first: bit ``i`` of the stream is bit ``7 - i % 8`` of
byte ``i // 8``; the last byte is padded with zero bits. Integers are written MSB-first too.
This module knows nothing of models or tensors' meaning; it works on NumPy arrays.
"""
from __future__ import annotations

import numpy as np


def pack_bits(bits: np.ndarray) -> bytes:
    """Pack a 1-D bool/uint8 array of bits MSB-first into bytes (zero-padded)."""
    return np.packbits(np.asarray(bits, dtype=np.uint8).reshape(-1)).tobytes()


def unpack_bits(data: bytes | np.ndarray, count: int, offset: int = 0) -> np.ndarray:
    """Read ``count`` bits starting at bit ``offset`` of ``data`` as a bool array.

    Raises:
        ValueError: ``data`` is too short.
    """
    buf = np.frombuffer(data, dtype=np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else data
    if count < 0 or offset < 0:
        raise ValueError("bit count and offset must be non-negative")
    end = offset + count
    if end > buf.size * 8:
        raise ValueError(f"bit stream truncated: need {end} bits, have {buf.size * 8}")
    first, last = offset // 8, -(-end // 8)
    bits = np.unpackbits(buf[first:last])
    start = offset - first * 8
    return bits[start:start + count].view(np.bool_)


def uint_to_bits(values: np.ndarray, width: int) -> np.ndarray:
    """Fixed-width MSB-first bits of unsigned integers: shape ``(len(values), width)`` bool."""
    values = np.asarray(values).reshape(-1)
    if width == 0:
        return np.zeros((values.size, 0), dtype=np.bool_)
    if width <= 8:
        raw = np.unpackbits(values.astype(np.uint8)[:, None], axis=1)
    elif width <= 16:
        raw = np.unpackbits(values.astype(">u2").view(np.uint8).reshape(-1, 2), axis=1)
    elif width <= 32:
        raw = np.unpackbits(values.astype(">u4").view(np.uint8).reshape(-1, 4), axis=1)
    else:
        raise ValueError(f"field width must be <= 32 bits, got {width}")
    return raw[:, raw.shape[1] - width:].view(np.bool_)


def bits_to_uint(bits: np.ndarray) -> np.ndarray:
    """Inverse of :func:`uint_to_bits`: rows of MSB-first bits to ``int64`` values."""
    bits = np.asarray(bits)
    rows, width = bits.shape
    if width > 32:
        raise ValueError(f"field width must be <= 32 bits, got {width}")
    out = np.zeros(rows, dtype=np.int64)
    for j in range(width):  # one vectorised pass per bit: cheap for the narrow fields used here
        out <<= 1
        out |= bits[:, j]
    return out
