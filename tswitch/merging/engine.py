"""The dynamic-merge engine: per-input merged weights from packed switches (T-Switch Eq. 7-8).

For switch weights ``w`` (one-hot for T-Switch, Eq. 7; Auto-Switch's k-NN votes, Eq. 8) the
engine builds ``theta(w) = theta_0 + sum_k w_k · scale_k · mask_k ⊙ sign_k`` and runs the backbone
with it through the adapter (``torch.func.functional_call``; no module is mutated).

- :class:`~tswitch.merging.packed.PackedSwitches` (:mod:`.packed`) holds every task's switches
  bit-packed; each entry adds itself to a merged tensor (:class:`~.packed.SwitchEntry`).
- :class:`DynamicMergeEngine` merges weights (``strategy="merge"``, the default): a bounded cache of
  merged weights keyed by the weight vector rounded to 1e-6 (LRU eviction, TinyLFU admission: a
  vector displaces the least recently used one only if it was used more often), one forward per
  distinct weight vector. With ``strategy="tenant"``/``"auto"`` it runs a batch in one forward whatever its mix of
  weight vectors (:mod:`.tenants`: ``theta_0`` products shared by the batch, each task's sparse
  delta applied to the samples that use it; no merged model is built, nothing is cached); ``auto``
  merges instead for an architecture with an operation :mod:`.tenants` has no per-sample rule for.
- :class:`AutoSwitch` routes every sample on its own (:class:`tswitch.routing.KNNRouter`) and runs
  the engine on the resulting weights.

Everything a request computes is local to the call; the only shared mutable state is the cache,
guarded by a lock, whose values are never written after they are stored.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import torch

from .admission import AGE_EVERY, UseCounts
from .deltas import DenseRows, Streamed, delta_nbytes, tenant_delta
from .packed import PackedSwitches, signed_lut
from .tenants import BUFFER_MIN_ROWS, UnsupportedOp, mixed_weights

if TYPE_CHECKING:  # annotations only: merging must not import the model or routing packages
    from ..models.base import BoundWeights, Head, ModelAdapter
    from ..routing.knn import KNNRouter, RouteResult

WEIGHT_DECIMALS = 6  # cache key resolution: k-NN weights are multiples of 1/C, far coarser
STRATEGIES = ("auto", "tenant", "merge")
# Default bound on the merged-weights cache: a quarter of a 16 GB GPU Space (3 ViT-L/14 copies,
# 47 MiniLM copies); the count bound (cache_size) applies too.
DEFAULT_CACHE_BYTES = 4 << 30
log = logging.getLogger(__name__)


class CacheInfo(NamedTuple):
    hits: int
    misses: int
    size: int
    max_size: int
    nbytes: int = 0  # bytes the cached merged tensors hold
    max_bytes: int = DEFAULT_CACHE_BYTES


@dataclass(frozen=True)
class EngineOutput:
    """One batch through the merged models; row ``b`` is sample ``b``.

    Attributes:
        features: ``(B, D)`` backbone features, each under its own merged weights.
        logits: every task's head on those features, ``{task: (B, C_task)}``.
        routed_task: ``(B,)`` task index whose head answers (``tasks[routed_task[b]]``).
        probs_routed: per sample, the softmax of the routed task's logits.
        weights: ``(B, K)`` the switch weights used (rounded to 1e-6).
        tasks: the ``K`` task names, in column order.
        groups: how many distinct merged models the batch needed.
    """

    features: torch.Tensor
    logits: dict[str, torch.Tensor]
    routed_task: torch.Tensor
    probs_routed: list[torch.Tensor]
    weights: torch.Tensor
    tasks: tuple[str, ...]
    groups: int


class DynamicMergeEngine:
    """Merged weights for any switch weights, and batched forwards under them.

    Args:
        adapter: the backbone (:class:`tswitch.models.base.ModelAdapter`).
        base_state: the pre-trained tensors ``theta_0`` (never modified).
        switches: the tasks' packed switches; their order is the weight columns' order.
        heads: a head per task of ``switches``.
        cache_size: merged weight sets kept by the merging path; each costs one model's covered
            tensors. When full, a new set evicts the least recently used one only if its weight
            vector was used more often (:meth:`_admits`). The multi-tenant path caches nothing.
        cache_bytes: the cache's bound in bytes (its merged tensors), besides ``cache_size``.
        dense_bytes: bytes of float32 deltas the engine may hold decoded. ``0`` (serving): a delta too
            dense for a CSR stays packed and is decoded each time it is used. Above it, such deltas
            are kept dense up to this many bytes (in tensor order), for every strategy: a merge is
            then one ``add_`` per task and tensor, and a multi-tenant product a dense GEMM over the
            task's rows. For offline evaluation, where memory is plentiful (suite builds:
            ``tswitch.suites.evaluate``); the held bytes are :meth:`nbytes`.
        strategy: ``"merge"`` (the merged-weights cache only: one forward per distinct weight
            vector), ``"tenant"`` (multi-tenant forwards only: an unsupported operation raises
            :class:`~.tenants.UnsupportedOp`) or ``"auto"``: cached merged weights when every weight
            vector of the batch is cached, else one multi-tenant forward; a vector seen a second
            time is merged (from the serving forms) and cached when the cache admits it; merging only where the
            architecture needs it. Measured in benchmarks/bench_engine.py.
        buffer_rows: in a multi-tenant forward, a group of samples with one weight vector that sends
            at least this many rows (samples × tokens or × pixels) through a linear or convolution
            gets that layer merged for it; fewer rows take sparse per-task products
            (:data:`~.tenants.BUFFER_MIN_ROWS`, measured; ``0``: every group merged).
    """

    def __init__(
        self,
        adapter: ModelAdapter,
        base_state: Mapping[str, torch.Tensor],
        switches: PackedSwitches,
        heads: Mapping[str, Head],
        cache_size: int = 16,
        strategy: str = "merge",
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        dense_bytes: int = 0,
        buffer_rows: int = BUFFER_MIN_ROWS,
    ):
        for name, value in (("cache_bytes", cache_bytes), ("dense_bytes", dense_bytes), ("buffer_rows", buffer_rows)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
        if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 0:
            raise ValueError(f"cache_size must be an int >= 0, got {cache_size!r}")
        missing_heads = [t for t in switches.tasks if t not in heads]
        if missing_heads:
            raise ValueError(f"no head for tasks {missing_heads}")
        _check_coverage(base_state, switches)
        self.adapter = adapter
        self.tasks = switches.tasks
        self.heads = {t: heads[t] for t in self.tasks}
        self._base = dict(base_state)
        self._lut = signed_lut(adapter.device)
        self.strategy = strategy
        self.unsupported: str | None = None  # why the multi-tenant path is off for this adapter, if it is
        self._switches: PackedSwitches | None = None
        self._deltas: dict[str, dict] = {}
        self._merge_first = False
        self.dense_bytes = dense_bytes
        self.buffer_rows = buffer_rows
        if strategy == "merge" and not dense_bytes:
            self._switches = switches.to(adapter.device)
        else:  # decoded once, at load; the packed form is not kept beside it
            moved = switches.to(adapter.device)
            self._deltas = _decoded(moved, self.tasks, self._lut, dense_bytes)
            streamed = sum(
                math.prod(d.shape) for items in self._deltas.values() for d in items.values() if isinstance(d, Streamed)
            )
            total = sum(math.prod(e.shape) for items in moved.entries.values() for e in items.values())
            convolutions = sum(
                math.prod(e.shape) for items in moved.entries.values() for e in items.values() if len(e.shape) == 4
            )
            # auto on a convolutional network: merging its small tensors costs less than the per-layer
            # delta products on its large activations (benchmarks/bench_engine.py, EfficientNet-Lite0),
            # except when a batch holds more weight vectors than the cache (merging would thrash)
            self._merge_first = strategy == "auto" and convolutions > total / 2
            if strategy == "auto" and streamed > total / 2:
                # decoding dense-ish switches layer by layer costs more than merging them once
                # (benchmarks/bench_engine.py, alpha 0.7): merge, and keep the packed form for it
                self.unsupported = (
                    f"switches too dense for sparse products ({streamed / total:.0%} of entries streamed)"
                )
                self._switches, self._deltas = moved, {}
        self.cache_size = cache_size
        self.cache_bytes = cache_bytes
        self._cache: OrderedDict[tuple[float, ...], dict[str, torch.Tensor]] = OrderedDict()
        self._cache_nbytes: dict[tuple[float, ...], int] = {}
        self._bound: dict[tuple[float, ...], Mapping[str, torch.Tensor] | BoundWeights] = {}
        self._uses = UseCounts(age_every=AGE_EVERY * max(cache_size, 1))  # requests per vector
        self._pending: dict[tuple[float, ...], Future] = {}
        self._lock = threading.Lock()
        self._hits = self._misses = 0

    # -- merged weights ----------------------------------------------------------------------
    def weight_key(self, weights: Sequence[float] | torch.Tensor) -> tuple[float, ...]:
        """The cache key of a weight vector: each weight rounded to 1e-6 (``-0.0`` -> ``0.0``)."""
        values = weights.tolist() if isinstance(weights, torch.Tensor) else list(weights)
        if len(values) != len(self.tasks):
            raise ValueError(f"got {len(values)} weights for {len(self.tasks)} tasks")
        key = tuple(round(float(w), WEIGHT_DECIMALS) + 0.0 for w in values)
        if not all(math.isfinite(w) for w in key):
            raise ValueError(f"weights must be finite, got {list(values)}")
        return key

    def merged_weights(self, weights: Sequence[float] | torch.Tensor) -> dict[str, torch.Tensor]:
        """``theta_0 + sum_k w_k · scale_k · mask_k ⊙ sign_k`` (T-Switch Eq. 7/8), cached.

        Weights are rounded to 1e-6 first, so equal keys give bit-identical results. Tensors that
        a task with non-zero weight covers are new; the rest are ``base_state``'s own tensors.
        The returned dict is the caller's, its tensors are shared with the cache: read them only.
        """
        key = self.weight_key(weights)
        with self._lock:
            self._uses.count([key])
        return dict(self._lookup(key)[0])

    def _admits(self, key: tuple[float, ...], size: int = 0) -> bool:
        """Whether the cache takes ``key``'s merged weights of ``size`` bytes (call under the lock).

        TinyLFU's admission rule (Einziger et al., 2017) over LRU eviction: with room, yes; when
        full, only if ``key`` was used more often than the entry LRU would evict. A burst of
        one-off vectors then cannot flush the popular ones, and a cyclic pattern over more
        vectors than the cache holds keeps ``cache_size`` of them cached instead of none.
        """
        if not self.cache_size or size > self.cache_bytes:
            return False
        if len(self._cache) < self.cache_size and sum(self._cache_nbytes.values()) + size <= self.cache_bytes:
            return True
        victim = next(iter(self._cache), None)
        return victim is None or self._uses.get(key) > self._uses.get(victim)

    def _lookup(self, key: tuple[float, ...]) -> tuple[dict[str, torch.Tensor], bool]:
        """The cache's merged weights of ``key`` (not a copy: read only), and whether it was a hit."""
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                self._hits += 1
                return self._cache[key], True
            pending = self._pending.get(key)
            owner = pending is None
            if pending is None:  # compute outside the lock; others asking for this key wait on the future
                pending = self._pending[key] = Future()
                self._misses += 1
            else:
                self._hits += 1
        if not owner:
            return pending.result(), True
        try:
            merged = self._merge(key)
        except BaseException as exc:
            with self._lock:
                del self._pending[key]
            pending.set_exception(exc)
            raise
        size = sum(t.numel() * t.element_size() for n, t in merged.items() if t is not self._base[n])
        with self._lock:
            del self._pending[key]
            if self._admits(key, size):
                self._cache[key] = merged
                self._cache_nbytes[key] = size
                while len(self._cache) > self.cache_size or sum(self._cache_nbytes.values()) > self.cache_bytes:
                    old, _ = self._cache.popitem(last=False)
                    del self._cache_nbytes[old]
                    self._bound.pop(old, None)
        pending.set_result(merged)
        return merged, False

    def _forward_weights(self, key: tuple[float, ...]) -> Mapping[str, torch.Tensor] | BoundWeights:
        """The merged weights of ``key`` as a forward takes them: from the key's second forward on,
        while it is cached, bound into a module copy (``adapter.bind``: no per-call swap of every
        tensor; one bind per cache entry, dropped with it); a key seen once runs as a dict."""
        merged, hit = self._lookup(key)
        with self._lock:
            bound = self._bound.get(key)
            cached = key in self._cache
        if bound is not None:
            return bound
        if not (hit and cached):
            return merged
        bound = self.adapter.bind(merged)
        with self._lock:
            if self._cache.get(key) is merged:  # (not evicted and merged again meanwhile)
                bound = self._bound.setdefault(key, bound)
        return bound

    def nbytes(self) -> int:
        """Bytes of the switches as this engine holds them (packed, or their serving forms)."""
        return self._switches.nbytes() if self._switches is not None else delta_nbytes(self._deltas)

    def _adders(self, task: str) -> Mapping[str, Callable[[torch.Tensor, float], None]]:
        if self._switches is not None:
            lut = self._lut
            return {n: functools.partial(_add_packed, e, lut=lut) for n, e in self._switches.entries[task].items()}
        return {n: d.add_to for n, d in self._deltas[task].items()}

    def _merge(self, key: tuple[float, ...]) -> dict[str, torch.Tensor]:
        active = [(w, self._adders(t)) for w, t in zip(key, self.tasks) if w != 0.0]
        merged = {}
        with torch.no_grad():
            for name, base in self._base.items():
                parts = [(w, items[name]) for w, items in active if name in items]
                if not parts:
                    merged[name] = base
                    continue
                work = torch.promote_types(base.dtype, torch.float32)
                total = base.detach().to(work, copy=True)  # a new tensor: theta_0 is never touched
                for w, add in parts:  # zero-weight tasks never reach here
                    add(total.view(-1), w)
                merged[name] = total.to(base.dtype)
        return merged

    def cache_info(self) -> CacheInfo:
        with self._lock:
            return CacheInfo(
                self._hits,
                self._misses,
                len(self._cache),
                self.cache_size,
                sum(self._cache_nbytes.values()),
                self.cache_bytes,
            )

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()
            self._cache_nbytes.clear()
            self._bound.clear()
            self._uses.clear()
            self._hits = self._misses = 0

    # -- forwards ----------------------------------------------------------------------------
    def run(
        self, batch: Mapping[str, torch.Tensor], weights: torch.Tensor, routed_task: torch.Tensor | None = None
    ) -> EngineOutput:
        """Run every sample under its own merged weights, one forward per distinct weight vector.

        Args:
            batch: the adapter's inputs, every tensor with the batch as first dimension.
            weights: ``(B, K)`` switch weights, columns in :attr:`tasks` order.
            routed_task: ``(B,)`` task whose head answers each sample; default: the largest weight
                (the first such task on ties).
        """
        weights = torch.as_tensor(weights)
        if weights.dim() != 2 or weights.shape[1] != len(self.tasks) or weights.shape[0] == 0:
            raise ValueError(f"weights must be (B, {len(self.tasks)}) with B >= 1, got {tuple(weights.shape)}")
        b = weights.shape[0]
        bad = [name for name, t in batch.items() if not isinstance(t, torch.Tensor) or t.dim() == 0 or t.shape[0] != b]
        if bad:
            raise ValueError(f"batch entries {bad} do not have the batch size {b} as first dimension")
        keys = [self.weight_key(row) for row in weights.tolist()]
        groups: dict[tuple[float, ...], list[int]] = {}
        for i, key in enumerate(keys):
            groups.setdefault(key, []).append(i)
        with self._lock:
            self._uses.count(groups)
        features = self._tenant_features(batch, keys) if self._one_forward(groups) else None
        if features is None:
            features = self._merged_features(batch, groups, b)
        with torch.no_grad():
            logits = {task: self.heads[task](features) for task in self.tasks}
        rounded = torch.tensor(keys, dtype=torch.float64)
        if routed_task is None:
            routed_task = rounded.argmax(1)
        routed_task = torch.as_tensor(routed_task).long().cpu()
        if routed_task.shape != (b,) or int(routed_task.min()) < 0 or int(routed_task.max()) >= len(self.tasks):
            raise ValueError(f"routed_task must be ({b},) task indices in [0, {len(self.tasks)})")
        probs = [torch.softmax(logits[self.tasks[r]][i], dim=-1) for i, r in enumerate(routed_task.tolist())]
        return EngineOutput(features, logits, routed_task, probs, rounded, self.tasks, len(groups))

    def _one_forward(self, groups: Mapping[tuple[float, ...], list[int]]) -> bool:
        """Whether this batch takes the multi-tenant forward (``strategy``; see the class docstring)."""
        if self.strategy == "merge" or self.unsupported:
            return False
        if self.strategy == "tenant" or len(groups) > self.cache_size:
            return True  # (auto: more vectors than the cache holds would only evict each other)
        if self._merge_first:
            return False
        with self._lock:  # merge when every vector not cached was used before and the cache takes it
            missing = [key for key in groups if key not in self._cache]
            merge = all(self._uses.get(key) >= 2 and self._admits(key) for key in missing)
        return not (merge and self.cache_size)

    def _tenant_features(self, batch: Mapping[str, torch.Tensor], keys: list[tuple[float, ...]]) -> torch.Tensor | None:
        """One forward with per-sample weights (:mod:`.tenants`); ``None`` when the adapter needs merging."""
        weights = torch.tensor(keys, dtype=torch.float32)
        # samples sorted by their largest weight, then by weight vector: each task's samples mostly one
        # contiguous run (Punica), equal weight vectors one run (a group that may get its layers merged)
        top = weights.argmax(1).tolist()
        order = torch.tensor(sorted(range(len(keys)), key=lambda i: (top[i], keys[i])), dtype=torch.long)
        permuted = not torch.equal(order, torch.arange(len(keys)))
        if permuted:
            batch = {name: t.index_select(0, order.to(t.device)) for name, t in batch.items()}
            weights = weights[order]
        mixed = mixed_weights(self._base, self._deltas, self.tasks, weights.to(self.adapter.device), self.buffer_rows)
        full = {**self._base, **mixed}
        try:
            features = self.adapter.features(dict(batch), full)
            return features[torch.argsort(order).to(features.device)] if permuted else features
        except UnsupportedOp as exc:
            if self.strategy == "tenant":
                raise
            self.unsupported = str(exc)  # a fact of the architecture: decided once
            log.warning("multi-tenant forwards off for %s (%s): merging weights instead", self.adapter.name, exc)
            return None

    def _merged_features(
        self, batch: Mapping[str, torch.Tensor], groups: dict[tuple[float, ...], list[int]], b: int
    ) -> torch.Tensor:
        """One forward per distinct weight vector, under cached merged weights."""
        parts: list[tuple[torch.Tensor | None, torch.Tensor]] = []  # (rows of the batch or None: all, features)
        with torch.no_grad():
            for key, rows in groups.items():
                merged = self._forward_weights(key)
                if len(groups) == 1:
                    parts.append((None, self.adapter.features(dict(batch), merged)))
                    continue
                index = torch.tensor(rows)
                sub = {name: t.index_select(0, index.to(t.device)) for name, t in batch.items()}
                parts.append((index, self.adapter.features(sub, merged)))
            first = parts[0][1]
            if parts[0][0] is None:
                features = first
            else:
                features = first.new_empty((b, first.shape[1]))
                for rows_of_part, part in parts:
                    if rows_of_part is None:  # several groups: every part knows its rows
                        raise RuntimeError("a group of several lacks its row indices")
                    features[rows_of_part.to(features.device)] = part
        return features


def _decoded(switches: PackedSwitches, tasks, lut: torch.Tensor, dense_bytes: int) -> dict[str, dict]:
    """Every task's serving forms (:func:`tenant_delta`); deltas too dense for a CSR kept dense
    float32 while their bytes fit ``dense_bytes``, in task and tensor order."""
    out: dict[str, dict] = {}
    left = dense_bytes
    for t in tasks:
        out[t] = {}
        for name, entry in switches.entries[t].items():
            delta = tenant_delta(entry, lut)
            size = 4 * math.prod(entry.shape)
            if isinstance(delta, Streamed) and size <= left:
                delta, left = DenseRows(delta.dense()), left - size
            out[t][name] = delta
    return out


def _add_packed(entry, out: torch.Tensor, weight: float, lut: torch.Tensor) -> None:
    entry.add_to(out, weight, lut)


def _check_coverage(base_state: Mapping[str, torch.Tensor], switches: PackedSwitches) -> None:
    missing = sorted(switches.names - set(base_state))
    if missing:
        raise ValueError(f"switches cover tensors the base model lacks: {missing[:5]}")
    for task, items in switches.entries.items():
        for name, entry in items.items():
            base = base_state[name]
            if tuple(base.shape) != tuple(entry.shape) or not torch.is_floating_point(base):
                raise ValueError(
                    f"task {task!r}: {name} is {tuple(entry.shape)}, base model has {base.dtype} {tuple(base.shape)}"
                )


class AutoSwitch:
    """Auto-Switch (T-Switch Eq. 8): route each sample with the k-NN router, then merge and run.

    The router's task names must be the engine's tasks (any order).
    """

    def __init__(self, engine: DynamicMergeEngine, router: KNNRouter):
        if sorted(router.task_names) != sorted(engine.tasks):
            raise ValueError(f"router tasks {list(router.task_names)} differ from engine tasks {list(engine.tasks)}")
        self.engine, self.router = engine, router
        self._columns = torch.tensor([router.task_names.index(t) for t in engine.tasks])  # engine col -> router col
        self._to_engine = torch.tensor([engine.tasks.index(t) for t in router.task_names])  # router idx -> engine idx

    def predict(self, batch: Mapping[str, torch.Tensor], k: int | None = None) -> tuple[EngineOutput, RouteResult]:
        """Route every sample on its own and run it under its merged weights."""
        with torch.no_grad():
            queries = self.engine.adapter.route_features(dict(batch))
        route = self.router.route(queries, k)
        weights, routed = self.engine_view(route)
        return self.engine.run(batch, weights, routed_task=routed), route

    def engine_view(self, route: RouteResult) -> tuple[torch.Tensor, torch.Tensor]:
        """A route in the engine's task order: ``(weights (B, K), routed task index (B,))`` — the
        router's columns and its tie rule, reordered to :attr:`DynamicMergeEngine.tasks`."""
        return route.weights[:, self._columns], self._to_engine[route.routed_task]
