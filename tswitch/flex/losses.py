"""Performance-preservation losses ``L^Per`` of LGS / BAS (journal Eq. 9-11), as a registry.

Each compares the output of the model carrying the compressed task vector (``student``) with the
fine-tuned model's output on the same batch (``teacher``, a constant):

- ``kl``  (Eq. 9): ``T^2 / B · sum_i KL(softmax(teacher_i / T) || softmax(student_i / T))``, T = 4;
- ``mse`` (Eq. 10): ``1 / B · sum_i ||teacher_i - student_i||^2``;
- ``cka`` (Eq. 11): ``1 - ||F^T H F^||_F^2 / (||F^T H F||_F · ||F^^T H F^||_F)``, linear CKA with the
  centring matrix ``H = I - 11^T / B``.

``output`` says what a loss compares: the task head's logits (the journal's ``f``) or the
backbone's features. KL needs logits; MSE follows the journal (logits); CKA compares features by
default (a linear CKA over 2-5 logits measures little — docs/FLEXSWITCH.md, A9) and can be switched
to logits. ``default_lambda`` and ``lambda_grid`` are the journal's Tab. I / Tab. III settings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

KL_TEMPERATURE = 4.0  # "Following common practice [49], [50], we set the temperature T = 4"
_EPS = 1e-12


def kl_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float = KL_TEMPERATURE) -> torch.Tensor:
    """Eq. 9 for ``(B, C)`` logits: ``T^2 / B · sum_i sum_j q_ij log(q_ij / p_ij)``."""
    log_q = torch.log_softmax(teacher.detach() / temperature, dim=-1)
    log_p = torch.log_softmax(student / temperature, dim=-1)
    return temperature**2 * (log_q.exp() * (log_q - log_p)).sum(-1).mean()


def mse_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Eq. 10 for ``(B, C)`` outputs: ``1 / B · sum_i ||teacher_i - student_i||_2^2``."""
    return (teacher.detach() - student).pow(2).sum(-1).mean()


def cka_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Eq. 11 for ``(B, C)`` outputs: one minus the linear CKA of teacher and student.

    ``F^T H G = (HF)^T (HG)`` as ``H`` is symmetric and idempotent, so the outputs are centred
    over the batch once. A batch on which either output is constant has no structure to align;
    ``_EPS`` keeps the ratio finite there (the loss is then 1).
    """
    f = teacher.detach().double()
    g = student.double()
    f = f - f.mean(0, keepdim=True)
    g = g - g.mean(0, keepdim=True)
    cross = torch.linalg.matrix_norm(f.T @ g) ** 2
    norm = torch.linalg.matrix_norm(f.T @ f) * torch.linalg.matrix_norm(g.T @ g)
    return (1.0 - cross / (norm + _EPS)).to(student.dtype)


@dataclass(frozen=True)
class PerformanceLoss:
    """One ``L^Per`` of the journal.

    Attributes:
        name: registry key (``kl``, ``mse``, ``cka``).
        equation: where the journal defines it.
        fn: ``(student, teacher) -> 0-d loss`` (KL also takes its temperature).
        output: what it compares by default: ``"logits"`` or ``"features"``.
        outputs: the outputs it accepts.
        default_lambda: the journal's setting for ViT-B/32 (Tab. III).
        lambda_grid: the journal's Tab. I grid.
    """

    name: str
    equation: str
    fn: Callable[..., torch.Tensor]
    output: str
    outputs: tuple[str, ...]
    default_lambda: float
    lambda_grid: tuple[float, ...]


LOSSES: dict[str, PerformanceLoss] = {
    "kl": PerformanceLoss("kl", "Eq. 9", kl_loss, "logits", ("logits",), 0.3, (0.1, 0.3, 0.5, 0.7, 0.9)),
    "mse": PerformanceLoss(
        "mse", "Eq. 10", mse_loss, "logits", ("logits", "features"), 0.05, (0.01, 0.05, 0.09, 0.13, 0.17)
    ),
    "cka": PerformanceLoss(
        "cka", "Eq. 11", cka_loss, "features", ("features", "logits"), 3.0, (1.0, 3.0, 5.0, 7.0, 9.0)
    ),
}


def get_loss(name: str) -> PerformanceLoss:
    """Look a loss up by name; unknown names list the valid ones."""
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown performance loss {name!r}; valid: {', '.join(sorted(LOSSES))}") from None
