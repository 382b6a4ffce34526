"""BAS's asymmetric quantiser (journal Eq. 13) and the decoded form of a quantised switch.

For a task-vector tensor ``tau`` whose largest positive entry is ``v+max`` and whose most negative
entry is ``-v-max``, the ``b``-bit quantiser splits ``[-v-max, v+max]`` into ``2**b`` bins of width

    step = (v+max + v-max) / 2**b                                   (delta^l of Eq. 13)

and maps an entry to the centre of its bin:

    Q(tau; b)_j = -v-max + (I_j + 0.5) · step,
    I_j = clamp(floor((tau_j + v-max) / step), 0, 2**b - 1).

The journal prints ``I = Clamp(floor(.), 1, 2**b) - 1``, which sends the second bin to the first
bin's centre (error up to 1.5 steps); the clamp to ``[0, 2**b - 1]`` used here is the reading under
which ``Q`` is the mid-point quantiser its ``+ 0.5`` implies, with error at most ``step / 2``
(docs/FLEXSWITCH.md, A7). Pure tensor math: no I/O, nothing of tswitch imported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SignedRange:
    """Magnitude ranges of one tensor's positive and negative entries (journal Eq. 6).

    ``pos_min``/``pos_max`` are the smallest and largest ``tau_j`` over ``tau_j > 0``;
    ``neg_min``/``neg_max`` the smallest and largest ``|tau_j|`` over ``tau_j < 0``.
    A sign with no entry has ``count == 0`` and both bounds ``0.0``.
    """

    pos_min: float
    pos_max: float
    neg_min: float
    neg_max: float
    pos_count: int
    neg_count: int

    @property
    def pos_span(self) -> float:
        """``r+max = v+max - v+min`` (Eq. 6)."""
        return self.pos_max - self.pos_min

    @property
    def neg_span(self) -> float:
        """``r-max = v-max - v-min`` (Eq. 6)."""
        return self.neg_max - self.neg_min


def signed_range(tau: torch.Tensor) -> SignedRange:
    """The per-sign magnitude bounds of ``tau`` (zeros belong to neither sign)."""
    flat = tau.detach().reshape(-1).float()
    pos, neg = flat[flat > 0], -flat[flat < 0]
    return SignedRange(
        pos_min=float(pos.min()) if pos.numel() else 0.0,
        pos_max=float(pos.max()) if pos.numel() else 0.0,
        neg_min=float(neg.min()) if neg.numel() else 0.0,
        neg_max=float(neg.max()) if neg.numel() else 0.0,
        pos_count=int(pos.numel()),
        neg_count=int(neg.numel()),
    )


@dataclass(frozen=True)
class Codebook:
    """The ``2**bits`` levels ``lo + (i + 0.5) · step`` of one tensor's quantiser (Eq. 13).

    ``lo = -v-max`` and ``step`` are stored as float32 in a pack, so they are float32 values here
    too: the codes computed from them decode to exactly the levels training evaluated.
    """

    bits: int
    lo: float
    step: float

    def __post_init__(self) -> None:
        if not 1 <= self.bits <= 16:
            raise ValueError(f"bits must be in [1, 16], got {self.bits}")
        if not (math.isfinite(self.lo) and math.isfinite(self.step)) or self.step < 0:
            raise ValueError(f"codebook needs a finite lo and a step >= 0, got {self.lo}, {self.step}")

    @classmethod
    def of(cls, rng: SignedRange, bits: int) -> Codebook:
        """The Eq. 13 quantiser of a tensor with magnitude ranges ``rng`` at ``bits`` bits."""
        lo = _f32(-rng.neg_max)
        step = _f32((rng.pos_max + rng.neg_max) / (1 << bits))
        return cls(bits, lo, step)

    def codes(self, values: torch.Tensor) -> torch.Tensor:
        """Bin index ``I`` of every entry (int64), Eq. 13 with the clamp to ``[0, 2**b - 1]``."""
        values = values.float()
        if self.step == 0:  # an all-zero tensor: one level, at lo = 0
            return torch.zeros(values.shape, dtype=torch.int64, device=values.device)
        raw = torch.floor((values - self.lo) / self.step)
        return raw.clamp(0, (1 << self.bits) - 1).to(torch.int64)

    def levels(self, codes: torch.Tensor) -> torch.Tensor:
        """``lo + (I + 0.5) · step`` as float32."""
        lo = torch.tensor(self.lo, dtype=torch.float32, device=codes.device)
        step = torch.tensor(self.step, dtype=torch.float32, device=codes.device)
        return lo + (codes.to(torch.float32) + 0.5) * step


def _f32(x: float) -> float:
    return float(torch.tensor(x, dtype=torch.float32))


def quantize(tau: torch.Tensor, bits: int, rng: SignedRange | None = None) -> torch.Tensor:
    """``Q(tau; b)`` of journal Eq. 13: every entry replaced by its bin centre (float32).

    Args:
        tau: a task-vector tensor.
        bits: bit-width ``b``.
        rng: the tensor's :class:`SignedRange` (computed from ``tau`` when omitted).
    """
    book = Codebook.of(rng if rng is not None else signed_range(tau), bits)
    return book.levels(book.codes(tau.detach()))


@dataclass(frozen=True)
class QSwitch:
    """A decoded quantised switch: ``scale · (lo + (code + 0.5) · step)`` at kept entries.

    Attributes:
        mask: bool tensor of the tensor's shape, True where kept.
        codes: int64 bin index of each kept entry, in increasing position.
        codebook: the tensor's quantiser (Eq. 13).
        scale: the learned knob ``softplus(kappa)`` (journal Eq. 7/15).
    """

    mask: torch.Tensor
    codes: torch.Tensor
    codebook: Codebook
    scale: float

    @property
    def shape(self) -> torch.Size:
        return self.mask.shape

    @property
    def nnz(self) -> int:
        return int(self.codes.numel())

    @property
    def bits(self) -> int:
        return self.codebook.bits

    def kept_values(self) -> torch.Tensor:
        """The reconstructed value of every kept entry, float32, in increasing position."""
        return self.scale * self.codebook.levels(self.codes)

    def reconstruct(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``scale · M_hard ⊙ Q(tau; b)`` (the final task vector after journal Eq. 15)."""
        out = torch.zeros(self.mask.numel(), dtype=torch.float32)
        out[self.mask.reshape(-1)] = self.kept_values()
        return out.view(self.mask.shape).to(dtype)
