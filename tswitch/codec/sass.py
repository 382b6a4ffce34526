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

from .bits import bits_to_uint, concat_bits, pack_bits, pack_fixed_width, uint_to_bits, unpack_bits, unpack_fixed_width

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


def _group_any(mask: np.ndarray, c: int) -> np.ndarray:
    """Group bitmap: whether each run of ``c`` entries holds a kept one (a column loop is much
    faster than ``any(axis=1)`` for the small groups Eq. 17 picks)."""
    if c == 1:
        return mask
    cols = mask.reshape(-1, c)
    out: np.ndarray = cols[:, 0].copy()
    for j in range(1, c):
        out |= cols[:, j]
    return out


def _header_and_bitmap(n_groups: int, c: int, bitmap: np.ndarray) -> bytes:
    header = np.concatenate(
        [
            uint_to_bits(np.array([n_groups]), GROUP_COUNT_BITS).reshape(-1),
            uint_to_bits(np.array([c - 1]), GROUP_SIZE_BITS).reshape(-1),
        ]
    )
    return pack_bits(np.concatenate([header, bitmap]))


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
    head = _header_and_bitmap(n_groups, c, _group_any(mask, c))
    width = index_bits(c) + b + 1
    small = np.uint16 if width <= 16 else np.int64
    if c == 1:  # every kept entry is alone in its group: index bits are empty, end flags all 1
        code = (values.astype(small) << 1) | 1
    else:
        group = positions // c
        end = np.ones(nnz, dtype=small)
        end[:-1] = group[1:] != group[:-1]
        code = ((positions % c).astype(small) << (b + 1)) | (values.astype(small) << 1) | end
    return concat_bits(head, HEADER_BITS + n_groups, pack_fixed_width(code, width), nnz * width)


def decode(data: bytes, n: int, b: int) -> tuple[np.ndarray, np.ndarray]:
    """Decode a SASS payload of a length-``n`` vector into ``(mask, value codes)``.

    Raises:
        ValueError: the payload is truncated, too long, or inconsistent (corrupt).
    """
    positions, values = decode_positions(data, n, b)
    mask = np.zeros(n, dtype=np.bool_)
    mask[positions] = True
    return mask, values


def decode_positions(data: bytes, n: int, b: int) -> tuple[np.ndarray, np.ndarray]:
    """Decode a SASS payload into ``(kept positions, value codes)`` without a dense mask."""
    buf = np.frombuffer(data, dtype=np.uint8)
    head = bits_to_uint(unpack_bits(buf, HEADER_BITS).reshape(1, -1))[0]
    n_groups, c = int(head >> GROUP_SIZE_BITS), int(head & (MAX_GROUP_SIZE - 1)) + 1
    if n_groups * c != n:
        raise ValueError(f"corrupt SASS payload: {n_groups} groups of {c} != {n} entries")
    # positions are < n: int32 halves the memory traffic of the passes below (int64 for huge tensors)
    index_type = np.int32 if n < 2**31 else np.int64
    nz_groups = np.flatnonzero(unpack_bits(buf, n_groups, HEADER_BITS)).astype(index_type)
    width = index_bits(c) + b + 1
    start = HEADER_BITS + n_groups
    max_entries = max(0, (buf.size * 8 - start) // width)
    if nz_groups.size == 0:
        nnz, code = 0, np.zeros(0, dtype=np.int64)
    elif c == 1:  # one entry per non-empty group
        nnz = nz_groups.size
        code = unpack_fixed_width(buf, min(nnz, max_entries), width, start)
        if code.size < nnz:
            raise ValueError("corrupt SASS payload: truncated entries")
    else:
        code = unpack_fixed_width(buf, max_entries, width, start)
        seen = np.cumsum(code & 1, dtype=index_type)
        if seen.size == 0 or seen[-1] < nz_groups.size:
            raise ValueError("corrupt SASS payload: truncated entries")
        nnz = int(np.searchsorted(seen, nz_groups.size)) + 1
    expected = -(-(start + nnz * width) // 8)
    if buf.size != expected:
        raise ValueError(f"corrupt SASS payload: {buf.size} bytes, expected {expected}")
    code = code[:nnz]
    values = (code >> 1) & ((1 << b) - 1)
    if nnz == 0:
        return np.zeros(0, dtype=np.int64), values
    if c == 1:
        if nnz and not np.all(code & 1):
            raise ValueError("corrupt SASS payload: bad end-of-group flags")
        return nz_groups, values
    ends = code & 1
    within = code >> (b + 1)
    ordinal = seen[:nnz] - ends
    positions = nz_groups[ordinal] * index_type(c) + within
    if nnz and (within.max() >= c or np.any(positions[1:] <= positions[:-1])):
        raise ValueError("corrupt SASS payload: entry positions out of order")
    return positions, values
