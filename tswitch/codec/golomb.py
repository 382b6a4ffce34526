"""The ``golomb`` layout: Golomb codes of the gaps between kept entries (at the entropy bound).

A mask of density ``d`` whose kept positions are spread like independent draws needs ``H(d)`` bits
per entry; SASS (journal Eq. 16) spends 10–16% more and the bitmap a full bit. The gaps between kept
entries of such a mask are geometric, and the Golomb code of parameter ``M`` (``g // M`` in unary,
then ``g % M`` in truncated binary) is the optimal prefix code of a geometric source: with ``M``
chosen per tensor it lands within about 0.5% of ``H(d)`` at the densities switches use. For
``d > 1/2`` the dropped entries are coded instead (``complement``), so the cost is symmetric in ``d``.

MSB-first bit stream (:mod:`tswitch.codec.bits`). The header is three self-delimiting fields, so a
tensor with nothing kept costs one byte; the variable parts are separate sections so that each
decodes with whole-array NumPy passes (``w = ceil(log2 M)``, ``u = 2**w - M``):

====================  ====================  ==================================================
field                 bits                  meaning
====================  ====================  ==================================================
complement            1                     1: the coded positions are the dropped entries
``M``                 Elias gamma           Golomb parameter, ``1 <= M < 2**40``
``m + 1``             Elias gamma           ``m`` = number of coded positions
prefixes              ``m * (w - 1)``       per gap ``r = g % M``: ``r`` if ``r < u``, else
                                            ``(r + u) >> 1`` (none when ``M = 1``)
extras                one per prefix >= u   ``(r + u) & 1`` of those gaps, in order
values                ``nnz * b``           value codes of the kept entries, increasing position
quotients             ``m + sum(g // M)``   per gap ``g // M`` zero bits then one 1 bit
padding               0-7                   zero bits up to a whole byte
====================  ====================  ==================================================

Elias gamma of ``x >= 1``: ``floor(log2 x)`` zero bits, then ``x`` in binary (which starts with 1).
Coded positions ``p_0 < p_1 < ...`` give the gaps ``g_0 = p_0``, ``g_i = p_i - p_(i-1) - 1``;
``nnz = m`` (or ``n - m`` with ``complement``).
"""

from __future__ import annotations

import math

import numpy as np

from .bits import bits_to_uint, concat_bits, pack_bits, pack_fixed_width, uint_to_bits, unpack_bits, unpack_fixed_width

MAX_N = (1 << 40) - 1  # positions, counts and M fit 40 bits
_SAMPLE = 1 << 16  # gaps looked at to choose M (the size itself is always exact)


def _coded(mask: np.ndarray) -> tuple[bool, np.ndarray]:
    """``(complement, coded positions)``: the kept entries, or the dropped ones when they are fewer."""
    nnz = int(np.count_nonzero(mask))
    complement = 2 * nnz > mask.size
    return complement, np.flatnonzero(~mask if complement else mask)


def _gaps(coded: np.ndarray) -> np.ndarray:
    # int32 when positions fit: half the memory traffic of the passes below
    gaps = np.empty(coded.size, dtype=np.int32 if coded.size and coded[-1] < 2**31 else np.int64)
    if coded.size:
        gaps[0] = coded[0]
        np.subtract(coded[1:], coded[:-1], out=gaps[1:])
        gaps[1:] -= 1
    return gaps


def gamma_bits(x: int) -> int:
    """Length of the Elias gamma code of ``x >= 1``."""
    return 2 * (x.bit_length() - 1) + 1


def _divmod(gaps: np.ndarray, M: int) -> tuple[np.ndarray, np.ndarray]:
    if M & (M - 1) == 0:  # a power of two (the common case of dense masks): shifts, not divisions
        k = M.bit_length() - 1
        return gaps >> k, gaps & (M - 1)
    return np.divmod(gaps, M)


def _split(gaps: np.ndarray, M: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """``(quotients, prefixes, extras, w)`` of the gaps under parameter ``M``."""
    w = (M - 1).bit_length()
    u = (1 << w) - M
    q, r = _divmod(gaps, M)
    if u == 0:  # every remainder takes the long form: prefix r >> 1, extra bit r & 1
        return q, r >> 1, r & 1, w
    long = r >= u
    v = r + u
    prefixes = np.where(long, v >> 1, r)
    return q, prefixes, (v[long] & 1), w


def golomb_gap_bits(gaps: np.ndarray, M: int) -> int:
    """Bits of the prefixes, extras and quotients of ``gaps`` under parameter ``M``."""
    if gaps.size == 0:
        return 0
    w = (M - 1).bit_length()
    u = (1 << w) - M
    q, r = _divmod(gaps, M)
    extras = gaps.size if u == 0 else int(np.count_nonzero(r >= u))
    return int(q.sum(dtype=np.int64)) + gaps.size * (1 + max(w - 1, 0)) + (extras if w else 0)


def choose_m(gaps: np.ndarray) -> int:
    """The Golomb parameter: the best of a few candidates around the geometric optimum
    ``ceil(log(2 - p) / -log(1 - p))`` (``p = 1 / (mean gap + 1)``), judged on a strided sample of
    the gaps (ties: the smaller ``M``). Any ``M`` decodes; this only picks a small one."""
    if gaps.size == 0:
        return 1
    mean = float(gaps.mean())
    if mean < 0.5:
        return 1
    p = 1.0 / (mean + 1.0)
    center = max(1, math.ceil(math.log(2 - p) / -math.log1p(-p)))
    candidates = sorted(
        {max(1, min(MAX_N, round(center * f))) for f in (0.7, 0.8, 0.9, 1.0, 1.1, 1.25, 1.4)}
        | {max(1, center - 1), center + 1}
    )
    sample = gaps[:: max(1, gaps.size // _SAMPLE)]
    return min(candidates, key=lambda M: (golomb_gap_bits(sample, M), M))


def _header_bits(complement: bool, M: int, m: int) -> int:
    return 1 + gamma_bits(M) + gamma_bits(m + 1)


def golomb_bits(mask: np.ndarray, b: int) -> int:
    """Exact bits of the ``golomb`` stream of a flat bool ``mask`` with ``b``-bit value codes (no padding)."""
    mask = np.asarray(mask, dtype=np.bool_).reshape(-1)
    complement, coded = _coded(mask)
    nnz = mask.size - coded.size if complement else coded.size
    gaps = _gaps(coded)
    M = choose_m(gaps)
    return _header_bits(complement, M, gaps.size) + golomb_gap_bits(gaps, M) + nnz * b


def golomb_nbytes(mask: np.ndarray, b: int) -> int:
    """Bytes of the ``golomb`` payload of ``mask`` (the stream rounded up to whole bytes)."""
    return -(-golomb_bits(mask, b) // 8)


def _gamma(x: int) -> str:
    return "0" * (x.bit_length() - 1) + format(x, "b")


def _pack_codes(codes: np.ndarray, width: int) -> bytes:
    if width == 1:
        return pack_bits(codes.astype(np.bool_, copy=False))
    if width <= 8:
        return pack_fixed_width(codes, width)
    return pack_bits(uint_to_bits(codes, width).reshape(-1))


def encode(mask: np.ndarray, values: np.ndarray, b: int) -> bytes:
    """Encode a flat bool ``mask`` and the ``b``-bit codes of its kept entries (in order)."""
    mask = np.asarray(mask, dtype=np.bool_).reshape(-1)
    n = mask.size
    if n > MAX_N:
        raise ValueError(f"tensor of {n} entries is too large for the golomb layout (at most {MAX_N})")
    values = np.asarray(values).reshape(-1)
    complement, coded = _coded(mask)
    nnz = n - coded.size if complement else coded.size
    if values.size != nnz:
        raise ValueError(f"expected {nnz} value codes, got {values.size}")
    gaps = _gaps(coded)
    M = choose_m(gaps)
    m = gaps.size
    head = ("1" if complement else "0") + _gamma(M) + _gamma(m + 1)
    stream, used = pack_bits(np.frombuffer(head.encode(), dtype=np.uint8) - ord("0")), len(head)
    quotients, prefixes, extras, w = _split(gaps, M)
    if w > 1:
        stream = concat_bits(stream, used, _pack_codes(prefixes, w - 1), m * (w - 1))
        used += m * (w - 1)
    if w:
        stream = concat_bits(stream, used, pack_bits(extras), extras.size)
        used += extras.size
    if b:
        stream = concat_bits(stream, used, _pack_codes(values, b), nnz * b)
        used += nnz * b
    unary = np.zeros(m + int(quotients.sum(dtype=np.int64)), dtype=np.uint8)
    unary[np.cumsum(quotients + 1) - 1] = 1  # q zeros, then the terminating 1
    return concat_bits(stream, used, pack_bits(unary), unary.size)


def _read_gamma(buf: np.ndarray, offset: int, what: str) -> tuple[int, int]:
    """One Elias gamma code at bit ``offset``: ``(value, next offset)``; at most 40 bits of value."""
    bits = unpack_bits(buf, min(buf.size * 8 - offset, 81), offset) if offset < buf.size * 8 else np.zeros(0, bool)
    ones = np.flatnonzero(bits)
    if ones.size == 0 or ones[0] > 39 or 2 * ones[0] + 1 > bits.size:
        raise ValueError(f"corrupt golomb payload: bad {what} field")
    zeros = int(ones[0])
    value = int(bits_to_uint(bits[zeros : 2 * zeros + 1].reshape(1, -1))[0])
    return value, offset + 2 * zeros + 1


def _read_codes(buf: np.ndarray, count: int, width: int, offset: int) -> np.ndarray:
    if width == 1:  # polarity bits and most prefixes of small M
        return unpack_bits(buf, count, offset).view(np.uint8)
    if width <= 8:
        return unpack_fixed_width(buf, count, width, offset).astype(np.int64)
    return bits_to_uint(unpack_bits(buf, count * width, offset).reshape(count, width))


def _decode(data: bytes, n: int, b: int) -> tuple[bool, np.ndarray, np.ndarray]:
    """``(complement, coded positions, value codes)``; raises ``ValueError`` on any inconsistency."""
    buf = np.frombuffer(data, dtype=np.uint8)
    if buf.size == 0:
        raise ValueError("corrupt golomb payload: empty")
    complement = bool(buf[0] >> 7)
    M, at = _read_gamma(buf, 1, "M")
    m1, at = _read_gamma(buf, at, "count")
    m = m1 - 1
    if m > n:
        raise ValueError(f"corrupt golomb payload: {m} coded entries of {n}")
    nnz = n - m if complement else m
    w = (M - 1).bit_length()
    u = (1 << w) - M
    if at + m * max(w - 1, 0) + nnz * b > buf.size * 8:
        raise ValueError("corrupt golomb payload: truncated remainders or values")
    prefixes = _read_codes(buf, m, w - 1, at) if w > 1 else np.zeros(m, dtype=np.int64)
    at += m * max(w - 1, 0)
    long = prefixes >= u if w else np.zeros(m, dtype=np.bool_)
    n_extra = int(np.count_nonzero(long))
    if at + n_extra + nnz * b > buf.size * 8:
        raise ValueError("corrupt golomb payload: truncated remainders or values")
    if n_extra == m and u == 0:  # M a power of two: every remainder is prefix and extra bit
        remainders = (prefixes << 1) | unpack_bits(buf, n_extra, at)
    else:
        remainders = prefixes.copy()
        if n_extra:
            extras = unpack_bits(buf, n_extra, at).astype(np.int64)
            remainders[long] = ((prefixes[long] << 1) | extras) - u
    at += n_extra
    values = _read_codes(buf, nnz, b, at) if b else np.zeros(nnz, dtype=np.int64)
    at += nnz * b
    ones = np.flatnonzero(unpack_bits(buf, buf.size * 8 - at, at))
    end = at + (int(ones[-1]) + 1 if ones.size else 0)
    if ones.size != m or buf.size != -(-end // 8):
        raise ValueError(
            f"corrupt golomb payload: {ones.size} gaps for {m} coded entries, {buf.size} bytes for {end} bits"
        )
    if m and int(ones[-1]) - m + 1 > n:  # the quotients alone run past the end of the tensor
        raise ValueError("corrupt golomb payload: a gap runs past the end of the tensor")
    if m and int(remainders.max()) >= M:
        raise ValueError("corrupt golomb payload: a remainder is not below M")
    # position of coded entry i = sum over j <= i of (q_j M + r_j + 1) - 1, where q_j = ones_j - ones_(j-1) - 1
    steps = np.empty(m, dtype=np.int64)
    if m:
        steps[0] = ones[0] + 1  # q_0 = ones_0 (ones_(-1) = -1)
        np.subtract(ones[1:], ones[:-1], out=steps[1:])
        steps -= 1
        if M != 1:
            steps *= M
        steps += remainders
        steps += 1
    coded = np.cumsum(steps, out=steps)
    coded -= 1
    if m and int(coded[-1]) >= n:
        raise ValueError("corrupt golomb payload: a coded position lies past the end of the tensor")
    index_type = np.int32 if n < 2**31 else np.int64
    return complement, coded.astype(index_type), values


def decode(data: bytes, n: int, b: int) -> tuple[np.ndarray, np.ndarray]:
    """Decode a ``golomb`` payload of a length-``n`` vector into ``(mask, value codes)``.

    Raises:
        ValueError: the payload is truncated, too long, or inconsistent (corrupt).
    """
    complement, coded, values = _decode(data, n, b)
    mask = np.full(n, complement, dtype=np.bool_)
    mask[coded] = not complement
    return mask, values


def decode_positions(data: bytes, n: int, b: int) -> tuple[np.ndarray, np.ndarray]:
    """Decode a ``golomb`` payload into ``(kept positions, value codes)``."""
    complement, coded, values = _decode(data, n, b)
    if not complement:
        return coded, values
    mask = np.ones(n, dtype=np.bool_)
    mask[coded] = False
    return np.flatnonzero(mask).astype(coded.dtype), values
