"""tswitch.codec: bit streams, SASS (journal Eq. 16-17), bitmap and golomb payloads, bit-exact.

The SASS, bitmap and golomb payloads are checked against slow pure-Python encoders that build the
bit string field by field from the format tables (``tswitch/codec/sass.py``, ``golomb.py``), the
SASS group size and payload length against journal Eq. 16-17 computed here from scratch, and the
golomb parameter against an exhaustive search.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from tswitch.codec import bitmap, golomb, sass
from tswitch.codec.bits import bits_to_uint, pack_bits, uint_to_bits, unpack_bits
from tswitch.codec.layouts import LAYOUTS, choose_layout, entropy_bits, get_layout

SIZES = [0, 1, 7, 8, 9, 3 * 5 * 7, 1009, 4096, 10007]
DENSITIES = [0.0, 0.01, 0.3, 0.7, 1.0]
WIDTHS = [1, 2, 4, 8]
CODECS = {"sass": sass, "bitmap": bitmap, "golomb": golomb}


# -- independent references --------------------------------------------------------------------


def eq17_group_size(n: int, density: float) -> int:
    """Journal Eq. 17: the divisor c <= 256 of n closest to ln 2 / density (ties: the smaller)."""
    divisors = [c for c in range(1, 257) if n % c == 0]
    if density == 0:  # ln 2 / 0 = inf: the largest divisor is the closest
        return divisors[-1]
    target = math.log(2) / density
    best = divisors[0]
    for c in divisors[1:]:
        if abs(target - c) < abs(target - best):
            best = c
    return best


def eq16_bits(n: int, nnz: int, b: int) -> int:
    """Journal Eq. 16 with the measured nnz: 35 + n/c + nnz * (ceil(log2 c) + b + 1)."""
    if n == 0:
        return 35
    c = eq17_group_size(n, nnz / n)
    return 35 + n // c + nnz * (math.ceil(math.log2(c)) + b + 1)


def to_bytes(bits: str) -> bytes:
    bits += "0" * (-len(bits) % 8)
    return bytes(int(bits[i : i + 8], 2) for i in range(0, len(bits), 8))


def field(value: int, width: int) -> str:
    return format(value, f"0{width}b") if width else ""


def sass_reference(mask: list[bool], values: list[int], b: int) -> bytes:
    """SASS payload built bit by bit: G (27), c - 1 (8), group bitmap, entries, zero padding."""
    n = len(mask)
    c = eq17_group_size(n, sum(mask) / n) if n else 1
    groups = n // c
    bits = field(groups, 27) + field(c - 1, 8)
    bits += "".join("1" if any(mask[g * c : (g + 1) * c]) else "0" for g in range(groups))
    positions = [i for i, m in enumerate(mask) if m]
    for k, p in enumerate(positions):
        last_of_group = k + 1 == len(positions) or positions[k + 1] // c != p // c
        bits += field(p % c, math.ceil(math.log2(c))) + field(values[k], b) + ("1" if last_of_group else "0")
    return to_bytes(bits)


def bitmap_reference(mask: list[bool], values: list[int], b: int) -> bytes:
    return to_bytes("".join("1" if m else "0" for m in mask) + "".join(field(v, b) for v in values))


def golomb_gaps(mask: list[bool]) -> tuple[bool, list[int]]:
    """(complement, gaps) of the format table: code the dropped entries when more than half are kept."""
    complement = 2 * sum(mask) > len(mask)
    coded = [i for i, m in enumerate(mask) if m != complement]
    return complement, [p - (coded[i - 1] + 1 if i else 0) for i, p in enumerate(coded)]


def gamma(x: int) -> str:
    """Elias gamma code of x >= 1: floor(log2 x) zeros, then x in binary."""
    return "0" * (x.bit_length() - 1) + format(x, "b")


def golomb_reference(mask: list[bool], values: list[int], b: int, M: int) -> bytes:
    """golomb payload built bit by bit from the format table, for a given parameter M."""
    complement, gaps = golomb_gaps(mask)
    w = (M - 1).bit_length()
    u = (1 << w) - M
    prefixes = extras = ""
    for g in gaps:
        r = g % M
        if w and r < u:
            prefixes += field(r, w - 1)
        elif w:
            prefixes += field((r + u) >> 1, w - 1)
            extras += str((r + u) & 1)
    bits = ("1" if complement else "0") + gamma(M) + gamma(len(gaps) + 1) + prefixes + extras
    bits += "".join(field(v, b) for v in values)
    bits += "".join("0" * (g // M) + "1" for g in gaps)
    return to_bytes(bits)


def make_case(n: int, density: float, b: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A flat mask with exactly round(density * n) kept entries and their random b-bit codes."""
    rng = np.random.default_rng(seed + 7919 * n + int(density * 1000) + 13 * b)
    nnz = round(density * n)
    mask = np.zeros(n, dtype=np.bool_)
    mask[rng.choice(n, size=nnz, replace=False)] = True
    values = rng.integers(0, 1 << b, size=nnz)
    return mask, values


CASES = [(n, d, b) for n in SIZES for d in DENSITIES for b in WIDTHS]


# -- round trips, sizes, reference bytes -------------------------------------------------------


@pytest.mark.parametrize("n,density,b", CASES)
def test_sass_round_trip_and_eq16_size(n, density, b):
    mask, values = make_case(n, density, b)
    data = sass.encode(mask, values, b)
    assert isinstance(data, bytes)
    assert len(data) == math.ceil(eq16_bits(n, int(mask.sum()), b) / 8)
    assert len(data) == sass.sass_nbytes(n, int(mask.sum()), b)
    assert data == sass_reference(mask.tolist(), values.tolist(), b)
    out_mask, out_values = sass.decode(data, n, b)
    assert out_mask.dtype == np.bool_ and np.array_equal(out_mask, mask)
    assert np.array_equal(out_values, values)
    if n:  # the group size in the header is Eq. 17's
        c = eq17_group_size(n, mask.sum() / n)
        head = int.from_bytes(data[:5], "big") >> 5
        assert (head >> 8, (head & 0xFF) + 1) == (n // c, c)


@pytest.mark.parametrize("n,density,b", CASES)
def test_bitmap_round_trip_and_size(n, density, b):
    mask, values = make_case(n, density, b)
    data = bitmap.encode(mask, values, b)
    nnz = int(mask.sum())
    assert len(data) == math.ceil((n + nnz * b) / 8) == bitmap.bitmap_nbytes(n, nnz, b)
    assert data == bitmap_reference(mask.tolist(), values.tolist(), b)
    out_mask, out_values = bitmap.decode(data, n, b)
    assert np.array_equal(out_mask, mask) and np.array_equal(out_values, values)


@pytest.mark.parametrize("n,density,b", CASES)
def test_golomb_round_trip_and_reference_bytes(n, density, b):
    mask, values = make_case(n, density, b)
    data = golomb.encode(mask, values, b)
    assert isinstance(data, bytes)
    M = golomb.choose_m(np.array(golomb_gaps(mask.tolist())[1], dtype=np.int64))
    assert data == golomb_reference(mask.tolist(), values.tolist(), b, M)
    assert len(data) == golomb.golomb_nbytes(mask, b) == get_layout("golomb").size(mask, b)
    out_mask, out_values = golomb.decode(data, n, b)
    assert out_mask.dtype == np.bool_ and np.array_equal(out_mask, mask)
    assert np.array_equal(out_values, values)
    positions, pos_values = golomb.decode_positions(data, n, b)
    assert np.array_equal(positions, np.flatnonzero(mask)) and np.array_equal(pos_values, values)


@pytest.mark.parametrize("M", [1, 2, 3, 4, 5, 7, 8, 9, 23, 64, 100, 1000])
def test_golomb_decodes_every_parameter(M):
    """The parameter is the writer's choice: streams written with any M decode (truncated binary
    remainders of every kind: M = 1, powers of two, and u = 2**w - M of every size)."""
    mask, values = make_case(4096, 0.05, 2, seed=M)
    data = golomb_reference(mask.tolist(), values.tolist(), 2, M)
    out_mask, out_values = golomb.decode(data, 4096, 2)
    assert np.array_equal(out_mask, mask) and np.array_equal(out_values, values)


def test_golomb_hand_example():
    # n = 12, kept at 1, 2, 7 (density 1/4, no complement), signs + - +: gaps 1, 0, 4;
    # M = 1 and M = 2 both cost 8 gap bits (ties: the smaller), M = 3 costs 9
    mask = np.zeros(12, dtype=bool)
    mask[[1, 2, 7]] = True
    data = golomb.encode(mask, np.array([1, 0, 1]), 1)
    # complement 0 | gamma(M=1) 1 | gamma(m+1=4) 00100 | values 101 | quotients 01 1 00001 | padding
    assert data == to_bytes("0" + "1" + "00100" + "101" + "01" + "1" + "00001")
    assert len(data) == 3
    # 10 of 12 kept: the two dropped entries (3 and 11) are coded
    mask = np.ones(12, dtype=bool)
    mask[[3, 11]] = False
    values = (np.arange(10) % 2).tolist()
    data = golomb.encode(mask, np.array(values), 1)
    M = golomb.choose_m(np.array([3, 7]))
    assert data[0] >> 7 == 1 and data == golomb_reference(mask.tolist(), values, 1, M)
    assert np.array_equal(golomb.decode(data, 12, 1)[0], mask)
    # nothing kept: one byte (complement 0, gamma(1), gamma(1), padding)
    assert golomb.encode(np.zeros(1000, dtype=bool), np.zeros(0), 1) == to_bytes("011")


def test_golomb_parameter_is_near_the_exhaustive_optimum():
    rng = np.random.default_rng(3)
    for density in [0.0005, 0.003, 0.0177, 0.02, 0.1, 0.3, 0.5]:
        mask = rng.random(200_000) < density
        g = np.array(golomb_gaps(mask.tolist())[1], dtype=np.int64)
        M = golomb.choose_m(g)
        best = min(golomb.golomb_gap_bits(g, j) for j in range(1, int(4 * g.mean()) + 3))
        assert golomb.golomb_gap_bits(g, M) <= 1.002 * best, density


@pytest.mark.parametrize("density", [0.5, 0.3, 0.1, 0.03, 0.0177, 0.01, 0.7, 0.97])
def test_golomb_is_within_one_percent_of_the_entropy_bound(density):
    # Bernoulli masks of 2**20 entries against the i.i.d. bound n H(d) + nnz
    rng = np.random.default_rng(11)
    mask = rng.random(1 << 20) < density
    nnz = int(mask.sum())
    bound = entropy_bits(mask.size, nnz, 1)
    assert 8 * golomb.golomb_nbytes(mask, 1) <= 1.01 * bound + 64
    assert 8 * sass.sass_nbytes(mask.size, nnz, 1) > 1.05 * bound  # what SASS leaves on the table


def test_choose_layout_picks_the_smallest():
    rng = np.random.default_rng(5)
    for density in [0.0, 0.001, 0.05, 0.3, 0.5, 0.9, 1.0]:
        for n in [1, 8, 105, 4096]:
            mask = rng.random(n) < density
            sizes = {
                name: len(lay.encode(mask, np.zeros(int(mask.sum()), dtype=np.int64), 1))
                for name, lay in LAYOUTS.items()
            }
            chosen = choose_layout(mask, 1)
            assert sizes[chosen.name] == min(sizes.values()), (density, n, sizes)
            assert choose_layout(mask, 1, "bitmap").name == "bitmap"


def test_entropy_bits():
    assert entropy_bits(0, 0, 1) == 0 and entropy_bits(8, 0, 1) == 0 and entropy_bits(8, 8, 1) == 8
    assert entropy_bits(8, 4, 1) == pytest.approx(8 + 4)  # H(1/2) = 1 bit per entry
    assert entropy_bits(1000, 100, 2) == pytest.approx(1000 * 0.4689955935892812 + 200)


def test_sass_hand_example():
    # n = 8, kept at 0, 4, 6, 7 (density 0.5 -> ln2/0.5 = 1.39 -> c = 1), signs + - - +
    mask = np.array([1, 0, 0, 0, 1, 0, 1, 1], dtype=bool)
    data = sass.encode(mask, np.array([1, 0, 0, 1]), 1)
    # 27-bit G=8 | 8-bit c-1=0 | bitmap 10001011 | entries 11 01 01 11 | 5 zero bits
    assert data.hex() == "000001_00_117ae0".replace("_", "")
    # n = 12, one kept entry at 10 (density 1/12 -> ln2*12 = 8.3 -> c = 6 of 1,2,3,4,6,12)
    mask = np.zeros(12, dtype=bool)
    mask[10] = True
    data = sass.encode(mask, np.array([1]), 1)
    # G=2 | c-1=5 | bitmap 01 | index 100 (3 bits) value 1 end 1 -> 35 + 2 + 5 = 42 bits
    assert data == to_bytes(field(2, 27) + field(5, 8) + "01" + "100" + "1" + "1")
    assert len(data) == 6


@pytest.mark.parametrize("n", [12, 30, 360, 1000, 65536, 2 * 3 * 5 * 7 * 11])
@pytest.mark.parametrize("density", [0.001, 0.004, 0.02, 0.05, 0.1, 0.2, 0.45, 0.5, 0.9])
def test_eq16_payload_length_on_composite_sizes(n, density):
    for b in (1, 3, 8):  # with c = 256 and b = 8 an entry is 17 bits wide
        mask, values = make_case(n, density, b, seed=5)
        data = sass.encode(mask, values, b)
        assert len(data) == math.ceil(eq16_bits(n, int(mask.sum()), b) / 8)
        assert data == sass_reference(mask.tolist(), values.tolist(), b)
        out_mask, out_values = sass.decode(data, n, b)
        assert np.array_equal(out_mask, mask) and np.array_equal(out_values, values)


def test_sass_beats_bitmap_when_sparse():
    mask, values = make_case(65536, 0.01, 1, seed=1)
    assert len(sass.encode(mask, values, 1)) < 0.5 * len(bitmap.encode(mask, values, 1))


@pytest.mark.parametrize("name", ["sass", "bitmap", "golomb"])
def test_encode_rejects_wrong_value_count(name):
    with pytest.raises(ValueError, match="expected 2 value codes, got 3"):
        CODECS[name].encode(np.array([1, 0, 1], dtype=bool), np.array([1, 0, 1]), 1)


def test_layout_registry():
    assert set(LAYOUTS) == {"sass", "bitmap", "golomb"}
    assert {name: lay.min_version for name, lay in LAYOUTS.items()} == {"sass": 1, "bitmap": 1, "golomb": 2}
    for name, layout in LAYOUTS.items():
        assert get_layout(name) is layout and layout.name == name
        mask, values = make_case(105, 0.3, 2)
        data = layout.encode(mask, values, 2)
        assert len(data) == layout.size(mask, 2)
        assert np.array_equal(layout.decode(data, 105, 2)[0], mask)
    with pytest.raises(ValueError, match="unknown layout 'coo'; valid: bitmap, golomb, sass"):
        get_layout("coo")


# -- group size (Eq. 17) -----------------------------------------------------------------------


def test_group_size_matches_eq17_and_divides():
    rng = np.random.default_rng(0)
    densities = [0.0, 1.0, 0.5, 0.3, 0.01, 0.001, 1e-6] + list(rng.uniform(0, 1, 20))
    for n in list(range(1, 400)) + [1009, 4096, 10007, 65536, 2**20, 768 * 3072]:
        for d in densities:
            c = sass.group_size(n, d)
            assert n % c == 0 and 1 <= c <= 256, (n, d, c)
            assert c == eq17_group_size(n, d), (n, d)


def test_group_size_special_cases():
    assert sass.group_size(0, 0.0) == 1
    assert sass.group_size(1009, 0.001) == 1  # prime above 256: only c = 1 divides it
    assert sass.group_size(4096, 0.0) == 256  # density 0: the largest divisor
    assert sass.group_size(1000, 0.0) == 250
    assert sass.group_size(4096, 1.0) == 1
    assert sass.group_size(4096, math.log(2) / 64) == 64


def test_group_size_ties_go_to_the_smaller_divisor():
    density = math.log(2) / 3
    while math.log(2) / density != 3.0:  # find a density whose target is exactly 3
        density = math.nextafter(density, 1.0 if math.log(2) / density > 3 else 0.0)
    assert sass.group_size(8, density) == 2  # |3 - 2| == |3 - 4|
    assert sass.group_size(12, density) == 3


def test_group_size_too_many_groups():
    p = (1 << 27) + 1
    while any(p % d == 0 for d in range(2, math.isqrt(p) + 1)):
        p += 2
    with pytest.raises(ValueError, match="too large for SASS"):
        sass.group_size(p, 0.5)
    assert sass.group_size((1 << 27) - 1, 0.5) >= 1  # 2**27 - 1 groups of 1 still fit


def test_sass_bits_formula():
    assert sass.sass_bits(0, 0, 1) == 35
    for n, nnz, b in [(8, 4, 1), (1000, 10, 1), (4096, 41, 2), (10007, 5000, 4), (105, 0, 8)]:
        assert sass.sass_bits(n, nnz, b) == eq16_bits(n, nnz, b)
    assert sass.index_bits(1) == 0 and sass.index_bits(2) == 1 and sass.index_bits(3) == 2
    assert sass.index_bits(256) == 8 and sass.index_bits(255) == 8 and sass.index_bits(129) == 8


# -- corrupt payloads --------------------------------------------------------------------------

CORRUPT_CASES = [(n, d, b) for n in [0, 1, 7, 9, 105, 1009, 4096] for d in DENSITIES for b in (1, 4)]


@pytest.mark.parametrize("name", ["sass", "bitmap", "golomb"])
@pytest.mark.parametrize("n,density,b", CORRUPT_CASES)
def test_truncated_or_extended_payloads_raise_value_error(name, n, density, b):
    codec = CODECS[name]
    mask, values = make_case(n, density, b)
    data = codec.encode(mask, values, b)
    bad = [data + b"\x00", data + b"\xff", data + bytes(9)]
    bad += [data[:k] for k in {0, 1, 4, 5, len(data) // 2, len(data) - 1} if 0 <= k < len(data)]
    for payload in bad:
        with pytest.raises(ValueError):
            codec.decode(payload, n, b)


@pytest.mark.parametrize("n", [1, 9, 105, 4096])
def test_sass_flipped_header_bit_raises(n):
    mask, values = make_case(n, 0.3, 1)
    data = bytearray(sass.encode(mask, values, 1))
    for bit in range(35):  # every bit of the group count and group size fields
        flipped = bytearray(data)
        flipped[bit // 8] ^= 0x80 >> (bit % 8)
        with pytest.raises(ValueError, match="corrupt SASS payload: .* groups of .* entries"):
            sass.decode(bytes(flipped), n, 1)


def test_sass_wrong_length_raises():
    mask, values = make_case(105, 0.3, 1)
    with pytest.raises(ValueError, match="groups of"):
        sass.decode(sass.encode(mask, values, 1), 104, 1)


@pytest.mark.parametrize("name", ["sass", "bitmap", "golomb"])
@pytest.mark.parametrize("n,density", [(9, 0.5), (33, 0.1), (105, 0.3), (64, 0.05), (20, 1.0), (40, 0.8)])
def test_every_single_bit_flip_decodes_or_raises_value_error(name, n, density):
    codec = CODECS[name]
    mask, values = make_case(n, density, 2)
    data = codec.encode(mask, values, 2)
    for bit in range(len(data) * 8):
        flipped = bytearray(data)
        flipped[bit // 8] ^= 0x80 >> (bit % 8)
        try:
            out_mask, out_values = codec.decode(bytes(flipped), n, 2)
        except ValueError:
            continue
        assert out_mask.shape == (n,) and out_values.shape == (int(out_mask.sum()),)
        assert out_values.size == 0 or int(out_values.max()) < 4


@pytest.mark.parametrize("name", ["sass", "bitmap", "golomb"])
def test_random_bytes_decode_or_raise_value_error(name):
    codec = CODECS[name]
    rng = np.random.default_rng(42)
    for _ in range(3000):
        n = int(rng.integers(0, 200))
        data = rng.integers(0, 256, size=int(rng.integers(0, 40)), dtype=np.uint8).tobytes()
        try:
            out_mask, _ = codec.decode(data, n, int(rng.choice(WIDTHS)))
        except ValueError:
            continue
        assert out_mask.shape == (n,)


def test_golomb_fuzz_header_fields_and_sections():
    """Random headers over valid and random bodies: huge counts, k and sizes decode or raise ValueError,
    never allocate past the payload or hang (the fields are bounded before any array is built)."""
    rng = np.random.default_rng(7)
    mask, values = make_case(1009, 0.1, 1)
    good = golomb.encode(mask, values, 1)
    for _ in range(2000):
        data = bytearray(good)
        for _ in range(int(rng.integers(1, 4))):
            data[int(rng.integers(0, 7))] = int(rng.integers(0, 256))  # header bytes
        if rng.random() < 0.3:
            data = data[: int(rng.integers(0, len(data) + 1))]
        n = int(rng.choice([0, 1, 1008, 1009, 5000]))
        try:
            out_mask, out_values = golomb.decode(bytes(data), n, 1)
        except ValueError:
            continue
        assert out_mask.shape == (n,) and out_values.shape == (int(out_mask.sum()),)


# -- bit streams -------------------------------------------------------------------------------


@pytest.mark.parametrize("width", range(33))
def test_uint_bits_round_trip(width):
    rng = np.random.default_rng(width)
    top = (1 << width) - 1
    values = np.array([0, top, top >> 1, 1 if width else 0] + list(rng.integers(0, top + 1, 50)), dtype=np.int64)
    bits = uint_to_bits(values, width)
    assert bits.shape == (values.size, width) and bits.dtype == np.bool_
    assert np.array_equal(bits_to_uint(bits), values)
    for v, row in zip(values[:10].tolist(), bits[:10]):  # MSB first
        assert "".join("1" if x else "0" for x in row) == field(v, width)
    assert uint_to_bits(np.array([], dtype=np.int64), width).shape == (0, width)


def test_bits_width_limit():
    with pytest.raises(ValueError, match="<= 32"):
        uint_to_bits(np.array([1]), 33)


def test_pack_and_unpack_bits():
    assert pack_bits(np.array([1, 0, 0, 0, 0, 0, 0, 0, 1], dtype=bool)) == b"\x80\x80"
    assert pack_bits(np.array([], dtype=bool)) == b""
    rng = np.random.default_rng(1)
    for count in [0, 1, 7, 8, 9, 63, 64, 65, 1000]:
        bits = rng.integers(0, 2, count).astype(bool)
        data = pack_bits(bits)
        assert len(data) == math.ceil(count / 8)
        assert np.array_equal(unpack_bits(data, count), bits)
        for offset in [0, 1, 3, 8] if count > 8 else [0]:
            assert np.array_equal(unpack_bits(data, count - offset, offset), bits[offset:])
    with pytest.raises(ValueError, match="truncated"):
        unpack_bits(b"\xff", 9)
    with pytest.raises(ValueError, match="truncated"):
        unpack_bits(b"\xff\xff", 4, 13)
    with pytest.raises(ValueError, match="non-negative"):
        unpack_bits(b"\xff", -1)
