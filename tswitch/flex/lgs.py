"""LGS: learnable gated sparsification (journal §III-C2, Eq. 6-8).

Per module (one tensor ``tau`` of a task vector) two threshold logits ``s+``, ``s-`` and a scale
logit ``kappa`` are learned:

- Eq. 6, the thresholds stay inside each sign's magnitude range::

      t+ = v+min + phi(s+) · r+,   t- = v-min + phi(s-) · r-,   phi(x) = arctan(x) / pi + 0.5

- Eq. 7, the soft gate (temperature ``rho``) and the gated vector::

      M = sigmoid((tau - t+) / (rho r+)) + sigmoid((-t- - tau) / (rho r-)),   M~ = softplus(kappa) · M

- Eq. 8, the sparsity term ``sum_l ||M_l||_1 / sum_l n_l`` (:func:`sparsity_term`), added to
  ``lambda`` times a performance-preservation loss (:mod:`tswitch.flex.losses`);
- after training, the hard mask ``1(M > 0.5)`` (:func:`hard_mask`).

Choices where the text is silent (docs/FLEXSWITCH.md): zero entries belong to neither sign and
are never gated on (their ``M`` is 0, so they add nothing to the sparsity term); a sign with no
entry contributes no sigmoid; a sign whose entries all have one magnitude (``r = 0``: Eq. 7
divides 0 by 0) contributes exactly 1 on its entries — kept, like the largest entry of every
other sign, which ``t < v max`` always keeps.
Pure tensor math: the logits are 0-d tensors, gradients flow to them and to nothing else.
"""

from __future__ import annotations

import math

import torch

from ..core.quant import SignedRange

# softplus(KAPPA_IDENTITY) == 1: the gated vector starts at tau ⊙ M, the knob at "no rescaling"
KAPPA_IDENTITY = math.log(math.e - 1.0)


def phi(x: torch.Tensor) -> torch.Tensor:
    """``phi(x) = arctan(x) / pi + 0.5``, a smooth map of R onto (0, 1) (Eq. 6)."""
    return torch.atan(x) / math.pi + 0.5


def thresholds(s_pos: torch.Tensor, s_neg: torch.Tensor, rng: SignedRange) -> tuple[torch.Tensor, torch.Tensor]:
    """``(t+, t-)`` of Eq. 6 from the logits ``s+``, ``s-`` (0-d tensors)."""
    return rng.pos_min + phi(s_pos) * rng.pos_span, rng.neg_min + phi(s_neg) * rng.neg_span


def soft_gate(
    tau: torch.Tensor,
    s_pos: torch.Tensor,
    s_neg: torch.Tensor,
    rng: SignedRange,
    rho: float,
    nonzero: torch.Tensor | None = None,
) -> torch.Tensor:
    """The soft gate ``M`` of Eq. 7 (without the scale ``softplus(kappa)``), same shape as ``tau``.

    Args:
        tau: the module's task-vector tensor (a constant).
        s_pos, s_neg: threshold logits (0-d tensors; gradients flow to them).
        rng: ``tau``'s :class:`SignedRange`.
        rho: gate temperature in (0, 1].
        nonzero: ``tau != 0`` if already computed (saves a pass per step).
    """
    t_pos, t_neg = thresholds(s_pos, s_neg, rng)
    if rng.pos_count + rng.neg_count == 0:
        return torch.zeros_like(tau)
    gate = torch.zeros((), dtype=tau.dtype, device=tau.device)
    if rng.pos_count:
        gate = gate + (
            torch.sigmoid((tau - t_pos) / (rho * rng.pos_span)) if rng.pos_span > 0 else (tau > 0).to(tau.dtype)
        )
    if rng.neg_count:
        gate = gate + (
            torch.sigmoid((-t_neg - tau) / (rho * rng.neg_span)) if rng.neg_span > 0 else (tau < 0).to(tau.dtype)
        )
    if rng.pos_count + rng.neg_count == tau.numel():  # no zero entry: skip a pass over the tensor
        return gate
    if nonzero is None:
        nonzero = tau != 0
    return torch.where(nonzero, gate, torch.zeros((), dtype=tau.dtype, device=tau.device))


def hard_mask(
    tau: torch.Tensor, s_pos: torch.Tensor, s_neg: torch.Tensor, rng: SignedRange, rho: float
) -> torch.Tensor:
    """``M_hard = 1(M > 0.5)`` (after Eq. 11), a bool tensor of ``tau``'s shape."""
    with torch.no_grad():
        return soft_gate(tau, s_pos, s_neg, rng, rho) > 0.5


def gated(tau: torch.Tensor, gate: torch.Tensor, kappa: torch.Tensor) -> torch.Tensor:
    """``tau ⊙ M~ = softplus(kappa) · M ⊙ tau`` (the soft-sparsified vector of Eq. 9)."""
    return torch.nn.functional.softplus(kappa) * gate * tau


def sparsity_term(gate_l1: torch.Tensor, total_numel: int) -> torch.Tensor:
    """First term of Eq. 8: ``sum_l ||M_l||_1 / sum_l n_l``.

    Args:
        gate_l1: ``sum_l ||M_l||_1`` (a 0-d tensor; the gates are non-negative).
        total_numel: ``sum_l n_l``, every entry of every module, zeros included.
    """
    return gate_l1 / max(1, total_numel)
