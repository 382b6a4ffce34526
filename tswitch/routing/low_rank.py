"""Auto-FlexSwitch's router: K-means centres per task and a learned low-rank metric (journal Eq. 18-19).

Auto-Switch (Eq. 5) votes with the ``C`` nearest of all ``K · N`` exemplar features. Auto-FlexSwitch
condenses each task's query set ``Q_k`` into ``E`` K-means centres ``A_k`` and measures distance in
a learned ``r``-dimensional projection (Eq. 18)::

    d_L(f, f') = ||L f - L f'||_2,   L in R^{r x e}

trained on the exemplars with the neighbour objective of Eq. 19::

    L_L = -1/(KN) sum_i log( sum_{z in N_i ∩ A_{k_i}} d_L(f_i, z)^-1  /  sum_{z in N_i} d_L(f_i, z)^-1 )

where ``N_i`` are the ``C`` centres nearest to exemplar ``i`` under the current ``L``. Routing is then
Eq. 5 over the centres: ``w_k(x) = |N_x ∩ A_k| / C`` (the same votes and tie rule as
:class:`tswitch.routing.KNNRouter`, which does the search in the projected space).

Choices the journal leaves open (docs/FLEXSWITCH.md, B1-B8): features are L2-normalised first
(``normalize``, as the cosine Auto-Switch router does); K-means is Lloyd's algorithm from a seeded
k-means++ start; ``L`` starts from the top-``r`` principal directions scaled to unit-RMS entries;
one epoch is one full-batch Adam step; ``N_i`` is recomputed every epoch and gradients flow
through the distances only; an exemplar with no same-task neighbour keeps a finite loss through
``eps = 1e-3 · sum_{z in N_i} d^-1`` added to the numerator (and ``1 + 1e-3`` to the denominator's
factor, so a perfect neighbourhood still scores 0).

Length: one module on purpose — K-means centres, the Eq. 19 projection fit and the router that uses
them are one algorithm (journal §III-C5) sharing shapes and settings.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch

from .files import load_router, save_router
from .knn import KNNRouter, RouteResult

ROUTER_FORMAT = "tswitch-lowrank-router"
ROUTER_VERSION = 1
_NUMERATOR_EPS = 1e-3  # relative to the denominator of Eq. 19 (see the module docstring)


@dataclass(frozen=True)
class AutoFlexConfig:
    """Settings of the low-rank metric; defaults are the journal's (§III-C5, §IV-B d).

    Attributes:
        centres: ``E``, K-means centres per task ("E = 20" in the ablation's fixed setting).
        rank: ``r``, rows of ``L`` ("r = 32"); capped at the feature dimension.
        k: ``C``, neighbours per query (the papers' 10).
        epochs: Adam epochs ("100 epochs").
        lr: Adam learning rate ("0.5").
        normalize: L2-normalise features before clustering and projecting.
        kmeans_iters: Lloyd iterations.
        seed: k-means++ start and the padding of ``L`` beyond the principal directions.
    """

    centres: int = 20
    rank: int = 32
    k: int = 10
    epochs: int = 100
    lr: float = 0.5
    normalize: bool = True
    kmeans_iters: int = 50
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("centres", "rank", "k", "kmeans_iters"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {self.epochs}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be > 0, got {self.lr}")


def kmeans(x: torch.Tensor, e: int, iters: int = 50, seed: int = 0) -> torch.Tensor:
    """``(min(e, N), D)`` K-means centres of ``x`` (N, D): k-means++ start, then Lloyd's iterations.

    With ``e >= N`` every point is its own centre. An emptied cluster keeps its previous centre.
    """
    x = x.detach().float()
    n = x.shape[0]
    if n == 0:
        raise ValueError("K-means needs at least one point")
    if e >= n:
        return x.clone()
    g = torch.Generator().manual_seed(seed)
    centres = x[torch.randint(n, (1,), generator=g)]
    d2 = torch.cdist(x, centres).pow(2).squeeze(1)  # (N,) squared distance to the nearest centre
    for _ in range(1, e):
        total = float(d2.sum())
        pick = torch.multinomial(d2 / total, 1, generator=g) if total > 0 else torch.randint(n, (1,), generator=g)
        centres = torch.cat([centres, x[pick]])
        d2 = torch.minimum(d2, torch.cdist(x, x[pick]).pow(2).squeeze(1))
    for _ in range(iters):
        assign = torch.cdist(x, centres).argmin(1)  # (N,)
        sums = torch.zeros_like(centres).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=e).to(x.dtype)
        new = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], centres)
        if torch.equal(new, centres):
            break
        centres = new
    return centres


def pca_projection(x: torch.Tensor, rank: int, seed: int = 0) -> torch.Tensor:
    """``(rank, D)``: the top principal directions of ``x``, scaled to unit-RMS entries.

    With fewer than ``rank`` directions of variance, the rest are seeded random directions
    orthogonal to them. The scale keeps Adam's fixed step (lr 0.5) a bounded relative change.
    """
    x = x.detach().double()
    d = x.shape[1]
    if rank > d:
        raise ValueError(f"rank must be <= the feature dimension {d}, got {rank}")
    centred = x - x.mean(0, keepdim=True)
    _, s, vh = torch.linalg.svd(centred, full_matrices=False)
    rows = vh[: min(rank, int((s > 1e-9 * max(float(s.max()), 1e-30)).sum()) if s.numel() else 0)]
    if rows.shape[0] < rank:
        g = torch.Generator().manual_seed(seed)
        extra = torch.randn(d, rank, generator=g, dtype=torch.float64)
        basis = torch.cat([rows.T, extra], dim=1)
        q, _ = torch.linalg.qr(basis)
        rows = q[:, :rank].T
    return (rows * math.sqrt(d)).float()


def neighbour_loss(
    projection: torch.Tensor,
    x: torch.Tensor,
    x_tasks: torch.Tensor,
    centres: torch.Tensor,
    centre_tasks: torch.Tensor,
    k: int,
) -> torch.Tensor:
    """Eq. 19 over queries ``x`` (Nq, D) with tasks ``x_tasks`` against ``centres`` (M, D).

    The neighbour sets are the ``k`` nearest centres under ``d_L`` (no gradient through the
    choice); gradients reach ``projection`` through the inverse distances.
    """
    px, pc = x @ projection.T, centres @ projection.T  # (Nq, r), (M, r)
    d2 = (px[:, None, :] - pc[None, :, :]).pow(2).sum(-1)  # (Nq, M)
    # a query sitting exactly on a centre has d = 0; a tiny floor keeps 1/d finite
    dist = (d2 + 1e-12 * d2.detach().mean().clamp_min(1e-30)).sqrt()
    with torch.no_grad():
        nearest = dist.topk(k, dim=1, largest=False).indices  # (Nq, C)
    inv = 1.0 / dist.gather(1, nearest)  # (Nq, C)
    same = (centre_tasks[nearest] == x_tasks[:, None]).to(inv.dtype)
    num, den = (inv * same).sum(1), inv.sum(1)
    # -log((num + eps den) / ((1 + eps) den)): 0 when every neighbour is right, log(1 + 1/eps) when
    # none is; eps · den carries no gradient, so a point with no right neighbour still pushes its
    # wrong ones away (through log den)
    ratio = torch.log(num + _NUMERATOR_EPS * den.detach()) - torch.log(den) - math.log1p(_NUMERATOR_EPS)
    return -ratio.mean()


def fit_projection(
    x: torch.Tensor,
    x_tasks: torch.Tensor,
    centres: torch.Tensor,
    centre_tasks: torch.Tensor,
    init: torch.Tensor,
    k: int,
    epochs: int = 100,
    lr: float = 0.5,
    progress: Callable[[int, float], None] | None = None,
) -> tuple[torch.Tensor, list[float]]:
    """Minimise Eq. 19 over ``L`` with Adam, one full-batch step per epoch.

    Returns:
        ``(L, losses)``: the final projection and the loss before each step and after the last.
    """
    projection = init.detach().clone().float().requires_grad_(True)
    opt = torch.optim.Adam([projection], lr=lr)
    x, centres = x.detach().float(), centres.detach().float()
    losses = []
    for epoch in range(epochs):
        loss = neighbour_loss(projection, x, x_tasks, centres, centre_tasks, k)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if progress is not None:
            progress(epoch, losses[-1])
    with torch.no_grad():
        losses.append(float(neighbour_loss(projection, x, x_tasks, centres, centre_tasks, k)))
    return projection.detach(), losses


class LowRankRouter:
    """Auto-FlexSwitch routing: k-NN over task centres in a learned low-rank space (Eq. 18, Eq. 5).

    Args:
        projection: ``L``, ``(r, D)``.
        centres: the centres already projected, ``(M, r)`` (``M = K · E`` or fewer).
        task_ids: ``(M,)`` task index of each centre.
        task_names: the ``K`` task names.
        k: neighbours ``C``.
        normalize: whether queries are L2-normalised before projecting (as the centres were).
    """

    def __init__(
        self,
        projection: torch.Tensor,
        centres: torch.Tensor,
        task_ids: torch.Tensor,
        task_names: Sequence[str],
        k: int = 10,
        normalize: bool = True,
    ):
        projection = torch.as_tensor(projection).detach().float().contiguous()
        if projection.dim() != 2 or projection.shape[0] == 0 or not torch.isfinite(projection).all():
            raise ValueError(f"projection must be a finite (r, D) tensor, got {tuple(projection.shape)}")
        centres = torch.as_tensor(centres).detach().float()
        if centres.dim() != 2 or centres.shape[1] != projection.shape[0]:
            raise ValueError(f"centres must be projected, (M, {projection.shape[0]}), got {tuple(centres.shape)}")
        self.projection = projection
        self.normalize = bool(normalize)
        self._knn = KNNRouter(centres, task_ids, task_names, k=k, metric="l2")

    # -- the KNNRouter surface AutoSwitch and the evaluators use ---------------------------------
    @property
    def task_names(self) -> tuple[str, ...]:
        return self._knn.task_names

    @property
    def k(self) -> int:
        return self._knn.k

    @property
    def centres(self) -> torch.Tensor:
        """``(M, r)`` projected centres."""
        return self._knn.features

    @property
    def task_ids(self) -> torch.Tensor:
        return self._knn.task_ids

    @property
    def num_exemplars(self) -> int:
        """Entries searched per query (the centres), named as on :class:`KNNRouter`."""
        return self._knn.num_exemplars

    @property
    def dim(self) -> int:
        """Input feature dimension ``D``."""
        return self.projection.shape[1]

    @property
    def rank(self) -> int:
        return self.projection.shape[0]

    @property
    def nbytes(self) -> int:
        """Stored float32 bytes: ``L`` and the projected centres (task ids are metadata)."""
        return 4 * (self.projection.numel() + self.centres.numel())

    def macs_per_query(self) -> int:
        """Multiply-adds to route one query: project (``r · D``), then ``M`` distances of ``r``.
        Auto-Switch's exact search over ``N`` exemplars costs ``N · D``."""
        return self.rank * self.dim + self.num_exemplars * self.rank

    def project(self, queries: torch.Tensor) -> torch.Tensor:
        """``L f`` of each query (normalised first when the router was fitted so)."""
        queries = torch.as_tensor(queries).detach().to("cpu", torch.float32)
        if queries.dim() != 2 or queries.shape[1] != self.dim:
            raise ValueError(f"queries must be (B, {self.dim}), got {tuple(queries.shape)}")
        if self.normalize:
            queries = torch.nn.functional.normalize(queries, dim=1)
        return queries @ self.projection.T

    def route(self, queries: torch.Tensor, k: int | None = None) -> RouteResult:
        """Route each query on its own: the ``C`` nearest centres under ``d_L`` vote (Eq. 18, Eq. 5).
        ``neighbours`` index the centres."""
        return self._knn.route(self.project(queries), k)

    # -- fitting -------------------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        features: torch.Tensor,
        task_ids: torch.Tensor,
        task_names: Sequence[str],
        config: AutoFlexConfig = AutoFlexConfig(),
        progress: Callable[[int, float], None] | None = None,
    ) -> tuple[LowRankRouter, dict]:
        """Cluster each task's exemplar features, learn ``L`` (Eq. 19), and build the router.

        Args:
            features: ``(N_total, D)`` exemplar features (the union of the query sets ``Q_k``).
            task_ids: ``(N_total,)`` their task indices.
            task_names: the ``K`` names.
            config: the settings.
            progress: called after each epoch as ``progress(epoch, loss)``.

        Returns:
            ``(router, report)``; the report holds the Eq. 19 loss per epoch and the settings.
        """
        x = torch.as_tensor(features).detach().float()
        ids = torch.as_tensor(task_ids).long()
        if x.dim() != 2 or ids.shape != (x.shape[0],):
            raise ValueError(f"features (N, D) and task_ids (N,) must match, got {tuple(x.shape)}, {tuple(ids.shape)}")
        names = tuple(task_names)
        present = sorted(set(ids.tolist()))
        if present != list(range(len(names))):
            raise ValueError(f"every task needs exemplars: task ids present {present}, tasks {list(names)}")
        if config.normalize:
            x = torch.nn.functional.normalize(x, dim=1)
        centres, centre_ids = [], []
        for t in range(len(names)):
            c = kmeans(x[ids == t], config.centres, config.kmeans_iters, config.seed + t)
            centres.append(c)
            centre_ids += [t] * c.shape[0]
        centres_t, centre_ids_t = torch.cat(centres), torch.tensor(centre_ids)
        rank = min(config.rank, x.shape[1])
        k = min(config.k, centres_t.shape[0])
        init = pca_projection(x, rank, config.seed)
        projection, losses = fit_projection(
            x, ids, centres_t, centre_ids_t, init, k, config.epochs, config.lr, progress
        )
        router = cls(projection, centres_t @ projection.T, centre_ids_t, names, k=k, normalize=config.normalize)
        report = {"config": asdict(config), "rank": rank, "k": k, "centres": int(centres_t.shape[0]), "loss": losses}
        return router, report

    # -- persistence ---------------------------------------------------------------------------
    def save(self, path: str) -> None:
        """Write ``L``, the projected centres and their tasks as one safetensors file (atomic; :mod:`.files`)."""
        tensors = {"projection": self.projection, "centres": self.centres, "task_ids": self.task_ids}
        settings = {"task_names": list(self.task_names), "k": self.k, "normalize": self.normalize}
        save_router(path, tensors, ROUTER_FORMAT, ROUTER_VERSION, settings)

    @classmethod
    def load(cls, path: str) -> LowRankRouter:
        """Read a router written by :meth:`save`.

        Raises:
            FileNotFoundError: no file at ``path``.
            ValueError: the file is not a valid low-rank router file (one line saying why).
        """
        return load_router(
            path,
            ROUTER_FORMAT,
            ROUTER_VERSION,
            ("projection", "centres", "task_ids"),
            lambda t, m: cls(
                t["projection"], t["centres"], t["task_ids"], m["task_names"], k=m["k"], normalize=m["normalize"]
            ),
            what="low-rank router",
        )

    def __repr__(self) -> str:
        return (
            f"LowRankRouter({self.num_exemplars} centres, rank {self.rank} of dim {self.dim}, "
            f"{len(self.task_names)} tasks, k={self.k})"
        )
