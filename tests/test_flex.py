"""FlexSwitch (journal §III-C): LGS (Eq. 6-8), BAS (Eq. 12-15), the losses (Eq. 9-11), the
training loop on a toy adapter, and the storage of its result in a ``.tsw`` pack (Eq. 16-17).

Fast paths are checked against slow, obvious per-element references; the toy adapter is an MLP
with a BatchNorm1d run through ``torch.func.functional_call``, like the real adapters.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call

from tswitch.codec.container import PackError
from tswitch.core.pspar import pspar_mask
from tswitch.core.quant import Codebook, QSwitch, quantize, signed_range
from tswitch.core.task_vector import TaskVector
from tswitch.flex.bas import BIT_WIDTHS, final_widths, mixed_quantize, mixture, quantized_stack, width_term
from tswitch.flex.lgs import KAPPA_IDENTITY, hard_mask, phi, soft_gate, sparsity_term, thresholds
from tswitch.flex.losses import LOSSES, cka_loss, get_loss, kl_loss, mse_loss
from tswitch.flex.storage import encode_flex_task, eq16_bits, storage_breakdown
from tswitch.flex.train import (
    FlexConfig,
    _modules,
    _Params,
    compressed_delta,
    fold_batch_norm,
    temperature,
    train_flex,
)
from tswitch.merging import DynamicMergeEngine, PackedSwitches
from tswitch.models.base import Head, ModelAdapter, ModulePool
from tswitch.pack import SwitchPack, add_task, create_pack, encode_task, tensor_specs


# -- a toy adapter with gradients --------------------------------------------------------------
class ToyAdapter(ModelAdapter):
    """``x -> Linear -> BatchNorm1d -> ReLU -> Linear`` on float vectors, eval mode."""

    name = "toy-flex"
    modality = "vector"

    def __init__(self, dim_in: int = 6, hidden: int = 16, dim_out: int = 8, seed: int = 0):
        torch.manual_seed(seed)
        self.module = nn.Sequential(
            nn.Linear(dim_in, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, dim_out)
        ).eval()
        with torch.no_grad():
            self.module[1].running_mean.normal_()
            self.module[1].running_var.uniform_(0.5, 2.0)
        self.module.requires_grad_(False)
        self._state = {k: v.detach() for k, v in self.module.state_dict().items()}
        self._pool = ModulePool(self.module, size=1)

    def state_dict(self):
        return dict(self._state)

    def preprocess(self, inputs):
        return {"x": torch.stack([torch.as_tensor(v, dtype=torch.float32) for v in inputs])}

    def features_train(self, batch, weights=None):
        state = dict(self._state)
        state.update(weights or {})
        with self._pool.acquire() as module:
            return functional_call(module, state, (batch["x"],))

    def features(self, batch, weights=None):
        with torch.no_grad():
            return self.features_train(batch, weights)


@pytest.fixture(scope="module")
def toy():
    adapter = ToyAdapter()
    base = adapter.state_dict()
    g = torch.Generator().manual_seed(1)
    tau = TaskVector(
        {k: 0.3 * torch.randn(v.shape, generator=g) for k, v in base.items() if torch.is_floating_point(v)}
    )
    head = Head(torch.randn(3, 8, generator=g), torch.randn(3, generator=g), ("a", "b", "c"))
    exemplars = [torch.randn(6, generator=g).tolist() for _ in range(40)]
    return adapter, base, tau, head, exemplars


def quick(**kw) -> FlexConfig:
    return FlexConfig(**{"steps": 12, "batch_size": 8, **kw})


# -- LGS (Eq. 6-8) -----------------------------------------------------------------------------
def test_phi_maps_onto_the_open_unit_interval():
    x = torch.tensor([-1e9, -3.0, 0.0, 3.0, 1e9], dtype=torch.float64)
    y = phi(x)
    assert y[2] == 0.5 and torch.all(y > 0) and torch.all(y < 1)
    assert torch.all(y[1:] >= y[:-1])
    torch.testing.assert_close(phi(torch.tensor(1.0)), torch.tensor(0.75))  # arctan(1) = pi/4


@pytest.mark.parametrize("s", [-1e6, -5.0, 0.0, 5.0, 1e6])
def test_thresholds_stay_inside_each_signs_range(s):
    tau = torch.tensor([0.5, 2.0, 4.0, -0.1, -0.3, -3.0])
    rng = signed_range(tau)
    assert (rng.pos_min, rng.pos_max, rng.neg_min, rng.neg_max) == (0.5, 4.0, pytest.approx(0.1), 3.0)
    t_pos, t_neg = thresholds(torch.tensor(s), torch.tensor(s), rng)
    assert 0.5 <= float(t_pos) <= 4.0 and 0.1 - 1e-7 <= float(t_neg) <= 3.0
    if s == 0.0:
        assert float(t_pos) == pytest.approx(0.5 + 0.5 * 3.5)


def test_soft_gate_matches_a_per_element_reference():
    g = torch.Generator().manual_seed(0)
    tau = torch.randn(50, generator=g, dtype=torch.float64)
    tau[[3, 7]] = 0.0
    rng = signed_range(tau)
    s_pos, s_neg, rho = torch.tensor(0.3, dtype=torch.float64), torch.tensor(-1.2, dtype=torch.float64), 0.7
    gate = soft_gate(tau, s_pos, s_neg, rng, rho)
    t_pos = rng.pos_min + (math.atan(0.3) / math.pi + 0.5) * (rng.pos_max - rng.pos_min)
    t_neg = rng.neg_min + (math.atan(-1.2) / math.pi + 0.5) * (rng.neg_max - rng.neg_min)

    def sig(z):
        return 1 / (1 + math.exp(-z))

    for j, v in enumerate(tau.tolist()):
        want = (
            0.0
            if v == 0
            else (
                sig((v - t_pos) / (rho * (rng.pos_max - rng.pos_min)))
                + sig((-t_neg - v) / (rho * (rng.neg_max - rng.neg_min)))
            )
        )
        assert float(gate[j]) == pytest.approx(want, abs=1e-12), j


def test_hard_mask_approaches_thresholding_as_rho_shrinks():
    tau = torch.linspace(-2, 2, 401)
    rng = signed_range(tau)
    s = torch.tensor(-0.4)
    t_pos, t_neg = (float(t) for t in thresholds(s, s, rng))
    mask = hard_mask(tau, s, s, rng, rho=1e-4)
    want = (tau > t_pos) | (tau < -t_neg)
    margin = (tau - t_pos).abs().min().item()
    assert torch.equal(mask, want), margin
    # the largest entry of each sign is kept: t < v max as phi < 1 (in float32 up to |s| ~ 1e7)
    big = torch.tensor(100.0)
    assert hard_mask(tau, big, big, rng, rho=1e-4)[[0, -1]].all()


def test_zero_entries_and_missing_signs_are_never_gated():
    tau = torch.tensor([0.0, 0.0, 1.0, 2.0, 3.0])  # no negative entry
    rng = signed_range(tau)
    assert rng.neg_count == 0
    gate = soft_gate(tau, torch.tensor(-10.0), torch.tensor(0.0), rng, 1.0)
    assert gate[0] == 0 and gate[1] == 0 and torch.all(gate[2:] > 0)
    assert hard_mask(tau, torch.tensor(-10.0), torch.tensor(0.0), rng, 1e-3).tolist() == [
        False,
        False,
        False,
        True,
        True,
    ]
    assert torch.equal(
        soft_gate(torch.zeros(4), torch.tensor(0.0), torch.tensor(0.0), signed_range(torch.zeros(4)), 1.0),
        torch.zeros(4),
    )
    one = torch.tensor([0.7, 0.7, -0.2])  # r+ = 0: one value per sign
    assert hard_mask(one, torch.tensor(5.0), torch.tensor(5.0), signed_range(one), 1e-3).all()


def test_sparsity_term_is_l1_over_all_entries():
    gates = [torch.tensor([0.2, 0.8]), torch.tensor([1.0, 0.0, 0.5])]
    assert float(sparsity_term(sum(g.sum() for g in gates), 5)) == pytest.approx(2.5 / 5)


# -- the quantiser (Eq. 13) ------------------------------------------------------------------
@pytest.mark.parametrize("bits", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("shift", [0.0, 0.7, -0.9])
def test_quantiser_error_is_at_most_half_a_step(bits, shift):
    g = torch.Generator().manual_seed(bits)
    tau = torch.randn(5000, generator=g) + shift  # asymmetric ranges too
    rng = signed_range(tau)
    book = Codebook.of(rng, bits)
    q = quantize(tau, bits, rng)
    codes = book.codes(tau)
    assert int(codes.min()) >= 0 and int(codes.max()) <= (1 << bits) - 1
    assert book.lo == pytest.approx(-rng.neg_max) and book.step == pytest.approx((rng.pos_max + rng.neg_max) / 2**bits)
    rounding = 4 * torch.finfo(torch.float32).eps * (rng.pos_max + rng.neg_max)  # float32 lo, step
    assert float((q - tau).abs().max()) <= book.step / 2 + rounding
    assert len(torch.unique(q)) <= 2**bits
    # the extremes land in the outer bins
    assert int(book.codes(torch.tensor([rng.pos_max]))) == (1 << bits) - 1
    assert int(book.codes(torch.tensor([-rng.neg_max]))) == 0


def test_quantiser_levels_by_hand():
    tau = torch.tensor([-1.0, -0.6, -0.1, 0.2, 0.9, 3.0])  # range [-1, 3], 2 bits: step 1
    book = Codebook.of(signed_range(tau), 2)
    assert (book.lo, book.step) == (-1.0, 1.0)
    assert book.codes(tau).tolist() == [0, 0, 0, 1, 1, 3]
    assert quantize(tau, 2).tolist() == [-0.5, -0.5, -0.5, 0.5, 0.5, 2.5]


def test_all_zero_tensor_quantises_to_zero():
    z = torch.zeros(7)
    assert torch.equal(quantize(z, 4), torch.zeros(7))


def test_codebook_validation():
    with pytest.raises(ValueError, match="bits"):
        Codebook(0, 0.0, 1.0)
    with pytest.raises(ValueError, match="step"):
        Codebook(2, 0.0, -1.0)


# -- BAS (Eq. 12, 14, 15) ----------------------------------------------------------------------
def test_mixture_of_one_hot_logits_is_that_width():
    tau = torch.randn(300, generator=torch.Generator().manual_seed(3))
    rng = signed_range(tau)
    stack = quantized_stack(tau, BIT_WIDTHS, rng)
    for i, b in enumerate(BIT_WIDTHS):
        w = torch.full((len(BIT_WIDTHS),), -1e4)
        w[i] = 0.0
        torch.testing.assert_close(mixed_quantize(stack, mixture(w, 1.0)), quantize(tau, b, rng))


def test_width_term_is_normalised_mean_width():
    probs = mixture(torch.zeros(5, 4), 1.0)
    assert float(width_term(probs, BIT_WIDTHS)) == pytest.approx(3.75 / 8)
    one_bit = mixture(torch.tensor([[50.0, 0, 0, 0]] * 3), 0.1)
    assert float(width_term(one_bit, BIT_WIDTHS)) == pytest.approx(1 / 8)


def test_final_widths_take_the_argmax_and_ties_the_narrowest():
    w = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.1, 2.0, 0.3, 0.0], [-1.0, -1.0, 5.0, 5.0]])
    assert final_widths(w, BIT_WIDTHS) == [1, 2, 4]


# -- the losses (Eq. 9-11) ---------------------------------------------------------------------
def test_kl_matches_the_formula():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randn(5, 3, generator=g, dtype=torch.float64)
    q, p = torch.softmax(t / 4, -1), torch.softmax(s / 4, -1)
    want = 16 / 5 * float((q * (q / p).log()).sum())
    assert float(kl_loss(s, t)) == pytest.approx(want, rel=1e-10)
    assert float(kl_loss(t, t)) == pytest.approx(0.0, abs=1e-12)


def test_mse_matches_the_formula():
    s, t = torch.tensor([[1.0, 2.0], [0.0, 0.0]]), torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    assert float(mse_loss(s, t)) == pytest.approx((5 + 25) / 2)


def test_cka_matches_the_gram_matrix_reference_and_its_invariances():
    g = torch.Generator().manual_seed(0)
    f, f_hat = torch.randn(9, 4, generator=g, dtype=torch.float64), torch.randn(9, 6, generator=g, dtype=torch.float64)
    h = torch.eye(9, dtype=torch.float64) - 1 / 9
    k, l = h @ f @ f.T @ h, h @ f_hat @ f_hat.T @ h  # centred Gram matrices: linear CKA = HSIC ratio
    want = 1 - float((k * l).sum() / (torch.linalg.norm(k) * torch.linalg.norm(l)))
    assert float(cka_loss(f_hat, f)) == pytest.approx(want, rel=1e-9)
    rot, _ = torch.linalg.qr(torch.randn(4, 4, generator=g, dtype=torch.float64))
    assert float(cka_loss(3.0 * f @ rot + 1.0, f)) == pytest.approx(0.0, abs=1e-12)
    assert float(cka_loss(torch.ones(9, 4), f)) == pytest.approx(1.0)  # constant output: no structure


def test_loss_registry():
    assert sorted(LOSSES) == ["cka", "kl", "mse"]
    assert (get_loss("kl").default_lambda, get_loss("mse").default_lambda, get_loss("cka").default_lambda) == (
        0.3,
        0.05,
        3.0,
    )
    with pytest.raises(ValueError, match="valid: cka, kl, mse"):
        get_loss("l1")


# -- schedules and configuration ---------------------------------------------------------------
def test_temperature_schedule():
    assert [temperature(s, 1.0) for s in (0, 9, 10, 19, 20, 499)] == pytest.approx([1.0, 1.0, 0.9, 0.9, 0.81, 0.9**49])
    assert temperature(25, 0.5, 0.5, 5) == pytest.approx(0.5**6)


@pytest.mark.parametrize(
    "kw, needle",
    [
        ({"mode": "lgs-only"}, "mode"),
        ({"loss": "l1"}, "valid"),
        ({"lam": -1.0}, "lambda"),
        ({"loss": "kl", "output": "features"}, "compares logits"),
        ({"steps": 0}, "steps"),
        ({"lr_lgs": 0.0}, "lr_lgs"),
        ({"decay": 1.5}, "decay"),
        ({"widths": (1, 1)}, "distinct"),
        ({"alpha": 1.0}, "alpha"),
    ],
)
def test_config_validation(kw, needle):
    with pytest.raises(ValueError, match=needle):
        FlexConfig(**kw)


def test_config_defaults_are_the_journals():
    c = FlexConfig()
    assert (
        c.steps,
        c.batch_size,
        c.lr_lgs,
        c.lr_bas,
        c.rho_init,
        c.omega_init,
        c.decay,
        c.decay_every,
        c.widths,
        c.kl_temperature,
    ) == (500, 32, 0.05, 0.1, 1.0, 1.0, 0.9, 10, (1, 2, 4, 8), 4.0)
    assert FlexConfig(loss="cka").output_kind == "features" and FlexConfig(loss="mse").lam_value == 0.05
    json.dumps(c.to_dict())


# -- gradients and the loop --------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["lgs+bas", "lgs", "bas"])
def test_gradients_reach_thresholds_scales_and_width_logits(toy, mode):
    adapter, base, tau, head, exemplars = toy
    config = FlexConfig(mode=mode, loss="mse", lam=1.0)
    modules = _modules(dict(tau.items()), config, "cpu")
    params = _Params(len(modules), config)
    with torch.no_grad():  # away from the symmetric start, so no gradient vanishes by symmetry
        params.w.normal_(generator=torch.Generator().manual_seed(0))
    deltas, sparsity, width = compressed_delta(modules, params, config, rho=0.5, omega=0.5)
    weights = {k: base[k] + d for k, d in deltas.items()}
    batch = adapter.preprocess(exemplars[:8])
    teacher = head(adapter.features(batch, {k: base[k] + tau[k] for k in tau}))
    folded = fold_batch_norm(adapter.module, weights)
    loss = sparsity + width + mse_loss(head(adapter.features_train(batch, folded)), teacher)
    loss.backward()
    learned = {"lgs+bas": ("s_pos", "s_neg", "kappa", "w"), "lgs": ("s_pos", "s_neg", "kappa"), "bas": ("w",)}[mode]
    for name in ("s_pos", "s_neg", "kappa", "w"):
        grad = getattr(params, name).grad
        if name in learned:
            assert grad is not None and torch.isfinite(grad).all(), name
            assert int((grad.reshape(len(modules), -1).abs().sum(1) > 0).sum()) == len(modules), name
        else:
            assert grad is None or not grad.any(), name


def test_folded_batch_norm_is_the_same_function_and_learns_the_statistics():
    bn = nn.BatchNorm2d(3).eval()
    with torch.no_grad():
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2)
        bn.weight.normal_()
        bn.bias.normal_()
    x = torch.randn(2, 3, 4, 4)
    mean = bn.running_mean.clone().requires_grad_(True)
    var = bn.running_var.clone().requires_grad_(True)
    state = {**bn.state_dict(), "running_mean": mean, "running_var": var}
    with pytest.raises(RuntimeError, match="not differentiable"):
        functional_call(bn, state, (x,)).sum().backward()
    original = torch.nn.functional.batch_norm
    folded = fold_batch_norm(bn, state)
    assert torch.nn.functional.batch_norm is original  # nothing global is touched
    assert not folded["running_mean"].requires_grad and set(folded) == set(state)
    out = functional_call(bn, folded, (x,))
    torch.testing.assert_close(out, bn(x), rtol=1e-5, atol=1e-6)
    out.sum().backward()
    assert mean.grad is not None and var.grad is not None and mean.grad.abs().sum() > 0
    plain = {k: v.detach() for k, v in state.items()}  # statistics without gradients: left as they are
    assert all(fold_batch_norm(bn, plain)[k] is plain[k] for k in plain)
    with pytest.raises(ValueError, match="affine"):
        fold_batch_norm(nn.BatchNorm1d(3, affine=False).eval(), {"running_mean": mean, "running_var": var})


def test_sparse_support_gives_the_same_result(toy, monkeypatch):
    """Working on the non-zero entries only (an embedding's untouched rows) changes nothing."""
    import tswitch.flex.train as train

    adapter, base, tau, head, exemplars = toy
    holey = {k: v * (torch.rand(v.shape, generator=torch.Generator().manual_seed(2)) < 0.3) for k, v in tau.items()}
    runs = {}
    for name, threshold in (("dense", 2.0), ("sparse", 0.0)):
        monkeypatch.setattr(train, "SPARSE_SUPPORT", threshold)
        modules = _modules(holey, quick(), "cpu")
        assert all((m.support is None) == (name == "dense") for m in modules)
        params = _Params(len(modules), quick())
        deltas, sparsity, width = compressed_delta(modules, params, quick(), rho=0.3, omega=0.7)
        runs[name] = (deltas, sparsity, width, train_flex(adapter, base, holey, head, exemplars, quick(), task="t"))
    (d1, s1, w1, r1), (d2, s2, w2, r2) = runs["dense"], runs["sparse"]
    for k in d1:
        torch.testing.assert_close(d1[k], d2[k])
    torch.testing.assert_close(s1, s2)
    torch.testing.assert_close(w1, w2)
    for a, b in zip(r1.tensors, r2.tensors):
        assert torch.equal(a.mask, b.mask) and a.bits == b.bits and a.scale == pytest.approx(b.scale, rel=1e-5)


def test_bas_ablation_works_on_the_pspar_mask_alone(toy):
    """The bas ablation's loop holds only the fixed P-Spar mask's entries, yet its tau~ is the
    full-tensor formula ``M_pspar ⊙ Q_M(tau)`` and its final masks are P-Spar's."""
    adapter, base, tau, head, exemplars = toy
    config = quick(mode="bas", alpha=0.6)
    modules = _modules(tau, config, "cpu")
    params = _Params(len(modules), config)
    with torch.no_grad():
        params.w.copy_(torch.randn(params.w.shape, generator=torch.Generator().manual_seed(3)))
    deltas, _, _ = compressed_delta(modules, params, config, rho=0.5, omega=0.7)
    probs = mixture(params.w, 0.7)
    for l, m in enumerate(modules):
        flat = tau[m.name].reshape(-1)
        mask = pspar_mask(flat, 0.6)
        assert m.tau.numel() == int(mask.sum()) < flat.numel()
        full = mask * mixed_quantize(quantized_stack(flat, config.widths, signed_range(flat)), probs[l])
        torch.testing.assert_close(deltas[m.name].reshape(-1), full)
    result = train_flex(adapter, base, tau, head, exemplars, config, task="t")
    for t in result.tensors:
        assert torch.equal(t.mask.reshape(-1), pspar_mask(tau[t.name].reshape(-1), 0.6))


def test_kappa_starts_at_identity_scale():
    assert float(torch.nn.functional.softplus(torch.tensor(KAPPA_IDENTITY))) == pytest.approx(1.0)


def test_training_records_the_schedules_and_is_deterministic(toy):
    adapter, base, tau, head, exemplars = toy
    config = quick(steps=25)
    steps = []
    a = train_flex(
        adapter,
        base,
        tau,
        head,
        exemplars,
        config,
        task="toy",
        progress=lambda s, stats: steps.append((s, stats["rho"], stats["omega"])),
    )
    assert [s for s, _, _ in steps] == list(range(25))
    assert all(r == pytest.approx(0.9 ** (s // 10)) and o == r for s, r, o in steps)
    assert [h["step"] for h in a.history] == [0, 10, 20, 24]
    b = train_flex(adapter, base, tau, head, exemplars, config, task="toy")
    for x, y in zip(a.tensors, b.tensors):
        assert torch.equal(x.mask, y.mask) and x.bits == y.bits and x.scale == y.scale, x.name
    c = train_flex(adapter, base, tau, head, exemplars, quick(steps=25, seed=1), task="toy")
    assert [h["loss"] for h in a.history] != [h["loss"] for h in c.history]  # the seed orders batches


def test_result_shapes_and_report(toy):
    adapter, base, tau, head, exemplars = toy
    res = train_flex(adapter, base, tau, head, exemplars, quick(), task="toy")
    assert [t.name for t in res.tensors] == list(tau.keys())
    for t in res.tensors:
        assert t.mask.dtype == torch.bool and tuple(t.mask.shape) == tuple(tau[t.name].shape)
        assert t.bits in BIT_WIDTHS and t.scale > 0 and len(t.probs) == 4
        assert not (t.mask & (tau[t.name] == 0)).any()
    assert 0 < res.density <= 1 and 1 <= res.mean_bits <= 8 and res.exemplars == 40
    rows = res.modules()
    assert len(rows) == len(res.tensors) and json.loads(json.dumps(rows)) == rows  # JSON-ready as it is


def test_lambda_trades_sparsity_for_fidelity(toy):
    """With no performance term only the regularisers act: the gate closes and widths shrink."""
    adapter, base, tau, head, exemplars = toy
    free = train_flex(adapter, base, tau, head, exemplars, quick(steps=60, lam=0.0), task="toy")
    held = train_flex(adapter, base, tau, head, exemplars, quick(steps=60, lam=50.0), task="toy")
    assert free.density < held.density
    assert free.mean_bits <= held.mean_bits
    assert free.history[-1]["sparsity"] < free.history[0]["sparsity"]


def test_bas_ablation_keeps_the_pspar_mask(toy):
    adapter, base, tau, head, exemplars = toy
    res = train_flex(adapter, base, tau, head, exemplars, quick(mode="bas", alpha=0.6), task="toy")
    for t in res.tensors:
        assert torch.equal(t.mask, pspar_mask(tau[t.name], 0.6)) and t.scale == 1.0 and t.thresholds is None


def test_cka_on_features_and_kl_on_logits_run(toy):
    adapter, base, tau, head, exemplars = toy
    for loss in ("cka", "kl"):
        res = train_flex(adapter, base, tau, head, exemplars, quick(loss=loss, steps=3), task="toy")
        assert all(math.isfinite(h["loss"]) for h in res.history)


def test_a_partial_task_vector_leaves_the_other_tensors_at_theta0(toy, monkeypatch):
    adapter, base, tau, head, exemplars = toy
    part = {k: v for k, v in tau.items() if k.startswith("0.")}
    seen = []
    forward = adapter.features_train

    def spy(batch, weights=None):  # every training forward: which weights did the model run with?
        seen.append({k: v.detach().clone() for k, v in (weights or {}).items()})
        return forward(batch, weights)

    monkeypatch.setattr(adapter, "features_train", spy)
    res = train_flex(adapter, base, part, head, exemplars, quick(steps=3), task="part")
    assert [t.name for t in res.tensors] == list(part)
    others = [k for k, v in base.items() if torch.is_floating_point(v) and k not in part]
    assert seen and others
    for weights in seen:
        for k in others:  # outside the partial task vector: exactly theta_0 at every step
            assert k not in weights or torch.equal(weights[k], base[k]), k
        assert any(not torch.equal(weights[k], base[k]) for k in part if k in weights)  # the part is switched


def test_training_rejects_bad_inputs(toy):
    adapter, base, tau, head, exemplars = toy
    with pytest.raises(ValueError, match="exemplar"):
        train_flex(adapter, base, tau, head, [], quick())
    with pytest.raises(ValueError, match="lacks tensors"):
        train_flex(adapter, base, {"nope": torch.zeros(2)}, head, exemplars, quick())


# -- storage (Eq. 16-17) -----------------------------------------------------------------------
def _eq17(n: int, density: float) -> int:
    """Journal Eq. 17, written out: the divisor of n (<= 256) closest to ln 2 / density."""
    divisors = [c for c in range(1, min(n, 256) + 1) if n % c == 0]
    if density == 0:
        return divisors[-1]
    return min(divisors, key=lambda c: (abs(math.log(2) / density - c), c))


def _eq16_bytes(n: int, nnz: int, b: int) -> int:
    """Journal Eq. 16 with the measured nnz for n (1 - alpha), rounded up to bytes."""
    c = _eq17(n, nnz / n)
    return math.ceil((35 + n // c + nnz * (math.ceil(math.log2(c)) + b + 1)) / 8)


@pytest.fixture(scope="module")
def flex_pack(toy, tmp_path_factory):
    adapter, base, tau, head, exemplars = toy
    res = train_flex(adapter, base, tau, head, exemplars, quick(steps=30, lam=5.0), task="toy")
    floating = {k: v for k, v in base.items() if torch.is_floating_point(v)}
    specs = tensor_specs(floating)
    encoded = encode_flex_task(res, tau, specs, layout="sass", labels=head.labels)  # Eq. 16 is pinned below
    path = str(tmp_path_factory.mktemp("flex") / "flex.tsw")
    create_pack(path, floating, [encoded])
    return res, encoded, path, floating


def test_auto_layout_stores_the_same_switches_in_fewer_bytes(flex_pack, toy, tmp_path):
    res, encoded, path, floating = flex_pack
    _, _, tau, head, _ = toy
    specs = tensor_specs(floating)
    auto = encode_flex_task(res, tau, specs, labels=head.labels)  # default: per tensor the smallest
    assert all(e in ("sass-q", "bitmap-q", "golomb-q") for e in auto.entry.encodings)
    assert auto.entry.total_bytes <= encoded.entry.total_bytes
    assert auto.entry.nnz == encoded.entry.nnz and auto.entry.tensor_bits == encoded.entry.tensor_bits
    out = str(tmp_path / "auto.tsw")
    create_pack(out, floating, [auto])
    want, got = SwitchPack(path).task_vector("toy"), SwitchPack(out).task_vector("toy")
    for name in want:
        assert torch.equal(want[name], got[name])


def test_sass_bytes_match_eq16(flex_pack):
    res, encoded, path, floating = flex_pack
    specs = tensor_specs(floating)
    entry = SwitchPack(path).task("toy")
    assert entry.encodings == ("sass-q",) * len(specs)
    for j, spec in enumerate(specs):
        t = res.tensors[j]
        assert entry.tensor_bits[j] == t.bits and entry.nnz[j] == t.nnz
        assert entry.nbytes[j] == _eq16_bytes(spec.numel, t.nnz, t.bits), spec.name
    side = storage_breakdown(entry, specs)
    assert (
        side["payload_bytes"]
        == side["eq16_bytes"]
        == sum(_eq16_bytes(s.numel, t.nnz, t.bits) for s, t in zip(specs, res.tensors))
    )
    assert side["total_bytes"] == side["payload_bytes"] + 12 * len(specs) == entry.total_bytes


def test_inspect_reports_eq16_with_each_tensors_learned_width(flex_pack):
    from tswitch.report import format_report, pack_report

    res, encoded, path, floating = flex_pack
    report = pack_report(SwitchPack(path))
    for spec, t in zip(report["tensors"], res.tensors):
        cell = spec["tasks"][0]
        assert cell["encoding"] == "sass-q" and cell["bits"] == t.bits
        assert cell["eq16_bytes"] == cell["bytes"] == _eq16_bytes(spec["numel"], t.nnz, t.bits)
    assert "sass-q" in format_report(report, tensors=True)


@pytest.mark.parametrize("n, alpha, bits", [(4096, 0.9, 1), (4096, 0.6, 4), (2**14, 0.97, 8), (3000, 0.8, 2)])
def test_measured_sass_size_tracks_eq16_expectation(n, alpha, bits):
    """Journal Fig. 7: Bernoulli masks of density 1 - alpha, the measured size against Eq. 16."""
    from tswitch.codec.sass import encode

    g = torch.Generator().manual_seed(n + bits)
    sizes = []
    for _ in range(10):
        mask = (torch.rand(n, generator=g) < 1 - alpha).numpy()
        codes = torch.randint(0, 2**bits, (int(mask.sum()),), generator=g).numpy()
        payload = encode(mask, codes, bits)
        assert len(payload) == _eq16_bytes(n, int(mask.sum()), bits)
        sizes.append(8 * len(payload))
    expected = eq16_bits(n, 1 - alpha, bits, _eq17(n, 1 - alpha))
    assert abs(np.mean(sizes) - expected) < 0.05 * expected + 16


def test_pack_round_trip_reconstructs_the_learned_vector(flex_pack, toy):
    res, encoded, path, floating = flex_pack
    _, base, tau, _, _ = toy
    pack = SwitchPack(path)
    pack.check_base(floating)
    items = pack.load_task("toy")
    dense = pack.task_vector("toy")
    for t in res.tensors:
        item = items[t.name]
        assert isinstance(item, QSwitch) and item.bits == t.bits
        assert torch.equal(item.mask, t.mask)
        want = torch.zeros_like(tau[t.name])
        want[t.mask] = (
            torch.tensor(t.scale, dtype=torch.float32) * quantize(tau[t.name], t.bits, signed_range(tau[t.name]))
        )[t.mask]
        torch.testing.assert_close(item.reconstruct(), want, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(dense[t.name], want, atol=1e-6, rtol=1e-6)


def test_engine_merges_quantised_switches(flex_pack, toy):
    res, encoded, path, floating = flex_pack
    adapter, base, tau, head, _ = toy
    switches = PackedSwitches.from_pack(SwitchPack(path))
    engine = DynamicMergeEngine(adapter, base, switches, {"toy": head}, cache_size=2)
    merged = engine.merged_weights([0.5])
    dense = SwitchPack(path).task_vector("toy")
    for name in dense:
        torch.testing.assert_close(merged[name], base[name] + 0.5 * dense[name], atol=1e-6, rtol=0)
    assert switches.nbytes() < switches.dense_nbytes()


def test_dense_pattern_tensors_are_stored_dense_and_not_learned(toy, tmp_path):
    """BatchNorm running statistics of a suite with ``dense_pattern`` (docs/FLEXSWITCH.md A17)."""
    adapter, base, tau, head, exemplars = toy
    pattern = r"\.running_(mean|var)$"
    learned = {k: v for k, v in tau.items() if "running" not in k}
    start = {**base, **{k: base[k] + v for k, v in tau.items() if k not in learned}}
    res = train_flex(adapter, start, learned, head, exemplars, quick(), task="bn")
    assert {t.name for t in res.tensors} == set(learned)
    floating = {k: v for k, v in base.items() if torch.is_floating_point(v)}
    specs = tensor_specs(floating)
    encoded = encode_flex_task(res, tau, specs, dense_pattern=pattern)
    entry = encoded.entry
    dense_j = [j for j, s in enumerate(specs) if "running" in s.name]
    assert dense_j and all(entry.encodings[j] == "dense-f16" for j in dense_j)
    assert all(entry.encodings[j].endswith("-q") for j in range(len(specs)) if j not in dense_j)
    switched = [j for j in range(len(specs)) if j not in dense_j]
    assert entry.density == pytest.approx(sum(entry.nnz[j] for j in switched) / sum(specs[j].numel for j in switched))
    path = str(tmp_path / "bn.tsw")
    create_pack(path, floating, [encoded])
    dense = SwitchPack(path).task_vector("bn")
    for j in dense_j:
        name = specs[j].name
        torch.testing.assert_close(dense[name], tau[name].half().float())
    side = storage_breakdown(SwitchPack(path).task("bn"), specs)
    assert side["dense_bytes"] == sum(2 * specs[j].numel for j in dense_j)
    with pytest.raises(ValueError, match="lacks tensor"):
        encode_flex_task(res, tau, specs)  # without the pattern the BN statistics have no switch


def test_lgs_only_is_stored_as_b_approx_of_the_lgs_vector(toy, tmp_path):
    adapter, base, tau, head, exemplars = toy
    res = train_flex(adapter, base, tau, head, exemplars, quick(mode="lgs"), task="lgs")
    floating = {k: v for k, v in base.items() if torch.is_floating_point(v)}
    encoded = encode_flex_task(res, tau, tensor_specs(floating))
    assert encoded.entry.tensor_bits is None and encoded.codebook is None
    assert set(encoded.entry.encodings) <= {"sass", "bitmap", "golomb"} and encoded.entry.bits == 1
    path = str(tmp_path / "lgs.tsw")
    create_pack(path, floating, [encoded])
    dense = SwitchPack(path).task_vector("lgs")
    for t in res.tensors:
        kept = tau[t.name][t.mask]
        knob = t.scale * float(torch.linalg.vector_norm(kept.double())) / math.sqrt(max(1, kept.numel()))
        want = torch.zeros_like(tau[t.name])
        want[t.mask] = knob * torch.sign(kept)
        torch.testing.assert_close(dense[t.name], want, atol=1e-6, rtol=1e-5)


def test_flex_and_tswitch_tasks_share_a_pack(flex_pack, toy, tmp_path):
    res, encoded, path, floating = flex_pack
    _, base, tau, _, _ = toy
    specs = tensor_specs(floating)
    mixed = str(tmp_path / "mixed.tsw")
    create_pack(mixed, floating, [encode_task("tswitch", tau, specs, alpha=0.7)])
    add_task(mixed, floating, encoded)
    pack = SwitchPack(mixed)
    assert pack.tasks == ["tswitch", "toy"] and pack.task("tswitch").tensor_bits is None
    torch.testing.assert_close(pack.task_vector("toy").vector, SwitchPack(path).task_vector("toy").vector)
    add_task(mixed, floating, encode_task("again", tau, specs, alpha=0.5))  # rewriting keeps the codebook
    torch.testing.assert_close(SwitchPack(mixed).task_vector("toy").vector, SwitchPack(path).task_vector("toy").vector)
    assert "tensor_bits" not in json.loads(pack.header.to_json())["tasks"][0]


def test_corrupt_codebook_is_refused(flex_pack, tmp_path):
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    _, _, path, _ = flex_pack
    with safe_open(path, framework="numpy") as f:
        meta = f.metadata()
    tensors = load_file(path)
    tensors["t0.codebook"] = tensors["t0.codebook"] * 2
    bad = str(tmp_path / "bad.tsw")
    save_file(tensors, bad, metadata=meta)
    with pytest.raises(PackError, match="checksum"):
        SwitchPack(bad).task_vector("toy")
    del tensors["t0.codebook"]
    save_file(tensors, bad, metadata=meta)
    with pytest.raises(PackError, match="corrupt"):
        SwitchPack(bad).load_task("toy")


def test_encode_rejects_mismatched_results(flex_pack, toy):
    res, _, _, floating = flex_pack
    _, _, tau, _, _ = toy
    with pytest.raises(ValueError, match="lacks tensor"):
        encode_flex_task(res, tau, tensor_specs({**floating, "extra.weight": torch.zeros(3)}))
    with pytest.raises(ValueError, match="layout"):
        encode_flex_task(res, tau, tensor_specs(floating), layout="dense-f16")


# -- the suite driver and the CLI verb ---------------------------------------------------------
def _suite_folder(tmp_path, spec):
    """The files of a built suite that locating its fine-tunes reads, written as the builder does."""
    r = spec.recipe
    manifest = {
        "name": spec.name,
        "format_version": 1,
        "modality": spec.modality,
        "adapter": {"name": spec.adapter, "args": dict(spec.adapter_args)},
        "tasks": [
            {"name": t.name, "labels": ["x", "y"], "loader": {"name": t.loader, "args": t.loader_args}}
            for t in spec.tasks
        ],
        "pack": "switches.tsw",
        "alpha": 0.7,
        "router": {"file": "router.safetensors", "k": 10},
        "recipe": {
            "probe": {
                "steps": r.probe_steps,
                "lr": r.probe_lr,
                "weight_decay": r.probe_weight_decay,
                "optimizer": "Adam, full batch",
            },
            "finetune": {
                "steps": r.steps,
                "batch_size": r.batch_size,
                "lr": r.lr,
                "weight_decay": r.weight_decay,
                "optimizer": "AdamW",
                "train_bn": r.train_bn,
                "head": "frozen linear probe",
                "seed": r.seed,
            },
        },
    }
    splits = {t.name: {"train": [f"{t.name}-{i}" for i in range(5)], "val": [], "test": []} for t in spec.tasks}
    # what a builder records (manifest version 2): each fine-tune's path under the cache, the exemplars' ids
    manifest["finetunes"] = {t.name: f"{spec.name}/{t.name}-0123.safetensors" for t in spec.tasks}
    manifest["exemplar_ids"] = {t.name: splits[t.name]["train"][:3] for t in spec.tasks}
    folder = tmp_path / spec.name
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))
    (folder / "splits.json").write_text(json.dumps(splits))
    return str(folder), splits


def test_locate_finetuned_reads_the_paths_the_builder_recorded(tmp_path, monkeypatch):
    from tswitch.suites.flex_run import FlexRunError, locate_finetuned
    from tswitch.suites.spec import get_suite_spec, smoke
    from tswitch.suites.suite import Suite

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    spec = smoke(get_suite_spec("text-minilm"))
    folder, _ = _suite_folder(tmp_path, spec)
    suite = Suite(folder)
    with pytest.raises(FlexRunError, match="no cached fine-tune for 2 task"):
        locate_finetuned(suite)
    want = {}
    for t in spec.tasks:
        want[t.name] = str(tmp_path / "cache" / "tswitch" / suite.manifest.finetunes[t.name])
        os.makedirs(os.path.dirname(want[t.name]), exist_ok=True)
        open(want[t.name], "wb").close()
    assert locate_finetuned(suite) == want
    manifest = json.loads(open(os.path.join(folder, "manifest.json")).read())
    del manifest["finetunes"]  # a suite built before 0.2.0
    with open(os.path.join(folder, "manifest.json"), "w") as f:
        json.dump(manifest, f)
    with pytest.raises(FlexRunError, match="does not record its fine-tunes"):
        locate_finetuned(Suite(folder))


def test_flex_cli_reports_missing_fine_tunes_in_one_line(tmp_path, monkeypatch, capsys):
    from tswitch.cli import main
    from tswitch.suites.spec import get_suite_spec, smoke

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder, _ = _suite_folder(tmp_path, smoke(get_suite_spec("text-minilm")))
    for argv, needle in (
        (["flex", "--suite", folder], "no cached fine-tune"),
        (["flex", "--suite", folder, "--task", "nope"], "unknown task"),
        (["flex", "--suite", folder, "--loss", "kl", "--mode", "x"], "invalid choice"),
        (["flex", "--suite", folder, "--steps", "0"], "steps must be >= 1"),
        (["flex", "--suite", folder, "--exemplars", "0"], "--exemplars"),
        (["flex", "--suite", str(tmp_path / "none")], "unknown suite"),
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert needle in err and err.count("\n") == 1, err
    assert not [f for f in os.listdir(folder) if f.startswith("flex-")]


def test_run_stem_names_the_ablations():
    from tswitch.suites.flex_run import run_stem

    assert run_stem(FlexConfig(loss="kl")) == "flex-kl"
    assert run_stem(FlexConfig(mode="lgs", loss="cka")) == "flex-lgs-cka"
    assert run_stem(FlexConfig(mode="bas", loss="mse", alpha=0.9)) == "flex-bas0.9-mse"
    assert run_stem(FlexConfig(loss="kl", lam=0.3)) == "flex-kl"  # the Tab. III value is the default
    assert run_stem(FlexConfig(loss="kl", lam=0.1)) == "flex-kl-lam0.1"
    assert run_stem(FlexConfig(mode="lgs", loss="cka", lam=1)) == "flex-lgs-cka-lam1"


def _run(loss, lam, nbytes, average, mode="lgs+bas"):
    return {"mode": mode, "loss": loss, "lambda": lam, "bytes": nbytes, "flexswitch": {"average": average}}


def test_choose_lambda_takes_the_fewest_bytes_within_tswitchs_interval():
    """A16: per loss the smallest run whose average reaches T-Switch's interval; across losses the
    smallest pick; a loss with nothing within keeps its most accurate run and is not chosen."""
    from tswitch.suites.flex_lambda import choose_lambda

    reference = {"per_task": {"a": 0.96, "b": 0.96}, "average": 0.96}
    n = {"a": 500, "b": 500}
    runs = {
        "flex-kl-lam0.1": _run("kl", 0.1, 100, 0.91),
        "flex-kl": _run("kl", 0.3, 200, 0.955),
        "flex-kl-lam0.9": _run("kl", 0.9, 400, 0.962),
        "flex-lgs-kl": _run("kl", 0.3, 50, 0.99, mode="lgs"),  # an ablation run never competes
        "flex-cka": _run("cka", 3, 300, 0.958),
        "flex-cka-lam30": _run("cka", 30, 900, 0.97),
        "flex-mse": _run("mse", 0.05, 10, 0.80),
        "flex-mse-lam0.5": _run("mse", 0.5, 20, 0.85),
    }
    choice = choose_lambda({"split": "val", "runs": runs}, reference, n)
    lo, hi = choice["reference"]["average_ci"]
    assert 0.945 < lo < 0.96 < hi < 0.975
    assert choice["losses"]["kl"]["run"] == "flex-kl"  # 0.955 is inside [lo, hi], and smaller than 0.9's
    assert choice["losses"]["cka"]["run"] == "flex-cka"
    assert choice["losses"]["mse"] == {
        "run": "flex-mse-lam0.5",
        "lambda": 0.5,
        "bytes": 20,
        "average": 0.85,
        "within": False,
    }
    assert choice["chosen"] == "flex-kl"  # mse's 20 B are outside the interval
    # nothing within: the most accurate run is chosen
    worse = {k: v for k, v in runs.items() if v["flexswitch"]["average"] < 0.93}
    assert choose_lambda({"split": "val", "runs": worse}, reference, n)["chosen"] == "flex-kl-lam0.1"
    assert choose_lambda({"split": "val", "runs": {}}, reference, n)["chosen"] is None


def test_ablation_loss_follows_the_runs_that_exist():
    from tswitch.suites.flex_results import ablation_loss

    def reports(*stems):
        return {s: {"config": {"loss": s.split("-")[-1].split("lam")[0]}} for s in stems}

    kl = ("flex-kl", "flex-lgs-kl", "flex-bas0.7-kl")
    assert ablation_loss(reports(*kl, "flex-cka"), "flex-cka") == "kl"  # cka has no ablation runs
    assert ablation_loss(reports(*kl, "flex-cka", "flex-lgs-cka"), "flex-cka") == "cka"
    assert ablation_loss(reports("flex-mse", "flex-lgs-mse", "flex-cka"), "flex-cka") == "mse"
    assert ablation_loss(reports("flex-cka"), "flex-cka") == "cka"
    assert ablation_loss({}, "flex-kl") == "kl"
