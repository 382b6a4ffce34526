"""Auto-Switch's router: k-nearest exemplars vote for the task switches (T-Switch §3.4, Eq. 8).

Every task ``k`` contributes a query set ``Q_k`` of exemplar features (no labels needed). For an
input ``x`` the ``C`` nearest exemplars ``N_x`` give the switch weights
``w_k(x) = |N_x ∩ Q_k| / C`` (T-Switch Eq. 8; journal Eq. 5), which the dynamic-merge engine
turns into ``theta(x) = theta_0 + sum_k w_k(x) · scale_k · mask_k ⊙ sign_k``.

Routing is per sample: the official release averages the votes over a whole batch, which sends
every sample of a mixed batch to the same blend of tasks.

The search is exact (faiss flat indexes): ``"cosine"`` is inner product on L2-normalised vectors,
``"l2"`` Euclidean distance.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ..extras import install_hint
from .files import load_router, save_router

ROUTER_FORMAT = "tswitch-knn-router"
ROUTER_VERSION = 1


@dataclass(frozen=True)
class Metric:
    """One distance: the faiss index class, whether vectors are L2-normalised first, and how a
    faiss score becomes a distance (smaller is nearer)."""

    index: str
    normalize: bool
    to_distance: Callable[[torch.Tensor], torch.Tensor]


# faiss's IndexFlatL2 returns squared distances; the router reports plain L2 distances.
METRICS: dict[str, Metric] = {
    "cosine": Metric("IndexFlatIP", True, lambda sim: (1.0 - sim).clamp_min(0.0)),
    "l2": Metric("IndexFlatL2", False, lambda sq: sq.clamp_min(0.0).sqrt()),
}


def _faiss():
    try:
        import faiss
    except ImportError:
        raise ImportError(f"the KNN router needs faiss: {install_hint('faiss')}") from None
    return faiss


def _metric(name: str) -> Metric:
    try:
        return METRICS[name]
    except KeyError:
        raise ValueError(f"unknown metric {name!r}; valid: {', '.join(sorted(METRICS))}") from None


@dataclass(frozen=True)
class RouteResult:
    """Where a batch of queries was routed; row ``b`` is sample ``b``.

    Attributes:
        neighbours: ``(B, C)`` exemplar indices, nearest first (ties by exemplar index).
        distances: ``(B, C)`` cosine distance ``1 - similarity`` or L2 distance.
        neighbour_tasks: ``(B, C)`` task index of each neighbour.
        votes: ``(B, K)`` neighbours per task, ``|N_x ∩ Q_k|``.
        weights: ``(B, K)`` switch weights ``w_k(x) = |N_x ∩ Q_k| / C`` (Eq. 8).
        routed_task: ``(B,)`` the task of largest weight; among tied tasks, the one holding the
            nearest neighbour.
        task_names: the ``K`` task names, in column order.
    """

    neighbours: torch.Tensor
    distances: torch.Tensor
    neighbour_tasks: torch.Tensor
    votes: torch.Tensor
    weights: torch.Tensor
    routed_task: torch.Tensor
    task_names: tuple[str, ...]


class KNNRouter:
    """Exact k-NN over exemplar features, one vote per neighbour (Auto-Switch).

    Args:
        features: ``(N, D)`` exemplar features (the union of the query sets ``Q_k``).
        task_ids: ``(N,)`` task index of each exemplar, in ``[0, K)``.
        task_names: the ``K`` task names.
        k: neighbours ``C`` per query (the papers' setting is small, e.g. 10).
        metric: ``"cosine"`` or ``"l2"``.
    """

    def __init__(
        self,
        features: torch.Tensor,
        task_ids: torch.Tensor,
        task_names: Sequence[str],
        k: int = 10,
        metric: str = "cosine",
    ):
        self._metric = _metric(metric)
        self.metric = metric
        features = torch.as_tensor(features)
        if features.dim() != 2 or not torch.is_floating_point(features):
            raise ValueError(f"features must be a float (N, D) tensor, got {features.dtype} {tuple(features.shape)}")
        if features.shape[0] == 0 or features.shape[1] == 0:
            raise ValueError(f"need at least one exemplar of at least one dimension, got {tuple(features.shape)}")
        features = features.detach().to("cpu", torch.float32).contiguous()
        if not torch.isfinite(features).all():
            raise ValueError("exemplar features hold NaN or infinite values")
        task_ids = torch.as_tensor(task_ids)
        if task_ids.shape != (features.shape[0],) or task_ids.dtype != torch.long:
            raise ValueError(
                f"task_ids must be a long ({features.shape[0]},) tensor, got {task_ids.dtype} {tuple(task_ids.shape)}"
            )
        names = tuple(task_names)
        if not names or any(not isinstance(n, str) or not n for n in names) or len(set(names)) != len(names):
            raise ValueError(f"task_names must be distinct non-empty strings, got {list(names)}")
        if int(task_ids.min()) < 0 or int(task_ids.max()) >= len(names):
            raise ValueError(
                f"task_ids must lie in [0, {len(names)}), got [{int(task_ids.min())}, {int(task_ids.max())}]"
            )
        self.features = features  # (N, D), as given: save() writes these, not the normalised copy
        self.task_ids = task_ids.detach().cpu().contiguous()
        self.task_names = names
        self.k = self._check_k(k)
        self._index = self._build_index()

    # -- index -------------------------------------------------------------------------------
    def _prepare(self, x: torch.Tensor):
        x = x.detach().to("cpu", torch.float32).contiguous()
        if self._metric.normalize:
            x = torch.nn.functional.normalize(x, dim=1)
        return x.numpy()

    def _build_index(self):
        faiss = _faiss()
        index = getattr(faiss, self._metric.index)(self.dim)
        index.add(self._prepare(self.features))
        return index

    @property
    def num_exemplars(self) -> int:
        return self.features.shape[0]

    @property
    def dim(self) -> int:
        return self.features.shape[1]

    def _check_k(self, k) -> int:
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= self.num_exemplars:
            raise ValueError(f"k must be an int in [1, {self.num_exemplars}] (the number of exemplars), got {k!r}")
        return k

    # -- routing -----------------------------------------------------------------------------
    def route(self, queries: torch.Tensor, k: int | None = None) -> RouteResult:
        """Route each query on its own (T-Switch Eq. 8).

        Args:
            queries: ``(B, D)`` features of the inputs, same space as the exemplars.
            k: neighbours ``C``; defaults to the router's ``k``.
        """
        c = self.k if k is None else self._check_k(k)
        queries = torch.as_tensor(queries)
        if queries.dim() != 2 or queries.shape[1] != self.dim:
            raise ValueError(f"queries must be (B, {self.dim}), got {tuple(queries.shape)}")
        if not torch.isfinite(queries).all():
            raise ValueError("queries hold NaN or infinite values")
        b = queries.shape[0]
        if b == 0:
            scores = torch.zeros(0, c)
            neighbours = torch.zeros(0, c, dtype=torch.long)
        else:
            raw_scores, raw_ids = self._index.search(self._prepare(queries), c)
            scores, neighbours = torch.from_numpy(raw_scores), torch.from_numpy(raw_ids).long()
        distances = self._metric.to_distance(scores)
        # faiss leaves the order of equal distances open; fix it (nearest, then lowest index)
        by_index = neighbours.argsort(dim=1, stable=True)
        distances, neighbours = distances.gather(1, by_index), neighbours.gather(1, by_index)
        by_distance = distances.argsort(dim=1, stable=True)
        distances, neighbours = distances.gather(1, by_distance), neighbours.gather(1, by_distance)
        return self._vote(neighbours, distances)

    def _vote(self, neighbours: torch.Tensor, distances: torch.Tensor) -> RouteResult:
        b, c = neighbours.shape
        tasks = self.task_ids[neighbours]  # (B, C)
        votes = torch.zeros(b, len(self.task_names), dtype=torch.long)
        votes.scatter_add_(1, tasks, torch.ones_like(tasks))  # (B, K)
        weights = votes.to(torch.float32) / c
        # ties: the first neighbour (nearest) whose task has the top vote count
        top = votes.gather(1, tasks) == votes.amax(1, keepdim=True)  # (B, C)
        first = top.to(torch.uint8).argmax(1, keepdim=True) if b else torch.zeros(0, 1, dtype=torch.long)
        routed = tasks.gather(1, first).squeeze(1)
        return RouteResult(neighbours, distances, tasks, votes, weights, routed, self.task_names)

    # -- persistence -------------------------------------------------------------------------
    def save(self, path: str) -> None:
        """Write the exemplars and settings as one safetensors file (atomic; :mod:`.files`)."""
        settings = {"task_names": list(self.task_names), "k": self.k, "metric": self.metric}
        save_router(
            path, {"features": self.features, "task_ids": self.task_ids}, ROUTER_FORMAT, ROUTER_VERSION, settings
        )

    @classmethod
    def load(cls, path: str) -> KNNRouter:
        """Read a router written by :meth:`save`.

        Raises:
            FileNotFoundError: no file at ``path``.
            ValueError: the file is not a valid router file (one line saying why).
        """
        return load_router(
            path,
            ROUTER_FORMAT,
            ROUTER_VERSION,
            ("features", "task_ids"),
            lambda t, m: cls(t["features"], t["task_ids"], m["task_names"], k=m["k"], metric=m["metric"]),
        )

    def __repr__(self) -> str:
        return (
            f"KNNRouter({self.num_exemplars} exemplars, dim {self.dim}, {len(self.task_names)} tasks, "
            f"k={self.k}, metric={self.metric!r})"
        )


def diagnostics(result: RouteResult, b: int) -> dict:
    """JSON-ready account of how sample ``b`` was routed: its task, weights and neighbours."""
    if not 0 <= b < result.routed_task.shape[0]:
        raise ValueError(f"sample index must be in [0, {result.routed_task.shape[0]}), got {b}")
    names = result.task_names
    return {
        "routed_task": names[int(result.routed_task[b])],
        "weights": {name: float(w) for name, w in zip(names, result.weights[b].tolist())},
        "neighbours": [
            {"task": names[int(t)], "distance": float(d), "exemplar": int(i)}
            for i, t, d in zip(
                result.neighbours[b].tolist(), result.neighbour_tasks[b].tolist(), result.distances[b].tolist()
            )
        ],
    }
