"""BAS: bit-width allocation search (journal §III-C3, Eq. 12, 14, 15).

Per module a logit vector ``w`` over the widths ``W = (1, 2, 4, 8)`` mixes the quantised tensors
(Eq. 12)::

    Q_M(tau) = sum_i softmax(w / omega)_i · Q(tau; W_i)

with temperature ``omega`` (:mod:`tswitch.flex.train` decays it). The joint objective (Eq. 14)
adds the mean mixed width, normalised by the largest width::

    sum_l wbar_l / (L · max W),   wbar_l = sum_i softmax(w_l / omega)_i · W_i

and after training each module keeps the width of its largest logit (Eq. 15). ``Q(tau; b)`` is
:func:`tswitch.core.quant.quantize`; it does not depend on any learned parameter, so the
quantised tensors are computed once (:func:`quantized_stack`) and gradients reach ``w`` through
the mixture weights alone — no straight-through estimator is needed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..core.quant import SignedRange, quantize

BIT_WIDTHS = (1, 2, 4, 8)  # W of journal §III-C3


def validate_widths(widths: Sequence[int]) -> tuple[int, ...]:
    widths = tuple(int(b) for b in widths)
    if not widths or any(not 1 <= b <= 16 for b in widths) or len(set(widths)) != len(widths):
        raise ValueError(f"bit widths must be distinct integers in [1, 16], got {list(widths)}")
    return widths


def mixture(w: torch.Tensor, omega: float) -> torch.Tensor:
    """``softmax(w / omega)`` over the last dimension: the bit-width distribution of Eq. 12."""
    return torch.softmax(w / omega, dim=-1)


def quantized_stack(tau: torch.Tensor, widths: Sequence[int], rng: SignedRange) -> torch.Tensor:
    """``(|W|, n)`` float32: ``Q(tau; W_i)`` of every width, flattened (Eq. 13)."""
    flat = tau.detach().reshape(-1)
    return torch.stack([quantize(flat, b, rng) for b in widths])


def mixed_quantize(stack: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """``Q_M(tau)`` of Eq. 12: ``probs @ stack``, ``(|W|,) @ (|W|, n) -> (n,)``."""
    return probs.to(stack.dtype) @ stack


def mixed_width(probs: torch.Tensor, widths: Sequence[int]) -> torch.Tensor:
    """``wbar = sum_i p_i W_i``, the expected width under the mixture (Eq. 14); ``(..., |W|) -> (...)``."""
    return probs @ torch.tensor(widths, dtype=probs.dtype, device=probs.device)


def width_term(probs: torch.Tensor, widths: Sequence[int]) -> torch.Tensor:
    """Second term of Eq. 14: ``sum_l wbar_l / (L · max W)`` for ``probs`` of shape ``(L, |W|)``."""
    return mixed_width(probs, widths).sum() / (probs.shape[0] * max(widths))


def final_widths(w: torch.Tensor, widths: Sequence[int]) -> list[int]:
    """Eq. 15: ``W_argmax(w_l)`` per module (``torch.argmax``: ties go to the first, narrowest width)."""
    return [int(widths[i]) for i in torch.argmax(w.detach(), dim=-1).tolist()]
