"""Settings of a FlexSwitch run and the temperature schedule (journal §III-C2, §III-C5).

Defaults are the journal's; each attribute's docstring quotes the sentence it comes from.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from ..core.pspar import validate_alpha
from .bas import BIT_WIDTHS, validate_widths
from .losses import get_loss

MODES = ("lgs+bas", "lgs", "bas")


@dataclass(frozen=True)
class FlexConfig:
    """Settings of one FlexSwitch run; defaults are the journal's (§III-C2, §III-C5).

    Attributes:
        mode: ``"lgs+bas"`` (FlexSwitch, Eq. 14), ``"lgs"`` (Eq. 8, values binarised on storage)
            or ``"bas"`` (bit-widths only, on the P-Spar mask at ``alpha``).
        loss: performance-preservation loss, ``kl`` / ``mse`` / ``cka`` (Eq. 9-11).
        lam: its weight ``lambda``; ``None`` takes the loss's Tab. III value.
        output: ``"logits"`` or ``"features"``; ``None`` takes the loss's default.
        steps: optimisation steps ("optimization is performed for 500 iterations").
        batch_size: ``B`` ("The batch size B is set to 32").
        lr_lgs: Adam learning rate of the threshold and scale logits ("0.05").
        lr_bas: Adam learning rate of the bit-width logits ("0.1").
        rho_init, omega_init: gate and bit-width temperatures ("both initialized to 1.0").
        decay, decay_every: "decay exponentially by a factor of 0.9 every 10 optimization steps".
        widths: the bit-width set ``W`` ("{1, 2, 4, 8}").
        kl_temperature: ``T`` of Eq. 9 ("we set the temperature T = 4").
        threshold_logit_init: initial ``s+`` and ``s-`` (unspecified; 0 puts each threshold at the
            middle of its sign's magnitude range, ``phi(0) = 0.5``).
        alpha: P-Spar pruning rate of the ``bas`` ablation (Tab. XI uses 0.5 / 0.7 / 0.9).
        seed: batch order.
    """

    mode: str = "lgs+bas"
    loss: str = "kl"
    lam: float | None = None
    output: str | None = None
    steps: int = 500
    batch_size: int = 32
    lr_lgs: float = 0.05
    lr_bas: float = 0.1
    rho_init: float = 1.0
    omega_init: float = 1.0
    decay: float = 0.9
    decay_every: int = 10
    widths: tuple[int, ...] = BIT_WIDTHS
    kl_temperature: float = 4.0
    threshold_logit_init: float = 0.0
    alpha: float = 0.7
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        loss = get_loss(self.loss)
        if self.lam is not None and not (math.isfinite(self.lam) and self.lam >= 0):
            raise ValueError(f"lambda must be a finite number >= 0, got {self.lam}")
        if self.output is not None and self.output not in loss.outputs:
            raise ValueError(f"loss {self.loss!r} compares {' or '.join(loss.outputs)}, got output {self.output!r}")
        for name in ("steps", "batch_size", "decay_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr_lgs", "lr_bas", "kl_temperature"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("rho_init", "omega_init", "decay"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {getattr(self, name)}")
        object.__setattr__(self, "widths", validate_widths(self.widths))
        validate_alpha(self.alpha)

    @property
    def lam_value(self) -> float:
        return get_loss(self.loss).default_lambda if self.lam is None else float(self.lam)

    @property
    def output_kind(self) -> str:
        return self.output or get_loss(self.loss).output

    @property
    def learns_mask(self) -> bool:
        return self.mode in ("lgs+bas", "lgs")

    @property
    def learns_widths(self) -> bool:
        return self.mode in ("lgs+bas", "bas")

    def to_dict(self) -> dict:
        return {**asdict(self), "lam": self.lam_value, "output": self.output_kind, "widths": list(self.widths)}


def temperature(step: int, init: float, decay: float = 0.9, every: int = 10) -> float:
    """``init · decay ** floor(step / every)``: the schedule of ``rho`` and ``omega`` at ``step`` (0-based)."""
    return init * decay ** (step // every)
