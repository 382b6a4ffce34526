"""tswitch.core: task-vector algebra, P-Spar against a slow obvious reference, B-Approx, pulse masks."""

from __future__ import annotations

import math

import pytest
import torch

from tswitch.core.binary import TSwitch, b_approx, b_approx_codes, from_codes, switch_scale
from tswitch.core.pspar import kept_count, pspar_mask, pulse_mask
from tswitch.core.task_vector import TaskVector

SIZES = [0, 1, 2, 7, 8, 9, 33, 1000]
ALPHAS = [0.0, 0.01, 0.1, 0.25, 1 / 3, 0.5, 0.75, 0.9, 0.99]
BAD_ALPHAS = [-0.1, -1e-12, 1.0, 1.5, float("nan"), float("inf"), -float("inf")]


# -- slow obvious references -------------------------------------------------------------------


def ranked_by_sign(values: list[float]) -> list[list[int]]:
    """Positions of the positive and of the negative entries, largest magnitude first, ties by position."""
    groups = []
    for positive in (True, False):
        idx = [i for i, v in enumerate(values) if (v > 0 if positive else v < 0)]
        idx.sort(key=lambda i: (-abs(values[i]), i))
        groups.append(idx)
    return groups


def pspar_reference(values: list[float], alpha: float) -> list[bool]:
    """Keep the ``n_sign - floor(alpha * n_sign)`` largest magnitudes of each sign."""
    keep = [False] * len(values)
    for idx in ranked_by_sign(values):
        for i in idx[: len(idx) - math.floor(alpha * len(idx))]:
            keep[i] = True
    return keep


def keep_low_reference(values: list[float], alpha: float) -> list[bool]:
    """Drop the ``floor(alpha * n_sign)`` largest magnitudes of each sign, keep the other non-zeros."""
    keep = [v != 0 for v in values]
    for idx in ranked_by_sign(values):
        for i in idx[: math.floor(alpha * len(idx))]:
            keep[i] = False
    return keep


def sample(kind: str, n: int, seed: int) -> torch.Tensor:
    """A float32 test vector of ``n`` entries with a particular hard case."""
    g = torch.Generator().manual_seed(seed)
    if kind == "normal":
        return torch.randn(n, generator=g)
    if kind == "ties":  # multiples of 0.5 in [-3, 3]: many equal magnitudes and some zeros
        return torch.randint(-6, 7, (n,), generator=g).float() * 0.5
    if kind == "zeros":
        return torch.zeros(n)
    if kind == "denormal":  # float32 subnormals (below ~1.2e-38)
        return torch.randn(n, generator=g) * 1e-40
    if kind == "signed_zeros":  # +0.0 and -0.0 mixed in with a few non-zeros
        choice = torch.randint(0, 4, (n,), generator=g)
        table = torch.tensor([0.0, -0.0, 1.5, -2.5])
        return table[choice]
    if kind == "wide":  # huge and tiny magnitudes in one tensor (many radix bins)
        return torch.randn(n, generator=g) * torch.pow(10.0, torch.randint(-30, 30, (n,), generator=g).float())
    if kind == "ulps":  # magnitudes differing only in the low mantissa bits (same high-16-bit bin)
        bits = torch.randint(0, 64, (n,), generator=g, dtype=torch.int32) + 0x3F800000
        sign = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
        return bits.view(torch.float32) * sign
    raise AssertionError(kind)


KINDS = ["normal", "ties", "zeros", "denormal", "signed_zeros", "wide", "ulps"]


# -- P-Spar ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", SIZES)
def test_pspar_matches_reference(kind, n):
    tau = sample(kind, n, seed=n * 31 + len(kind))
    values = tau.tolist()
    n_pos = sum(v > 0 for v in values)
    n_neg = sum(v < 0 for v in values)
    for alpha in ALPHAS:
        mask = pspar_mask(tau, alpha)
        assert mask.dtype == torch.bool and mask.shape == tau.shape
        assert mask.tolist() == pspar_reference(values, alpha), (kind, n, alpha)
        assert int((mask & (tau > 0)).sum()) == n_pos - math.floor(alpha * n_pos)
        assert int((mask & (tau < 0)).sum()) == n_neg - math.floor(alpha * n_neg)
        assert not bool((mask & (tau == 0)).any()), "zeros are never kept"


def test_pspar_denormals_are_really_subnormal():
    tau = sample("denormal", 1000, seed=3)
    nonzero = tau[tau != 0].abs()
    assert nonzero.numel() > 900 and bool((nonzero < torch.finfo(torch.float32).tiny).all())


def test_pspar_negative_zero_is_a_zero():
    tau = torch.tensor([-0.0, 0.0, -0.0, -1.0, 2.0])
    assert pspar_mask(tau, 0.0).tolist() == [False, False, False, True, True]
    # one negative, one positive: each keeps 1 - floor(0.9) = 1
    assert pspar_mask(tau, 0.9).tolist() == [False, False, False, True, True]


def test_pspar_ties_keep_lowest_positions():
    tau = torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0, 1.0, -1.0, 1.0])
    # 5 positives -> keep 5 - floor(2.5) = 3; 3 negatives -> keep 3 - floor(1.5) = 2
    assert pspar_mask(tau, 0.5).tolist() == [True, True, True, True, True, False, False, False]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_pspar_other_dtypes_and_shapes(dtype):
    tau = sample("ties", 3 * 11, seed=7).view(3, 11).to(dtype)
    mask = pspar_mask(tau, 0.4)
    assert mask.shape == (3, 11)
    assert mask.reshape(-1).tolist() == pspar_reference(tau.reshape(-1).tolist(), 0.4)


def test_pspar_does_not_modify_input():
    tau = sample("normal", 100, seed=1)
    before = tau.clone()
    pspar_mask(tau, 0.7)
    assert torch.equal(tau, before)


def test_pspar_large_tensor_against_sort():
    tau = sample("ties", 200_003, seed=11) + sample("normal", 200_003, seed=12) * 1e-3
    alpha = 0.83
    mask = pspar_mask(tau, alpha)
    for sign in (1, -1):
        sel = tau * sign > 0
        mags = (tau * sign)[sel]
        k = kept_count(int(sel.sum()), alpha)
        threshold = torch.sort(mags, descending=True).values[k - 1]
        assert int((mask & sel).sum()) == k
        assert bool(((tau * sign)[mask & sel] >= threshold).all())
        assert bool(((tau * sign)[~mask & sel] <= threshold).all())


@pytest.mark.parametrize("alpha", BAD_ALPHAS)
def test_alpha_outside_range_raises(alpha):
    tau = torch.ones(4)
    for fn in (
        lambda: pspar_mask(tau, alpha),
        lambda: pulse_mask(tau, alpha, "high"),
        lambda: pulse_mask(tau, alpha, "random"),
        lambda: b_approx(tau, alpha),
        lambda: b_approx_codes(tau, alpha),
    ):
        with pytest.raises(ValueError, match="alpha"):
            fn()


@pytest.mark.parametrize("n", [0, 1, 5, 10, 100])
def test_kept_count(n):
    for alpha in ALPHAS:
        assert kept_count(n, alpha) == n - math.floor(alpha * n)
        assert (kept_count(n, alpha) >= 1) == (n >= 1)


# -- B-Approx ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["normal", "ties", "wide", "denormal", "signed_zeros"])
@pytest.mark.parametrize("n", [1, 7, 33, 1000])
@pytest.mark.parametrize("alpha", [0.0, 0.5, 0.9])
def test_b_approx_against_direct_computation(kind, n, alpha):
    tau = sample(kind, n, seed=n + 5).view(-1, 1) if n > 1 else sample(kind, n, seed=2)
    sw = b_approx(tau, alpha)
    assert isinstance(sw, TSwitch) and sw.shape == tau.shape
    assert torch.equal(sw.mask, pspar_mask(tau, alpha))
    kept = [v for v, m in zip(tau.reshape(-1).tolist(), sw.mask.reshape(-1).tolist()) if m]
    assert sw.nnz == len(kept)
    expected_scale = math.sqrt(sum(v * v for v in kept) / len(kept)) if kept else 0.0
    assert sw.scale == pytest.approx(expected_scale, rel=1e-6, abs=0.0)
    assert sw.scale == pytest.approx(switch_scale(tau, sw.mask), rel=1e-12)
    assert torch.equal(sw.positive, sw.mask & (tau > 0))
    expected = torch.sign(tau).float() * sw.mask.float() * sw.scale
    assert torch.equal(sw.reconstruct(), expected)
    assert torch.equal(sw.signed_mask(), torch.sign(tau).float() * sw.mask.float())
    assert sw.density == pytest.approx(len(kept) / tau.numel())


def test_b_approx_hand_example():
    tau = torch.tensor([[3.0, -1.0, 0.0, 2.0], [-4.0, 1.0, -2.0, 5.0]])
    sw = b_approx(tau, 0.5)
    # positives 3, 2, 1, 5 keep 2 (5, 3); negatives -1, -4, -2 keep 3 - 1 = 2 (-4, -2)
    assert sw.mask.tolist() == [[True, False, False, False], [True, False, True, True]]
    assert sw.positive.tolist() == [[True, False, False, False], [False, False, False, True]]
    assert sw.scale == pytest.approx(math.sqrt((9 + 16 + 4 + 25) / 4), rel=1e-7)
    s = float(torch.tensor(sw.scale, dtype=torch.float32))
    assert sw.reconstruct().tolist() == [[s, 0, 0, 0], [-s, 0, -s, s]]


@pytest.mark.parametrize("tau", [torch.zeros(10), torch.zeros(0), torch.zeros(3, 0, 2), torch.tensor([-0.0, 0.0])])
def test_b_approx_nothing_kept(tau):
    sw = b_approx(tau, 0.5)
    assert sw.nnz == 0 and sw.scale == 0.0 and sw.density == 0.0
    assert sw.shape == tau.shape
    assert torch.equal(sw.reconstruct(), torch.zeros(tau.shape))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("position", [0, 4, 9])
def test_b_approx_rejects_non_finite(bad, position):
    tau = sample("normal", 10, seed=3)
    tau[position] = bad
    for alpha in (0.0, 0.9):
        with pytest.raises(ValueError, match="NaN or infinite"):
            b_approx(tau, alpha)


def test_b_approx_codes_and_from_codes_round_trip():
    tau = sample("ties", 6 * 7, seed=9).view(6, 7)
    mask, kept_positive, scale = b_approx_codes(tau, 0.3)
    assert mask.shape == (42,) and kept_positive.shape == (int(mask.sum()),)
    rebuilt = from_codes(tau.shape, mask, kept_positive, scale)
    direct = b_approx(tau, 0.3)
    assert torch.equal(rebuilt.mask, direct.mask)
    assert torch.equal(rebuilt.positive, direct.positive)
    assert rebuilt.scale == direct.scale


def test_b_approx_reconstruct_dtype():
    sw = b_approx(torch.tensor([1.0, -2.0, 0.5]), 0.0)
    assert sw.reconstruct(torch.float64).dtype == torch.float64
    assert sw.signed_mask(torch.int8).tolist() == [1, -1, 1]


# -- pulse masks -------------------------------------------------------------------------------


@pytest.mark.parametrize("n", SIZES)
def test_pulse_low_is_pspar(n):
    tau = sample("ties", n, seed=n)
    for alpha in ALPHAS:
        assert torch.equal(pulse_mask(tau, alpha, "low"), pspar_mask(tau, alpha))


@pytest.mark.parametrize("kind", ["normal", "wide", "denormal", "signed_zeros"])
@pytest.mark.parametrize("n", SIZES)
def test_pulse_high_matches_reference(kind, n):
    # distinct magnitudes (up to the zeros), so the dropped set is unique
    tau = sample(kind, n, seed=n + 100)
    if kind == "signed_zeros":
        tau = tau * torch.arange(1, n + 1).float()
    values = tau.tolist()
    for alpha in ALPHAS:
        mask = pulse_mask(tau, alpha, "high")
        assert mask.shape == tau.shape
        assert mask.tolist() == keep_low_reference(values, alpha), (kind, n, alpha)


@pytest.mark.parametrize("n", [7, 33, 1000])
def test_pulse_high_with_ties_counts_and_order(n):
    tau = sample("ties", n, seed=n)
    for alpha in ALPHAS:
        mask = pulse_mask(tau, alpha, "high")
        assert not bool((mask & (tau == 0)).any())
        for sign in (1, -1):
            sel = tau * sign > 0
            n_sign = int(sel.sum())
            assert int((mask & sel).sum()) == n_sign - math.floor(alpha * n_sign)
            kept, dropped = tau.abs()[mask & sel], tau.abs()[~mask & sel]
            if kept.numel() and dropped.numel():
                assert float(dropped.min()) >= float(kept.max())


def test_pulse_random_is_seeded_and_keeps_no_zeros():
    tau = sample("signed_zeros", 20_000, seed=4)
    a = pulse_mask(tau, 0.6, "random", generator=torch.Generator().manual_seed(123))
    b = pulse_mask(tau, 0.6, "random", generator=torch.Generator().manual_seed(123))
    c = pulse_mask(tau, 0.6, "random", generator=torch.Generator().manual_seed(124))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not bool((a & (tau == 0)).any())
    nonzero = int((tau != 0).sum())
    assert int(a.sum()) / nonzero == pytest.approx(0.4, abs=0.02)
    torch.manual_seed(5)
    d = pulse_mask(tau, 0.6, "random")
    torch.manual_seed(5)
    assert torch.equal(d, pulse_mask(tau, 0.6, "random"))


def test_pulse_random_alpha_zero_keeps_all_nonzeros():
    tau = sample("signed_zeros", 500, seed=8)
    mask = pulse_mask(tau, 0.0, "random", generator=torch.Generator().manual_seed(0))
    assert torch.equal(mask, tau != 0)


def test_pulse_unknown_mode():
    with pytest.raises(ValueError, match="unknown pulse mode 'middle'.*'low'.*'high'.*'random'"):
        pulse_mask(torch.ones(3), 0.5, "middle")


# -- task vectors ------------------------------------------------------------------------------


def fake_state(seed: int, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "conv.weight": torch.randn(4, 3, 3, 3, generator=g).to(dtype),
        "bn.weight": torch.randn(4, generator=g).to(dtype),
        "bn.running_mean": torch.randn(4, generator=g).to(dtype),
        "bn.running_var": torch.rand(4, generator=g).to(dtype),
        "bn.num_batches_tracked": torch.tensor(seed, dtype=torch.int64),
        "embed.position_ids": torch.arange(6).unsqueeze(0),
        "fc.weight": torch.randn(5, 8, generator=g).to(dtype),
        "fc.bias": torch.randn(5, generator=g).to(dtype),
    }


FLOATING = ["conv.weight", "bn.weight", "bn.running_mean", "bn.running_var", "fc.weight", "fc.bias"]


def test_from_state_dicts_keeps_floating_tensors_and_buffers():
    base, ft = fake_state(0), fake_state(1)
    ft["embed.position_ids"] = ft["embed.position_ids"] + 1  # integer buffers may differ: ignored
    tv = TaskVector.from_state_dicts(base, ft)
    assert list(tv.keys()) == FLOATING
    assert "bn.num_batches_tracked" not in tv and "embed.position_ids" not in tv
    for name in FLOATING:
        assert tv[name].dtype == torch.float32
        assert torch.equal(tv[name], ft[name] - base[name])
    assert len(tv) == 6 and tv.numel == 108 + 4 * 3 + 40 + 5
    assert "6 tensors" in repr(tv)


def test_from_state_dicts_half_precision_gives_float32():
    base, ft = fake_state(0, torch.float16), fake_state(1, torch.float16)
    tv = TaskVector.from_state_dicts(base, ft)
    assert tv["fc.weight"].dtype == torch.float32
    assert torch.equal(tv["fc.weight"], ft["fc.weight"].float() - base["fc.weight"].float())


def test_from_state_dicts_names_missing_and_extra_tensors():
    base, ft = fake_state(0), fake_state(1)
    del ft["fc.bias"]
    ft["head.extra"] = torch.zeros(2)
    with pytest.raises(ValueError) as info:
        TaskVector.from_state_dicts(base, ft)
    msg = str(info.value)
    assert "fc.bias" in msg and "head.extra" in msg and "missing" in msg and "unexpected" in msg
    assert "conv.weight" not in msg


def test_from_state_dicts_names_shape_mismatches():
    base, ft = fake_state(0), fake_state(1)
    ft["fc.weight"] = torch.zeros(8, 5)
    ft["bn.running_var"] = torch.zeros(5)
    with pytest.raises(ValueError) as info:
        TaskVector.from_state_dicts(base, ft)
    msg = str(info.value)
    assert "fc.weight: (5, 8) vs (8, 5)" in msg and "bn.running_var: (4,) vs (5,)" in msg
    assert "conv.weight" not in msg


def test_from_state_dicts_many_problems_are_summarised():
    base = {f"w{i}": torch.zeros(1) for i in range(9)}
    with pytest.raises(ValueError, match=r"w0, w1, w2, w3, w4 \(\+4 more\)"):
        TaskVector.from_state_dicts(base, {})


def tv_of(**tensors) -> TaskVector:
    return TaskVector({k: torch.tensor(v, dtype=torch.float32) for k, v in tensors.items()})


def test_algebra():
    a = tv_of(w=[1.0, -2.0], b=[0.5])
    b = tv_of(w=[3.0, 1.0], b=[-1.5])
    c = tv_of(w=[0.25, 0.0], b=[2.0])
    assert (a + b)["w"].tolist() == [4.0, -1.0] and (a + b)["b"].tolist() == [-1.0]
    assert (a - b)["w"].tolist() == [-2.0, -3.0] and (a - b)["b"].tolist() == [2.0]
    assert (-a)["w"].tolist() == [-1.0, 2.0] and (-a)["b"].tolist() == [-0.5]
    assert (2 * a)["w"].tolist() == [2.0, -4.0] and (a * 0.5)["b"].tolist() == [0.25]
    total = sum([a, b, c])
    assert isinstance(total, TaskVector)
    assert total["w"].tolist() == [4.25, -1.0] and total["b"].tolist() == [1.0]
    assert sum([a])["w"].tolist() == [1.0, -2.0]
    # operands are not modified
    assert a["w"].tolist() == [1.0, -2.0] and b["w"].tolist() == [3.0, 1.0]
    assert (a - a)["w"].tolist() == [0.0, 0.0]
    assert a.map(lambda name, t: t * 3)["w"].tolist() == [3.0, -6.0]


def test_algebra_type_and_layout_errors():
    a = tv_of(w=[1.0, 2.0], b=[0.5])
    with pytest.raises(TypeError):
        a + "x"
    with pytest.raises(TypeError):
        a - 1
    with pytest.raises(TypeError):
        a * "x"
    with pytest.raises(ValueError, match="b"):
        a + tv_of(w=[1.0, 2.0])
    with pytest.raises(ValueError, match=r"w: \(2,\) vs \(3,\)"):
        a - tv_of(w=[1.0, 2.0, 3.0], b=[0.5])
    with pytest.raises(ValueError, match="other"):
        sum([a, tv_of(w=[1.0, 2.0], other=[1.0])])


def test_apply_to_returns_new_dict_and_keeps_base():
    base, ft = fake_state(0), fake_state(1)
    snapshot = {k: v.clone() for k, v in base.items()}
    tv = TaskVector.from_state_dicts(base, ft)
    out = tv.apply_to(base, coef=0.5)
    assert out is not base and list(out) == list(base)
    for k in base:
        assert torch.equal(base[k], snapshot[k]), f"{k} of the base was modified"
        assert out[k].dtype == base[k].dtype
    for name in FLOATING:
        torch.testing.assert_close(out[name], base[name] + 0.5 * (ft[name] - base[name]))
    for name in ["bn.num_batches_tracked", "embed.position_ids"]:
        assert torch.equal(out[name], base[name])
        assert out[name].data_ptr() != base[name].data_ptr(), f"{name} must be a copy"
    out["embed.position_ids"] += 7
    assert torch.equal(base["embed.position_ids"], snapshot["embed.position_ids"])
    full = tv.apply_to(base)
    for name in FLOATING:
        torch.testing.assert_close(full[name], ft[name])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_apply_to_keeps_dtype(dtype):
    base, ft = fake_state(0, dtype), fake_state(1, dtype)
    tv = TaskVector.from_state_dicts(base, ft)
    out = tv.apply_to(base, coef=1.0)
    for name in FLOATING:
        assert out[name].dtype == dtype
        torch.testing.assert_close(out[name], ft[name], rtol=1e-2, atol=1e-2)
    zero = tv.apply_to(base, coef=0.0)
    for name in FLOATING:
        assert torch.equal(zero[name], base[name]), f"coef 0 must return the base exactly ({dtype})"


def test_apply_to_float64_precision():
    base = {"w": torch.tensor([1.0 + 2**-40, 3.0], dtype=torch.float64)}
    out = TaskVector({"w": torch.tensor([0.5, -0.25])}).apply_to(base)
    assert out["w"].tolist() == [1.5 + 2**-40, 2.75]


def test_apply_to_errors_name_tensors():
    base = fake_state(0)
    tv = TaskVector({"fc.weight": torch.zeros(5, 8), "missing.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="missing.weight"):
        tv.apply_to(base)
    with pytest.raises(ValueError, match=r"fc.bias: \(5,\) vs \(6,\)"):
        TaskVector({"fc.bias": torch.zeros(6)}).apply_to(base)
