"""The FlexSwitch optimisation loop over one task (journal §III-C2-C3, Eq. 8 and Eq. 14).

For task ``k`` with task vector ``tau_k``, frozen head and exemplar inputs, every step

1. draws a batch of ``B`` exemplars (an epoch-wise permutation, like the fine-tuning recipe);
2. builds ``theta_0 + tau~_k`` functionally, module by module: ``tau~ = softplus(kappa) · M ⊙ Q_M(tau)``
   (``lgs+bas``, Eq. 14), ``softplus(kappa) · M ⊙ tau`` (``lgs``, Eq. 8) or ``M_pspar ⊙ Q_M(tau)``
   (``bas``: BAS on T-Switch's P-Spar mask, the ablation of Tab. XI);
3. runs ``adapter.features_train(batch, weights)`` — gradients reach the threshold logits, the
   scale logits and the bit-width logits through the weights — and the head for logits;
4. minimises ``sparsity (Eq. 8) + width (Eq. 14) + lambda · L^Per`` (Eq. 9-11) against the
   fine-tuned model's output on the same exemplars (computed once, before the loop);
5. decays ``rho`` and ``omega`` by 0.9 every 10 steps.

Afterwards each module gets its hard mask ``1(M > 0.5)`` at the last temperature, its width by
Eq. 15 and its scale ``softplus(kappa)``: a :class:`FlexResult`, which :mod:`tswitch.flex.storage`
writes into a ``.tsw`` pack.

Length: one module on purpose — the Eq. 8 / Eq. 14 loop with its setup and finalisation; the pieces
it combines (LGS, BAS, losses, quantiser) are already modules of their own.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..core.pspar import pspar_mask
from ..core.quant import SignedRange, signed_range
from .bas import final_widths, mixed_quantize, mixed_width, mixture, quantized_stack, width_term
from .config import MODES, FlexConfig, temperature
from .lgs import KAPPA_IDENTITY, hard_mask, soft_gate, sparsity_term, thresholds
from .losses import get_loss
from .result import FlexResult, FlexTensor

__all__ = [
    "MODES",
    "FlexConfig",
    "FlexResult",
    "FlexTensor",
    "temperature",
    "train_flex",
    "teacher_outputs",
    "compressed_delta",
    "fold_batch_norm",
]

# Work on the non-zero entries only when at least this fraction is zero (an embedding's untouched
# rows): the gate is 0 there by definition, so the result is the same, at a fraction of the cost.
SPARSE_SUPPORT = 0.25


@dataclass
class _Module:
    """Per-module constants of the loop.

    ``tau`` holds the entries the loop works on: every entry, or (``support`` set) only those at
    these flat positions (the non-zero ones; in the ``bas`` ablation, its P-Spar mask's); every other
    entry is zero and stays so.
    """

    name: str
    shape: tuple[int, ...]
    numel: int
    tau: torch.Tensor  # (n,) or (nnz,) float32
    support: torch.Tensor | None  # (nnz,) int64 flat positions of tau, or None for all
    rng: SignedRange
    stack: torch.Tensor | None  # (|W|, len(tau)) Q(tau; W_i), or None without BAS

    def scatter(self, values: torch.Tensor) -> torch.Tensor:
        """The full tensor with ``values`` on the worked entries, zeros elsewhere (differentiable)."""
        if self.support is None:
            return values.view(self.shape)
        return values.new_zeros(self.numel).index_copy(0, self.support, values).view(self.shape)


def _modules(tau: Mapping[str, torch.Tensor], config: FlexConfig, device) -> list[_Module]:
    out = []
    for name, t in tau.items():
        flat = t.detach().reshape(-1).to(device=device, dtype=torch.float32)
        rng = signed_range(flat)
        support = None
        if not config.learns_mask:
            # the bas ablation: an entry off the fixed P-Spar mask (which never keeps a zero) is zero
            # whatever the widths, so the loop works on the mask's entries alone (every worked entry
            # is kept): the same tau~, at 1 - alpha of the cost
            support = torch.nonzero(pspar_mask(flat.cpu(), config.alpha)).squeeze(1).to(device)
            flat = flat[support]
        elif flat.numel() and rng.pos_count + rng.neg_count <= (1 - SPARSE_SUPPORT) * flat.numel():
            support = torch.nonzero(flat).squeeze(1)
            flat = flat[support]
        stack = quantized_stack(flat, config.widths, rng) if config.learns_widths else None
        out.append(_Module(name, tuple(t.shape), t.numel(), flat, support, rng, stack))
    return out


class _Params(torch.nn.Module):
    """The learned logits of every module, one row per module."""

    def __init__(self, n_modules: int, config: FlexConfig):
        super().__init__()
        self.s_pos = torch.nn.Parameter(torch.full((n_modules,), config.threshold_logit_init))
        self.s_neg = torch.nn.Parameter(torch.full((n_modules,), config.threshold_logit_init))
        self.kappa = torch.nn.Parameter(torch.full((n_modules,), KAPPA_IDENTITY))
        # zeros: a uniform mixture over W at the start (the journal does not say)
        self.w = torch.nn.Parameter(torch.zeros(n_modules, len(config.widths)))

    def optimizer(self, config: FlexConfig) -> torch.optim.Adam:
        groups = []
        if config.learns_mask:
            groups.append({"params": [self.s_pos, self.s_neg, self.kappa], "lr": config.lr_lgs})
        if config.learns_widths:
            groups.append({"params": [self.w], "lr": config.lr_bas})
        return torch.optim.Adam(groups)


def compressed_delta(
    modules: Sequence[_Module], params: _Params, config: FlexConfig, rho: float, omega: float
) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """``tau~`` of every module and the two regularisers (Eq. 8's sparsity, Eq. 14's width).

    Returns:
        ``({name: tau~ (shape of the tensor)}, sparsity term, width term)``; a term that the
        mode does not use is a zero tensor.
    """
    deltas, gate_l1 = {}, torch.zeros(())
    probs = mixture(params.w, omega) if config.learns_widths else None  # (L, |W|)
    for l, m in enumerate(modules):
        if probs is not None:
            if m.stack is None:  # BAS: every module holds its quantised stack
                raise RuntimeError(f"{m.name}: learning widths needs the quantised stack")
            values = mixed_quantize(m.stack, probs[l])
        else:
            values = m.tau
        if config.learns_mask:
            gate = soft_gate(m.tau, params.s_pos[l], params.s_neg[l], m.rng, rho)
            gate_l1 = gate_l1 + gate.sum()
            delta = torch.nn.functional.softplus(params.kappa[l]) * gate * values
        else:  # no LGS: the bas ablation works on its fixed P-Spar mask's entries only
            delta = values
        deltas[m.name] = m.scatter(delta)
    total = sum(m.numel for m in modules)
    sparsity = sparsity_term(gate_l1, total) if config.learns_mask else torch.zeros(())
    width = width_term(probs, config.widths) if probs is not None else torch.zeros(())
    return deltas, sparsity, width


def fold_batch_norm(module: torch.nn.Module, weights: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``weights`` with every eval-mode BatchNorm whose running statistics need gradients folded into
    its affine parameters: ``a = weight / sqrt(running_var + eps)``, ``b = bias - running_mean · a``,
    with the statistics replaced by ``(0, 1 - eps)`` — the same function, ``x · a + b``.

    BatchNorm running statistics can be part of a task vector (suites that fine-tuned them), so LGS /
    BAS may gate them like any tensor; PyTorch's native kernel refuses gradients for them
    (``native_batch_norm`` "is not differentiable with respect to argument 'running_mean'"), while
    its weight and bias take them. Only this call's weights change: no module, no torch function.

    Raises:
        ValueError: such a BatchNorm has no affine parameters to fold into.
    """
    out = dict(weights)
    for name, m in module.named_modules():
        if not isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            continue
        prefix = f"{name}." if name else ""
        mean, var = out.get(prefix + "running_mean"), out.get(prefix + "running_var")
        if mean is None or var is None or not (mean.requires_grad or var.requires_grad):
            continue
        if not m.affine:
            raise ValueError(f"{name}: learning the running statistics of a BatchNorm needs affine parameters")
        weight = out.get(prefix + "weight", m.weight)
        bias = out.get(prefix + "bias", m.bias)
        scale = weight * torch.rsqrt(var + m.eps)
        out[prefix + "weight"] = scale
        out[prefix + "bias"] = bias - mean * scale
        out[prefix + "running_mean"] = torch.zeros_like(mean, requires_grad=False)
        out[prefix + "running_var"] = torch.full_like(var, 1.0 - m.eps, requires_grad=False)
    return out


def _outputs(adapter, head, batch, weights, kind: str, grad: bool) -> torch.Tensor:
    if grad:
        feats = adapter.features_train(batch, fold_batch_norm(adapter.module, weights))
    else:
        feats = adapter.features(batch, weights)
    return head(feats) if kind == "logits" else feats


def teacher_outputs(
    adapter,
    base: Mapping[str, torch.Tensor],
    tau: Mapping[str, torch.Tensor],
    head,
    exemplars: Sequence,
    kind: str,
    batch_size: int = 32,
) -> torch.Tensor:
    """The fine-tuned model's ``(N, C)`` logits or ``(N, D)`` features on the exemplars (no grad)."""
    finetuned = {
        **{k: v for k, v in base.items() if torch.is_floating_point(v)},
        **{k: base[k] + tau[k].to(base[k].dtype) for k in tau},
    }
    chunks = []
    with torch.no_grad():
        for start in range(0, len(exemplars), batch_size):
            batch = adapter.preprocess(list(exemplars[start : start + batch_size]))
            chunks.append(_outputs(adapter, head, batch, finetuned, kind, grad=False).float())
    return torch.cat(chunks)


def train_flex(
    adapter,
    base: Mapping[str, torch.Tensor],
    tau: Mapping[str, torch.Tensor],
    head,
    exemplars: Sequence,
    config: FlexConfig = FlexConfig(),
    task: str = "task",
    progress: Callable[[int, dict], None] | None = None,
    log_every: int = 10,
) -> FlexResult:
    """Learn one task's FlexSwitch (journal Eq. 6-15).

    Args:
        adapter: the backbone (:class:`tswitch.models.base.ModelAdapter` with ``features_train``).
        base: the pre-trained tensors ``theta_0`` (at least every tensor of ``tau``).
        tau: the full-precision task vector, ``{name: tensor}`` (a :class:`TaskVector` works).
        head: the task's frozen head (:class:`tswitch.models.base.Head`); needed for logits.
        exemplars: the task's exemplar inputs (raw: ``str`` or images), ``N`` of them.
        config: the run's settings.
        task: the task's name (recorded in the result).
        progress: called after every step as ``progress(step, stats)``.
        log_every: steps between entries of ``FlexResult.history``.

    Returns:
        The learned switches of every module of ``tau``.
    """
    if len(exemplars) == 0:
        raise ValueError("need at least one exemplar")
    tau = dict(tau.items())
    missing = sorted(set(tau) - set(base))
    if missing:
        raise ValueError(f"base model lacks tensors of the task vector: {missing[:5]}")
    loss = get_loss(config.loss)
    kind = config.output_kind
    device = adapter.device
    t0 = time.perf_counter()
    teacher = teacher_outputs(adapter, base, tau, head, exemplars, kind, config.batch_size)
    teacher_seconds = time.perf_counter() - t0

    modules = _modules(tau, config, device)
    params = _Params(len(modules), config).to(device)
    opt = params.optimizer(config)
    frozen = {m.name: base[m.name].detach().to(device=device, dtype=torch.float32) for m in modules}
    # floating tensors outside tau (a partial task vector) stay at theta_0
    untouched = {k: v for k, v in base.items() if torch.is_floating_point(v) and k not in tau}
    rng = np.random.default_rng(config.seed)
    batch_size = min(config.batch_size, len(exemplars))
    loss_fn = (lambda s, t: loss.fn(s, t, config.kl_temperature)) if config.loss == "kl" else loss.fn
    history: list[dict] = []
    t0 = time.perf_counter()
    _loop(
        adapter,
        head,
        exemplars,
        modules,
        params,
        opt,
        frozen,
        untouched,
        teacher,
        config,
        kind,
        loss_fn,
        rng,
        batch_size,
        history,
        progress,
        log_every,
    )
    seconds = time.perf_counter() - t0
    rho_end = temperature(config.steps - 1, config.rho_init, config.decay, config.decay_every)
    omega_end = temperature(config.steps - 1, config.omega_init, config.decay, config.decay_every)
    tensors = _finalise(modules, params, config, rho_end, omega_end)
    return FlexResult(task, config, tensors, history, seconds, teacher_seconds, len(exemplars))


def _loop(
    adapter,
    head,
    exemplars,
    modules,
    params,
    opt,
    frozen,
    untouched,
    teacher,
    config,
    kind,
    loss_fn,
    rng,
    batch_size,
    history,
    progress,
    log_every,
) -> None:
    """The optimisation steps of :func:`train_flex` (appends to ``history``)."""
    order, cursor = rng.permutation(len(exemplars)), 0
    for step in range(config.steps):
        if cursor + batch_size > len(order):
            order, cursor = rng.permutation(len(exemplars)), 0
        idx = order[cursor : cursor + batch_size]
        cursor += batch_size
        rho = temperature(step, config.rho_init, config.decay, config.decay_every)
        omega = temperature(step, config.omega_init, config.decay, config.decay_every)
        deltas, sparsity, width = compressed_delta(modules, params, config, rho, omega)
        weights = {**untouched, **{name: frozen[name] + d for name, d in deltas.items()}}
        batch = adapter.preprocess([exemplars[i] for i in idx])
        student = _outputs(adapter, head, batch, weights, kind, grad=True)
        per = loss_fn(student, teacher[torch.as_tensor(idx)].to(student.device))
        total = sparsity + width + config.lam_value * per
        opt.zero_grad()
        total.backward()
        opt.step()
        stats = {
            "step": step,
            "loss": float(total.detach()),
            "per": float(per.detach()),
            "sparsity": float(sparsity.detach()),
            "width": float(width.detach()),
            "rho": rho,
            "omega": omega,
        }
        if config.learns_widths:
            stats["mixed_bits"] = float(mixed_width(mixture(params.w.detach(), omega), config.widths).mean())
        if step % log_every == 0 or step == config.steps - 1:
            history.append(stats)
        if progress is not None:
            progress(step, stats)


def _finalise(
    modules: Sequence[_Module], params: _Params, config: FlexConfig, rho: float, omega: float
) -> list[FlexTensor]:
    """Hard masks at the last temperature (after Eq. 11), widths by Eq. 15, scales ``softplus(kappa)``."""
    widths = final_widths(params.w, config.widths) if config.learns_widths else [None] * len(modules)
    probs = mixture(params.w.detach(), omega) if config.learns_widths else None
    out = []
    with torch.no_grad():
        for l, m in enumerate(modules):
            if config.learns_mask:
                mask = hard_mask(m.tau, params.s_pos[l], params.s_neg[l], m.rng, rho)
                scale = float(torch.nn.functional.softplus(params.kappa[l]))
                t_pos, t_neg = thresholds(params.s_pos[l], params.s_neg[l], m.rng)
                thr = (float(t_pos), float(t_neg))
            else:  # no LGS: the bas ablation's fixed P-Spar mask, which its worked entries are
                mask, scale, thr = torch.ones(m.tau.shape, dtype=torch.bool, device=m.tau.device), 1.0, None
            mask = m.scatter(mask.to(torch.uint8)).bool()
            out.append(
                FlexTensor(
                    m.name,
                    m.shape,
                    mask.cpu(),
                    widths[l],
                    scale,
                    m.rng,
                    tuple(probs[l].tolist()) if probs is not None else (),
                    thr,
                )
            )
    return out
