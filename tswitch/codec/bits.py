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
    return bits[start : start + count].view(np.bool_)


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
    return raw[:, raw.shape[1] - width :].view(np.bool_)


def bits_to_uint(bits: np.ndarray) -> np.ndarray:
    """Inverse of :func:`uint_to_bits`: rows of MSB-first bits to ``int64`` values."""
    bits = np.asarray(bits)
    rows, width = bits.shape
    if width > 63:
        raise ValueError(f"field width must be <= 63 bits, got {width}")
    out = np.zeros(rows, dtype=np.int64)
    for j in range(width):  # one vectorised pass per bit: cheap for the narrow fields used here
        out <<= 1
        out |= bits[:, j]
    return out


def pack_fixed_width(codes: np.ndarray, width: int) -> bytes:
    """Concatenate ``width``-bit codes MSB-first into bytes (zero-padded), like packing
    ``uint_to_bits(codes, width)`` but without a bit-per-byte intermediate when ``width <= 8``."""
    codes = np.asarray(codes).reshape(-1)
    if width == 0 or codes.size == 0:
        return b""
    if width > 8:
        return pack_bits(uint_to_bits(codes, width).reshape(-1))
    count = codes.size
    rows = -(-count // 8)
    padded = np.zeros(rows * 8, dtype=np.uint64)
    padded[:count] = codes
    grid = padded.reshape(rows, 8)
    word = np.zeros(rows, dtype=np.uint64)  # 8 codes -> 8*width bits, right-aligned in a word
    for i in range(8):
        word <<= np.uint64(width)
        word |= grid[:, i]
    raw = word.astype(">u8").view(np.uint8).reshape(rows, 8)[:, 8 - width :]
    return raw.tobytes()[: -(-count * width // 8)]


def unpack_fixed_width(data: bytes | np.ndarray, count: int, width: int, offset: int = 0) -> np.ndarray:
    """Read ``count`` ``width``-bit codes starting at bit ``offset`` (inverse of :func:`pack_fixed_width`).

    Returns ``uint8`` codes when ``width <= 8`` (narrow types keep the decoder's passes cheap),
    ``int64`` otherwise."""
    buf = np.frombuffer(data, dtype=np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else data
    if count == 0 or width == 0:
        return np.zeros(count, dtype=np.int64)
    if width > 8:
        return bits_to_uint(unpack_bits(buf, count * width, offset).reshape(count, width))
    end = offset + count * width
    if end > buf.size * 8:
        raise ValueError(f"bit stream truncated: need {end} bits, have {buf.size * 8}")
    aligned = shift_left(buf[offset // 8 : -(-end // 8)], offset % 8)
    rows = -(-count // 8)
    need = rows * width
    chunk = np.zeros(need, dtype=np.uint8)
    take = min(need, aligned.size)
    chunk[:take] = aligned[:take]
    by = np.zeros((rows, 8), dtype=np.uint8)
    by[:, 8 - width :] = chunk.reshape(rows, width)
    word = by.view(">u8").reshape(rows).astype(np.uint64)
    out = np.empty((rows, 8), dtype=np.uint64)
    lowmask = np.uint64((1 << width) - 1)
    for i in range(8):
        out[:, 7 - i] = word & lowmask
        word >>= np.uint64(width)
    return out.reshape(-1)[:count].astype(np.uint8)  # width <= 8: codes fit a byte


def shift_left(buf: np.ndarray, shift: int) -> np.ndarray:
    """Drop the first ``shift`` (< 8) bits of a byte array, so the rest starts byte-aligned."""
    if shift == 0:
        return buf
    nxt = np.zeros(buf.size, dtype=np.uint8)
    nxt[:-1] = buf[1:]
    return ((buf << shift) | (nxt >> (8 - shift))).astype(np.uint8)


def concat_bits(head: bytes, head_bits: int, tail: bytes, tail_bits: int) -> bytes:
    """Bit stream ``head[:head_bits] + tail[:tail_bits]`` packed MSB-first, zero-padded.

    Both inputs are MSB-first packed streams whose unused trailing bits are zero.
    """
    shift = head_bits % 8
    hb = np.frombuffer(head, dtype=np.uint8)[: -(-head_bits // 8)]
    tb = np.frombuffer(tail, dtype=np.uint8)[: -(-tail_bits // 8)]
    total = -(-(head_bits + tail_bits) // 8)
    if shift == 0 or tb.size == 0 or hb.size == 0:
        return (hb.tobytes() + tb.tobytes())[:total]
    moved = np.zeros(tb.size + 1, dtype=np.uint8)
    moved[:-1] = tb >> shift
    moved[1:] |= (tb << (8 - shift)).astype(np.uint8)
    out = np.concatenate([hb, moved[1:]])
    out[hb.size - 1] |= moved[0]
    return out[:total].tobytes()
