"""SASS: the journal's grouped-COO storage of a sparse low-bit vector (journal §III-C4, Eq. 16-17).

A flat vector of length ``n`` with ``nnz`` kept entries, each carrying a ``b``-bit value code
(the sign bit for T-Switch, ``b = 1``), is split into ``n / c`` groups of ``c`` entries (``c | n``).
The payload is one MSB-first bit stream (see :mod:`tswitch.codec.bits`):

====================  =================  =============================================
field                 bits               meaning
====================  =================  =============================================
group count ``G``     27                 ``n / c`` (so ``n / c < 2**27``)
group size - 1        8                  ``c - 1`` (``1 <= c <= 256``)
group bitmap          ``G``              1 where the group holds a kept entry
entries               ``nnz * w``        per kept entry, in increasing position:
                                         ``ceil(log2 c)`` bits index within the group,
                                         ``b`` bits value code, 1 bit end-of-group flag
padding               0-7                zero bits up to a whole byte
====================  =================  =============================================

so a payload holds exactly ``ceil(Eq16 / 8)`` bytes with
``Eq16 = 35 + n/c + nnz (ceil(log2 c) + b + 1)`` (the expectation ``n (1 - alpha)`` of Eq. 16 replaced
by the measured ``nnz``). ``c`` follows Eq. 17: the divisor of ``n`` (at most 256) closest to
``ln 2 / density`` (ties: the smaller divisor; density 0: the largest divisor).
"""
from __future__ import annotations

import math

import numpy as np

from .bits import bits_to_uint, pack_bits, uint_to_bits, unpack_bits

HEADER_BITS = 35
GROUP_COUNT_BITS = 27
GROUP_SIZE_BITS = 8
MAX_GROUP_SIZE = 1 << GROUP_SIZE_BITS
MAX_GROUPS = (1 << GROUP_COUNT_BITS) - 1


def index_bits(c: int) -> int:
    """``ceil(log2 c)``: bits of an index within a group of size ``c``."""
    return (c - 1).bit_length()


def group_size(n: int, density: float) -> int:
    """Group size ``c`` by journal Eq. 17: ``argmin_{c | n, c <= 256} |ln 2 / density - c|``.

    Raises:
        ValueError: no divisor of ``n`` up to 256 gives fewer than ``2**27`` groups.
    """
    if n == 0:
        return 1
    divisors = [c for c in range(1, min(n, MAX_GROUP_SIZE) + 1) if n % c == 0]
    target = math.log(2) / density if density > 0 else math.inf
    best = min(divisors, key=lambda c: (abs(target - c), c)) if math.isfinite(target) else divisors[-1]
    if n // best > MAX_GROUPS:
        raise ValueError(f"tensor of {n} entries is too large for SASS (at most {MAX_GROUPS} groups)")
    return best


def sass_bits(n: int, nnz: int, b: int, c: int | None = None) -> int:
    """Journal Eq. 16 with the measured ``nnz``: ``35 + n/c + nnz (ceil(log2 c) + b + 1)`` bits."""
    if c is None:
        c = group_size(n, nnz / n if n else 0.0)
    return HEADER_BITS + n // c + nnz * (index_bits(c) + b + 1)


def sass_nbytes(n: int, nnz: int, b: int) -> int:
    """Bytes of a SASS payload: Eq. 16 rounded up to whole bytes."""
    return -(-sass_bits(n, nnz, b) // 8)


def encode(mask: np.ndarray, values: np.ndarray, b: int) -> bytes:
    """Encode a flat bool ``mask`` and the ``b``-bit codes of its kept entries (in order)."""
    mask = np.asarray(mask, dtype=np.bool_).reshape(-1)
    n = mask.size
    positions = np.flatnonzero(mask)
    nnz = positions.size
    values = np.asarray(values).reshape(-1)
    if values.size != nnz:
        raise ValueError(f"expected {nnz} value codes, got {values.size}")
    c = group_size(n, nnz / n if n else 0.0)
    n_groups = n // c
    header = np.concatenate([uint_to_bits(np.array([n_groups]), GROUP_COUNT_BITS).reshape(-1),
                             uint_to_bits(np.array([c - 1]), GROUP_SIZE_BITS).reshape(-1)])
    group = positions // c
    bitmap = np.zeros(n_groups, dtype=np.bool_)
    bitmap[group] = True
    end = np.ones(nnz, dtype=np.int64)
    end[:-1] = group[1:] != group[:-1]
    width = index_bits(c) + b + 1
    code = ((positions % c) << (b + 1)) | (values.astype(np.int64) << 1) | end
    entries = uint_to_bits(code, width).reshape(-1)
    return pack_bits(np.concatenate([header, bitmap, entries]))


def decode(data: bytes, n: int, b: int) -> tuple[np.ndarray, np.ndarray]:
    """Decode a SASS payload of a length-``n`` vector into ``(mask, value codes)``.

    Raises:
        ValueError: the payload is truncated, too long, or inconsistent (corrupt).
    """
    buf = np.frombuffer(data, dtype=np.uint8)
    head = bits_to_uint(unpack_bits(buf, HEADER_BITS).reshape(1, -1)[:, :GROUP_COUNT_BITS])[0]
    c = int(bits_to_uint(unpack_bits(buf, GROUP_SIZE_BITS, GROUP_COUNT_BITS).reshape(1, -1))[0]) + 1
    n_groups = int(head)
    if n_groups * c != n:
        raise ValueError(f"corrupt SASS payload: {n_groups} groups of {c} != {n} entries")
    bitmap = unpack_bits(buf, n_groups, HEADER_BITS)
    nz_groups = np.flatnonzero(bitmap)
    width = index_bits(c) + b + 1
    start = HEADER_BITS + n_groups
    max_entries = (buf.size * 8 - start) // width
    if nz_groups.size and max_entries <= 0:
        raise ValueError("corrupt SASS payload: truncated entries")
    rows = unpack_bits(buf, max_entries * width, start).reshape(max_entries, width) if max_entries > 0 \
        else np.zeros((0, width), dtype=np.bool_)
    ends = rows[:, -1].astype(np.int64)
    seen = np.cumsum(ends)
    if nz_groups.size == 0:
        nnz = 0
    else:
        if seen.size == 0 or seen[-1] < nz_groups.size:
            raise ValueError("corrupt SASS payload: truncated entries")
        nnz = int(np.searchsorted(seen, nz_groups.size)) + 1
    if buf.size != -(-(start + nnz * width) // 8):
        raise ValueError(f"corrupt SASS payload: {buf.size} bytes, expected {-(-(start + nnz * width) // 8)}")
    rows = rows[:nnz]
    within = bits_to_uint(rows[:, :index_bits(c)])
    values = bits_to_uint(rows[:, index_bits(c):index_bits(c) + b])
    ordinal = seen[:nnz] - ends[:nnz]
    positions = nz_groups[ordinal] * c + within
    if nnz and (within.max() >= c or np.any(np.diff(positions) <= 0)):
        raise ValueError("corrupt SASS payload: entry positions out of order")
    mask = np.zeros(n, dtype=np.bool_)
    mask[positions] = True
    return mask, values
