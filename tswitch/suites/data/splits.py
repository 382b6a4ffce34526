"""Deterministic, stratified train / validation / test splits over item ids.

A suite stores its splits as JSON lists of ids (``TaskData.ids``). Splits depend only on the set of
(id, label) pairs and the seed, never on the order the loader returned the items in: each class's ids
are sorted, then permuted by a generator seeded with ``(seed, class)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .base import TaskData

SPLIT_NAMES = ("train", "val", "test")


def _class_order(ids: Sequence[str], labels: np.ndarray, seed: int) -> dict[int, list[str]]:
    """Each class's ids in a seeded random order that ignores the input order."""
    by_class: dict[int, list[str]] = {}
    for item, label in zip(ids, labels.tolist()):
        by_class.setdefault(int(label), []).append(item)
    out = {}
    for label, members in sorted(by_class.items()):
        members = sorted(members)
        perm = np.random.default_rng([seed, label]).permutation(len(members))
        out[label] = [members[i] for i in perm]
    return out


def _check(ids: Sequence[str], labels) -> np.ndarray:
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (len(ids),):
        raise ValueError(f"need one label per id, got {len(ids)} ids and labels of shape {labels.shape}")
    if len(set(ids)) != len(ids):
        raise ValueError("ids must be unique")
    return labels


def _apportion(total: int, weights: np.ndarray, capacity: np.ndarray) -> np.ndarray:
    """Integers proportional to ``weights`` that sum to ``total``, each at most ``capacity``.

    Largest remainder: floors first, then one at a time to whoever is furthest below its share
    (ties to the lower index), skipping anyone at capacity.
    """
    ideal = total * weights / weights.sum() if weights.sum() > 0 else np.zeros(len(weights))
    counts = np.minimum(np.floor(ideal).astype(np.int64), capacity)
    while counts.sum() < total:
        room = counts < capacity
        if not room.any():
            raise ValueError(f"cannot place {total} items in classes of capacity {capacity.tolist()}")
        gap = np.where(room, ideal - counts, -np.inf)
        counts[int(np.argmax(gap))] += 1
    return counts


def make_splits(
    ids: Sequence[str],
    labels,
    fractions: Sequence[float] = (0.6, 0.2, 0.2),
    *,
    sizes: Sequence[int] | None = None,
    seed: int = 0,
    names: Sequence[str] = SPLIT_NAMES,
) -> dict[str, list[str]]:
    """Stratified, deterministic splits of ``ids``.

    Args:
        ids: unique item ids.
        labels: (n,) class of each id.
        fractions: share of all items per split (sum at most 1; any rest is left out).
        sizes: total items per split instead of ``fractions`` (sum at most ``len(ids)``).
        seed: the only source of randomness.
        names: the split names, one per fraction or size.

    Returns:
        ``{name: [ids]}``, disjoint, each list in the input order of ``ids``. Every split's class
        proportions match the whole's up to rounding (at most two items per class).
    """
    labels = _check(ids, labels)
    n = len(ids)
    if sizes is not None:
        sizes = [int(s) for s in sizes]
        if any(s < 0 for s in sizes) or sum(sizes) > n:
            raise ValueError(f"sizes must be non-negative and sum to at most {n}, got {sizes}")
    else:
        share = np.asarray(fractions, dtype=np.float64)
        if (share < 0).any() or share.sum() > 1 + 1e-9:
            raise ValueError(f"fractions must be non-negative and sum to at most 1, got {share.tolist()}")
        taken = min(n, int(round(n * share.sum())))
        sizes = _apportion(taken, share, np.full(len(share), n)).tolist()
    if len(names) != len(sizes):
        raise ValueError(f"need one name per split, got {len(names)} names for {len(sizes)} splits")

    order = _class_order(ids, labels, seed)
    class_sizes = np.array([len(m) for m in order.values()], dtype=np.int64)
    left = class_sizes.copy()
    # (classes, splits): how many of each class go to each split
    quota = np.zeros((len(order), len(sizes)), dtype=np.int64)
    for s, size in enumerate(sizes):
        quota[:, s] = _apportion(size, class_sizes.astype(np.float64), left)
        left -= quota[:, s]

    chosen: dict[str, str] = {}
    for row, members in enumerate(order.values()):
        start = 0
        for s, name in enumerate(names):
            for item in members[start : start + quota[row, s]]:
                chosen[item] = name
            start += quota[row, s]
    out: dict[str, list[str]] = {name: [] for name in names}
    for item in ids:
        if item in chosen:
            out[chosen[item]].append(item)
    return out


def subsample_balanced(ids: Sequence[str], labels, per_class: int, *, seed: int = 0) -> list[str]:
    """At most ``per_class`` ids of every class, chosen deterministically, in the input order."""
    labels = _check(ids, labels)
    if per_class < 0:
        raise ValueError(f"per_class must be non-negative, got {per_class}")
    keep = set()
    for members in _class_order(ids, labels, seed).values():
        keep.update(members[:per_class])
    return [item for item in ids if item in keep]


def apply_split(task: TaskData, ids: Sequence[str]) -> TaskData:
    """The items of ``task`` named by ``ids``, in that order."""
    index = {item: i for i, item in enumerate(task.ids)}
    missing = [item for item in ids if item not in index]
    if missing:
        raise ValueError(f"{len(missing)} ids are not items of this task, e.g. {missing[:3]}")
    return task.subset([index[item] for item in ids])
