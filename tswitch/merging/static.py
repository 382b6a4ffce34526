"""Static merging: one delta ``tau_m`` for all tasks, applied as ``theta_0 + tau_m``.

Like mergekit's generalized task arithmetic, the baselines are configurations of one function,
:func:`sparse_task_arithmetic`: sparsify each task vector -> (optionally) elect a sign per entry
and drop the entries that disagree -> weighted sum (or disjoint mean) -> times ``lam``.

=================  ===========  ===========  =============  ==========
method             sparsify     consensus    disjoint mean  lam
=================  ===========  ===========  =============  ==========
weight_average     -            -            -              1 / K
task_arithmetic    -            -            -              0.3
ties               magnitude    ties         yes            1.0
dare               random       -            -              0.3
dare_ties          random       ties         - (mergekit)   0.3
=================  ===========  ===========  =============  ==========

``density`` is always the fraction kept; DARE's ``drop`` and P-Spar's ``alpha`` are the fraction
dropped (each paper's own name) and are converted at the boundary.

Length: one module on purpose — TIES, DARE and the other baselines are configurations of one sparse
task-arithmetic merge (as in mergekit); apart, they would drift from the function they configure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..core.pspar import pulse_mask, validate_alpha
from ..core.task_vector import TaskVector, check_same_layout
from .registry import register

SPARSIFY = (None, "magnitude", "random")
CONSENSUS = (None, "ties")
SCOPES = ("tensor", "global")


# -- validation (shared with .dynamic) -------------------------------------------------------
def validate_task_vectors(task_vectors: Sequence[TaskVector]) -> list[TaskVector]:
    """At least one :class:`TaskVector`, all with the first one's names and shapes."""
    task_vectors = list(task_vectors)
    if not task_vectors:
        raise ValueError("need at least one task vector, got 0")
    for i, tv in enumerate(task_vectors):
        if not isinstance(tv, TaskVector):
            raise ValueError(f"task vector {i} must be a TaskVector, got {type(tv).__name__}")
        check_same_layout(task_vectors[0].vector, tv.vector, what=f"task vector {i}")
    return task_vectors


def validate_real(name: str, value: float) -> float:
    """A finite real number."""
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    return value


def _validate_density(density: float) -> float:
    density = float(density)
    if not (0.0 < density <= 1.0):  # also rejects NaN
        raise ValueError(f"density must be in (0, 1], got {density}")
    return density


def _validate_drop(drop: float) -> float:
    drop = float(drop)
    if not (0.0 <= drop < 1.0):
        raise ValueError(f"drop must be in [0, 1), got {drop}")
    return drop


def _choice(name: str, value, valid: tuple) -> None:
    if value not in valid:
        raise ValueError(f"{name} must be one of {valid}, got {value!r}")


# -- sparsifiers on stacked rows ---------------------------------------------------------------
def kept_by_magnitude(n: int, density: float) -> int:
    """Entries kept out of ``n``: ``ceil(density * n)`` (so >= 1 of a non-empty tensor)."""
    return math.ceil(round(density * n, 6))  # round: 0.7 * 10 is 7.000000000000001


def _magnitude_mask(rows: torch.Tensor, density: float) -> torch.Tensor:
    """Keep the top ``density`` fraction of each row by ``|value|``; ties: lower index first."""
    tasks, n = rows.shape  # (tasks, entries)
    k = kept_by_magnitude(n, density)
    order = torch.argsort(rows.abs(), dim=1, descending=True, stable=True)
    mask = torch.zeros_like(rows, dtype=torch.bool)
    mask.scatter_(1, order[:, :k], True)
    return mask


def _sparsify_magnitude(stacks: dict[str, torch.Tensor], density: float, scope: str) -> dict[str, torch.Tensor]:
    if scope == "tensor":
        return {k: s * _magnitude_mask(s.reshape(len(s), -1), density).view(s.shape) for k, s in stacks.items()}
    # "global": one top-k over each whole task vector, as the TIES paper writes it
    flat = torch.cat([s.reshape(len(s), -1) for s in stacks.values()], dim=1)  # (tasks, all)
    masks = _magnitude_mask(flat, density).split([s[0].numel() for s in stacks.values()], dim=1)
    return {k: s * m.view(s.shape) for (k, s), m in zip(stacks.items(), masks)}


def _sparsify_random(stacks: dict[str, torch.Tensor], density: float, seed: int) -> dict[str, torch.Tensor]:
    """DARE drop-and-rescale: keep with probability ``density``, divide by it.

    Draws ``torch.rand((tasks, *shape))`` on the CPU tensor by tensor, in key order, from one
    generator seeded with ``seed``: the result is a pure function of the inputs and ``seed``.
    """
    generator = torch.Generator().manual_seed(int(seed))
    out = {}
    for k, s in stacks.items():
        keep = torch.rand(s.shape, generator=generator) < density
        out[k] = s * keep.to(s.device) / density
    return out


# -- the general merge -------------------------------------------------------------------------
def sparse_task_arithmetic(
    task_vectors: Sequence[TaskVector],
    *,
    lam: float = 1.0,
    weights: Sequence[float] | None = None,
    sparsify: str | None = None,
    density: float = 1.0,
    scope: str = "tensor",
    seed: int = 0,
    consensus: str | None = None,
    disjoint_mean: bool = False,
) -> TaskVector:
    """Sparsify -> (sign consensus) -> weighted sum, times ``lam`` (mergekit-style).

    Args:
        task_vectors: K task vectors of one layout.
        lam: scaling coefficient of the merged vector.
        weights: per-task weights ``w_k`` (default all 1).
        sparsify: ``None``, ``"magnitude"`` (TIES trim: top ``density`` by ``|tau|``) or
            ``"random"`` (DARE: keep with probability ``density``, rescale by ``1/density``).
        density: fraction of entries kept by ``sparsify``, in (0, 1].
        scope: for ``"magnitude"``: ``"tensor"`` ranks within each tensor (mergekit),
            ``"global"`` over the whole task vector (TIES paper).
        seed: seed of the ``"random"`` sparsifier.
        consensus: ``None`` or ``"ties"``: elect ``sign(sum_k w_k tau_hat_k)`` per entry (TIES
            sign election, by total mass) and keep only the entries of that sign.
        disjoint_mean: divide each entry by the total weight of the tasks that kept it (TIES
            disjoint merge) instead of summing.

    Returns:
        The merged delta ``lam * sum_k w_k * keep_k ⊙ tau_hat_k`` (or its disjoint mean).
    """
    task_vectors = validate_task_vectors(task_vectors)
    lam = validate_real("lam", lam)
    density = _validate_density(density)
    _choice("sparsify", sparsify, SPARSIFY)
    _choice("scope", scope, SCOPES)
    _choice("consensus", consensus, CONSENSUS)
    weights = [1.0] * len(task_vectors) if weights is None else [validate_real("weight", w) for w in weights]
    if len(weights) != len(task_vectors):
        raise ValueError(f"got {len(weights)} weights for {len(task_vectors)} task vectors")

    stacks = {k: torch.stack([tv[k] for tv in task_vectors]) for k in task_vectors[0].keys()}
    if sparsify == "magnitude" and density < 1.0:
        stacks = _sparsify_magnitude(stacks, density, scope)
    elif sparsify == "random" and density < 1.0:
        stacks = _sparsify_random(stacks, density, seed)

    merged = {}
    for k, s in stacks.items():  # s: (tasks, *shape)
        w = torch.tensor(weights, dtype=s.dtype, device=s.device).view(-1, *([1] * (s.dim() - 1)))
        keep = s != 0
        if consensus == "ties":
            elected = torch.sign((w * s).sum(0))
            keep = keep & (torch.sign(s) == elected)
        total = (w * s * keep).sum(0)
        if disjoint_mean:
            mass = (w * keep).sum(0)  # total weight of the tasks that kept each entry
            total = total / torch.where(mass != 0, mass, torch.ones_like(mass))
        merged[k] = lam * total
    return TaskVector(merged)


# -- the registered baselines ------------------------------------------------------------------
@register(
    "weight_average",
    "2203.05482",
    "static",
    "Model soups: the mean of the task vectors, i.e. the average of the fine-tuned weights.",
)
def weight_average(task_vectors: Sequence[TaskVector]) -> TaskVector:
    """Uniform soup ``(1/K) sum_k tau_k``: the model soup written on task vectors."""
    task_vectors = validate_task_vectors(task_vectors)
    return sparse_task_arithmetic(task_vectors, lam=1.0 / len(task_vectors))


@register("task_arithmetic", "2212.04089", "static", "Task arithmetic: lam times the sum of the task vectors.")
def task_arithmetic(task_vectors: Sequence[TaskVector], *, lam: float = 0.3) -> TaskVector:
    """``lam * sum_k tau_k`` (``lam = 0.3``: T-Switch supplement Table 5)."""
    return sparse_task_arithmetic(task_vectors, lam=lam)


@register(
    "ties",
    "2306.01708",
    "static",
    "TIES: trim to top-density by magnitude, elect sign by mass, disjoint mean, times lam.",
)
def ties(
    task_vectors: Sequence[TaskVector], *, density: float = 0.2, lam: float = 1.0, scope: str = "tensor"
) -> TaskVector:
    """TIES-Merging (Trim, Elect sign, disjoint Merge; TIES Algorithm 1).

    ``density = 0.2`` is the paper's top-k = 20%. The trim ranks entries within each tensor
    (``scope="tensor"``, as mergekit does); the paper ranks over the whole flattened task vector,
    which is ``scope="global"``.
    """
    return sparse_task_arithmetic(
        task_vectors, lam=lam, sparsify="magnitude", density=density, scope=scope, consensus="ties", disjoint_mean=True
    )


@register(
    "dare",
    "2311.03099",
    "static",
    "DARE: drop each entry with probability drop, rescale by 1/(1-drop), then lam times the sum.",
)
def dare(
    task_vectors: Sequence[TaskVector],
    *,
    drop: float = 0.9,
    lam: float = 0.3,
    seed: int = 0,
    consensus: str | None = None,
) -> TaskVector:
    """DARE (Drop And REscale) followed by task arithmetic.

    Args:
        drop: drop rate ``p`` in [0, 1) (DARE's 0.9 default).
        lam: task-arithmetic coefficient.
        seed: seeds the ``torch.Generator`` of the drop masks (deterministic).
        consensus: ``"ties"`` adds TIES sign election (DARE-TIES). Like mergekit's ``dare_ties``
            the agreeing entries are summed, not averaged, and no magnitude trim follows.
    """
    drop = _validate_drop(drop)
    _choice("consensus", consensus, CONSENSUS)
    return sparse_task_arithmetic(
        task_vectors, lam=lam, sparsify="random", density=1.0 - drop, seed=seed, consensus=consensus
    )


@register(
    "dare_ties",
    "2311.03099",
    "static",
    "DARE-TIES: DARE drop-and-rescale, then TIES sign election, then lam times the sum.",
)
def dare_ties(task_vectors: Sequence[TaskVector], *, drop: float = 0.9, lam: float = 0.3, seed: int = 0) -> TaskVector:
    """:func:`dare` with ``consensus="ties"``."""
    return dare(task_vectors, drop=drop, lam=lam, seed=seed, consensus="ties")


# -- T-Switch Eq. 4 ----------------------------------------------------------------------------
def _norm(tv: TaskVector) -> float:
    return math.sqrt(sum(float(t.double().pow(2).sum()) for t in tv.vector.values()))


def norm_rescaled_average(
    task_vectors: Sequence[TaskVector], sparsified: Sequence[TaskVector], *, lam: float = 1.0
) -> TaskVector:
    """Norm-rescaled merge of sparsified task vectors (T-Switch Eq. 4).

    Our reading of Eq. 4 (the text is OCR'd):
    ``M(theta_0, {tau_hat_i}) = theta_0 + sum_i (sum_j ||tau_j||_2 / sum_j ||tau_hat_j||_2) · tau_hat_i``:
    every sparsified vector is scaled by one common factor that gives the sparsified set the
    total L2 length of the originals, which removes the length difference between P-Discard and
    DARE's rescaled random discard ("the discrepancy in merged vector lengths", §3.2). Norms are
    over whole task vectors. Eq. 4 carries no coefficient, hence ``lam = 1``; §3.4 calls this
    merge "directly averaged", and ``lam = 1/K`` gives the plain average of the rescaled vectors.

    Args:
        task_vectors: the original ``tau_i``.
        sparsified: the sparsified ``tau_hat_i``, same count and layout.
        lam: extra coefficient on the merged delta.

    Returns:
        The delta (zero when every ``tau_hat_i`` is zero).
    """
    task_vectors = validate_task_vectors(task_vectors)
    sparsified = validate_task_vectors(sparsified)
    lam = validate_real("lam", lam)
    if len(sparsified) != len(task_vectors):
        raise ValueError(f"got {len(sparsified)} sparsified vectors for {len(task_vectors)} task vectors")
    check_same_layout(task_vectors[0].vector, sparsified[0].vector, what="sparsified vectors")
    denominator = sum(_norm(tv) for tv in sparsified)
    factor = sum(_norm(tv) for tv in task_vectors) / denominator if denominator > 0 else 0.0
    return sparse_task_arithmetic(sparsified, lam=lam * factor)


@register(
    "pspar_merge",
    "2412.00054",
    "static",
    "T-Switch Eq. 4: P-Discard (or DARE-random) each task vector, rescale to the original norms, sum.",
)
def pspar_merge(
    task_vectors: Sequence[TaskVector], *, alpha: float = 0.5, mode: str = "low", seed: int = 0, lam: float = 1.0
) -> TaskVector:
    """P-Discard then :func:`norm_rescaled_average` (T-Switch Eq. 3-4, Table 1).

    Args:
        alpha: discard rate in [0, 1) (0.5 is T-Switch §4's setting for all methods).
        mode: ``"low"`` P-Discard (drop the smallest magnitudes per sign), ``"random"`` the
            DARE-Random row of Table 1, ``"high"`` drop the largest (Fig. 3's C2).
            DARE's ``1/(1-alpha)`` rescale is a common factor that Eq. 4 cancels, so it is omitted.
        seed: seeds the ``"random"`` masks (task by task, tensors in key order).
        lam: extra coefficient, see :func:`norm_rescaled_average`.
    """
    task_vectors = validate_task_vectors(task_vectors)
    alpha = validate_alpha(alpha)
    _choice("mode", mode, ("low", "high", "random"))
    generator = torch.Generator().manual_seed(int(seed))

    def discard(t: torch.Tensor) -> torch.Tensor:
        source = t.cpu() if mode == "random" else t  # the generator lives on the CPU
        return t * pulse_mask(source, alpha, mode, generator).to(t.device)

    sparsified = [tv.map(lambda _, t: discard(t)) for tv in task_vectors]
    return norm_rescaled_average(task_vectors, sparsified, lam=lam)
