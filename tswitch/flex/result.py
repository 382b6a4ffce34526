"""What a FlexSwitch run learns: per-module hard masks, widths and scales (journal Eq. 15)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ..core.quant import Codebook, SignedRange
from .config import FlexConfig


@dataclass(frozen=True)
class FlexTensor:
    """One module's learned switch.

    Attributes:
        name, shape: the tensor.
        mask: bool, the hard mask ``1(M > 0.5)`` (or P-Spar's, in the ``bas`` ablation).
        bits: the Eq. 15 width, or ``None`` when widths were not learned (``lgs``: the kept values
            are stored as T-Switch polarity bits).
        scale: ``softplus(kappa)`` (1.0 when no scale was learned).
        range: the tensor's :class:`SignedRange` (the quantiser's ``v max``).
        probs: the final bit-width distribution ``softmax(w / omega)`` (empty without BAS).
        thresholds: ``(t+, t-)`` at the end (``None`` without LGS).
    """

    name: str
    shape: tuple[int, ...]
    mask: torch.Tensor
    bits: int | None
    scale: float
    range: SignedRange
    probs: tuple[float, ...] = ()
    thresholds: tuple[float, float] | None = None

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nnz(self) -> int:
        return int(self.mask.sum())

    @property
    def density(self) -> float:
        return self.nnz / self.numel if self.numel else 0.0

    @property
    def codebook(self) -> Codebook | None:
        return None if self.bits is None else Codebook.of(self.range, self.bits)


@dataclass
class FlexResult:
    """A task's learned switches and how the run went.

    Attributes:
        task: its name.
        config: the :class:`FlexConfig` used.
        tensors: one :class:`FlexTensor` per module, in the task vector's order.
        history: every ``log_every`` steps: step, loss terms, soft density, mixed width, temperatures.
        seconds: wall time of the loop; ``teacher_seconds``: of the fine-tuned targets before it.
    """

    task: str
    config: FlexConfig
    tensors: list[FlexTensor]
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    teacher_seconds: float = 0.0
    exemplars: int = 0

    @property
    def numel(self) -> int:
        return sum(t.numel for t in self.tensors)

    @property
    def density(self) -> float:
        """Kept entries / entries over every module."""
        return sum(t.nnz for t in self.tensors) / max(1, self.numel)

    @property
    def mean_bits(self) -> float | None:
        """Value bits per kept entry, averaged over kept entries (``None`` without BAS)."""
        kept = sum(t.nnz for t in self.tensors)
        if any(t.bits is None for t in self.tensors) or not kept:
            return None
        return sum(t.nnz * t.bits for t in self.tensors if t.bits is not None) / kept  # (all are, see above)

    @property
    def seconds_per_step(self) -> float:
        return self.seconds / max(1, self.config.steps)

    def modules(self) -> list[dict]:
        """JSON-ready per-module table: learned density, bit-width and scale."""
        return [
            {
                "name": t.name,
                "numel": t.numel,
                "density": t.density,
                "bits": t.bits,
                "scale": t.scale,
                "probs": list(t.probs),
                "thresholds": list(t.thresholds) if t.thresholds else None,
            }
            for t in self.tensors
        ]
