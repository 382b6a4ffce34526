"""Dynamic merging: task-specific deltas picked per input.

EMR-Merging and TALL masks assume an oracle task id, as their papers do, and return one delta per
task (``theta_k = theta_0 + delta_k``). T-Switch takes per-input switch weights (one-hot for an
oracle, Auto-Switch's KNN weights otherwise) and returns the delta for those weights.

EMR and TALL also expose their stored components (:class:`EMRComponents`,
:class:`TallMaskComponents`) so that storage can be counted against T-Switch's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from ..core.binary import TSwitch
from ..core.task_vector import TaskVector, check_same_layout
from .registry import register
from .static import validate_real, validate_task_vectors

FLOAT_BITS = 32  # a float32 value, the storage unit every paper compares against


def _stack(task_vectors: list[TaskVector], name: str) -> torch.Tensor:
    return torch.stack([tv[name] for tv in task_vectors])  # (tasks, *shape)


# -- EMR-Merging -------------------------------------------------------------------------------
@dataclass(frozen=True)
class EMRComponents:
    """What EMR-Merging stores: ``tau_uni``, one bool mask and one rescaler per task.

    Attributes:
        unified: the elected unified task vector ``tau_uni``.
        masks: per task, ``{name: bool tensor}`` with ``M_k = (tau_k ⊙ tau_uni > 0)``.
        rescalers: per task, ``lambda_k = sum|tau_k| / sum|M_k ⊙ tau_uni|``.
    """

    unified: TaskVector
    masks: tuple[dict[str, torch.Tensor], ...]
    rescalers: tuple[float, ...]

    def task_vector(self, k: int) -> TaskVector:
        """``lambda_k · M_k ⊙ tau_uni``, task ``k``'s delta."""
        mask, rescaler = self.masks[k], self.rescalers[k]
        return self.unified.map(lambda name, t: rescaler * mask[name].to(t.dtype) * t)

    def task_vectors(self) -> list[TaskVector]:
        return [self.task_vector(k) for k in range(len(self.masks))]

    def storage_bits(self, value_bits: int = FLOAT_BITS) -> int:
        """``tau_uni`` in ``value_bits`` per entry, one bit per entry per mask, one float per task."""
        n, tasks = self.unified.numel, len(self.masks)
        return n * value_bits + tasks * n + tasks * FLOAT_BITS


def emr_components(task_vectors: Sequence[TaskVector]) -> EMRComponents:
    """Elect, Mask, Rescale (EMR-Merging, arXiv 2405.17461).

    - Elect: ``sign_uni = sign(sum_k tau_k)``; ``|tau_uni|`` is, per entry, the largest
      ``|tau_k|`` among the tasks whose sign agrees with ``sign_uni`` (0 where none does).
    - Mask: ``M_k = (tau_k ⊙ tau_uni > 0)``.
    - Rescale: ``lambda_k = sum|tau_k| / sum|M_k ⊙ tau_uni|``, sums over the whole task vector as
      in the paper (not per tensor); ``lambda_k = 0`` when ``M_k ⊙ tau_uni`` is all zero.
    """
    task_vectors = validate_task_vectors(task_vectors)
    tasks = len(task_vectors)
    unified: dict[str, torch.Tensor] = {}
    masks: list[dict[str, torch.Tensor]] = [{} for _ in range(tasks)]
    kept_abs = torch.zeros(tasks, dtype=torch.float64)  # sum|M_k ⊙ tau_uni| per task
    task_abs = torch.zeros(tasks, dtype=torch.float64)  # sum|tau_k| per task
    for name in task_vectors[0].keys():
        s = _stack(task_vectors, name)
        sign = torch.sign(s.sum(0))
        agree = s * sign > 0
        uni = sign * (s.abs() * agree).amax(0)
        unified[name] = uni
        m = s * uni > 0
        for k in range(tasks):
            masks[k][name] = m[k]
        kept_abs += (m * uni.abs()).reshape(tasks, -1).sum(1).double().cpu()
        task_abs += s.abs().reshape(tasks, -1).sum(1).double().cpu()
    rescalers = tuple(float(t / d) if d > 0 else 0.0 for t, d in zip(task_abs, kept_abs))
    return EMRComponents(TaskVector(unified), tuple(masks), rescalers)


@register(
    "emr_merging",
    "2405.17461",
    "dynamic",
    "EMR-Merging: elected unified vector, per-task sign masks and norm-preserving rescalers.",
)
def emr_merging(task_vectors: Sequence[TaskVector]) -> list[TaskVector]:
    """One delta per task, ``lambda_k · M_k ⊙ tau_uni`` (see :func:`emr_components`)."""
    return emr_components(task_vectors).task_vectors()


# -- TALL masks --------------------------------------------------------------------------------
@dataclass(frozen=True)
class TallMaskComponents:
    """What TALL masks store: the multi-task vector and one bool mask per task.

    Attributes:
        multi_task: ``tau_MTL = sum_k tau_k``.
        masks: per task, ``{name: bool tensor}``.
        coef: coefficient applied to ``mask_k ⊙ tau_MTL``.
    """

    multi_task: TaskVector
    masks: tuple[dict[str, torch.Tensor], ...]
    coef: float = 1.0

    def task_vector(self, k: int) -> TaskVector:
        """``coef · mask_k ⊙ tau_MTL``."""
        mask = self.masks[k]
        return self.multi_task.map(lambda name, t: self.coef * mask[name].to(t.dtype) * t)

    def task_vectors(self) -> list[TaskVector]:
        return [self.task_vector(k) for k in range(len(self.masks))]

    def storage_bits(self, value_bits: int = FLOAT_BITS) -> int:
        """``tau_MTL`` in ``value_bits`` per entry plus one bit per entry per mask."""
        n = self.multi_task.numel
        return n * value_bits + len(self.masks) * n


def tall_mask_components(
    task_vectors: Sequence[TaskVector], *, lam: float = 0.4, coef: float = 1.0
) -> TallMaskComponents:
    """TALL masks (Wang et al. 2024, "Localizing Task Information...", arXiv 2405.07813).

    ``tau_MTL = sum_k tau_k`` is the task-arithmetic multi-task vector without a coefficient (the
    authors' code builds the masks from this plain sum; the paper also allows a TIES-merged
    ``tau_MTL``, which a caller can pass through :func:`tall_masks_from`).
    ``mask_k = |tau_k| >= lam · |tau_MTL - tau_k|`` (the paper's inequality; the authors' code
    uses a strict ``>``, which differs only on ties).
    The paper picks ``lam`` per task from {0.2, ..., 0.6} on validation data; 0.4 is the middle.
    The task model is ``theta_0 + coef · mask_k ⊙ tau_MTL`` with ``coef = 1`` as in the code.
    """
    task_vectors = validate_task_vectors(task_vectors)
    multi_task = TaskVector({name: _stack(task_vectors, name).sum(0) for name in task_vectors[0].keys()})
    return tall_masks_from(task_vectors, multi_task, lam=lam, coef=coef)


def tall_masks_from(
    task_vectors: Sequence[TaskVector], multi_task: TaskVector, *, lam: float = 0.4, coef: float = 1.0
) -> TallMaskComponents:
    """TALL masks of ``task_vectors`` around a given multi-task vector ``tau_MTL``."""
    task_vectors = validate_task_vectors(task_vectors)
    check_same_layout(task_vectors[0].vector, multi_task.vector, what="multi-task vector")
    lam = validate_real("lam", lam)
    if lam < 0:
        raise ValueError(f"lam must be >= 0, got {lam}")
    coef = validate_real("coef", coef)
    masks = tuple(
        {name: tv[name].abs() >= lam * (mtl - tv[name]).abs() for name, mtl in multi_task.items()}
        for tv in task_vectors
    )
    return TallMaskComponents(multi_task, masks, coef)


@register(
    "tall_masks",
    "2405.07813",
    "dynamic",
    "TALL masks: per-task masks |tau_k| >= lam |tau_MTL - tau_k| applied to the task-arithmetic sum.",
)
def tall_masks(task_vectors: Sequence[TaskVector], *, lam: float = 0.4, coef: float = 1.0) -> list[TaskVector]:
    """One delta per task, ``coef · mask_k ⊙ tau_MTL`` (see :func:`tall_mask_components`)."""
    return tall_mask_components(task_vectors, lam=lam, coef=coef).task_vectors()


# -- T-Switch ----------------------------------------------------------------------------------
@register(
    "tswitch",
    "2412.00054",
    "dynamic",
    "T-Switch / Auto-Switch: sum_k w_k · scale_k · mask_k ⊙ sign_k for per-input weights w.",
)
def tswitch_merge(switches: Sequence[Mapping[str, TSwitch]], weights: Sequence[float]) -> TaskVector:
    """Weighted sum of binary task switches (T-Switch Eq. 7/8; journal Eq. 5).

    ``delta = sum_k w_k · beta_k · A_k ⊙ P_k`` per tensor. One-hot ``weights`` give T-Switch's
    single-task model (Eq. 7); Auto-Switch's ``w_k(x) = |Q_k ∩ N_x| / |N_x|`` give Eq. 8.

    Args:
        switches: per task, ``{name: TSwitch}``, all with the same names and shapes.
        weights: one finite weight per task (not required to sum to 1).

    Returns:
        A float32 :class:`TaskVector` on the masks' device.
    """
    switches = list(switches)
    if not switches:
        raise ValueError("need at least one task switch group, got 0")
    weights = [validate_real("weight", w) for w in weights]
    if len(weights) != len(switches):
        raise ValueError(f"got {len(weights)} weights for {len(switches)} task switch groups")
    reference = {name: sw.mask for name, sw in switches[0].items()}
    for k, group in enumerate(switches):
        check_same_layout(
            reference, {name: sw.mask for name, sw in group.items()}, what=f"task switch group {k}", only_floating=False
        )
    delta = {}
    for name in reference:
        total = torch.zeros(reference[name].shape, dtype=torch.float32, device=reference[name].device)
        for w, group in zip(weights, switches):
            if w != 0.0:  # Auto-Switch weights are mostly zero; skip those tasks' switches
                total += (w * group[name].scale) * group[name].signed_mask(torch.float32).to(total.device)
        delta[name] = total
    return TaskVector(delta)
