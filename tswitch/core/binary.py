"""B-Approx / Bin-Discard: a task-vector tensor as three switches.

T-Switch paper §3.3-3.4, Eq. 5-7 (journal Eq. 3-4). A tensor ``tau`` becomes

- the activation switch ``mask = g_m(tau)`` (P-Spar, :mod:`tswitch.core.pspar`),
- the polarity switch ``sign = g_b(tau)`` (+1 where ``tau > 0``, -1 otherwise; only the kept
  entries' signs are ever stored),
- the switch knob ``scale = ||tau ⊙ mask||_2 / ||mask ⊙ sign||_2 = ||tau ⊙ mask||_2 / sqrt(nnz)``,

and is reconstructed as ``scale · mask ⊙ sign`` (Eq. 7 with the all-ones vector ``U``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .pspar import pspar_mask


@dataclass(frozen=True)
class TSwitch:
    """The three switches of one tensor (T-Switch Eq. 7).

    Attributes:
        mask: bool tensor of the original shape, True for kept (activated) entries.
        positive: bool tensor of the original shape; where ``mask`` is True, True means +1 and
            False means -1. Outside ``mask`` it is False and carries no information.
        scale: the switch knob (a non-negative float).
    """

    mask: torch.Tensor
    positive: torch.Tensor
    scale: float

    @property
    def shape(self) -> torch.Size:
        return self.mask.shape

    @property
    def nnz(self) -> int:
        return int(self.mask.sum())

    @property
    def density(self) -> float:
        """Fraction of entries kept (1 - alpha, measured)."""
        n = self.mask.numel()
        return self.nnz / n if n else 0.0

    def signed_mask(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``mask ⊙ sign`` as a tensor of -1, 0, +1."""
        one = torch.ones((), dtype=dtype)
        return torch.where(self.mask, torch.where(self.positive, one, -one), torch.zeros((), dtype=dtype))

    def reconstruct(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``scale · mask ⊙ sign`` (T-Switch Eq. 5/7)."""
        return self.scale * self.signed_mask(dtype)


def switch_scale(tau: torch.Tensor, mask: torch.Tensor) -> float:
    """Switch knob ``||tau ⊙ mask||_2 / ||mask ⊙ sign||_2`` (Eq. 5); 0 when nothing is kept."""
    kept = tau.detach().float().reshape(-1)[mask.reshape(-1)]
    return _scale_of_kept(kept)


def _scale_of_kept(kept: torch.Tensor) -> float:
    if kept.numel() == 0:
        return 0.0
    # float64: squares of large float32 values overflow and of subnormal ones underflow to 0
    scale = float(torch.linalg.vector_norm(kept, dtype=torch.float64)) / math.sqrt(kept.numel())
    if not math.isfinite(scale):
        raise ValueError("task vector holds NaN or infinite values")
    return scale


def b_approx_codes(tau: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor, float]:
    """B-Approx in the form a codec stores: ``(flat mask, polarity of kept entries, scale)``.

    The polarity vector has one bool per kept entry, in increasing position (True = +1).
    """
    flat = tau.detach().reshape(-1).float()
    mask = pspar_mask(flat, alpha)
    return mask, *_kept_polarity_and_scale(flat, mask)


def _kept_polarity_and_scale(flat: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, float]:
    if flat.device.type == "cpu":  # numpy's compress is ~5x faster than boolean indexing here
        kept = torch.from_numpy(np.compress(mask.numpy(), flat.numpy()))
    else:
        kept = flat[mask]
    return kept > 0, _scale_of_kept(kept)


def b_approx(tau: torch.Tensor, alpha: float) -> TSwitch:
    """B-Approx of one tensor: P-Spar mask, kept signs and the switch knob (Eq. 5-7).

    Args:
        tau: task-vector tensor.
        alpha: pruning rate in [0, 1).
    """
    mask, kept_positive, scale = b_approx_codes(tau, alpha)
    positive = torch.zeros_like(mask)
    positive[mask] = kept_positive
    return TSwitch(mask=mask.view(tau.shape), positive=positive.view(tau.shape), scale=scale)


def from_codes(shape: Sequence[int], mask: torch.Tensor, kept_positive: torch.Tensor, scale: float) -> TSwitch:
    """Rebuild a :class:`TSwitch` from a flat mask and the kept entries' polarity."""
    positive = torch.zeros_like(mask)
    positive[mask] = kept_positive
    return TSwitch(mask=mask.view(shape), positive=positive.view(shape), scale=float(scale))
